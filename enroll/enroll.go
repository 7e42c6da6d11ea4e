// Package enroll makes an attestation key trusted on the strength of its TPM's endorsement key
// (EK), for machines whose AK has neither a pin nor a certificate: the issuer checks the EK
// (its certificate chains to a configured EK root, TCG EK Credential Profile section 2.2.1,
// or its public key is pinned), then proves that the AK lives in the same TPM with
// TPM2_MakeCredential / TPM2_ActivateCredential (TPM 2.0 Part 1 section 24): it encrypts a
// random secret to the EK, bound to the AK's name (nameAlg digest of its TPMT_PUBLIC), and
// only a TPM holding both the EK's private key and a loaded object of exactly that name (hence
// those attributes: restricted, fixedTPM) releases it. The secret coming back proves it; the
// AK is then recorded in the evidence.Allowlist as TrustEnrolled, one AK per EK.
//
// A TPM can make fresh AKs at will (another template, or TPM2_Clear, which changes the owner
// seed but not the endorsement seed), and tokens minted under a replaced AK stay valid until
// their exp. So that one TPM cannot hold many token subs at once (relying parties bound each
// sub's share of their DPoP replay cache, package dpop), an EK may enroll an AK other than the
// one enrolled with it only Config.ReenrollInterval after that one was enrolled.
//
// The credential is generated with go-tpm's legacy/tpm2/credactivation (server-side
// TPM2_MakeCredential); nothing here is hand-rolled cryptography.
package enroll

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"github.com/google/go-tpm/legacy/tpm2/credactivation"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/store"
)

// DefaultTTL is how long an enrollment challenge stays open.
const DefaultTTL = 60 * time.Second

// secretSize is the credential's length: one SHA-256 digest, the size go-attestation uses.
const secretSize = 32

// MaxPublicArea bounds the EK and AK public areas of an enrollment request (TPMT_PUBLIC, TPM
// 2.0 Part 2 section 12.2.4), in bytes: 1 KiB. The largest area a TPM produces for these keys,
// a 4096-bit RSA key with a SHA-512 authPolicy, is about 600 bytes. The AK's area is stored
// with the open enrollment, so this also bounds what one request can park in the store.
const MaxPublicArea = 1 << 10

// DefaultReenrollInterval is Config.ReenrollInterval's default: 10 minutes, longer than the
// issuer's default token lifetime (issuer.DefaultTokenLifetime, 5 minutes), so that at any
// instant one TPM holds valid tokens under at most two AKs (the current one and the one it
// replaced).
const DefaultReenrollInterval = 10 * time.Minute

// ekLockTTL bounds how long Finish holds an EK's lock (re-check and pin, a few store round
// trips): a holder that dies leaves the EK locked at most this long.
const ekLockTTL = 30 * time.Second

// Sentinel errors; Status maps them to HTTP.
var (
	ErrBadRequest        = errors.New("enroll: bad request")
	ErrUntrustedEK       = errors.New("enroll: endorsement key not trusted")
	ErrActivation        = errors.New("enroll: credential activation failed: the secret is wrong")
	ErrEnrollmentUnknown = errors.New("enroll: enrollment unknown, expired or already used")
	// ErrReenrollTooSoon: the EK has another AK enrolled, for less than the re-enrollment
	// interval (or another enrollment of it is finishing). Errors wrapping it are
	// *TooSoonError, which says how long to wait.
	ErrReenrollTooSoon = errors.New("enroll: the EK enrolled another AK less than the re-enrollment interval ago")
)

// TooSoonError refuses the enrollment of an AK with an EK that has another AK enrolled for less
// than Config.ReenrollInterval. It wraps ErrReenrollTooSoon.
type TooSoonError struct {
	// EK is the EK's thumbprint; AK the thumbprint of the AK enrolled with it.
	EK, AK string
	// RetryAfter is how long until the EK may enroll another AK (> 0).
	RetryAfter time.Duration
}

// Error says which EK and how long to wait.
func (e *TooSoonError) Error() string {
	return fmt.Sprintf("%v: EK %s has AK %s enrolled; another AK may enroll in %s", ErrReenrollTooSoon, e.EK, e.AK, e.RetryAfter.Round(time.Second))
}

// Unwrap returns ErrReenrollTooSoon.
func (e *TooSoonError) Unwrap() error { return ErrReenrollTooSoon }

// Config wires an Enroller. Sessions and Allowlist are required, and at least one of EKRoots
// and PinnedEKs.
type Config struct {
	// EKRoots and EKIntermediates: EK certificates must chain to one of EKRoots.
	EKRoots, EKIntermediates []*x509.Certificate
	// PinnedEKs are EK public keys trusted as they are (TPMs without an EK certificate, such
	// as the simulator).
	PinnedEKs []crypto.PublicKey
	// Sessions keeps open enrollments, single use, and the per-EK locks of Finish (a
	// NonceStore: memory or Redis). When it implements store.NonceNamespacer (memory and Redis
	// do) the enroller keeps them in its namespace "enroll", apart from the challenge nonces
	// of the same store: an attest request consumes whatever 32-byte value it sends from
	// those, and a lock's key is computable from the EK. Any other store must not be the one
	// that holds challenge nonces.
	Sessions store.NonceStore
	// Allowlist records enrolled AKs.
	Allowlist *evidence.Allowlist
	// TTL of an enrollment challenge (default DefaultTTL).
	TTL time.Duration
	// ReenrollInterval is how long after an AK's enrollment (evidence.AKRecord.Added) its EK
	// may enroll another AK; the same AK may enroll again at any time. Zero means
	// DefaultReenrollInterval, negative no interval. Keep it at least the token lifetime.
	ReenrollInterval time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Enroller runs the two steps of EK enrollment. It is safe for concurrent use.
type Enroller struct {
	cfg    Config
	pinned []string // thumbprints of PinnedEKs
}

// New checks cfg and returns an Enroller.
func New(cfg Config) (*Enroller, error) {
	switch {
	case cfg.Sessions == nil:
		return nil, errors.New("enroll: a session store is required")
	case cfg.Allowlist == nil:
		return nil, errors.New("enroll: an allowlist is required")
	case len(cfg.EKRoots) == 0 && len(cfg.PinnedEKs) == 0:
		return nil, errors.New("enroll: no EK trust configured (EK roots or pinned EKs)")
	}
	if cfg.TTL <= 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.ReenrollInterval == 0 {
		cfg.ReenrollInterval = DefaultReenrollInterval
	}
	if ns, ok := cfg.Sessions.(store.NonceNamespacer); ok {
		cfg.Sessions = ns.NonceNamespace("enroll")
	}
	e := &Enroller{cfg: cfg}
	for _, k := range cfg.PinnedEKs {
		id, err := evidence.Thumbprint(k)
		if err != nil {
			return nil, err
		}
		e.pinned = append(e.pinned, id)
	}
	return e, nil
}

// session is what an open enrollment remembers, and only what Finish needs: the secret as
// its SHA-256, the AK's public area in its canonical encoding (at most MaxPublicArea bytes;
// what the credential's name was computed over) and the EK's thumbprint.
type session struct {
	SecretDigest []byte `json:"secret_sha256"`
	AKPub        []byte `json:"ak_pub"`
	EK           string `json:"ek"`
}

// decodePublic decodes a TPMT_PUBLIC and returns it with its canonical encoding, which must
// be b itself: go-tpm's DecodePublic ignores whatever follows the structure, so without this
// check a request could carry (and have stored) up to its body cap of trailing bytes. Areas
// over MaxPublicArea bytes are refused before decoding. Errors wrap ErrBadRequest.
func decodePublic(what string, b []byte) (tpm2.Public, []byte, error) {
	if len(b) > MaxPublicArea {
		return tpm2.Public{}, nil, fmt.Errorf("%w: %s public area: %d bytes, at most %d", ErrBadRequest, what, len(b), MaxPublicArea)
	}
	area, err := tpm2.DecodePublic(b)
	if err != nil {
		return tpm2.Public{}, nil, fmt.Errorf("%w: %s public area: %w", ErrBadRequest, what, err)
	}
	enc, err := area.Encode()
	if err != nil {
		return tpm2.Public{}, nil, fmt.Errorf("%w: %s public area: %w", ErrBadRequest, what, err)
	}
	if !bytes.Equal(enc, b) {
		return tpm2.Public{}, nil, fmt.Errorf("%w: %s public area: %d bytes where its TPMT_PUBLIC encodes to %d (trailing or non-canonical bytes)", ErrBadRequest, what, len(b), len(enc))
	}
	return area, enc, nil
}

// Start checks the EK (certificate chain or pin) and the AK's public area (a restricted
// signing key, evidence.CheckAKAttributes; both areas exactly one canonical TPMT_PUBLIC of at
// most MaxPublicArea bytes), and returns a credential for the AK's name encrypted to the EK.
// An AK other than the one enrolled with the EK within the re-enrollment interval is refused
// with a *TooSoonError. Errors wrap ErrBadRequest, ErrUntrustedEK, ErrReenrollTooSoon or
// store.ErrUnavailable.
func (e *Enroller) Start(ctx context.Context, req *api.EnrollRequest) (*api.EnrollChallenge, error) {
	if req == nil || len(req.EKPub) == 0 || len(req.AKPub) == 0 {
		return nil, fmt.Errorf("%w: ek_pub and ak_pub are required", ErrBadRequest)
	}
	ekArea, _, err := decodePublic("EK", req.EKPub)
	if err != nil {
		return nil, err
	}
	ek, err := ekArea.Key()
	if err != nil {
		return nil, fmt.Errorf("%w: EK public key: %w", ErrBadRequest, err)
	}
	ekID, err := e.trustEK(ek, req.EKCert)
	if err != nil {
		return nil, err
	}
	sym, err := ekSymmetricSize(ekArea)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	akArea, akPub, err := decodePublic("AK", req.AKPub)
	if err != nil {
		return nil, err
	}
	akKey, err := akArea.Key()
	if err != nil {
		return nil, fmt.Errorf("%w: AK public key: %w", ErrBadRequest, err)
	}
	if err := evidence.CheckAKAttributes(akArea); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	akID, err := evidence.Thumbprint(akKey)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := e.checkReenroll(ctx, ekID, akID); err != nil {
		return nil, err
	}
	name, err := akArea.Name()
	if err != nil || name.Digest == nil {
		return nil, fmt.Errorf("%w: AK name: %v", ErrBadRequest, err)
	}
	secret := make([]byte, secretSize)
	if _, err := rand.Read(secret); err != nil {
		return nil, err
	}
	cred, encSecret, err := credactivation.Generate(name.Digest, ek, sym, secret)
	if err != nil {
		return nil, fmt.Errorf("%w: MakeCredential: %w", ErrBadRequest, err)
	}
	digest := sha256.Sum256(secret)
	val, err := json.Marshal(session{SecretDigest: digest[:], AKPub: akPub, EK: ekID})
	if err != nil {
		return nil, err
	}
	id := make([]byte, 32)
	if _, err := rand.Read(id); err != nil {
		return nil, err
	}
	if err := e.cfg.Sessions.PutNonce(ctx, sessionKey(id), val, e.cfg.TTL); err != nil {
		return nil, fmt.Errorf("enroll: %w", err)
	}
	return &api.EnrollChallenge{ID: id, Credential: cred, Secret: encSecret,
		ExpiresAt: e.cfg.Now().Add(e.cfg.TTL).UTC().Truncate(time.Millisecond)}, nil
}

// trustEK returns the EK's thumbprint when its certificate chains to the EK roots and
// certifies this very key, or when the key is pinned; else an error wrapping ErrUntrustedEK.
func (e *Enroller) trustEK(ek crypto.PublicKey, certDER []byte) (string, error) {
	id, err := evidence.Thumbprint(ek)
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if len(certDER) > 0 && len(e.cfg.EKRoots) > 0 {
		cert, err := x509.ParseCertificate(certDER)
		if err != nil {
			return "", fmt.Errorf("%w: EK certificate: %w", ErrBadRequest, err)
		}
		if cid, err := evidence.Thumbprint(cert.PublicKey); err != nil || cid != id {
			return "", fmt.Errorf("%w: the EK certificate certifies another key", ErrUntrustedEK)
		}
		if err := checkEKProfile(cert); err != nil {
			return "", fmt.Errorf("%w: %w", ErrUntrustedEK, err)
		}
		// The TCG EK Credential Profile's critical SAN (TPM manufacturer, model, version) is
		// handled as go-tpm-tools does for AK certificates.
		if err := server.VerifyAKCert(cert, e.cfg.EKRoots, e.cfg.EKIntermediates); err != nil {
			return "", fmt.Errorf("%w: %w", ErrUntrustedEK, err)
		}
		return id, nil
	}
	if slices.Contains(e.pinned, id) {
		return id, nil
	}
	return "", fmt.Errorf("%w: EK %s has no certificate chaining to a configured root and is not pinned", ErrUntrustedEK, id)
}

// ekSymmetricSize is the key size in bytes of the EK's symmetric scheme (AES-128 in the TCG
// default EK templates): TPM2_ActivateCredential derives the credential key with it.
func ekSymmetricSize(ek tpm2.Public) (int, error) {
	var sym *tpm2.SymScheme
	switch {
	case ek.RSAParameters != nil:
		sym = ek.RSAParameters.Symmetric
	case ek.ECCParameters != nil:
		sym = ek.ECCParameters.Symmetric
	}
	if sym == nil || sym.Alg != tpm2.AlgAES || sym.KeyBits == 0 {
		return 0, errors.New("the EK is not a storage key with an AES symmetric scheme")
	}
	if ek.Attributes&(tpm2.FlagRestricted|tpm2.FlagDecrypt) != tpm2.FlagRestricted|tpm2.FlagDecrypt {
		return 0, errors.New("the EK is not a restricted decryption key")
	}
	return int(sym.KeyBits) / 8, nil
}

// sessionKey is the store key of enrollment id: SHA-256 over a domain label and id. Sessions
// share the issuer's nonce store with challenge nonces, which are 32 random bytes too; keyed
// apart, an enrollment id is never a challenge nonce an attestation could consume, and a
// challenge nonce is never an enrollment (it is unknown: 409).
func sessionKey(id []byte) []byte {
	h := sha256.New()
	h.Write([]byte("passport-enrollment-session\x00"))
	h.Write(id)
	return h.Sum(nil)
}

// checkReenroll returns a *TooSoonError when the EK ekID has an AK other than akID enrolled
// for less than the re-enrollment interval, an error wrapping store.ErrUnavailable when the
// store cannot tell (fail closed), else nil.
func (e *Enroller) checkReenroll(ctx context.Context, ekID, akID string) error {
	if e.cfg.ReenrollInterval < 0 {
		return nil
	}
	rec, err := e.cfg.Allowlist.EnrolledWith(ctx, ekID)
	switch {
	case errors.Is(err, store.ErrAKUnknown):
		return nil
	case err != nil:
		return fmt.Errorf("enroll: AK enrolled with EK %s: %w", ekID, err)
	case rec.ID == akID:
		return nil
	}
	if wait := rec.Added.Add(e.cfg.ReenrollInterval).Sub(e.cfg.Now()); wait > 0 {
		return &TooSoonError{EK: ekID, AK: rec.ID, RetryAfter: wait}
	}
	return nil
}

// ekLockKey is the nonce-store key of the lock Finish holds on EK ekID while it re-checks the
// re-enrollment interval and pins: SHA-256 over a domain label and the thumbprint, apart from
// sessions and challenge nonces.
func ekLockKey(ekID string) []byte {
	h := sha256.New()
	h.Write([]byte("passport-enrollment-ek-lock\x00"))
	h.Write([]byte(ekID))
	return h.Sum(nil)
}

// Finish consumes the enrollment (single use) and, when the secret is the one Start encrypted
// (constant-time comparison of SHA-256 digests), pins the AK as TrustEnrolled. The
// re-enrollment interval is checked again under a lock on the EK held in the session store
// (shared by replicas), so that two enrollments finishing together cannot both pin; the one
// that finds the lock taken gets a *TooSoonError of one second. Errors wrap ErrBadRequest,
// ErrEnrollmentUnknown, ErrActivation, ErrReenrollTooSoon or store.ErrUnavailable; a wrong
// secret, or a refusal, burns the enrollment.
func (e *Enroller) Finish(ctx context.Context, req *api.ActivateRequest) (*api.EnrollResponse, error) {
	if req == nil || len(req.ID) != 32 || len(req.Secret) == 0 || len(req.Secret) > 64 {
		return nil, fmt.Errorf("%w: enrollment_id (32 bytes) and secret (1..64 bytes) are required", ErrBadRequest)
	}
	val, err := e.cfg.Sessions.ConsumeNonce(ctx, sessionKey(req.ID))
	if err != nil {
		if errors.Is(err, store.ErrNonceUnknown) {
			return nil, ErrEnrollmentUnknown
		}
		return nil, fmt.Errorf("enroll: %w", err)
	}
	var s session
	if err := json.Unmarshal(val, &s); err != nil {
		return nil, fmt.Errorf("enroll: stored enrollment: %w", store.ErrUnavailable)
	}
	got := sha256.Sum256(req.Secret)
	if subtle.ConstantTimeCompare(got[:], s.SecretDigest) != 1 {
		return nil, ErrActivation
	}
	area, err := tpm2.DecodePublic(s.AKPub)
	if err != nil {
		return nil, fmt.Errorf("enroll: stored AK: %w", err)
	}
	ak, err := area.Key()
	if err != nil {
		return nil, fmt.Errorf("enroll: stored AK: %w", err)
	}
	akID, err := evidence.Thumbprint(ak)
	if err != nil {
		return nil, fmt.Errorf("enroll: stored AK: %w", err)
	}
	if e.cfg.ReenrollInterval >= 0 {
		lock := ekLockKey(s.EK)
		if err := e.cfg.Sessions.PutNonce(ctx, lock, []byte{1}, ekLockTTL); errors.Is(err, store.ErrNonceExists) {
			return nil, &TooSoonError{EK: s.EK, AK: "(another enrollment finishing)", RetryAfter: time.Second}
		} else if err != nil {
			return nil, fmt.Errorf("enroll: lock EK: %w", err)
		}
		// The lock's TTL frees it should this fail; a cancelled request still releases it.
		defer func() { _, _ = e.cfg.Sessions.ConsumeNonce(context.WithoutCancel(ctx), lock) }()
		if err := e.checkReenroll(ctx, s.EK, akID); err != nil {
			return nil, err
		}
	}
	rec, err := e.cfg.Allowlist.Pin(ctx, ak, evidence.TrustEnrolled, "enroll", s.EK)
	if err != nil {
		return nil, err
	}
	return &api.EnrollResponse{AKID: rec.ID}, nil
}
