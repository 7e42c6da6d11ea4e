package kbs_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/kbs"
)

const adminCred = "0123456789abcdef-admin-credential"

// TestAdminAPI: the admin API stores and deletes secrets for the right credential only, never
// reads them back, and what it stores is released through the broker.
func TestAdminAPI(t *testing.T) {
	for name, mk := range backends() {
		t.Run(name, func(t *testing.T) {
			f := newFixture(t, fixtureOpts{mod: func(c *kbs.Config) { c.Store = mk(t) }})
			auth, err := issuer.NewAdminAuth([]byte(adminCred))
			if err != nil {
				t.Fatal(err)
			}
			audit := &syncBuffer{}
			admin := httptest.NewServer(kbs.AdminHandler(f.brokerStore(t), auth, slog.New(slog.NewJSONHandler(audit, nil))))
			defer admin.Close()
			ctx := context.Background()
			id := api.ResourceID{Repository: "default", Type: "key", Tag: "disk"}
			secret := []byte("stored through the admin API")

			bad := &kbs.AdminClient{URL: admin.URL, Credential: "wrong-credential-of-enough-length"}
			if err := bad.Put(ctx, id, secret); err == nil || !strings.Contains(err.Error(), "401") {
				t.Fatalf("wrong credential: %v", err)
			}
			if r := f.do(t, req{token: f.token(t, nil)}); r.status != 404 {
				t.Fatalf("after a refused Put the secret exists (%d)", r.status)
			}

			c := &kbs.AdminClient{URL: admin.URL, Credential: adminCred}
			if err := c.Put(ctx, id, secret); err != nil {
				t.Fatal(err)
			}
			r := f.do(t, req{token: f.token(t, nil)})
			if r.status != 200 {
				t.Fatalf("release after Put: %d %s", r.status, r.body)
			}
			if got, err := attester.OpenSecret(string(r.body), f.cnf); err != nil || !bytes.Equal(got, secret) {
				t.Fatalf("released %q, %v", got, err)
			}

			for _, m := range []string{http.MethodGet, http.MethodPost} {
				hr, _ := http.NewRequest(m, admin.URL+kbs.PathAdminResource+id.String(), nil)
				hr.Header.Set("Authorization", "Bearer "+adminCred)
				res, err := http.DefaultClient.Do(hr)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusMethodNotAllowed || bytes.Contains(b, secret) {
					t.Fatalf("%s: %d %s", m, res.StatusCode, b)
				}
			}
			if err := c.Put(ctx, id, make([]byte, kbs.MaxSecretSize+1)); err == nil || !strings.Contains(err.Error(), "413") {
				t.Fatalf("oversized Put: %v", err)
			}
			if err := c.Put(ctx, api.ResourceID{Repository: "..", Type: "a", Tag: "b"}, secret); !errors.Is(err, api.ErrResourceName) {
				t.Fatalf("bad name: %v", err)
			}
			if err := c.Delete(ctx, id); err != nil {
				t.Fatal(err)
			}
			if err := c.Delete(ctx, id); !errors.Is(err, kbs.ErrNotFound) {
				t.Fatalf("second Delete: %v", err)
			}
			if r := f.do(t, req{token: f.token(t, nil)}); r.status != 404 {
				t.Fatalf("release after Delete: %d", r.status)
			}
			if strings.Contains(audit.String(), string(secret)) || strings.Contains(audit.String(), adminCred) {
				t.Fatal("the admin audit log holds the secret or the credential")
			}
			if n := strings.Count(audit.String(), `"event":"kbs.admin"`); n < 6 {
				t.Fatalf("%d admin audit lines", n)
			}
		})
	}
}

// TestAdminRefusesRawEscapes: the admin API validates names as the broker does.
func TestAdminRefusesRawEscapes(t *testing.T) {
	s, err := kbs.NewDirStore(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	auth, _ := issuer.NewAdminAuth([]byte(adminCred))
	admin := httptest.NewServer(kbs.AdminHandler(s, auth, slog.New(slog.DiscardHandler)))
	defer admin.Close()
	for _, p := range []string{"%2e%2e/a/b", "a%2Fb/c/d", "a/b", "a/b/c/d"} {
		hr, _ := http.NewRequest(http.MethodPut, admin.URL+kbs.PathAdminResource+p, strings.NewReader("x"))
		hr.Header.Set("Authorization", "Bearer "+adminCred)
		res, err := http.DefaultClient.Do(hr)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %d, want 400", p, res.StatusCode)
		}
	}
	// Without the credential the name is not even looked at.
	hr, _ := http.NewRequest(http.MethodPut, admin.URL+kbs.PathAdminResource+"%2e%2e/a/b", strings.NewReader("x"))
	res, err := http.DefaultClient.Do(hr)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized || res.Header.Get("WWW-Authenticate") == "" {
		t.Fatalf("unauthenticated: %d", res.StatusCode)
	}
}
