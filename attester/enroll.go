package attester

import (
	"context"
	"errors"
	"fmt"

	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/passport-attest/passport/api"
)

// EK names the endorsement key template used for enrollment (TCG EK Credential Profile
// section 2.1.5: the default templates, whose certificates live at NV 0x01c00002 and
// 0x01c0000a).
type EK string

// Endorsement key templates.
const (
	EKRSA EK = "rsa" // RSA 2048, AES-128 CFB (go-tpm-tools client.EndorsementKeyRSA)
	EKECC EK = "ecc" // NIST P-256, AES-128 CFB (client.EndorsementKeyECC)
)

// endorsementKey loads (once) the EK of template ek; Close flushes it.
func (a *Attester) endorsementKey(ek EK) (*client.Key, error) {
	if a.closed {
		return nil, ErrClosed
	}
	if k, ok := a.eks[ek]; ok {
		return k, nil
	}
	var k *client.Key
	var err error
	switch ek {
	case EKRSA, "":
		k, err = client.EndorsementKeyRSA(a.rw)
	case EKECC:
		k, err = client.EndorsementKeyECC(a.rw)
	default:
		return nil, fmt.Errorf("attester: unknown EK template %q (want rsa or ecc)", ek)
	}
	if err != nil {
		return nil, fmt.Errorf("attester: load the endorsement key: %w", err)
	}
	if a.eks == nil {
		a.eks = map[EK]*client.Key{}
	}
	a.eks[ek] = k
	return k, nil
}

// EnrollRequest returns the first message of EK enrollment: the EK's and the AK's public
// areas (TPMT_PUBLIC) and, when the TPM stores one in NV, the EK certificate.
func (a *Attester) EnrollRequest(ek EK) (*api.EnrollRequest, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	k, err := a.endorsementKey(ek)
	if err != nil {
		return nil, err
	}
	ekPub, err := k.PublicArea().Encode()
	if err != nil {
		return nil, fmt.Errorf("attester: encode EK public area: %w", err)
	}
	akPub, err := a.ak.PublicArea().Encode()
	if err != nil {
		return nil, fmt.Errorf("attester: encode AK public area: %w", err)
	}
	return &api.EnrollRequest{EKPub: ekPub, EKCert: k.CertDERBytes(), AKPub: akPub}, nil
}

// ActivateCredential runs TPM2_ActivateCredential (TPM 2.0 Part 3 section 12.5) on the issuer's
// challenge with the AK as the activated object and the EK as the key (its policy: PolicySecret
// on the endorsement hierarchy), returning the secret. The TPM refuses unless the credential
// was made for this EK and this AK's name.
func (a *Attester) ActivateCredential(ek EK, ch *api.EnrollChallenge) ([]byte, error) {
	if ch == nil || len(ch.Credential) < 2 || len(ch.Secret) < 2 {
		return nil, errors.New("attester: malformed enrollment challenge")
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	k, err := a.endorsementKey(ek)
	if err != nil {
		return nil, err
	}
	sess, err := client.NewEKSession(a.rw)
	if err != nil {
		return nil, fmt.Errorf("attester: EK policy session: %w", err)
	}
	defer sess.Close()
	ekAuth, err := sess.Auth()
	if err != nil {
		return nil, fmt.Errorf("attester: EK policy: %w", err)
	}
	secret, err := tpm2.ActivateCredentialUsingAuth(a.rw, []tpm2.AuthCommand{
		{Session: tpm2.HandlePasswordSession, Attributes: tpm2.AttrContinueSession},
		ekAuth,
	}, a.ak.Handle(), k.Handle(), ch.Credential[2:], ch.Secret[2:])
	if err != nil {
		return nil, fmt.Errorf("attester: TPM2_ActivateCredential: %w", err)
	}
	return secret, nil
}

// Enroll runs EK enrollment with the issuer (POST api.PathEnroll, TPM2_ActivateCredential,
// POST api.PathEnrollActivate): afterwards the issuer trusts a's AK. It fails with *HTTPError
// when the issuer refuses (403 for an untrusted EK or a failed activation).
func (c *Client) Enroll(ctx context.Context, a *Attester, ek EK) (*api.EnrollResponse, error) {
	req, err := a.EnrollRequest(ek)
	if err != nil {
		return nil, err
	}
	var ch api.EnrollChallenge
	if err := c.post(ctx, api.PathEnroll, req, &ch); err != nil {
		return nil, err
	}
	secret, err := a.ActivateCredential(ek, &ch)
	if err != nil {
		return nil, err
	}
	var res api.EnrollResponse
	if err := c.post(ctx, api.PathEnrollActivate, &api.ActivateRequest{ID: ch.ID, Secret: secret}, &res); err != nil {
		return nil, err
	}
	if res.AKID == "" {
		return nil, fmt.Errorf("%w: no ak_id in the enrollment answer", ErrBadResponse)
	}
	return &res, nil
}
