package serving_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/config"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/serving"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
)

// gatedNonces holds every ConsumeNonce until release is closed, telling entered when one
// starts: an attestation is then in flight inside the issuer.
type gatedNonces struct {
	store.NonceStore
	entered chan struct{}
	release chan struct{}
}

func (g *gatedNonces) ConsumeNonce(ctx context.Context, n []byte) ([]byte, error) {
	g.entered <- struct{}{}
	<-g.release
	return g.NonceStore.ConsumeNonce(ctx, n)
}

// TestShutdownFinishesAttestationInFlight: an attestation is half-way through when shutdown
// is asked; the listener stops accepting new connections at once, the attestation still
// completes with a token, and Run returns nil.
func TestShutdownFinishesAttestationInFlight(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	gate := &gatedNonces{NonceStore: memory.New(), entered: make(chan struct{}, 1), release: make(chan struct{})}
	allow, err := evidence.NewAllowlist(a.AKPublic())
	if err != nil {
		t.Fatal(err)
	}
	ev, err := evidence.NewVerifier(evidence.Options{AKTrust: allow})
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	is, err := issuer.New(issuer.Config{URL: url, Keyring: jwks.NewKeyring(key), Nonces: gate, Status: memory.New(), Evidence: ev, Policy: &policy.Reference{}})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	srv := serving.New("public", ln, is.Handler(), config.DefaultServer(), nil, log)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- serving.Run(ctx, log, 10*time.Second, srv) }()

	c := &attester.Client{IssuerURL: url, HTTP: &http.Client{Timeout: 20 * time.Second}}
	ch, err := c.Challenge(ctx)
	if err != nil {
		t.Fatal(err)
	}
	req, err := a.Evidence(ch.Nonce)
	if err != nil {
		t.Fatal(err)
	}
	req.Audience = "shutdown"
	type result struct {
		tok string
		err error
	}
	res := make(chan result, 1)
	go func() {
		r, err := c.Submit(context.Background(), req)
		if err != nil {
			res <- result{err: err}
			return
		}
		res <- result{tok: r.Token}
	}()
	<-gate.entered // the attestation is inside the issuer
	cancel()       // SIGTERM

	// The listener closes at once: new connections are refused while the attestation waits.
	deadline := time.Now().Add(5 * time.Second)
	for {
		conn, err := net.DialTimeout("tcp", ln.Addr().String(), 100*time.Millisecond)
		if err != nil {
			break
		}
		conn.Close()
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned (%v) before the attestation in flight finished", err)
	default:
	}
	close(gate.release)
	r := <-res
	if r.err != nil || r.tok == "" {
		t.Fatalf("attestation in flight during shutdown: %v", r.err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
}

// TestShutdownGraceRunsOut: a request that outlives the grace period makes Run report it.
func TestShutdownGraceRunsOut(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	block := make(chan struct{})
	defer close(block)
	entered := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { close(entered); <-block })
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serving.Run(ctx, log, 100*time.Millisecond, serving.New("public", ln, h, config.DefaultServer(), nil, log))
	}()
	go func() {
		resp, err := http.Get("http://" + ln.Addr().String())
		if err == nil {
			resp.Body.Close()
		}
	}()
	<-entered
	cancel()
	if err := <-done; !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run = %v, want the grace period's deadline", err)
	}
}
