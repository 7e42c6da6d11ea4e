package issuer_test

import (
	"bytes"
	"context"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
)

const adminCredential = "0123456789abcdef-admin-credential"

func adminCall(t *testing.T, h http.Handler, method, path string, body any) (int, []byte) {
	t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	r := httptest.NewRequest(method, path, rd)
	r.Header.Set("Authorization", "Bearer "+adminCredential)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w.Code, w.Body.Bytes()
}

// TestAdminAKs pins the simulator's AK through the admin API (memory and Redis), attests,
// unpins it, and is refused.
func TestAdminAKs(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	stores := map[string]func(t *testing.T) store.AKStore{
		"memory": func(*testing.T) store.AKStore { return memory.New() },
		"redis":  func(t *testing.T) store.AKStore { return testenv.Redis(t) },
	}
	for name, mk := range stores {
		t.Run(name, func(t *testing.T) {
			al, err := evidence.NewStoredAllowlist(mk(t))
			if err != nil {
				t.Fatal(err)
			}
			srv := testenv.Issuer(t, testenv.IssuerOptions{Allowlist: al})
			auth, _ := issuer.NewAdminAuth([]byte(adminCredential))
			admin := srv.Issuer.AdminHandler(auth)
			c := &attester.Client{IssuerURL: srv.URL}
			ctx := context.Background()

			if _, err := c.Attest(ctx, a, "test"); err == nil {
				t.Fatal("attested before the AK was pinned")
			}
			r := httptest.NewRequest(http.MethodPost, "/admin/v1/aks", bytes.NewReader([]byte(`{}`)))
			w := httptest.NewRecorder()
			admin.ServeHTTP(w, r)
			if w.Code != http.StatusUnauthorized {
				t.Fatalf("unauthenticated pin: %d", w.Code)
			}
			der, _ := x509.MarshalPKIXPublicKey(a.AKPublic())
			pemKey := string(pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}))
			st, body := adminCall(t, admin, http.MethodPost, "/admin/v1/aks", issuer.PinAKRequest{PEM: pemKey})
			if st != http.StatusCreated {
				t.Fatalf("pin: %d %s", st, body)
			}
			var rec evidence.AKRecord
			if err := json.Unmarshal(body, &rec); err != nil || rec.Method != evidence.TrustAllowlist || rec.Source != "admin" {
				t.Fatalf("pin answer %s", body)
			}
			if _, err := c.Attest(ctx, a, "test"); err != nil {
				t.Fatalf("attest with the pinned AK: %v", err)
			}
			if code, body := adminCall(t, admin, http.MethodGet, "/admin/v1/aks", nil); code != http.StatusOK || !bytes.Contains(body, []byte(rec.ID)) {
				t.Fatalf("list: %d %s", code, body)
			}
			if code, _ := adminCall(t, admin, http.MethodGet, "/admin/v1/aks/"+rec.ID, nil); code != http.StatusOK {
				t.Fatalf("get: %d", code)
			}
			if code, _ := adminCall(t, admin, http.MethodDelete, "/admin/v1/aks/"+rec.ID, nil); code != http.StatusNoContent {
				t.Fatalf("unpin: %d", code)
			}
			_, err = c.Attest(ctx, a, "test")
			if status, got := code(t, err); status != http.StatusForbidden || got != "evidence_rejected_ak_trust" {
				t.Fatalf("attest after unpin: %d %s", status, got)
			}
			for _, tc := range []struct {
				method, path string
				body         any
				want         int
			}{
				{http.MethodDelete, "/admin/v1/aks/" + rec.ID, nil, http.StatusNotFound},
				{http.MethodGet, "/admin/v1/aks/nobody", nil, http.StatusNotFound},
				{http.MethodPost, "/admin/v1/aks", issuer.PinAKRequest{}, http.StatusBadRequest},
				{http.MethodPost, "/admin/v1/aks", issuer.PinAKRequest{PEM: "not a key"}, http.StatusBadRequest},
				{http.MethodPost, "/admin/v1/aks", issuer.PinAKRequest{PEM: pemKey, JWK: &jose.JSONWebKey{Key: a.AKPublic()}}, http.StatusBadRequest},
				{http.MethodPost, "/admin/v1/aks", issuer.PinAKRequest{JWK: &jose.JSONWebKey{Key: a.AKPublic()}}, http.StatusCreated},
			} {
				if code, body := adminCall(t, admin, tc.method, tc.path, tc.body); code != tc.want {
					t.Errorf("%s %s: %d %s, want %d", tc.method, tc.path, code, body, tc.want)
				}
			}
		})
	}
}

func TestAdminAKsNotConfigured(t *testing.T) {
	srv := testenv.Issuer(t, testenv.IssuerOptions{})
	auth, _ := issuer.NewAdminAuth([]byte(adminCredential))
	if code, _ := adminCall(t, srv.Issuer.AdminHandler(auth), http.MethodGet, "/admin/v1/aks", nil); code != http.StatusNotImplemented {
		t.Fatalf("AK admin without an allowlist: %d", code)
	}
}
