package relyingparty

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"

	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/token"
)

// interopWorld is a real issuer (httptest) and a token it minted for a simulated TPM that
// replayed a real event log, plus variants a consumer must refuse.
type interopWorld struct {
	issuer *testenv.Server
	good   string // valid, aud rpAudience
	claims *token.Claims
	other  string // valid, aud https://other.example
	forged string // good with another signature
}

func newInteropWorld(t *testing.T) *interopWorld {
	t.Helper()
	a := testenv.Attester(t, testenv.DefaultLog)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}})
	c := &attester.Client{IssuerURL: srv.URL}
	ctx := context.Background()
	good, err := c.Attest(ctx, a, rpAudience)
	if err != nil {
		t.Fatal(err)
	}
	other, err := c.Attest(ctx, a, "https://other.example")
	if err != nil {
		t.Fatal(err)
	}
	ours, err := NewVerifier(Config{Issuer: srv.URL, Audience: rpAudience, KeySet: NewStaticKeySet(srv.Keyring.PublicSet())})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := ours.Verify(ctx, good.Token)
	if err != nil {
		t.Fatal(err)
	}
	// The same header and payload under the other token's signature: a valid signature by the
	// right key over other bytes.
	dot := strings.LastIndexByte(good.Token, '.')
	forged := good.Token[:dot] + other.Token[strings.LastIndexByte(other.Token, '.'):]
	return &interopWorld{issuer: srv, good: good.Token, claims: claims, other: other.Token, forged: forged}
}

// TestInteropGoOIDC: go-oidc's provider reads our discovery document and JWKS unchanged and
// verifies our tokens with the configuration a relying party would write, and refuses the
// wrong audience and a forged signature.
func TestInteropGoOIDC(t *testing.T) {
	w := newInteropWorld(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	provider, err := oidc.NewProvider(ctx, w.issuer.URL)
	if err != nil {
		t.Fatalf("go-oidc NewProvider on our discovery document: %v", err)
	}
	v := provider.Verifier(&oidc.Config{ClientID: rpAudience, SupportedSigningAlgs: []string{"ES256"}})
	idt, err := v.Verify(ctx, w.good)
	if err != nil {
		t.Fatalf("go-oidc refused our token: %v", err)
	}
	var got token.Claims
	if err := idt.Claims(&got); err != nil {
		t.Fatal(err)
	}
	if idt.Subject != w.claims.Subject || got.ID != w.claims.ID || got.OverallStatus() != token.TierAffirming ||
		got.Confirmation == nil || SameKey(got.Confirmation.JWK.Key, w.claims.Confirmation.JWK) != nil {
		t.Fatalf("go-oidc read other claims: sub %q jti %q status %s", idt.Subject, got.ID, got.OverallStatus())
	}
	if _, err := v.Verify(ctx, w.other); err == nil || !strings.Contains(err.Error(), "audience") {
		t.Fatalf("go-oidc accepted a token for another audience: %v", err)
	}
	if _, err := v.Verify(ctx, w.forged); err == nil {
		t.Fatal("go-oidc accepted a forged signature")
	}
}

// pyjwtScript reads {discovery, iss, cases: [{token, aud}]} on stdin, finds jwks_uri in the
// discovery document, and verifies each token with PyJWT's PyJWKClient and jwt.decode,
// printing one {ok, sub, jti, profile | error} per case.
const pyjwtScript = `
import json, sys, urllib.request
import jwt
cfg = json.load(sys.stdin)
with urllib.request.urlopen(cfg["discovery"], timeout=20) as r:
    disc = json.load(r)
assert disc["issuer"] == cfg["iss"], disc["issuer"]
client = jwt.PyJWKClient(disc["jwks_uri"])
out = []
for case in cfg["cases"]:
    try:
        key = client.get_signing_key_from_jwt(case["token"])
        c = jwt.decode(case["token"], key.key, algorithms=["ES256"], audience=case["aud"],
                       issuer=cfg["iss"],
                       options={"require": ["exp", "iat", "nbf", "iss", "aud", "sub", "jti"]})
        out.append({"ok": True, "sub": c["sub"], "jti": c["jti"], "profile": c["eat_profile"],
                     "status": c["submods"]["tpm"]["ear_status"], "crv": c["cnf"]["jwk"]["crv"]})
    except Exception as e:
        out.append({"ok": False, "error": type(e).__name__})
print(json.dumps(out))
`

// TestInteropPyJWT: Debian's python3-jwt (PyJWKClient against our JWKS, found through our
// discovery document) verifies our tokens and refuses the wrong audience and a forged
// signature. /usr/bin/python3 is required: Debian's modules load there, and CI installs
// python3-jwt; a missing module fails the test.
func TestInteropPyJWT(t *testing.T) {
	const py = "/usr/bin/python3"
	if out, err := exec.Command(py, "-c", "import jwt, cryptography; print(jwt.__version__)").CombinedOutput(); err != nil {
		t.Fatalf("%s cannot import jwt (install python3-jwt and python3-cryptography): %v\n%s", py, err, out)
	}
	w := newInteropWorld(t)
	in, err := json.Marshal(map[string]any{
		"discovery": w.issuer.URL + "/.well-known/openid-configuration",
		"iss":       w.issuer.URL,
		"cases": []map[string]string{
			{"token": w.good, "aud": rpAudience},
			{"token": w.other, "aud": rpAudience},
			{"token": w.forged, "aud": rpAudience},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-c", pyjwtScript)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python: %v\n%s", err, stderr.String())
	}
	var res []struct {
		OK      bool   `json:"ok"`
		Sub     string `json:"sub"`
		JTI     string `json:"jti"`
		Profile string `json:"profile"`
		Status  string `json:"status"`
		Crv     string `json:"crv"`
		Error   string `json:"error"`
	}
	if err := json.Unmarshal(out, &res); err != nil || len(res) != 3 {
		t.Fatalf("python output %q: %v", out, err)
	}
	if g := res[0]; !g.OK || g.Sub != w.claims.Subject || g.JTI != w.claims.ID || g.Profile != token.Profile || g.Status != "affirming" || g.Crv != "P-256" {
		t.Fatalf("PyJWT on a valid token: %+v", g)
	}
	if res[1].OK || res[1].Error != "InvalidAudienceError" {
		t.Fatalf("PyJWT on another audience: %+v", res[1])
	}
	if res[2].OK || res[2].Error != "InvalidSignatureError" {
		t.Fatalf("PyJWT on a forged signature: %+v", res[2])
	}
}

// TestDPoPTransportEndToEnd: a token from the real issuer, presented by the attester's
// DPoPTransport over loopback HTTP, passes a DPoP-required route; the same token with a
// thief's key or as a bare bearer token does not.
func TestDPoPTransportEndToEnd(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}})
	res, err := (&attester.Client{IssuerURL: srv.URL}).Attest(context.Background(), a, rpAudience)
	if err != nil {
		t.Fatal(err)
	}
	ks := NewRemoteKeySet(context.Background(), srv.URL+"/.well-known/jwks.json")
	v, err := NewVerifier(Config{Issuer: srv.URL, Audience: rpAudience, KeySet: ks})
	if err != nil {
		t.Fatal(err)
	}
	var called bool
	rp := newServer(t, func(origin *url.URL) http.Handler {
		return Middleware(v, RequirePoP(PoPDPoP), WithExternalURL(origin))(okHandler(t, &called))
	})
	get := func(rt http.RoundTripper) (int, string) {
		resp, err := (&http.Client{Transport: rt}).Get(rp.URL + "/resource?x=1")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode, resp.Header.Get("WWW-Authenticate")
	}
	owner := &attester.DPoPTransport{Token: attester.StaticToken(res.Token), Key: a.CNFPrivate()}
	for i := range 3 {
		if st, ch := get(owner); st != 204 {
			t.Fatalf("request %d with the cnf key: %d %s", i, st, ch)
		}
	}
	thief := &attester.DPoPTransport{Token: attester.StaticToken(res.Token), Key: newKey(t)}
	if st, ch := get(thief); st != 401 || !strings.Contains(ch, `error="invalid_dpop_proof"`) {
		t.Fatalf("thief's key: %d %s", st, ch)
	}
	bearer := roundTripFunc(func(r *http.Request) (*http.Response, error) {
		r = r.Clone(r.Context())
		r.Header.Set("Authorization", "Bearer "+res.Token)
		return http.DefaultTransport.RoundTrip(r)
	})
	if st, ch := get(bearer); st != 401 || !strings.Contains(ch, "proof of possession required") {
		t.Fatalf("bare bearer token: %d %s", st, ch)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
