package attester

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-tpm-tools/client"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
)

// ErrClosed is returned (wrapped) by Evidence after Close.
var ErrClosed = errors.New("attester: closed")

// Attester produces TPM evidence bound to an issuer's nonce and to its own confirmation (cnf)
// key. It holds an ECC attestation key (AK) loaded in the TPM, the event log it presents as the
// machine's, and the cnf key pair.
//
// An Attester is safe for concurrent use: TPM commands are serialised. It does not own the TPM
// stream; Close unloads the AK but leaves the TPM open.
type Attester struct {
	mu     sync.Mutex // guards the TPM stream and closed: a TPM runs one command at a time
	rw     io.ReadWriter
	ak     *client.Key
	closed bool

	akPub crypto.PublicKey
	log   []byte
	cnf   *ecdsa.PrivateKey

	eks map[EK]*client.Key // endorsement keys loaded for enrollment (enroll.go)
}

// Options configures New.
type Options struct {
	// TPM is the TPM command stream, e.g. from OpenTPM. Required.
	TPM io.ReadWriter
	// EventLog is the TCG PC Client event log presented as the machine's (at most
	// MaxEventLogSize bytes; copied). Nil means the running machine's own log, read by
	// client.GetEventLog from /sys/kernel/security/tpm0/binary_bios_measurements. An empty log
	// is refused: the issuer cannot appraise evidence without one.
	EventLog []byte
	// CNFKey is the confirmation key the token will be bound to (RFC 7800 cnf). It must be on
	// P-256, P-384 or P-521. Nil means a fresh P-256 key.
	CNFKey *ecdsa.PrivateKey
}

// New loads an ECC attestation key (go-tpm-tools client.AttestationKeyECC: a restricted
// P-256 ECDSA signing key derived from the owner hierarchy's seed, TCG EK Credential Profile
// template) into opts.TPM and returns an Attester using it. The caller must Close it.
//
// It fails when the TPM is missing or refuses the key, when the event log cannot be read, is
// empty or exceeds MaxEventLogSize, or when the cnf key is on an unsupported curve.
func New(opts Options) (*Attester, error) {
	if opts.TPM == nil {
		return nil, errors.New("attester: Options.TPM is nil")
	}
	log := opts.EventLog
	if log == nil {
		l, err := client.GetEventLog(opts.TPM)
		if err != nil {
			return nil, fmt.Errorf("attester: read the machine's event log: %w", err)
		}
		log = l
	}
	if len(log) == 0 {
		return nil, errors.New("attester: empty event log")
	}
	if len(log) > MaxEventLogSize {
		return nil, fmt.Errorf("attester: event log is %d bytes, more than %d", len(log), MaxEventLogSize)
	}

	cnf := opts.CNFKey
	if cnf == nil {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, fmt.Errorf("attester: generate cnf key: %w", err)
		}
		cnf = k
	}
	if cnf.Curve == nil {
		return nil, errors.New("attester: cnf key has no curve")
	}
	switch cnf.Curve {
	case elliptic.P256(), elliptic.P384(), elliptic.P521():
	default:
		return nil, fmt.Errorf("attester: cnf key curve %s unsupported (want P-256, P-384 or P-521)", cnf.Curve.Params().Name)
	}

	ak, err := client.AttestationKeyECC(opts.TPM)
	if err != nil {
		return nil, fmt.Errorf("attester: load ECC attestation key: %w", err)
	}
	return &Attester{
		rw:    opts.TPM,
		ak:    ak,
		akPub: ak.PublicKey(),
		log:   append([]byte(nil), log...),
		cnf:   cnf,
	}, nil
}

// Close flushes the attestation key's handle from the TPM. It does not close the TPM stream.
// Closing twice is harmless.
func (a *Attester) Close() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closed {
		return nil
	}
	a.closed = true
	a.ak.Close()
	for _, k := range a.eks {
		k.Close()
	}
	return nil
}

// CNF returns the public JWK of the confirmation key (RFC 7517; placed in AttestRequest.CNF and,
// by the issuer, in the token's cnf.jwk claim, RFC 7800 section 3.2). It carries no alg or use,
// because relying parties use it both to verify proofs of possession (DPoP, RFC 9449) and to
// encrypt secrets to the attester (ECDH-ES JWE). Each call returns a new value.
func (a *Attester) CNF() *jose.JSONWebKey {
	return &jose.JSONWebKey{Key: &a.cnf.PublicKey}
}

// CNFPrivate returns the confirmation private key, for proofs of possession and for decrypting
// secrets released to this attester. Keep it in process.
func (a *Attester) CNFPrivate() *ecdsa.PrivateKey { return a.cnf }

// AKPublic returns the attestation key's public key (an *ecdsa.PublicKey on P-256). A verifier
// that knows it can pass it as go-tpm-tools server.VerifyOpts.TrustedAKs.
func (a *Attester) AKPublic() crypto.PublicKey { return a.akPub }

// EventLog returns a copy of the event log the attester presents.
func (a *Attester) EventLog() []byte { return append([]byte(nil), a.log...) }

// Evidence answers one challenge. It computes extraData = api.ExtraData(nonce, CNF()) =
// SHA-256(nonce || RFC 7638 thumbprint of the cnf key), quotes every allocated PCR bank with
// it (TPM2_Quote, TPM 2.0 Part 3 section 18.4, one quote per bank) and returns an
// api.AttestRequest holding a copy of the nonce, the cnf JWK and the binary-encoded
// attest.Attestation (AK public area, quotes, event log). TEE reports (SEV-SNP, TDX) are not
// collected. Audience and EATNonce are left for the caller.
//
// The nonce must be api.NonceSize (32) bytes. Errors come from the binding, the TPM or the
// encoding; after Close it fails with ErrClosed.
func (a *Attester) Evidence(nonce []byte) (*api.AttestRequest, error) {
	return a.EvidenceFor(nonce, "")
}

// EvidenceFor is Evidence made for one relying party (the background check): extraData is
// api.ExtraDataFor(nonce, CNF(), origin), binding origin (api.Origin's serialization of the
// relying party's URL, which the attester reached itself), and the request's Origin is set, so
// the issuer mints for it only audiences of that origin. With origin "" it is Evidence. A
// malformed origin is an error.
func (a *Attester) EvidenceFor(nonce []byte, origin string) (*api.AttestRequest, error) {
	cnf := a.CNF()
	extra, err := api.ExtraDataFor(nonce, cnf, origin)
	if err != nil {
		return nil, fmt.Errorf("attester: bind nonce and cnf key: %w", err)
	}
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return nil, ErrClosed
	}
	att, err := a.ak.Attest(client.AttestOpts{
		Nonce:              extra,
		TCGEventLog:        a.log,
		SkipTeeAttestation: true,
	})
	a.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("attester: quote PCRs: %w", err)
	}
	raw, err := proto.Marshal(att)
	if err != nil {
		return nil, fmt.Errorf("attester: encode attestation: %w", err)
	}
	return &api.AttestRequest{
		Nonce:       append(api.Bytes(nil), nonce...),
		Attestation: raw,
		CNF:         cnf,
		Origin:      origin,
	}, nil
}
