package kbs_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/dpop"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/kbs"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

// A broker releases a disk key to the holder of an affirming token and its cnf key. The
// issuer's keyring and the attester's key live in the example; in production the broker
// discovers the issuer's keys (relyingparty.Discover, NewRemoteKeySet) and the attester uses
// attester.KBSClient.
func ExampleBroker_Release() {
	now := time.Date(2026, 11, 29, 12, 0, 0, 0, time.UTC)
	ctx := context.Background()

	// The issuer's signing key and the attester's cnf key.
	sig, _ := jwks.GenerateKey(jose.ES256)
	ring := jwks.NewKeyring(sig)
	cnf, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tok, _, _ := ring.Sign(token.Claims{
		Issuer: "https://issuer.example", Subject: "ak-thumbprint", Audience: token.Audience{"kbs"},
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(5 * time.Minute).Unix(), ID: "token-1",
		Confirmation: &token.Confirmation{JWK: &jose.JSONWebKey{Key: &cnf.PublicKey}},
		Submods:      map[string]*token.Submod{token.SubmodTPM: {Status: token.TierAffirming}},
	})

	// The broker: a secrets directory, the default policy (affirming, DPoP).
	dir, _ := os.MkdirTemp("", "kbs-example")
	defer os.RemoveAll(dir)
	_ = os.MkdirAll(filepath.Join(dir, "default", "key"), 0o700)
	_ = os.WriteFile(filepath.Join(dir, "default", "key", "disk"), []byte("correct horse battery staple"), 0o600)
	store, _ := kbs.NewDirStore(dir)
	defer store.Close()
	v, _ := relyingparty.NewVerifier(relyingparty.Config{
		Issuer: "https://issuer.example", Audience: "kbs", KeySet: relyingparty.NewStaticKeySet(ring.PublicSet()),
		MinStatus: token.TierWarning, Now: func() time.Time { return now },
	})
	b, _ := kbs.New(kbs.Config{Verifier: v, Store: store, Audit: slog.New(slog.DiscardHandler), Now: func() time.Time { return now },
		PublicURL: "https://kbs.example"})

	// The request, as Handler decodes it: token, DPoP proof by the cnf key, URL.
	u, _ := url.Parse("https://kbs.example" + api.PathKBSResource + "default/key/disk")
	proof, _ := dpop.NewProof(cnf, "GET", u, tok, now)
	rel, err := b.Release(ctx, kbs.Request{
		Resource: "default/key/disk", Authorization: []string{"DPoP " + tok}, DPoP: []string{proof}, Method: "GET", URL: u,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	secret, err := attester.OpenSecret(rel.JWE, cnf)
	fmt.Println(rel.Resource, rel.Algorithm, rel.JTI)
	fmt.Printf("%s %v\n", secret, err)

	// The same token without its proof: refused.
	_, err = b.Release(ctx, kbs.Request{Resource: "default/key/disk", Authorization: []string{"Bearer " + tok}, Method: "GET", URL: u})
	fmt.Println(err)
	// Output:
	// default/key/disk ECDH-ES+A256KW token-1
	// correct horse battery staple <nil>
	// kbs: refused (401 dpop_required)
}

// A policy file names resources by glob; the first matching rule decides, the default covers
// the rest.
func ExampleParsePolicy() {
	p, err := kbs.ParsePolicy([]byte(`
rules:
  - resource: "default/key/*"
    allow: 'status == "affirming" && claims.submods.tpm.measurements.secure_boot == true'
  - resource: "public/config/*"
    allow: 'status in ["affirming", "warning"]'
    bearer: true
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, name := range []string{"default/key/disk", "public/config/motd", "other/cert/web"} {
		id, _ := api.ParseResourceID(name)
		fmt.Printf("%-18s rule %-15s bearer %v\n", name, p.RuleFor(id), p.BearerAllowed(id))
	}
	// Output:
	// default/key/disk   rule default/key/*   bearer false
	// public/config/motd rule public/config/* bearer true
	// other/cert/web     rule */*/*           bearer false
}
