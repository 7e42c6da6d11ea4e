package peer_test

import (
	"context"
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
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/peer"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

const (
	issuerURL = "https://issuer.example"
	mesh      = "urn:example:mesh"
)

var jti atomic.Int64

// world is an issuer's keyring and the verifier every peer uses.
type world struct {
	ring *jwks.Keyring
	v    *relyingparty.Verifier
}

func newWorld(t *testing.T) *world {
	t.Helper()
	k, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	ring := jwks.NewKeyring(k)
	v, err := relyingparty.NewVerifier(relyingparty.Config{Issuer: issuerURL, Audience: mesh, KeySet: relyingparty.NewStaticKeySet(ring.PublicSet())})
	if err != nil {
		t.Fatal(err)
	}
	return &world{ring: ring, v: v}
}

// token mints a token for aud bound to key, as the issuer would after an attestation.
func (w *world) token(t *testing.T, key *ecdsa.PrivateKey, aud string) string {
	t.Helper()
	now := time.Now()
	raw, _, err := w.ring.Sign(token.Claims{
		Issuer: issuerURL, Subject: fmt.Sprintf("ak-%d", jti.Add(1)), Audience: token.Audience{aud},
		IssuedAt: now.Unix(), NotBefore: now.Unix(), Expiry: now.Add(5 * time.Minute).Unix(),
		ID: fmt.Sprintf("jti-%d", jti.Add(1)), Profile: token.Profile,
		Confirmation: &token.Confirmation{JWK: &jose.JSONWebKey{Key: &key.PublicKey}},
		Submods:      map[string]*token.Submod{token.SubmodTPM: {Status: token.TierAffirming}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func newPeer(t *testing.T, w *world, key *ecdsa.PrivateKey, tok string) *peer.Peer {
	t.Helper()
	p, err := peer.New(peer.Config{
		Key:      key,
		Token:    func() (string, error) { return tok, nil },
		Verifier: w.v,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// serve runs p's Handler over TLS on loopback; the handler answers with the client's subject.
func serve(t *testing.T, p *peer.Peer) string {
	t.Helper()
	return serveTLS(t, p.ServerTLS(), p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := relyingparty.ClaimsFromContext(r.Context())
		io.WriteString(w, c.Subject)
	})))
}

// serveTLS serves h with cfg on a loopback port and returns its https URL. (httptest's
// StartTLS would install its own RSA certificate.)
func serveTLS(t *testing.T, cfg *tls.Config, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(tls.NewListener(ln, cfg))
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String()
}

func get(t *testing.T, rt http.RoundTripper, url string) (string, *token.Claims, error) {
	t.Helper()
	resp, err := (&http.Client{Transport: rt, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	c, _ := peer.ServerClaims(resp)
	return string(b), c, nil
}

// TestMutual: two attested workloads accept each other, each seeing the other's claims.
func TestMutual(t *testing.T) {
	w := newWorld(t)
	ka, kb := newKey(t), newKey(t)
	ta, tb := w.token(t, ka, mesh), w.token(t, kb, mesh)
	a, b := newPeer(t, w, ka, ta), newPeer(t, w, kb, tb)
	srv := serve(t, b)
	body, server, err := get(t, a.Transport(nil), srv)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := w.v.Verify(context.Background(), ta)
	cb, _ := w.v.Verify(context.Background(), tb)
	if body != ca.Subject {
		t.Fatalf("server saw subject %q, want A's %q", body, ca.Subject)
	}
	if server == nil || server.Subject != cb.Subject {
		t.Fatalf("client saw server claims %v, want B's %q", server, cb.Subject)
	}
}

// TestServerRefusesUnattestedClient: no token, a stolen token, or a token for another audience
// is refused by the server; a client without a certificate cannot even connect.
func TestServerRefusesUnattestedClient(t *testing.T) {
	w := newWorld(t)
	ka, kb, kc := newKey(t), newKey(t), newKey(t)
	ta := w.token(t, ka, mesh)
	srv := serve(t, newPeer(t, w, kb, w.token(t, kb, mesh)))

	for _, tc := range []struct {
		name string
		tok  string
	}{
		{"stolen token with the thief's certificate", ta},
		{"token for another audience", w.token(t, kc, "urn:example:other")},
		{"self-made token", forged(t, kc)},
	} {
		_, _, err := get(t, newPeer(t, w, kc, tc.tok).Transport(nil), srv)
		var refused *peer.RefusedError
		if !errors.As(err, &refused) || refused.Status != 401 || refused.Err.Code != "invalid_token" {
			t.Fatalf("%s: err %v, want a 401 invalid_token refusal", tc.name, err)
		}
	}

	// No token at all: the transport will not even send.
	np, err := peer.New(peer.Config{Key: kc, Verifier: w.v, Token: func() (string, error) { return "", errors.New("not attested") }})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := get(t, np.Transport(nil), srv); !errors.Is(err, peer.ErrNoToken) || !strings.Contains(err.Error(), "not attested") {
		t.Fatalf("no token: %v", err)
	}
	// An empty token without an error: refused too, with a readable message.
	empty, err := peer.New(peer.Config{Key: kc, Verifier: w.v, Token: func() (string, error) { return "", nil }})
	if err != nil {
		t.Fatal(err)
	}
	_, _, err = get(t, empty.Transport(nil), srv)
	if !errors.Is(err, peer.ErrNoToken) || strings.Contains(err.Error(), "%!") {
		t.Fatalf("empty token: %v", err)
	}
	// A plain TLS client with a certificate but no token is refused by the server.
	cfg := np.ClientTLS()
	resp, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}).Get(srv)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get(peer.HeaderToken) != "" {
		t.Fatalf("tokenless client: %d, server token sent: %v", resp.StatusCode, resp.Header.Get(peer.HeaderToken) != "")
	}
	// Without a client certificate the handshake fails.
	cfg.GetClientCertificate = nil
	if _, err := (&http.Client{Transport: &http.Transport{TLSClientConfig: cfg}}).Get(srv); err == nil {
		t.Fatal("client without a certificate connected")
	}
}

// forged is a token-shaped JWT signed by the workload's own key instead of the issuer's.
func forged(t *testing.T, key *ecdsa.PrivateKey) string {
	t.Helper()
	k, err := jwks.NewKey(key, jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	w := &world{ring: jwks.NewKeyring(k)}
	return w.token(t, key, mesh)
}

// TestClientRefusesUnattestedServer: a server presenting no token, a stolen token or a token
// for another audience fails the client's round trip.
func TestClientRefusesUnattestedServer(t *testing.T) {
	w := newWorld(t)
	ka, kb, kd := newKey(t), newKey(t), newKey(t)
	a := newPeer(t, w, ka, w.token(t, ka, mesh))
	tb := w.token(t, kb, mesh)

	for _, tc := range []struct {
		name string
		tok  string
		want error
	}{
		{"stolen token", tb, relyingparty.ErrMTLSBinding},
		{"other audience", w.token(t, kd, "urn:example:other"), token.ErrAudience},
		{"self-made token", forged(t, kd), relyingparty.ErrUnknownKey},
	} {
		srv := serve(t, newPeer(t, w, kd, tc.tok))
		_, _, err := get(t, a.Transport(nil), srv)
		if !errors.Is(err, peer.ErrNotAttested) || !errors.Is(err, tc.want) {
			t.Fatalf("%s: err %v, want ErrNotAttested and %v", tc.name, err, tc.want)
		}
	}

	// A TLS server that sends no token at all.
	d := newPeer(t, w, kd, "")
	plain := serveTLS(t, d.ServerTLS(), http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hi") }))
	if _, _, err := get(t, a.Transport(nil), plain); !errors.Is(err, peer.ErrNotAttested) {
		t.Fatalf("tokenless server: %v", err)
	}
}

// TestCertificate: the certificate carries exactly the cnf key.
func TestCertificate(t *testing.T) {
	k := newKey(t)
	c, err := peer.Certificate(k, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := relyingparty.SameKey(c.Leaf.PublicKey, &jose.JSONWebKey{Key: &k.PublicKey}); err != nil {
		t.Fatal(err)
	}
	if err := c.Leaf.CheckSignature(c.Leaf.SignatureAlgorithm, c.Leaf.RawTBSCertificate, c.Leaf.Signature); err != nil {
		t.Fatalf("not self-signed: %v", err)
	}
	if _, err := peer.New(peer.Config{Key: k, Token: func() (string, error) { return "", nil }}); err == nil {
		t.Fatal("New accepted a config without a Verifier")
	}
}
