// Package dpop implements OAuth 2.0 Demonstrating Proof of Possession (DPoP, RFC 9449) proofs
// for passport tokens: the attester signs a short JWT over each request's method and URL with the
// private half of its token's cnf key, and a relying party checks it, so a stolen token is useless
// without that key. Signing and verification use go-jose; nothing here is hand-rolled crypto.
//
// The relying party's middleware (package relyingparty), the key broker (package kbs) and the
// attester's client transport (package attester) all use this package.
//
// # The URL a proof names
//
// A proof's htu must equal the URL the client addressed (RFC 9449 section 4.3 step 9). The
// verifier must take that URL from its own configuration (its public origin), never from the
// request's Host or Forwarded headers: a malicious relying party holding a token and proof made
// for its own URL could otherwise relay them to a victim with "Host:" set to its own host.
// Package relyingparty (WithExternalURL) and package kbs (Config.PublicURL) refuse DPoP without
// a configured origin. NormalizeURL compares escaped paths, so "/a%2Fb" is not "/a/b".
//
// # The replay cache
//
// Verifier remembers every accepted proof's jti (scoped by its key's RFC 7638 thumbprint) until
// the last instant the proof could still pass the iat check, max(now, iat) + Window, so that a
// proof with a future iat cannot be replayed after its jti is forgotten. Expired entries are
// evicted eagerly, in expiry order, on every check. An entry is a fixed-size SHA-256 digest of
// the thumbprint and the jti: with the cache's bookkeeping about 160 bytes of heap whatever the
// jti's length (16 MB for a full cache of DefaultMaxReplayEntries).
//
// The cache is bounded twice: in total (MaxReplayEntries) and per holder (MaxEntriesPerKey), and
// a full cache refuses new proofs (ErrCacheFull: fail closed, never forget early). The
// per-holder bound keeps one holder from crowding out the others, so it must count against an
// identity the holder cannot multiply at will. The proof's key is no such identity when the
// attester chooses a fresh cnf key at each attestation: one machine holding tokens bound to ten
// keys would take ten shares. A caller that knows who holds the key names that holder with
// VerifyHolder or RememberHolder: a relying party or key broker passes the verified token's
// sub (the RFC 7638 thumbprint of the attester's attestation key), so all proofs of one
// attester share one bound whatever cnf keys its tokens carry, and filling the whole cache takes
// MaxReplayEntries / MaxEntriesPerKey distinct attesters (10 by default), that is attestation
// keys the issuer trusts. A pinned or certified AK is one per TPM; with EK enrollment (package
// enroll) a TPM can make new AKs, but its EK enrolls another only once per re-enrollment
// interval (default 10 minutes, twice the default token lifetime), so each EK counts once per
// interval: at most two subs with valid tokens at a time, 5 such EKs for the default bound (a
// TPM with both an RSA and an ECC EK trusted has two).
// Verify and Remember, which name no holder, count each proof against its key's
// thumbprint.
//
// Only proofs whose key is authenticated may take room in the cache. Verify checks and records
// in one step and suits callers that bound the key first: the token's cnf key must be
// presented with a token that verified. A caller whose key comes from the request itself, as the
// background check's evidence does, uses Check first, authenticates the key (the issuer
// appraises the evidence over its single-use nonce) and only then records the jti with
// Remember; an anonymous client can then never fill the cache that token holders rely on.
package dpop

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Type is the typ header of every DPoP proof (RFC 9449 section 4.2).
const Type = "dpop+jwt"

// HeaderName is the HTTP header carrying the proof (RFC 9449 section 4.1).
const HeaderName = "DPoP"

// Scheme is the Authorization scheme of a DPoP-bound access token (RFC 9449 section 7.1).
const Scheme = "DPoP"

// MaxProofSize bounds the proofs Verify parses (8 KiB: a P-256 proof is ~600 bytes).
const MaxProofSize = 8 << 10

// Errors returned by Verifier.Verify; all wrap ErrInvalid.
var (
	ErrInvalid  = errors.New("dpop: invalid proof")
	ErrReplay   = fmt.Errorf("%w: jti already used", ErrInvalid)
	ErrKey      = fmt.Errorf("%w: proof key is not the token's cnf key", ErrInvalid)
	ErrStale    = fmt.Errorf("%w: iat outside the accepted window", ErrInvalid)
	ErrTarget   = fmt.Errorf("%w: htm or htu does not match the request", ErrInvalid)
	ErrBinding  = fmt.Errorf("%w: ath does not match the access token", ErrInvalid)
	ErrMissing  = fmt.Errorf("%w: no DPoP proof", ErrInvalid)
	ErrTooLarge = fmt.Errorf("%w: proof too large", ErrInvalid)
	// ErrCacheFull: the replay cache holds MaxReplayEntries live entries, or MaxEntriesPerKey
	// for this proof's holder (its key, or the holder named to VerifyHolder or
	// RememberHolder); the proof is refused (fail closed) until entries expire.
	ErrCacheFull = fmt.Errorf("%w: replay cache full, retry later", ErrInvalid)
)

// Claims are a DPoP proof's claims (RFC 9449 section 4.2).
type Claims struct {
	ID       string `json:"jti"`
	Method   string `json:"htm"`
	URL      string `json:"htu"`
	IssuedAt int64  `json:"iat"`
	ATHash   string `json:"ath,omitempty"`
	Nonce    string `json:"nonce,omitempty"`
}

// AccessTokenHash returns the ath value for token: base64url(SHA-256(ASCII token)).
func AccessTokenHash(token string) string {
	h := sha256.Sum256([]byte(token))
	return base64.RawURLEncoding.EncodeToString(h[:])
}

// NormalizeURL returns u as htu is compared (RFC 9449 section 4.3 step 9): without query,
// fragment and userinfo, normalised as RFC 3986 section 6.2.2 (lower-case scheme and host,
// upper-case percent-encoding hex digits, percent-encoded unreserved characters decoded) and
// section 6.2.3 (no default port: 80 for http, 443 for https; an empty path is "/"). The path is
// compared in its escaped form (u.EscapedPath, which keeps u.RawPath): "/a%2Fb" and "/a/b" are
// different resources and stay different. Dot segments are not removed: they must match as sent.
func NormalizeURL(u *url.URL) string {
	if u.Opaque != "" || u.Host == "" { // not an absolute http(s) URL: never equals a request's
		c := *u
		c.RawQuery, c.Fragment, c.RawFragment, c.User = "", "", "", nil
		return c.String()
	}
	scheme := strings.ToLower(u.Scheme)
	host := asciiLower(u.Host)
	if p := u.Port(); (scheme == "http" && p == "80") || (scheme == "https" && p == "443") {
		host = strings.TrimSuffix(host, ":"+p)
	} else {
		host = strings.TrimSuffix(host, ":")
	}
	path := normalizeEscapes(u.EscapedPath())
	if path == "" {
		path = "/"
	}
	return scheme + "://" + host + path
}

// asciiLower lower-cases the ASCII letters of s only. Unicode lower-casing would map some
// non-ASCII letters to ASCII ones ("İ" to "i", the Kelvin sign to "k"), so that a host an HTTP
// client resolves elsewhere (its A-label differs) would normalize to another host's name.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if 'A' <= r && r <= 'Z' {
			return r + ('a' - 'A')
		}
		return r
	}, s)
}

// normalizeEscapes upper-cases the hex digits of percent-encodings and decodes those of
// unreserved characters (RFC 3986 sections 2.3 and 6.2.2.2); everything else is kept as is.
func normalizeEscapes(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	var b strings.Builder
	b.Grow(len(p))
	for i := 0; i < len(p); i++ {
		if p[i] != '%' || i+2 >= len(p) || !isHex(p[i+1]) || !isHex(p[i+2]) {
			b.WriteByte(p[i])
			continue
		}
		c := unhex(p[i+1])<<4 | unhex(p[i+2])
		if isUnreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(p[i+1 : i+3]))
		}
		i += 2
	}
	return b.String()
}

func isHex(c byte) bool {
	return ('0' <= c && c <= '9') || ('a' <= c && c <= 'f') || ('A' <= c && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

func isUnreserved(c byte) bool {
	return ('a' <= c && c <= 'z') || ('A' <= c && c <= 'Z') || ('0' <= c && c <= '9') ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// NewProof signs a proof for one request with key (ES256 for P-256, ES384 for P-384, EdDSA,
// RS256 for RSA), embedding its public JWK in the header. accessToken, when non-empty, is bound
// with ath. It returns the compact JWS for the DPoP header.
func NewProof(key crypto.Signer, method string, target *url.URL, accessToken string, now time.Time) (string, error) {
	alg, err := algFor(key)
	if err != nil {
		return "", err
	}
	opts := (&jose.SignerOptions{EmbedJWK: true}).WithType(Type)
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: key}, opts)
	if err != nil {
		return "", fmt.Errorf("dpop: signer: %w", err)
	}
	jti := make([]byte, 16)
	if _, err := rand.Read(jti); err != nil {
		return "", fmt.Errorf("dpop: jti: %w", err)
	}
	c := Claims{ID: base64.RawURLEncoding.EncodeToString(jti), Method: method, URL: NormalizeURL(target), IssuedAt: now.Unix()}
	if accessToken != "" {
		c.ATHash = AccessTokenHash(accessToken)
	}
	b, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := signer.Sign(b)
	if err != nil {
		return "", fmt.Errorf("dpop: sign: %w", err)
	}
	return jws.CompactSerialize()
}

// Algorithms accepted in proofs by default: asymmetric only (RFC 9449 section 4.3 step 5).
var Algorithms = []jose.SignatureAlgorithm{jose.ES256, jose.ES384, jose.EdDSA, jose.PS256, jose.RS256}

// Verifier checks DPoP proofs and remembers their jti to refuse replays within the window
// (see the package documentation for the cache's design). It is safe for concurrent use; the
// zero value is ready with the defaults.
type Verifier struct {
	// Window is how far iat may lie from now, either way (default 60 s).
	Window time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// MaxReplayEntries bounds the jti cache (default DefaultMaxReplayEntries); when full, new
	// proofs are refused with ErrCacheFull (fail closed) until old entries expire.
	MaxReplayEntries int
	// MaxEntriesPerKey bounds the live entries of one holder (default DefaultMaxEntriesPerKey,
	// never more than MaxReplayEntries): the holder named to VerifyHolder or RememberHolder,
	// or, when none is named (Verify, Remember), the proof's key thumbprint. Beyond it that
	// holder's new proofs are refused with ErrCacheFull, and other holders are unaffected.
	MaxEntriesPerKey int

	mu    sync.Mutex
	cache replayCache
}

// Proof is a proof that passed Verifier.Check: its header key and claims. Its jti is not yet
// remembered; Verifier.Remember (or RememberHolder) does that.
type Proof struct {
	// Key is the public JWK of the proof's header, which verified its signature.
	Key *jose.JSONWebKey
	// Claims are the proof's claims.
	Claims Claims

	id    digest // proofID(thumbprint, jti): the replay cache's key; zero if not checked
	thumb []byte // the key's RFC 7638 SHA-256 thumbprint
	until int64  // unix nanoseconds: the last instant the proof passes the iat check
}

// Verify checks proof for a request with method and URL target presenting accessToken (may be
// empty), whose confirmation key is cnf (may be nil when no token is presented). It follows RFC
// 9449 section 4.3: one well-formed JWS with typ dpop+jwt and an asymmetric alg, a public jwk in
// the header that verifies the signature, htm and htu equal to the request, iat within Window,
// ath equal to the token's hash, the jwk's thumbprint equal to cnf's, and a jti not seen before,
// which it then remembers (Check followed by Remember). It returns the proof's key on success.
// Use it when cnf is authenticated (a verified token's cnf key); otherwise see Check. The proof
// counts against its key's share of the replay cache; VerifyHolder names another holder.
func (v *Verifier) Verify(proof, method string, target *url.URL, accessToken string, cnf *jose.JSONWebKey) (*jose.JSONWebKey, error) {
	return v.VerifyHolder(proof, method, target, accessToken, cnf, "")
}

// VerifyHolder is Verify with the proof counted against holder's share of the replay cache
// (MaxEntriesPerKey) instead of its key's: holder names who holds cnf, as authenticated as cnf
// itself, such as the sub of the verified token carrying cnf (the attester's attestation-key
// thumbprint), so that one attester's proofs share one bound whatever keys its tokens are
// bound to. Never pass a value the request chooses unauthenticated: a client naming another's
// holder would spend that holder's share. An empty holder is the key's thumbprint, as with
// Verify. Errors are those of Verify.
func (v *Verifier) VerifyHolder(proof, method string, target *url.URL, accessToken string, cnf *jose.JSONWebKey, holder string) (*jose.JSONWebKey, error) {
	p, err := v.Check(proof, method, target, accessToken, cnf)
	if err != nil {
		return nil, err
	}
	if err := v.RememberHolder(p, holder); err != nil {
		return nil, err
	}
	return p.Key, nil
}

// Check makes every check of Verify, including that the jti was not seen before, but does not
// remember the jti: the proof takes no room in the replay cache. A caller whose cnf comes from
// the unauthenticated request (the background check's evidence) calls Check, authenticates the
// key, and then Remember or RememberHolder. Errors are those of Verify.
func (v *Verifier) Check(proof, method string, target *url.URL, accessToken string, cnf *jose.JSONWebKey) (*Proof, error) {
	if proof == "" {
		return nil, ErrMissing
	}
	if len(proof) > MaxProofSize {
		return nil, ErrTooLarge
	}
	jws, err := jose.ParseSignedCompact(proof, Algorithms)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("%w: want exactly one signature", ErrInvalid)
	}
	h := jws.Signatures[0].Protected
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != Type {
		return nil, fmt.Errorf("%w: typ %q is not %s", ErrInvalid, typ, Type)
	}
	key := h.JSONWebKey
	if key == nil || !key.Valid() || !key.IsPublic() {
		return nil, fmt.Errorf("%w: header jwk missing, invalid or private", ErrInvalid)
	}
	payload, err := jws.Verify(key)
	if err != nil {
		return nil, fmt.Errorf("%w: signature: %w", ErrInvalid, err)
	}
	var c Claims
	if err := json.Unmarshal(payload, &c); err != nil {
		return nil, fmt.Errorf("%w: claims: %w", ErrInvalid, err)
	}
	if c.ID == "" || c.Method == "" || c.URL == "" || c.IssuedAt == 0 {
		return nil, fmt.Errorf("%w: jti, htm, htu and iat are required", ErrInvalid)
	}
	if c.Method != method {
		return nil, fmt.Errorf("%w: htm %q, request %q", ErrTarget, c.Method, method)
	}
	htu, err := url.Parse(c.URL)
	if err != nil || NormalizeURL(htu) != NormalizeURL(target) {
		return nil, fmt.Errorf("%w: htu %q, request %q", ErrTarget, c.URL, NormalizeURL(target))
	}
	now := v.now()
	window := v.window()
	iat := time.Unix(c.IssuedAt, 0)
	if d := now.Sub(iat); d > window || d < -window {
		return nil, ErrStale
	}
	if accessToken != "" {
		if subtle.ConstantTimeCompare([]byte(c.ATHash), []byte(AccessTokenHash(accessToken))) != 1 {
			return nil, ErrBinding
		}
	}
	tp, err := key.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, fmt.Errorf("%w: thumbprint: %w", ErrInvalid, err)
	}
	if cnf != nil {
		want, err := cnf.Thumbprint(crypto.SHA256)
		if err != nil || subtle.ConstantTimeCompare(tp, want) != 1 {
			return nil, ErrKey
		}
	}
	// The proof passes the iat check until iat + Window; remember it at least that long (and
	// never less than Window from now).
	last := now
	if iat.After(last) {
		last = iat
	}
	p := &Proof{Key: key, Claims: c, id: proofID(tp, c.ID), thumb: tp, until: last.Add(window).UnixNano()}
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cache.evict(now.UnixNano())
	if v.cache.has(p.id) {
		return nil, ErrReplay
	}
	return p, nil
}

// Remember records p's jti until the last instant p could pass Check's iat test, so that the
// same proof is refused from then on. It fails with ErrReplay when the jti is already
// remembered (a concurrent request with the same proof won) and with ErrCacheFull when the
// cache or p's key's share of it is full. RememberHolder names another holder.
func (v *Verifier) Remember(p *Proof) error { return v.RememberHolder(p, "") }

// RememberHolder is Remember with p counted against holder's share of the replay cache
// (MaxEntriesPerKey) instead of its key's; see VerifyHolder for what holder names. An empty
// holder is p's key thumbprint, as with Remember. ErrCacheFull then means that the cache or
// holder's share of it is full.
func (v *Verifier) RememberHolder(p *Proof, holder string) error {
	if p == nil || p.id == (digest{}) {
		return fmt.Errorf("%w: not a checked proof", ErrInvalid)
	}
	h := holderID(holder, p.thumb)
	total := v.MaxReplayEntries
	if total <= 0 {
		total = DefaultMaxReplayEntries
	}
	perKey := v.MaxEntriesPerKey
	if perKey <= 0 {
		perKey = DefaultMaxEntriesPerKey
	}
	perKey = min(perKey, total)
	v.mu.Lock()
	defer v.mu.Unlock()
	v.cache.evict(v.now().UnixNano())
	switch {
	case v.cache.has(p.id):
		return ErrReplay
	case v.cache.len() >= total:
		return fmt.Errorf("%w: %d live entries", ErrCacheFull, total)
	case v.cache.perHolder[h] >= perKey:
		return fmt.Errorf("%w: %d live entries for this holder", ErrCacheFull, perKey)
	}
	v.cache.add(p.id, h, p.until)
	return nil
}

func (v *Verifier) window() time.Duration {
	if v.Window > 0 {
		return v.Window
	}
	return 60 * time.Second
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func algFor(key crypto.Signer) (jose.SignatureAlgorithm, error) {
	switch k := key.Public().(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256():
			return jose.ES256, nil
		case elliptic.P384():
			return jose.ES384, nil
		}
		return "", fmt.Errorf("dpop: unsupported curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return jose.EdDSA, nil
	case *rsa.PublicKey:
		return jose.RS256, nil
	}
	return "", fmt.Errorf("dpop: unsupported key type %T", key.Public())
}
