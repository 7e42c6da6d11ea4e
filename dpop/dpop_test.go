package dpop_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/dpop"
)

func key(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func mustURL(s string) *url.URL {
	u, err := url.Parse(s)
	if err != nil {
		panic(err)
	}
	return u
}

// signRaw signs arbitrary claims with arbitrary header options, for malformed proofs.
func signRaw(t testing.TB, k *ecdsa.PrivateKey, alg jose.SignatureAlgorithm, typ string, embed bool, claims any) string {
	t.Helper()
	opts := &jose.SignerOptions{EmbedJWK: embed}
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: k}, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerify(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	k := key(t)
	cnf := &jose.JSONWebKey{Key: &k.PublicKey}
	target := mustURL("https://rp.example/api/resource?x=1")
	const tok = "header.payload.signature"
	newV := func() *dpop.Verifier { return &dpop.Verifier{Now: func() time.Time { return now }} }

	proof, err := dpop.NewProof(k, "GET", target, tok, now)
	if err != nil {
		t.Fatal(err)
	}
	v := newV()
	if _, err := v.Verify(proof, "GET", mustURL("https://RP.example/api/resource?other=2"), tok, cnf); err != nil {
		t.Fatalf("valid proof refused: %v", err)
	}
	if _, err := v.Verify(proof, "GET", target, tok, cnf); !errors.Is(err, dpop.ErrReplay) {
		t.Fatalf("replayed proof: got %v, want ErrReplay", err)
	}

	thief := key(t)
	stolen, _ := dpop.NewProof(thief, "GET", target, tok, now)
	other, _ := dpop.NewProof(k, "GET", target, "another.token.value", now)
	stale, _ := dpop.NewProof(k, "GET", target, tok, now.Add(-5*time.Minute))
	future, _ := dpop.NewProof(k, "GET", target, tok, now.Add(5*time.Minute))
	post, _ := dpop.NewProof(k, "POST", target, tok, now)
	elsewhere, _ := dpop.NewProof(k, "GET", mustURL("https://evil.example/api/resource"), tok, now)
	good := dpop.Claims{ID: "x1", Method: "GET", URL: "https://rp.example/api/resource", IssuedAt: now.Unix(), ATHash: dpop.AccessTokenHash(tok)}
	noTyp := signRaw(t, k, jose.ES256, "", true, good)
	jwtTyp := signRaw(t, k, jose.ES256, "JWT", true, good)
	noJWK := signRaw(t, k, jose.ES256, dpop.Type, false, good)
	noJTI := good
	noJTI.ID = ""
	missing := signRaw(t, k, jose.ES256, dpop.Type, true, noJTI)
	// A proof whose header embeds the private key (jwk with "d") must be refused.
	privOpts := (&jose.SignerOptions{}).WithType(dpop.Type).WithHeader("jwk", jose.JSONWebKey{Key: k})
	ps, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: k}, privOpts)
	b, _ := json.Marshal(good)
	pj, _ := ps.Sign(b)
	privJWK, _ := pj.CompactSerialize()
	// Tampered payload: valid header and signature of another payload.
	parts := strings.Split(proof, ".")
	tampered := parts[0] + "." + strings.Split(post, ".")[1] + "." + parts[2]

	for _, tc := range []struct {
		name  string
		proof string
		tok   string
		cnf   *jose.JSONWebKey
		want  error
	}{
		{"no proof", "", tok, cnf, dpop.ErrMissing},
		{"stolen token, thief's key", stolen, tok, cnf, dpop.ErrKey},
		{"proof for another token", other, tok, cnf, dpop.ErrBinding},
		{"stale iat", stale, tok, cnf, dpop.ErrStale},
		{"future iat", future, tok, cnf, dpop.ErrStale},
		{"wrong method", post, tok, cnf, dpop.ErrTarget},
		{"wrong URL", elsewhere, tok, cnf, dpop.ErrTarget},
		{"no typ", noTyp, tok, cnf, dpop.ErrInvalid},
		{"typ JWT", jwtTyp, tok, cnf, dpop.ErrInvalid},
		{"no jwk", noJWK, tok, cnf, dpop.ErrInvalid},
		{"no jti", missing, tok, cnf, dpop.ErrInvalid},
		{"private jwk", privJWK, tok, cnf, dpop.ErrInvalid},
		{"tampered payload", tampered, tok, cnf, dpop.ErrInvalid},
		{"oversized", strings.Repeat("a.", dpop.MaxProofSize), tok, cnf, dpop.ErrTooLarge},
		{"alg none", "eyJhbGciOiJub25lIiwidHlwIjoiZHBvcCtqd3QifQ.eyJqdGkiOiJ4In0.", tok, cnf, dpop.ErrInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := newV().Verify(tc.proof, "GET", target, tc.tok, tc.cnf)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestReplayCacheBounded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	k := key(t)
	target := mustURL("https://rp.example/")
	v := &dpop.Verifier{Now: func() time.Time { return now }, MaxReplayEntries: 2}
	for i := 0; i < 2; i++ {
		p, _ := dpop.NewProof(k, "GET", target, "", now)
		if _, err := v.Verify(p, "GET", target, "", nil); err != nil {
			t.Fatal(err)
		}
	}
	p, _ := dpop.NewProof(k, "GET", target, "", now)
	if _, err := v.Verify(p, "GET", target, "", nil); !errors.Is(err, dpop.ErrCacheFull) {
		t.Fatalf("full replay cache accepted a proof: %v", err)
	}
	now = now.Add(2 * time.Minute) // entries expire; the cache frees itself
	p, _ = dpop.NewProof(k, "GET", target, "", now)
	if _, err := v.Verify(p, "GET", target, "", nil); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
}

// TestReplayFutureIAT: a proof whose iat lies in the future passes the iat check until
// iat + Window; its jti must be remembered that long, or it could be replayed once forgotten.
func TestReplayFutureIAT(t *testing.T) {
	start := time.Unix(1_800_000_000, 0)
	now := start
	k := key(t)
	cnf := &jose.JSONWebKey{Key: &k.PublicKey}
	target := mustURL("https://rp.example/resource")
	v := &dpop.Verifier{Now: func() time.Time { return now }, Window: 60 * time.Second}
	p, err := dpop.NewProof(k, "GET", target, "tok", start.Add(50*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(p, "GET", target, "tok", cnf); err != nil {
		t.Fatalf("first use: %v", err)
	}
	// iat = start+50s passes the iat check up to start+110s: refused as a replay every time.
	for d := 500 * time.Millisecond; d <= 110*time.Second; d += 500 * time.Millisecond {
		now = start.Add(d)
		if _, err := v.Verify(p, "GET", target, "tok", cnf); !errors.Is(err, dpop.ErrReplay) {
			t.Fatalf("replayed at start+%s: %v, want ErrReplay", d, err)
		}
	}
	now = start.Add(110*time.Second + time.Millisecond)
	if _, err := v.Verify(p, "GET", target, "tok", cnf); !errors.Is(err, dpop.ErrStale) {
		t.Fatalf("after iat+Window: %v, want ErrStale", err)
	}
}

// TestCheckThenRemember: Check takes no room in the replay cache; Remember records the jti,
// once; a remembered proof fails Check and Verify.
func TestCheckThenRemember(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	k := key(t)
	cnf := &jose.JSONWebKey{Key: &k.PublicKey}
	target := mustURL("https://rp.example/resource")
	v := &dpop.Verifier{Now: func() time.Time { return now }, MaxReplayEntries: 1}
	p, _ := dpop.NewProof(k, "GET", target, "", now)
	for i := range 3 { // checking alone never fills the one-entry cache
		if _, err := v.Check(p, "GET", target, "", cnf); err != nil {
			t.Fatalf("check %d: %v", i, err)
		}
	}
	other, _ := dpop.NewProof(k, "GET", target, "", now)
	if _, err := v.Verify(other, "GET", target, "", cnf); err != nil {
		t.Fatalf("a checked-only proof took the cache's room: %v", err)
	}
	v = &dpop.Verifier{Now: func() time.Time { return now }}
	checked, err := v.Check(p, "GET", target, "", cnf)
	if err != nil {
		t.Fatal(err)
	}
	if checked.Claims.Method != "GET" || checked.Key == nil {
		t.Fatalf("checked proof: %+v", checked)
	}
	if err := v.Remember(checked); err != nil {
		t.Fatal(err)
	}
	if err := v.Remember(checked); !errors.Is(err, dpop.ErrReplay) {
		t.Fatalf("second Remember: %v, want ErrReplay", err)
	}
	if _, err := v.Check(p, "GET", target, "", cnf); !errors.Is(err, dpop.ErrReplay) {
		t.Fatalf("Check of a remembered proof: %v, want ErrReplay", err)
	}
	if _, err := v.Verify(p, "GET", target, "", cnf); !errors.Is(err, dpop.ErrReplay) {
		t.Fatalf("Verify of a remembered proof: %v, want ErrReplay", err)
	}
	if err := v.Remember(&dpop.Proof{}); !errors.Is(err, dpop.ErrInvalid) {
		t.Fatalf("Remember of an unchecked proof: %v", err)
	}
}

// TestReplayCachePerKey: one key's proofs fill at most MaxEntriesPerKey of the cache; other
// keys are still served, and the key is served again once its entries expire.
func TestReplayCachePerKey(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	greedy, other := key(t), key(t)
	target := mustURL("https://rp.example/")
	v := &dpop.Verifier{Now: func() time.Time { return now }, MaxReplayEntries: 10, MaxEntriesPerKey: 3}
	verify := func(k *ecdsa.PrivateKey) error {
		p, _ := dpop.NewProof(k, "GET", target, "", now)
		_, err := v.Verify(p, "GET", target, "", &jose.JSONWebKey{Key: &k.PublicKey})
		return err
	}
	for i := range 3 {
		if err := verify(greedy); err != nil {
			t.Fatalf("greedy proof %d: %v", i, err)
		}
	}
	if err := verify(greedy); !errors.Is(err, dpop.ErrCacheFull) {
		t.Fatalf("greedy proof beyond its share: %v, want ErrCacheFull", err)
	}
	for i := range 3 {
		if err := verify(other); err != nil {
			t.Fatalf("another key's proof %d: %v", i, err)
		}
	}
	now = now.Add(61 * time.Second)
	if err := verify(greedy); err != nil {
		t.Fatalf("greedy key after its entries expired: %v", err)
	}
}

// TestReplayCachePerHolder: one attester (one holder, as a token's sub names it) whose tokens
// are bound to many keys takes at most MaxEntriesPerKey of the cache, however many keys it
// uses, through VerifyHolder and RememberHolder alike; another attester's proofs are still
// accepted. Counting per key instead, the first attester would fill the whole cache.
func TestReplayCachePerHolder(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	target := mustURL("https://rp.example/")
	v := &dpop.Verifier{Now: func() time.Time { return now }, MaxReplayEntries: 10, MaxEntriesPerKey: 3}
	verify := func(k *ecdsa.PrivateKey, holder string) error {
		p, _ := dpop.NewProof(k, "GET", target, "", now)
		_, err := v.VerifyHolder(p, "GET", target, "", &jose.JSONWebKey{Key: &k.PublicKey}, holder)
		return err
	}
	accepted := 0
	for range 5 { // five tokens, five cnf keys, one attester
		k := key(t)
		for range 3 {
			switch err := verify(k, "ak-greedy"); {
			case err == nil:
				accepted++
			case !errors.Is(err, dpop.ErrCacheFull):
				t.Fatalf("greedy attester: %v, want ErrCacheFull", err)
			}
		}
	}
	if accepted != 3 {
		t.Fatalf("one attester had %d proofs remembered with 5 keys, want its bound 3", accepted)
	}
	other := key(t)
	for i := range 3 {
		if err := verify(other, "ak-other"); err != nil {
			t.Fatalf("another attester's proof %d: %v", i, err)
		}
	}
	// Check then RememberHolder counts the same way.
	p, _ := dpop.NewProof(key(t), "GET", target, "", now)
	checked, err := v.Check(p, "GET", target, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := v.RememberHolder(checked, "ak-greedy"); !errors.Is(err, dpop.ErrCacheFull) {
		t.Fatalf("RememberHolder beyond the holder's share: %v, want ErrCacheFull", err)
	}
	if err := v.RememberHolder(checked, "ak-third"); err != nil {
		t.Fatalf("RememberHolder for a third attester: %v", err)
	}
	now = now.Add(61 * time.Second)
	if err := verify(key(t), "ak-greedy"); err != nil {
		t.Fatalf("greedy attester after its entries expired: %v", err)
	}
}

// TestNormalizeURL: htu is compared on the escaped path, normalised per RFC 3986 section 6.2.
func TestNormalizeURL(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		same bool
	}{
		{"https://rp.example/api/x/y", "https://rp.example/api/x%2Fy", false},
		{"https://rp.example/api/x%2fy", "https://rp.example/api/x%2Fy", true},
		{"https://rp.example/api/%7Euser", "https://rp.example/api/~user", true},
		{"https://rp.example/a%20b", "https://rp.example/a b", true},
		{"https://RP.example:443/r?q=1#f", "https://rp.example/r", true},
		{"http://rp.example:80/r", "http://rp.example/r", true},
		{"http://rp.example:443/r", "http://rp.example/r", false},
		{"https://rp.example", "https://rp.example/", true},
		{"https://user@rp.example/r", "https://rp.example/r", true},
		{"https://rp.example/a/../r", "https://rp.example/r", false},
		{"https://evil.example/r", "https://rp.example/r", false},
		// Unicode case folding would turn these into ASCII hosts that an HTTP client never
		// dials for them (their A-labels differ): only ASCII letters are lower-cased.
		{"https://v\u0130ctim.example/r", "https://victim.example/r", false},
		{"https://v%C4%B0ctim.example/r", "https://victim.example/r", false},
		{"https://\u212aey.example/r", "https://key.example/r", false},
	} {
		got := dpop.NormalizeURL(mustURL(tc.a)) == dpop.NormalizeURL(mustURL(tc.b))
		if got != tc.same {
			t.Errorf("%s vs %s: same %v, want %v (%s, %s)", tc.a, tc.b, got, tc.same,
				dpop.NormalizeURL(mustURL(tc.a)), dpop.NormalizeURL(mustURL(tc.b)))
		}
	}
	// A proof for /api/x/y is not good for a request to /api/x%2Fy, nor the reverse.
	now := time.Unix(1_800_000_000, 0)
	k := key(t)
	v := &dpop.Verifier{Now: func() time.Time { return now }}
	plain, escaped := mustURL("https://rp.example/api/x/y"), mustURL("https://rp.example/api/x%2Fy")
	p, _ := dpop.NewProof(k, "GET", plain, "", now)
	if _, err := v.Verify(p, "GET", escaped, "", nil); !errors.Is(err, dpop.ErrTarget) {
		t.Fatalf("proof for /api/x/y on /api/x%%2Fy: %v, want ErrTarget", err)
	}
	p, _ = dpop.NewProof(k, "GET", escaped, "", now)
	if _, err := v.Verify(p, "GET", plain, "", nil); !errors.Is(err, dpop.ErrTarget) {
		t.Fatalf("proof for /api/x%%2Fy on /api/x/y: %v, want ErrTarget", err)
	}
	if _, err := v.Verify(p, "GET", mustURL("https://rp.example/api/x%2fy"), "", nil); err != nil {
		t.Fatalf("proof for /api/x%%2Fy on /api/x%%2fy: %v", err)
	}
}

func ExampleNewProof() {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	target, _ := url.Parse("https://kbs.example/kbs/v0/resource/default/key/disk")
	proof, _ := dpop.NewProof(k, "GET", target, "the.access.token", time.Now())

	v := &dpop.Verifier{}
	_, err := v.Verify(proof, "GET", target, "the.access.token", &jose.JSONWebKey{Key: &k.PublicKey})
	fmt.Println("proof accepted:", err == nil)
	// Output: proof accepted: true
}

// A caller whose key is not yet authenticated (the background check: the key comes from the
// request's own evidence) checks the proof without taking room in the replay cache, and
// remembers its jti only once the key is vouched for.
func ExampleVerifier_Check() {
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	target, _ := url.Parse("https://rp.example/resource")
	proof, _ := dpop.NewProof(k, "GET", target, "", time.Now())

	v := &dpop.Verifier{}
	p, err := v.Check(proof, "GET", target, "", &jose.JSONWebKey{Key: &k.PublicKey})
	fmt.Println("checked:", err == nil)
	// ... the issuer authenticates the key (appraises the evidence naming it) ...
	fmt.Println("remembered:", v.Remember(p) == nil)
	_, err = v.Check(proof, "GET", target, "", &jose.JSONWebKey{Key: &k.PublicKey})
	fmt.Println("replay refused:", errors.Is(err, dpop.ErrReplay))
	// Output:
	// checked: true
	// remembered: true
	// replay refused: true
}
