package issuer_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"net/http"
	"testing"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/relyingparty"
)

// postAppraise sends body to POST /v1/appraise and decodes a 200 answer into out.
func postAppraise(t *testing.T, url string, body any, out any) (int, string) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post(url+api.PathAppraise, "application/json", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var e api.Error
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Code
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, ""
}

// TestAppraise: the background check returns a signed result for the relying party that
// forwarded the evidence, echoing the nonce, bound to the attester's cnf key; its nonce is
// single use like Attest's, and the audience is required and allowlisted.
func TestAppraise(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}})
	c := &attester.Client{IssuerURL: srv.URL}
	const rp = "https://rp.example"

	ev := fresh(t, c, a)
	ev.Audience, ev.EATNonce = "ignored", "ignored"
	var res api.AppraiseResponse
	if st, code := postAppraise(t, srv.URL, api.AppraiseRequest{Evidence: ev, Audience: rp}, &res); st != 200 {
		t.Fatalf("appraise: %d %s", st, code)
	}
	v, err := relyingparty.NewVerifier(relyingparty.Config{Issuer: srv.URL, Audience: rp, KeySet: relyingparty.NewStaticKeySet(srv.Keyring.PublicSet())})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(context.Background(), res.Result)
	if err != nil {
		t.Fatalf("result does not verify for %s: %v", rp, err)
	}
	if claims.EATNonce != api.EncodeNonce(ev.Nonce) {
		t.Fatalf("eat_nonce %q, want the evidence nonce %q", claims.EATNonce, api.EncodeNonce(ev.Nonce))
	}
	if err := relyingparty.SameKey(a.CNF().Key, claims.Confirmation.JWK); err != nil {
		t.Fatalf("result cnf: %v", err)
	}
	if !claims.Audience.Contains(rp) || claims.Audience.Contains("ignored") || !res.ExpiresAt.Equal(claims.Expires()) {
		t.Fatalf("aud %v, expires_at %s", claims.Audience, res.ExpiresAt)
	}

	for _, tc := range []struct {
		name   string
		req    api.AppraiseRequest
		status int
		code   string
	}{
		{"replayed evidence", api.AppraiseRequest{Evidence: ev, Audience: rp}, 409, "nonce_reused"},
		{"no audience", api.AppraiseRequest{Evidence: fresh(t, c, a)}, 400, "invalid_request"},
		{"no evidence", api.AppraiseRequest{Audience: rp}, 400, "invalid_request"},
	} {
		if st, code := postAppraise(t, srv.URL, tc.req, nil); st != tc.status || code != tc.code {
			t.Fatalf("%s: %d %s, want %d %s", tc.name, st, code, tc.status, tc.code)
		}
	}

	// Discovery advertises the endpoint.
	d := srv.Issuer.Discovery()
	if d.AppraisalEndpoint != srv.URL+api.PathAppraise {
		t.Fatalf("appraisal_endpoint %q", d.AppraisalEndpoint)
	}
}

// TestAppraiseAudienceAllowlist: an issuer with an audience allowlist refuses results for
// relying parties outside it, and the core refuses a request without evidence.
func TestAppraiseAudienceAllowlist(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Audiences: []string{"https://rp.example"}})
	c := &attester.Client{IssuerURL: srv.URL}
	if st, code := postAppraise(t, srv.URL, api.AppraiseRequest{Evidence: fresh(t, c, a), Audience: "https://other.example"}, nil); st != 400 || code != "invalid_request" {
		t.Fatalf("audience outside the allowlist: %d %s", st, code)
	}
	var res api.AppraiseResponse
	if st, code := postAppraise(t, srv.URL, api.AppraiseRequest{Evidence: fresh(t, c, a), Audience: "https://rp.example"}, &res); st != 200 {
		t.Fatalf("allowlisted audience: %d %s", st, code)
	}
	if _, err := srv.Issuer.Appraise(context.Background(), nil); !errors.Is(err, issuer.ErrBadRequest) {
		t.Fatalf("nil request: %v", err)
	}
}
