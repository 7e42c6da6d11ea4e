package enroll

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
)

// oidEKCertificate is tcg-kp-EKCertificate (2.23.133.8.1), the extended key usage of an EK
// certificate (TCG EK Credential Profile for TPM Family 2.0, section 3.2.16).
var oidEKCertificate = asn1.ObjectIdentifier{2, 23, 133, 8, 1}

// errNotEKCert is wrapped by checkEKProfile's errors.
var errNotEKCert = errors.New("not an EK certificate")

// checkEKProfile refuses a certificate that the TCG EK Credential Profile (sections 3.2.6,
// 3.2.9 and 3.2.16) rules out as an EK certificate, whatever root it chains to: a CA
// certificate; one without the key usage an EK has (keyEncipherment for an RSA EK,
// keyAgreement for an ECC EK); one with extended key usages that do not include
// tcg-kp-EKCertificate (a TLS server certificate, say). A root configured with --ek-roots may
// issue more than EK certificates (an enterprise CA); without these checks the private key of
// any of its certificates could pose as an EK and activate the credential of a software AK.
func checkEKProfile(cert *x509.Certificate) error {
	if cert.BasicConstraintsValid && cert.IsCA {
		return fmt.Errorf("%w: a CA certificate", errNotEKCert)
	}
	var want x509.KeyUsage
	switch cert.PublicKey.(type) {
	case *rsa.PublicKey:
		want = x509.KeyUsageKeyEncipherment
	case *ecdsa.PublicKey:
		want = x509.KeyUsageKeyAgreement
	default:
		return fmt.Errorf("%w: key type %T", errNotEKCert, cert.PublicKey)
	}
	if cert.KeyUsage&want == 0 {
		return fmt.Errorf("%w: key usage %#x lacks %#x", errNotEKCert, cert.KeyUsage, want)
	}
	if len(cert.ExtKeyUsage) > 0 || len(cert.UnknownExtKeyUsage) > 0 {
		if !slices.ContainsFunc(cert.UnknownExtKeyUsage, oidEKCertificate.Equal) {
			return fmt.Errorf("%w: extended key usage without tcg-kp-EKCertificate", errNotEKCert)
		}
	}
	return nil
}
