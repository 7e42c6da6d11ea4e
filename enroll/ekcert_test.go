package enroll

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// TestEKProfileRealCertificates: go-tpm-tools' real EK certificates (GCE vTPM, RSA and ECC,
// with and without the tcg-kp-EKCertificate extended key usage) pass checkEKProfile; its AK
// (signing) certificates, which chain to the same roots, do not.
func TestEKProfileRealCertificates(t *testing.T) {
	out, err := exec.Command("go", "mod", "download", "-json", "github.com/google/go-tpm-tools").Output()
	if err != nil {
		t.Fatalf("go mod download: %v", err)
	}
	var mod struct{ Dir string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Dir == "" {
		t.Fatalf("go-tpm-tools module dir: %v", err)
	}
	dir := filepath.Join(mod.Dir, "internal", "test", "certificates")
	for name, ek := range map[string]bool{
		"uca_tpm_rsa_enc_cert.pem":  true,
		"uca_tpm_ecc_enc_cert.pem":  true,
		"pca_tpm_rsa_enc_cert.pem":  true,
		"pca_tpm_ecc_enc_cert.pem":  true,
		"uca_tpm_rsa_sign_cert.pem": false,
		"uca_tpm_ecc_sign_cert.pem": false,
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(b)
		if blk == nil {
			t.Fatalf("%s: no PEM block", name)
		}
		cert, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if err := checkEKProfile(cert); (err == nil) != ek {
			t.Errorf("%s: checkEKProfile = %v, want EK certificate %v", name, err, ek)
		}
	}
}

// TestEKProfileRefusesOtherCertificates: certificates a CA configured as an EK root might also
// issue are not EK certificates: a TLS server certificate (its RSA key does have
// keyEncipherment), a CA, a certificate without key usage, an ECC key with only
// digitalSignature.
func TestEKProfileRefusesOtherCertificates(t *testing.T) {
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		tmpl x509.Certificate
		pub  any
		ok   bool
	}{
		"EK, RSA, no EKU":     {x509.Certificate{KeyUsage: x509.KeyUsageKeyEncipherment}, &rsaKey.PublicKey, true},
		"EK, ECC, EKU":        {x509.Certificate{KeyUsage: x509.KeyUsageKeyAgreement, UnknownExtKeyUsage: []asn1.ObjectIdentifier{oidEKCertificate}}, &ecKey.PublicKey, true},
		"TLS server":          {x509.Certificate{KeyUsage: x509.KeyUsageKeyEncipherment | x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, &rsaKey.PublicKey, false},
		"CA":                  {x509.Certificate{KeyUsage: x509.KeyUsageKeyEncipherment | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true}, &rsaKey.PublicKey, false},
		"no key usage":        {x509.Certificate{}, &rsaKey.PublicKey, false},
		"ECC, signature only": {x509.Certificate{KeyUsage: x509.KeyUsageDigitalSignature}, &ecKey.PublicKey, false},
	} {
		tmpl := tc.tmpl
		tmpl.SerialNumber, tmpl.Subject = big.NewInt(1), pkix.Name{CommonName: name}
		tmpl.NotBefore, tmpl.NotAfter = time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
		der, err := x509.CreateCertificate(rand.Reader, &tmpl, &tmpl, tc.pub, rsaKey)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		err = checkEKProfile(cert)
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, errNotEKCert)) {
			t.Errorf("%s: checkEKProfile = %v, want accepted %v", name, err, tc.ok)
		}
	}
}
