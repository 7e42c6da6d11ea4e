package peer_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/peer"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

// Two workloads holding tokens bound to their keys trust each other over TLS without a CA;
// a third one presenting a stolen token is refused. The issuer's keyring stands in for the
// attestation (see examples/peers for the whole flow with a TPM).
func Example() {
	key, _ := jwks.GenerateKey(jose.ES256)
	ring := jwks.NewKeyring(key)
	const mesh = "urn:example:mesh"
	mint := func(k *ecdsa.PrivateKey, sub string) string {
		now := time.Now()
		tok, _, _ := ring.Sign(token.Claims{
			Issuer: "https://issuer.example", Subject: sub, Audience: token.Audience{mesh},
			IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(5 * time.Minute).Unix(), ID: sub,
			Profile:      token.Profile,
			Confirmation: &token.Confirmation{JWK: &jose.JSONWebKey{Key: &k.PublicKey}},
			Submods:      map[string]*token.Submod{token.SubmodTPM: {Status: token.TierAffirming}},
		})
		return tok
	}
	v, _ := relyingparty.NewVerifier(relyingparty.Config{Issuer: "https://issuer.example", Audience: mesh,
		KeySet: relyingparty.NewStaticKeySet(ring.PublicSet())})
	workload := func(k *ecdsa.PrivateKey, tok string) *peer.Peer {
		p, err := peer.New(peer.Config{Key: k, Verifier: v, Token: func() (string, error) { return tok, nil }})
		if err != nil {
			log.Fatal(err)
		}
		return p
	}
	ka, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	kb, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	kc, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tokA := mint(ka, "workload-a")
	a, b := workload(ka, tokA), workload(kb, mint(kb, "workload-b"))
	thief := workload(kc, tokA) // A's token, C's key

	// B serves.
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	srv := &http.Server{Handler: b.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := relyingparty.ClaimsFromContext(r.Context())
		fmt.Fprintf(w, "hello %s", c.Subject)
	})), ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(tls.NewListener(ln, b.ServerTLS()))
	defer srv.Close()
	url := "https://" + ln.Addr().String()

	resp, err := (&http.Client{Transport: a.Transport(nil)}).Get(url)
	if err != nil {
		log.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	server, _ := peer.ServerClaims(resp)
	fmt.Printf("A got %q from %s\n", body, server.Subject)

	_, err = (&http.Client{Transport: thief.Transport(nil)}).Get(url)
	var refused *peer.RefusedError
	fmt.Println("C refused:", errors.As(err, &refused) && refused.Status == 401)
	// Output:
	// A got "hello workload-a" from workload-b
	// C refused: true
}
