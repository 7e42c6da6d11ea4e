package issuer_test

import (
	"context"
	"crypto"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/relyingparty"
)

func adminGet(t *testing.T, url, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, url+path, nil)
	req.Header.Set("Authorization", "Bearer "+adminCredential)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	var b json.RawMessage
	_ = json.NewDecoder(res.Body).Decode(&b)
	return res.StatusCode, b
}

// TestAdminKeys rotates the signing key through the admin API: the published next key starts
// signing, tokens signed before still verify with the JWKS, and `keys list` shows the states.
func TestAdminKeys(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	ring := jwks.NewKeyring(nil)
	rot, err := jwks.NewRotator(context.Background(), jwks.RotatorConfig{Keyring: ring, Retention: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	srv := issuerWith(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}},
		func(c *issuer.Config) { c.Keyring, c.Keys = ring, rot })
	adminURL := admin(t, srv.Issuer)
	c := &attester.Client{IssuerURL: srv.URL}
	before := attestOnce(t, c, a)

	code, body := adminGet(t, adminURL, api.PathAdminKeys)
	var list api.KeysResponse
	if code != 200 || json.Unmarshal(body, &list) != nil || len(list.Keys) != 2 || list.Keys[0].State != jwks.StateNext || list.Keys[1].State != jwks.StateActive {
		t.Fatalf("keys list: %d %s", code, body)
	}
	next := list.Keys[0].KID
	code, body = adminPost(t, adminURL, api.PathAdminKeysRotate, nil, adminCredential)
	if code != 200 {
		t.Fatalf("rotate: %d %s", code, body)
	}
	if err := json.Unmarshal(body, &list); err != nil || len(list.Keys) != 3 || list.Keys[1].KID != next || list.Keys[1].State != jwks.StateActive {
		t.Fatalf("after rotate: %s", body)
	}
	after := attestOnce(t, c, a)
	ks := relyingparty.NewStaticKeySet(srv.Keyring.PublicSet())
	v, err := relyingparty.NewVerifier(relyingparty.Config{Issuer: srv.URL, Audience: "test", KeySet: ks})
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range []string{before, after} {
		if _, err := v.Verify(context.Background(), tok); err != nil {
			t.Fatalf("after rotation: %v", err)
		}
	}
	if kid := headerKID(t, after); kid != next {
		t.Fatalf("token signed by %s after rotation, want the former next key %s", kid, next)
	}
	// Status lists are signed by the new active key too.
	id, err := strconv.ParseUint(strings.TrimPrefix(claimsOf(t, after).Status.StatusList.URI, srv.URL+api.PathStatusList+"/"), 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	sl, _, _, err := srv.Issuer.StatusListToken(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if kid := headerKID(t, sl); kid != next {
		t.Fatalf("status list signed by %s, want %s", kid, next)
	}
}

// TestAdminKeysStatic: with a fixed key, list shows it and rotate answers 501.
func TestAdminKeysStatic(t *testing.T) {
	srv := testenv.Issuer(t, testenv.IssuerOptions{})
	adminURL := admin(t, srv.Issuer)
	code, body := adminGet(t, adminURL, api.PathAdminKeys)
	var list api.KeysResponse
	if code != 200 || json.Unmarshal(body, &list) != nil || len(list.Keys) != 1 || list.Keys[0].State != jwks.StateActive {
		t.Fatalf("keys list: %d %s", code, body)
	}
	if code, _ := adminPost(t, adminURL, api.PathAdminKeysRotate, nil, adminCredential); code != http.StatusNotImplemented {
		t.Fatalf("rotate with a fixed key: %d, want 501", code)
	}
}

func headerKID(t *testing.T, tok string) string {
	t.Helper()
	var h struct {
		Kid string `json:"kid"`
	}
	b, err := base64URL(tok[:indexDot(tok)])
	if err != nil || json.Unmarshal(b, &h) != nil {
		t.Fatalf("bad header: %v", err)
	}
	return h.Kid
}

func indexDot(s string) int {
	for i := range s {
		if s[i] == '.' {
			return i
		}
	}
	return len(s)
}
