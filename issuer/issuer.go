// Package issuer is passport's verifier in the RATS passport model (RFC 9334 section 5.1): it
// hands out single-use challenge nonces, appraises TPM evidence with package evidence and a
// policy.Appraiser, and mints short-lived attestation results (EAR JWTs, package token) signed by
// a jwks.Keyring. The HTTP layer (Handler) only decodes, calls this core and renders.
package issuer

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/enroll"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/token"
)

// Defaults of Config.
const (
	DefaultNonceTTL           = 60 * time.Second
	DefaultTokenLifetime      = 5 * time.Minute
	DefaultStatusTTL          = time.Minute
	DefaultStatusListValidity = time.Hour
	// DefaultStreamLifetime bounds one GET /v1/revocations event stream: the issuer ends it
	// after 5 min (less up to 10% jitter), the follower reconnects and resynchronises.
	DefaultStreamLifetime = 5 * time.Minute
)

// Config wires an Issuer. URL, Keyring, Nonces, Evidence and Policy are required.
type Config struct {
	// URL is the issuer identifier: the iss of every token and the base of the discovery
	// document, e.g. "https://issuer.example" (no trailing slash).
	URL string
	// Keyring signs tokens.
	Keyring *jwks.Keyring
	// Nonces keeps challenge nonces (memory or Redis).
	Nonces store.NonceStore
	// Clocks, when set, refuses quotes whose TPM clock info went backwards for the same AK.
	Clocks store.ClockStore
	// Evidence verifies TPM evidence.
	Evidence *evidence.Verifier
	// Allowlist, when set, is the AK allowlist the admin API manages (pin, list, unpin) and
	// EK enrollment records into; it should be among Evidence's AK trust methods.
	Allowlist *evidence.Allowlist
	// Enroll, when set, serves EK enrollment (POST /v1/enroll, /v1/enroll/activate).
	Enroll *enroll.Enroller
	// Policy appraises verified evidence.
	Policy policy.Appraiser
	// NonceTTL is how long a challenge stays valid (default 60 s).
	NonceTTL time.Duration
	// TokenLifetime is exp - iat of minted tokens (default 5 min).
	TokenLifetime time.Duration
	// Audiences, when non-empty, lists the audiences a token may be minted for; otherwise any
	// non-empty audience the attester asks for is accepted.
	Audiences []string
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives one line per decision; never tokens, nonces or keys (default slog.Default()).
	Log *slog.Logger
	// Build names this verifier build in ear_verifier_id.
	Build string
	// Observe, when set, is told how long each appraisal step took: StepVerify (evidence),
	// StepPolicy and StepSign. The demo prints these; metrics can record them.
	Observe func(step string, d time.Duration)
	// Outcome, when set, is told the result of every attestation request, once: every Attest
	// call (Appraise calls Attest), an Appraise refused before it, and an attest or appraise
	// request whose body could not be decoded ("invalid_request") or was too large
	// ("request_too_large"). The code is "" when a token was issued, otherwise the api.Error
	// code StatusOf gives the error (e.g. "nonce_reused"). Metrics count it; it never sees
	// tokens, nonces or keys.
	Outcome func(code string)
	// Status keeps the Token Status Lists: every token gets an entry before it is signed (no
	// entry, no token). Default: Nonces, when it implements store.StatusStore. When Clocks is
	// the same store, the clock check is folded into the allocation (one round trip).
	Status store.StatusStore
	// Revocations feeds GET /v1/revocations (default: Status, when it implements
	// store.RevocationFeed).
	Revocations store.RevocationFeed
	// StatusTTL is the ttl of Status List Tokens, how often relying parties refetch them
	// (default DefaultStatusTTL); StatusListValidity is their exp - iat (default
	// DefaultStatusListValidity).
	StatusTTL, StatusListValidity time.Duration
	// StreamLifetime is how long one GET /v1/revocations event stream lasts at most (default
	// DefaultStreamLifetime); each stream ends between 90% and 100% of it, so streams opened
	// together do not all reconnect together. An anonymous client thus cannot hold a stream
	// (a goroutine, buffers, a file descriptor) for ever; how many it may hold at once is the
	// caller's to cap (cmd/passport: ratelimit.Concurrency).
	StreamLifetime time.Duration
	// Keys, when set, serves `passport keys list|rotate` on the admin API.
	Keys KeyAdmin
}

// Steps reported to Config.Observe.
const (
	StepChallenge = "challenge"
	StepVerify    = "verify"
	StepPolicy    = "policy"
	StepSign      = "sign"
)

func (is *Issuer) observe(step string, start time.Time) {
	if is.cfg.Observe != nil {
		is.cfg.Observe(step, time.Since(start))
	}
}

// Issuer is the verifier core. It is safe for concurrent use.
type Issuer struct {
	cfg    Config
	status *statusState // status.go
}

// New checks cfg and returns an Issuer.
func New(cfg Config) (*Issuer, error) {
	switch {
	case cfg.URL == "":
		return nil, errors.New("issuer: URL is required")
	case cfg.Keyring == nil:
		return nil, errors.New("issuer: keyring is required")
	case cfg.Nonces == nil:
		return nil, errors.New("issuer: nonce store is required")
	case cfg.Evidence == nil:
		return nil, errors.New("issuer: evidence verifier is required")
	case cfg.Policy == nil:
		return nil, errors.New("issuer: policy is required")
	}
	if cfg.NonceTTL <= 0 {
		cfg.NonceTTL = DefaultNonceTTL
	}
	if cfg.TokenLifetime <= 0 {
		cfg.TokenLifetime = DefaultTokenLifetime
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Build == "" {
		cfg.Build = "passport-dev"
	}
	st, err := newStatusState(&cfg)
	if err != nil {
		return nil, err
	}
	return &Issuer{cfg: cfg, status: st}, nil
}

// URL returns the issuer identifier.
func (is *Issuer) URL() string { return is.cfg.URL }

// Discovery returns the discovery document for the current keys.
func (is *Issuer) Discovery() jwks.Discovery {
	d := jwks.NewDiscovery(is.cfg.URL, is.cfg.Keyring.Algorithms())
	d.AppraisalEndpoint = is.cfg.URL + api.PathAppraise
	d.StatusListURI = is.cfg.URL + api.PathStatusList
	d.RevocationEventsEndpoint = is.cfg.URL + api.PathRevocations
	return d
}

// Challenge issues a fresh single-use nonce valid for NonceTTL. It fails with an error wrapping
// store.ErrUnavailable when the store cannot keep it (fail closed: no nonce, no attestation).
func (is *Issuer) Challenge(ctx context.Context) (*api.ChallengeResponse, error) {
	defer is.observe(StepChallenge, time.Now())
	exp := is.cfg.Now().Add(is.cfg.NonceTTL)
	n, err := newNonce(exp)
	if err != nil {
		return nil, err
	}
	if err := is.cfg.Nonces.PutNonce(ctx, n, nil, is.cfg.NonceTTL); err != nil {
		return nil, fmt.Errorf("issuer: challenge: %w", err)
	}
	return &api.ChallengeResponse{Nonce: n, ExpiresAt: exp.UTC().Truncate(time.Millisecond)}, nil
}

// Attest consumes the request's nonce (atomically: of concurrent requests with one nonce exactly
// one proceeds), verifies the evidence, appraises it and mints a token. Evidence made for one
// relying party (req.Origin set, its extraData binding that origin) is minted only for an
// audience of that origin (ErrAudience otherwise). Errors wrap the sentinels of this package,
// *evidence.Error or *PolicyError; StatusOf maps them to HTTP.
func (is *Issuer) Attest(ctx context.Context, req *api.AttestRequest) (res *api.AttestResponse, err error) {
	if is.cfg.Outcome != nil {
		defer func() { is.cfg.Outcome(outcomeCode(err)) }()
	}
	if err := is.checkRequest(req); err != nil {
		return nil, err
	}
	now := is.cfg.Now()
	if _, err := is.cfg.Nonces.ConsumeNonce(ctx, req.Nonce); err != nil {
		switch {
		case !errors.Is(err, store.ErrNonceUnknown):
			return nil, fmt.Errorf("issuer: consume nonce: %w", err)
		case nonceExpired(req.Nonce, now):
			is.cfg.Log.InfoContext(ctx, "attestation refused", "reason", "nonce expired")
			return nil, fmt.Errorf("%w: ask for a new challenge", ErrNonceExpired)
		}
		is.cfg.Log.InfoContext(ctx, "attestation refused", "reason", "nonce unknown or already used")
		return nil, fmt.Errorf("%w: each challenge answers one attestation", ErrNonceReused)
	}
	t0 := time.Now()
	st, err := is.cfg.Evidence.VerifyFor(ctx, req.Nonce, req.CNF, req.Origin, req.Attestation)
	is.observe(StepVerify, t0)
	if err != nil {
		is.cfg.Log.InfoContext(ctx, "attestation refused", "reason", err.Error())
		return nil, err
	}
	if is.cfg.Clocks != nil && !is.status.foldClock {
		if err := is.cfg.Clocks.AdvanceClock(ctx, st.AKID, st.Clock, 30*24*time.Hour); err != nil {
			if errors.Is(err, store.ErrClockRollback) {
				is.cfg.Log.InfoContext(ctx, "attestation refused", "ak", st.AKID, "reason", err.Error())
				return nil, fmt.Errorf("%w: %w", ErrClockRollback, err)
			}
			return nil, fmt.Errorf("issuer: clock store: %w", err)
		}
	}
	t0 = time.Now()
	ap := is.cfg.Policy.Appraise(st)
	is.observe(StepPolicy, t0)
	if ap.Status == token.TierContraindicated {
		pe := &PolicyError{PolicyID: ap.PolicyID, Failures: ap.Failures}
		is.cfg.Log.InfoContext(ctx, "attestation refused by policy", "ak", st.AKID, "reason", pe.Error())
		return nil, pe
	}
	t0 = time.Now()
	defer is.observe(StepSign, t0)
	claims, err := is.claims(req, st, ap, now)
	if err != nil {
		return nil, err
	}
	if err := is.allocateStatus(ctx, claims, st, ap); err != nil {
		return nil, err
	}
	raw, kid, err := is.cfg.Keyring.Sign(claims)
	if err != nil {
		return nil, fmt.Errorf("issuer: %w", err)
	}
	is.cfg.Log.InfoContext(ctx, "token issued", "ak", st.AKID, "trust", string(st.AKTrust), "kid", kid, "status", ap.Status.String(), "aud", req.Audience)
	return &api.AttestResponse{Token: raw, ExpiresAt: claims.Expires().UTC()}, nil
}

func (is *Issuer) checkRequest(req *api.AttestRequest) error {
	switch {
	case req == nil:
		return fmt.Errorf("%w: empty request", ErrBadRequest)
	case len(req.Nonce) != api.NonceSize:
		return fmt.Errorf("%w: nonce is %d bytes, want %d", ErrBadRequest, len(req.Nonce), api.NonceSize)
	case req.CNF == nil || req.CNF.Key == nil || !req.CNF.IsPublic() || !req.CNF.Valid():
		return fmt.Errorf("%w: cnf must be a valid public JWK", ErrBadRequest)
	case !acceptableCNF(req.CNF):
		return fmt.Errorf("%w: cnf must be an EC key on P-256, P-384 or P-521, or an RSA key of at least 2048 bits (DPoP proofs and JWE key agreement)", ErrBadRequest)
	case len(req.Audience) > MaxAudienceSize:
		return fmt.Errorf("%w: audience longer than %d bytes", ErrBadRequest, MaxAudienceSize)
	case req.EATNonce != "" && (len(req.EATNonce) < 8 || len(req.EATNonce) > 88):
		return fmt.Errorf("%w: eat_nonce must be 8 to 88 bytes (RFC 9711 section 4.1: 8 to 64 bytes, base64url in JSON)", ErrBadRequest)
	case len(req.Attestation) == 0:
		return fmt.Errorf("%w: no attestation", ErrBadRequest)
	case req.Audience == "":
		return fmt.Errorf("%w: audience is required", ErrBadRequest)
	case len(is.cfg.Audiences) > 0 && !slices.Contains(is.cfg.Audiences, req.Audience):
		return fmt.Errorf("%w: %q", ErrAudience, req.Audience)
	case len(req.Origin) > MaxAudienceSize:
		return fmt.Errorf("%w: origin longer than %d bytes", ErrBadRequest, MaxAudienceSize)
	case req.Origin != "" && !isOrigin(req.Origin):
		return fmt.Errorf("%w: origin %q is not a serialized origin (scheme://host[:port])", ErrBadRequest, req.Origin)
	case req.Origin != "" && !api.AudienceOfOrigin(req.Audience, req.Origin):
		return fmt.Errorf("%w: the evidence was made for the relying party at %q, and %q is not a URL of that origin", ErrAudience, req.Origin, req.Audience)
	}
	return nil
}

// isOrigin reports whether o is an origin in api.Origin's serialization.
func isOrigin(o string) bool {
	s, err := api.Origin(o)
	return err == nil && s == o
}

// MaxAudienceSize bounds the requested audience and origin (bytes).
const MaxAudienceSize = 256

// acceptableCNF admits the confirmation keys that DPoP proofs and the key broker's JWE key
// agreement can use: EC P-256/P-384/P-521 (ES256/384/512, ECDH-ES) and RSA >= 2048 bits.
func acceptableCNF(k *jose.JSONWebKey) bool {
	switch p := k.Key.(type) {
	case *ecdsa.PublicKey:
		return p.Curve == elliptic.P256() || p.Curve == elliptic.P384() || p.Curve == elliptic.P521()
	case *rsa.PublicKey:
		return p.N.BitLen() >= 2048
	}
	return false
}

func (is *Issuer) claims(req *api.AttestRequest, st *evidence.State, ap *policy.Appraisal, now time.Time) (*token.Claims, error) {
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return nil, fmt.Errorf("issuer: jti: %w", err)
	}
	cnf := req.CNF.Public()
	cnf.KeyID = ""
	pcrs := make(map[string]string, len(st.LoggedPCRs))
	for _, idx := range st.LoggedPCRs {
		if v, ok := st.PCRs[idx]; ok {
			pcrs[strconv.Itoa(int(idx))] = hex.EncodeToString(v)
		}
	}
	sb := st.SecureBoot()
	return &token.Claims{
		Issuer:       is.cfg.URL,
		Subject:      st.AKID,
		Audience:     token.Audience{req.Audience},
		IssuedAt:     now.Unix(),
		NotBefore:    now.Unix(),
		Expiry:       now.Add(is.cfg.TokenLifetime).Unix(),
		ID:           base64.RawURLEncoding.EncodeToString(jti),
		Profile:      token.Profile,
		EATNonce:     req.EATNonce,
		Confirmation: &token.Confirmation{JWK: &cnf},
		VerifierID:   token.VerifierID{Build: is.cfg.Build, Developer: "https://github.com/passport-attest/passport"},
		Submods: map[string]*token.Submod{token.SubmodTPM: {
			Status:   ap.Status,
			Vector:   ap.Vector,
			PolicyID: ap.PolicyID,
			Measurements: &token.Measurements{
				Bank:            st.Bank,
				PCRs:            pcrs,
				SecureBoot:      &sb,
				ReferenceValues: ap.ReferenceValues,
			},
		}},
	}, nil
}
