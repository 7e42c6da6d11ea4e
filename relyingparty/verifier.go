package relyingparty

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/token"
)

// DefaultLeeway is the default Config.Leeway: 30 s of clock skew allowed on exp and nbf, small
// against token lifetimes of minutes and enough for hosts whose clocks are NTP-disciplined.
const DefaultLeeway = 30 * time.Second

// MaxLeeway is the largest Config.Leeway NewVerifier accepts: 2.5 min. go-oidc accepts nbf
// at most 5 min past the clock it is given, which NewVerifier sets back by the leeway: a
// larger leeway would make the effective nbf leeway 5 min minus it.
const MaxLeeway = 150 * time.Second

// Config is what a relying party expects of passport tokens. Issuer, Audience and KeySet are
// required: NewVerifier fails closed without them.
type Config struct {
	// Issuer is the exact iss expected (the issuer's public base URL).
	Issuer string
	// Audience must be one of the token's aud values (a string or an array, RFC 7519 section
	// 4.1.3); empty values never match.
	Audience string
	// KeySet verifies signatures: NewStaticKeySet, LoadJWKSFile, NewRemoteKeySet or any
	// oidc.KeySet.
	KeySet KeySet
	// Algorithms is the allowlist of JWS alg values (RFC 7518 section 3.1); default ["ES256"].
	// Only asymmetric algorithms are accepted: "none" and HS* are configuration errors.
	Algorithms []string
	// Leeway is the clock skew allowed on exp and nbf, in whole seconds; zero means
	// DefaultLeeway, a negative value means none. At most MaxLeeway.
	Leeway time.Duration
	// MinStatus is the worst acceptable overall EAR status: token.TierAffirming or
	// token.TierWarning; the zero value (TierNone) means token.TierAffirming. Any other value
	// is a configuration error.
	MinStatus token.Tier
	// Now is the clock; default time.Now.
	Now func() time.Time
	// MaxTokenSize is the longest token accepted, in bytes; zero means DefaultMaxTokenSize.
	// Longer tokens fail with ErrTooLarge before any parsing.
	MaxTokenSize int
	// CacheSize is the number of verified tokens remembered (LRU); zero means
	// DefaultCacheSize, a negative value disables the cache. A cached token is accepted again
	// only while the key set still holds the key that verified it (same kid, same key), so a
	// key withdrawn from the issuer's JWKS stops its tokens at the next refresh. Only this
	// package's key sets can answer that: with any other KeySet the cache is off.
	CacheSize int
	// Require, when set, is called with the claims of every token that passed all other
	// checks, on cache hits too; a non-nil error refuses the token (wrapped in ErrRequirement).
	// It must treat the claims as read-only.
	Require func(*token.Claims) error
	// RequireCEL, when set, is a CEL expression (cel.dev/cel-go) that must yield true for the
	// token to be accepted. Its variables are claims (the claim set as a JSON map, numbers as
	// doubles) and status (the overall EAR status name), e.g.
	//
	//	status == "affirming" && claims.submods.tpm.measurements.secure_boot == true
	//
	// It is compiled once by NewVerifier (a bad expression is a NewVerifier error) and
	// evaluated once per token: the claims are immutable, so a cached token is not re-evaluated.
	RequireCEL string
	// CacheObserver, when set, is told whether each Verify call that consults the
	// verified-token cache found the token there (hit) or not (miss); tokens refused for their
	// size before the lookup are not reported. Metrics derive the hit ratio from it
	// (metrics.Metrics.TokenCache). It must not block.
	CacheObserver func(hit bool)
}

// Verifier validates passport tokens locally. It is safe for concurrent use.
type Verifier struct {
	oidc    *oidc.IDTokenVerifier
	expect  token.Expectations
	rules   headerRules
	now     func() time.Time
	require func(*token.Claims) error
	cel     *celRule
	cache   *tokenCache
	keys    keyHolder // the key set, asked on every cache hit whether it still holds the key
	onCache func(hit bool)

	dpopOnce sync.Once
	dpop     *dpop.Verifier // the default DPoP verifier of Middlewares on this Verifier
}

// dpopVerifier returns the DPoP proof verifier that Middlewares built on v share unless given
// one (WithDPoPVerifier): one jti replay cache for all of them.
func (v *Verifier) dpopVerifier() *dpop.Verifier {
	v.dpopOnce.Do(func() { v.dpop = &dpop.Verifier{Now: v.now} })
	return v.dpop
}

// NewVerifier checks cfg and builds a Verifier on go-oidc's IDTokenVerifier (issuer, audience,
// expiry and signature algorithm allowlist), adding the checks passport tokens need (see the
// package documentation). Configuration errors match ErrConfig.
func NewVerifier(cfg Config) (*Verifier, error) {
	switch {
	case cfg.Issuer == "":
		return nil, fmt.Errorf("%w: Issuer is required", ErrConfig)
	case cfg.Audience == "":
		return nil, fmt.Errorf("%w: Audience is required", ErrConfig)
	case cfg.KeySet == nil:
		return nil, fmt.Errorf("%w: KeySet is required", ErrConfig)
	case cfg.Leeway > MaxLeeway:
		return nil, fmt.Errorf("%w: Leeway %s exceeds %s", ErrConfig, cfg.Leeway, MaxLeeway)
	case cfg.MaxTokenSize < 0:
		return nil, fmt.Errorf("%w: negative MaxTokenSize", ErrConfig)
	case cfg.MinStatus != token.TierNone && cfg.MinStatus != token.TierAffirming && cfg.MinStatus != token.TierWarning:
		// An unknown value would rank as the worst tier and accept every token; contraindicated
		// would accept tokens the verifier says must not be trusted.
		return nil, fmt.Errorf("%w: MinStatus %s: want affirming or warning", ErrConfig, cfg.MinStatus)
	}
	algs := cfg.Algorithms
	if len(algs) == 0 {
		algs = []string{"ES256"}
	}
	for _, a := range algs {
		if !isAsymmetric(a) {
			return nil, fmt.Errorf("%w: algorithm %q is not an asymmetric JWS algorithm", ErrConfig, a)
		}
	}
	algs = append([]string(nil), algs...)
	leeway := cfg.Leeway
	switch {
	case leeway == 0:
		leeway = DefaultLeeway
	case leeway < 0:
		leeway = 0
	}
	leeway = leeway.Truncate(time.Second)
	now := cfg.Now
	if now == nil {
		now = time.Now
	}
	v := &Verifier{
		expect:  token.Expectations{Issuer: cfg.Issuer, Audience: cfg.Audience, Leeway: leeway, MinStatus: cfg.MinStatus},
		rules:   headerRules{maxSize: cfg.MaxTokenSize, algs: algs, typ: true},
		now:     now,
		require: cfg.Require,
		onCache: cfg.CacheObserver,
	}
	if v.rules.maxSize == 0 {
		v.rules.maxSize = DefaultMaxTokenSize
	}
	if cfg.RequireCEL != "" {
		r, err := compileCEL(cfg.RequireCEL)
		if err != nil {
			return nil, fmt.Errorf("%w: RequireCEL: %w", ErrConfig, err)
		}
		v.cel = r
	}
	holder, ours := cfg.KeySet.(keyHolder)
	switch {
	case !ours: // a foreign key set cannot say when a key is withdrawn: no cache
	case cfg.CacheSize == 0:
		v.cache, v.keys = newTokenCache(DefaultCacheSize), holder
	case cfg.CacheSize > 0:
		v.cache, v.keys = newTokenCache(cfg.CacheSize), holder
	}
	v.oidc = oidc.NewVerifier(cfg.Issuer, keySetAdapter{cfg.KeySet}, &oidc.Config{
		ClientID:             cfg.Audience,
		SupportedSigningAlgs: algs,
		// go-oidc has no leeway on exp: shift its clock back by ours. Claims.Validate then
		// applies the same rule exactly, and nbf too.
		Now: func() time.Time { return now().Add(-leeway) },
	})
	return v, nil
}

// Verify validates raw (a compact JWS, without a "Bearer " prefix) and returns its claims.
//
// Errors match (errors.Is) ErrTooLarge, ErrMalformed, ErrAlgorithm, ErrType, ErrHeader,
// ErrUnknownKey (with ErrKeySetUnavailable when no keys could ever be fetched),
// ErrBadSignature, token.ErrIssuer, token.ErrAudience, token.ErrExpired, token.ErrNotYetValid,
// token.ErrStatus, token.ErrMalformed or ErrRequirement. The signature is checked before any
// claim. Error texts never contain the token.
//
// The returned Claims is a copy of the top-level struct; its maps and pointers (Submods,
// Confirmation, Status) are shared with the cache and must be treated as read-only.
func (v *Verifier) Verify(ctx context.Context, raw string) (*token.Claims, error) {
	if len(raw) > v.rules.maxSize { // before hashing or parsing anything
		return nil, fmt.Errorf("%w: %d bytes, limit %d", ErrTooLarge, len(raw), v.rules.maxSize)
	}
	now := v.now()
	var key cacheKey
	if v.cache != nil {
		key = keyOf(raw)
		c, ok := v.cache.get(key, raw, v.expiredAt(now), v.keys)
		if v.onCache != nil {
			v.onCache(ok)
		}
		if ok {
			return v.accept(c, now, false)
		}
	}
	h, err := checkCompact(raw, v.rules)
	if err != nil {
		return nil, err
	}
	st := &verifyState{raw: raw, hdr: h}
	_, oerr := v.oidc.Verify(context.WithValue(ctx, stateKey{}, st), raw)
	if st.err != nil {
		return nil, st.err
	}
	if st.payload == nil { // go-oidc refused it before the key set was asked
		if oerr == nil {
			oerr = errors.New("no payload")
		}
		return nil, fmt.Errorf("%w: %w", ErrMalformed, oerr)
	}
	c, err := token.ParseClaims(st.payload)
	if err != nil {
		return nil, fmt.Errorf("%w: claims: %w", token.ErrMalformed, err)
	}
	if err := c.Validate(now, v.expect); err != nil {
		return nil, err
	}
	if oerr != nil { // go-oidc refused what Claims.Validate accepted: never accept
		var exp *oidc.TokenExpiredError
		if errors.As(oerr, &exp) {
			return nil, fmt.Errorf("%w: %w", token.ErrExpired, oerr)
		}
		return nil, fmt.Errorf("%w: %w", token.ErrMalformed, oerr)
	}
	if v.cel != nil {
		if err := v.cel.eval(ctx, st.payload, c); err != nil {
			return nil, err
		}
	}
	out, err := v.accept(c, now, true)
	if err != nil {
		return nil, err
	}
	if v.cache != nil && st.keyed {
		v.cache.put(key, raw, c, st.key)
	}
	return out, nil
}

// accept runs the per-request checks that hold for cached tokens too: Claims.Validate (cheap:
// time, iss, aud, status; skipped when validated says the caller just ran it) and
// Config.Require. It returns a copy of c.
func (v *Verifier) accept(c *token.Claims, now time.Time, validated bool) (*token.Claims, error) {
	if !validated {
		if err := c.Validate(now, v.expect); err != nil {
			return nil, err
		}
	}
	if v.require != nil {
		if err := v.require(c); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrRequirement, err)
		}
	}
	out := *c
	return &out, nil
}

// expiredAt returns, for the cache, the Unix time past which a token is expired at now:
// claims with exp < expiredAt are past exp plus leeway.
func (v *Verifier) expiredAt(now time.Time) int64 {
	return now.Unix() - int64(v.expect.Leeway/time.Second)
}

// Forget drops every cached token with this jti, so that its next presentation is verified in
// full (and refused by Config.Require, for instance, once a revocation list names it). It
// returns the number of cache entries dropped.
func (v *Verifier) Forget(jti string) int {
	if v.cache == nil {
		return 0
	}
	return v.cache.forget(jti)
}

// ForgetIf drops every cached token whose claims match (for instance every token of one
// subject, sub, after its attestation key was revoked) and returns the number dropped. match
// must treat the claims as read-only.
func (v *Verifier) ForgetIf(match func(*token.Claims) bool) int {
	if v.cache == nil {
		return 0
	}
	return v.cache.forgetIf(match)
}

// Purge empties the verified-token cache, for instance after the issuer's keys were withdrawn.
func (v *Verifier) Purge() {
	if v.cache != nil {
		v.cache.purge()
	}
}

// CacheLen returns the number of tokens in the verified-token cache.
func (v *Verifier) CacheLen() int {
	if v.cache == nil {
		return 0
	}
	return v.cache.len()
}

// keySetAdapter sits between go-oidc and the configured KeySet: it records the key set's own
// error and payload in the call's verifyState, because go-oidc flattens errors into text.
type keySetAdapter struct{ inner KeySet }

// VerifySignature implements KeySet for go-oidc.
func (a keySetAdapter) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	payload, err := a.inner.VerifySignature(ctx, raw)
	st := stateFrom(ctx)
	if st == nil {
		return payload, err
	}
	switch {
	case err == nil:
		st.payload = payload
	case isKeySetError(err):
		st.err = err
	default: // a foreign KeySet: its reasons are untyped
		st.err = fmt.Errorf("%w: %w", ErrBadSignature, err)
	}
	return payload, err
}

func isKeySetError(err error) bool {
	for _, e := range []error{ErrUnknownKey, ErrBadSignature, ErrAlgorithm, ErrHeader, ErrMalformed, ErrTooLarge, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
