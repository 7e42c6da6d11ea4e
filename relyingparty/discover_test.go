package relyingparty

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/token"
)

func TestDiscover(t *testing.T) {
	var doc jwks.Discovery
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/.well-known/openid-configuration" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(doc)
	}))
	defer srv.Close()
	ctx := context.Background()
	doc = jwks.NewDiscovery(srv.URL, []string{"ES256"})
	d, err := Discover(ctx, srv.URL, srv.Client())
	if err != nil || d.JWKSURI != srv.URL+"/.well-known/jwks.json" {
		t.Fatalf("Discover = %+v, %v", d, err)
	}
	if _, err := Discover(ctx, srv.URL+"/", srv.Client()); !errors.Is(err, token.ErrIssuer) {
		t.Fatalf("trailing slash: issuer must match exactly: %v", err)
	}
	doc = jwks.NewDiscovery("https://evil.example", []string{"ES256"})
	if _, err := Discover(ctx, srv.URL, srv.Client()); !errors.Is(err, ErrDiscovery) || !errors.Is(err, token.ErrIssuer) {
		t.Fatalf("mismatched issuer: %v", err)
	}
	doc = jwks.NewDiscovery(srv.URL, nil)
	doc.JWKSURI = ""
	if _, err := Discover(ctx, srv.URL, srv.Client()); !errors.Is(err, ErrDiscovery) {
		t.Fatalf("no jwks_uri: %v", err)
	}
	if _, err := Discover(ctx, srv.URL+"/sub", srv.Client()); !errors.Is(err, ErrDiscovery) {
		t.Fatalf("404: %v", err)
	}
}
