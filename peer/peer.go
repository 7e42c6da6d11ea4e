// Package peer lets two attested workloads trust each other directly, without a certificate
// authority: each side's TLS certificate is self-signed with its token's confirmation key
// (RFC 7800 cnf), and each side checks the other's passport token against the key of the
// certificate the TLS handshake proved the peer holds.
//
// The exchange, over one TLS 1.3 connection with client certificates:
//
//  1. TLS: each side presents Certificate(its cnf key). Neither certificate is checked against
//     a CA (Config.ServerTLS and ClientTLS accept any well-formed leaf): the handshake only
//     proves that each side holds the private key of the certificate it sent.
//  2. Client to server: the client's token in "Authorization: Bearer". The server (Handler)
//     verifies it with its relyingparty.Verifier and requires its cnf key to be the client
//     certificate's key (relyingparty.PoPMTLS), so a stolen token is useless.
//  3. Server to client: the server's token in the HeaderToken response header. The client
//     (Transport) verifies it and requires its cnf key to be the server certificate's key, and
//     fails the round trip otherwise.
//
// The client sends its request before it has checked the server: a request that carries
// secrets should follow a first exchange (any request) to the same server, which Transport
// will have refused unless the server is attested. Tokens are bound to keys, so a token seen
// by an unattested peer is of no use to it.
//
// This package sits between attester (which produces tokens and holds the cnf key) and
// relyingparty (which verifies them): it needs both halves, and keeping it separate keeps TLS
// and private keys out of relyingparty, and the TPM out of any program that only checks peers.
// A token source is a plain function, for instance (*attester.Refresher).Token.
package peer

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"sync"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/token"
)

// HeaderToken is the response header in which a server returns its own token to the client.
const HeaderToken = "Peer-Token"

// CertificateLifetime is the validity of the self-signed certificates: 24 h. Validity carries
// no trust here (the token's exp does); certificates are renewed an hour before they lapse.
const CertificateLifetime = 24 * time.Hour

// Errors of the peer checks.
var (
	// ErrNotAttested: the peer presented no token, an invalid token, or a token whose cnf key
	// is not the key of its TLS certificate. It wraps the verification error.
	ErrNotAttested = errors.New("peer: peer is not attested")
	// ErrNoCertificate: the TLS connection carries no usable peer certificate.
	ErrNoCertificate = errors.New("peer: no peer certificate")
	// ErrNoToken: this side has no token to present (its token source failed).
	ErrNoToken = errors.New("peer: no token of our own to present")
)

// Config is one workload's side of the exchange.
type Config struct {
	// Key is the private half of this workload's cnf key: the key its tokens are bound to.
	// ECDSA (P-256, P-384) or Ed25519. Required.
	Key crypto.Signer
	// Token returns this workload's current token, bound to Key, e.g. the Token method of an
	// attester.Refresher. Required.
	Token func() (string, error)
	// Verifier checks the peers' tokens; its Audience is what peers' tokens must be issued
	// for (one audience for the whole mesh, or this workload's own name). Required.
	Verifier *relyingparty.Verifier
	// Now is the clock for certificate validity (default time.Now).
	Now func() time.Time
}

// Peer holds one workload's TLS configuration and checks its peers. It is safe for
// concurrent use.
type Peer struct {
	cfg Config

	mu   sync.Mutex
	cert *tls.Certificate
}

// New checks cfg and returns a Peer.
func New(cfg Config) (*Peer, error) {
	switch {
	case cfg.Key == nil:
		return nil, errors.New("peer: Config.Key is required")
	case cfg.Token == nil:
		return nil, errors.New("peer: Config.Token is required")
	case cfg.Verifier == nil:
		return nil, errors.New("peer: Config.Verifier is required")
	}
	switch cfg.Key.Public().(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
	default:
		return nil, fmt.Errorf("peer: unsupported key type %T (want ECDSA or Ed25519)", cfg.Key.Public())
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Peer{cfg: cfg}, nil
}

// Certificate returns a self-signed X.509 certificate (RFC 5280) for key, valid from an hour
// before now for CertificateLifetime, usable for TLS server and client authentication. Its
// subject carries no identity: the token bound to key does.
func Certificate(key crypto.Signer, now time.Time) (tls.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("peer: serial: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "passport workload"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(CertificateLifetime),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("peer: certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("peer: certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

// certificate returns this side's certificate, renewed an hour before it lapses.
func (p *Peer) certificate() (*tls.Certificate, error) {
	now := p.cfg.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.cert == nil || now.Add(time.Hour).After(p.cert.Leaf.NotAfter) {
		c, err := Certificate(p.cfg.Key, now)
		if err != nil {
			return nil, err
		}
		p.cert = &c
	}
	return p.cert, nil
}

// ServerTLS returns the server side's TLS configuration: TLS 1.3 only, this workload's
// certificate, and a client certificate required but not checked against any CA (the token
// vouches for its key; Handler checks that).
func (p *Peer) ServerTLS() *tls.Config {
	return &tls.Config{
		MinVersion:       tls.VersionTLS13,
		GetCertificate:   func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return p.certificate() },
		ClientAuth:       tls.RequireAnyClientCert,
		VerifyConnection: checkLeaf,
	}
}

// ClientTLS returns the client side's TLS configuration: TLS 1.3 only, this workload's
// certificate, and the server's certificate accepted without a CA or host name check (the
// server's token vouches for its key; Transport checks that). Use it only with Transport.
func (p *Peer) ClientTLS() *tls.Config {
	return &tls.Config{
		MinVersion:           tls.VersionTLS13,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return p.certificate() },
		// No CA: the chain is not verified here. VerifyConnection still runs and requires a
		// well-formed leaf; Transport then binds it to the server's token.
		InsecureSkipVerify: true,
		VerifyConnection:   checkLeaf,
	}
}

// checkLeaf requires a peer certificate with a supported public key. It is the only check
// the TLS layer makes: trust in that key comes from the peer's token.
func checkLeaf(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return ErrNoCertificate
	}
	switch cs.PeerCertificates[0].PublicKey.(type) {
	case *ecdsa.PublicKey, ed25519.PublicKey:
		return nil
	}
	return fmt.Errorf("%w: unsupported key type %T", ErrNoCertificate, cs.PeerCertificates[0].PublicKey)
}

// Check verifies a peer's token raw with the Verifier and requires its cnf key to be the key
// of the peer's TLS certificate in cs. Errors match ErrNotAttested (wrapping the verification
// or binding error) or ErrNoCertificate.
func (p *Peer) Check(ctx context.Context, cs *tls.ConnectionState, raw string) (*token.Claims, error) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return nil, ErrNoCertificate
	}
	if raw == "" {
		return nil, fmt.Errorf("%w: no token", ErrNotAttested)
	}
	c, err := p.cfg.Verifier.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAttested, err)
	}
	if c.Confirmation == nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAttested, relyingparty.ErrNotBound)
	}
	if err := relyingparty.SameKey(cs.PeerCertificates[0].PublicKey, c.Confirmation.JWK); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotAttested, err)
	}
	return c, nil
}

// Handler protects next on the server side: the client's token must verify and be bound to
// its TLS certificate's key (relyingparty.Middleware with relyingparty.PoPMTLS; refusals are
// RFC 6750 401s), and every accepted response carries this server's own token in HeaderToken
// for the client to check. opts are passed on to relyingparty.Middleware. When this server
// has no token to present, it answers 503.
func (p *Peer) Handler(next http.Handler, opts ...relyingparty.MiddlewareOption) http.Handler {
	withToken := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		own, err := p.cfg.Token()
		if err != nil || own == "" {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			_ = json.NewEncoder(w).Encode(api.Error{Code: "temporarily_unavailable", Description: "this workload holds no valid token"})
			return
		}
		w.Header().Set(HeaderToken, own)
		next.ServeHTTP(w, r)
	})
	opts = append(append([]relyingparty.MiddlewareOption(nil), opts...), relyingparty.RequirePoP(relyingparty.PoPMTLS))
	return relyingparty.Middleware(p.cfg.Verifier, opts...)(withToken)
}

// Transport returns the client side's http.RoundTripper over base (nil: a new http.Transport
// with ClientTLS). It presents this workload's token in "Authorization: Bearer" and checks the
// server's token in every response: a response without a valid token bound to the server's
// certificate key is closed and the round trip fails with ErrNotAttested. The server's
// verified claims are available with ServerClaims.
func (p *Peer) Transport(base *http.Transport) http.RoundTripper {
	if base == nil {
		base = &http.Transport{TLSClientConfig: p.ClientTLS(), ForceAttemptHTTP2: true}
	}
	return &transport{p: p, base: base}
}

type transport struct {
	p    *Peer
	base *http.Transport
}

type serverClaimsKey struct{}

// ServerClaims returns the verified claims of the server that answered resp, set by
// Transport.
func ServerClaims(resp *http.Response) (*token.Claims, bool) {
	if resp == nil || resp.Request == nil {
		return nil, false
	}
	c, ok := resp.Request.Context().Value(serverClaimsKey{}).(*claimsBox)
	if !ok || c.claims == nil {
		return nil, false
	}
	return c.claims, true
}

type claimsBox struct{ claims *token.Claims }

// RoundTrip presents our token, sends req and checks the server's token in the response.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	own, err := t.p.cfg.Token()
	switch {
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrNoToken, err)
	case own == "": // no error to wrap: "%w" of a nil error would print %!w(<nil>)
		return nil, fmt.Errorf("%w: the token source returned an empty token", ErrNoToken)
	}
	box := &claimsBox{}
	r := req.Clone(context.WithValue(req.Context(), serverClaimsKey{}, box))
	r.Header.Set("Authorization", "Bearer "+own)
	resp, err := t.base.RoundTrip(r)
	if err != nil {
		return nil, err
	}
	peerTok := resp.Header.Get(HeaderToken)
	if peerTok == "" && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) {
		defer resp.Body.Close()
		return nil, refusal(resp)
	}
	c, err := t.p.Check(req.Context(), resp.TLS, peerTok)
	if err != nil {
		resp.Body.Close()
		return nil, err
	}
	box.claims = c
	resp.Request = r
	return resp, nil
}

// RefusedError is the error of a round trip that the server refused: this workload's token
// was missing, invalid or not bound to its certificate (relyingparty.Middleware's 401 or 403).
type RefusedError struct {
	// Status is the HTTP status, 401 or 403.
	Status int
	// Err is the server's error body (RFC 6750 error code and description).
	Err api.Error
}

// Error reports the status and the server's error code.
func (e *RefusedError) Error() string {
	return fmt.Sprintf("peer: server refused our token: %d %s", e.Status, e.Err.Error())
}

func refusal(resp *http.Response) error {
	e := &RefusedError{Status: resp.StatusCode}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 4<<10)).Decode(&e.Err); err != nil || e.Err.Code == "" {
		e.Err = api.Error{Code: http.StatusText(resp.StatusCode)}
	}
	return e
}
