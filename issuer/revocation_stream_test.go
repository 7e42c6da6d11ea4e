package issuer_test

import (
	"context"
	"crypto"
	"errors"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/store"
)

// countStreams is a transport counting the requests for the revocation event stream.
type countStreams struct {
	n    atomic.Int64
	next http.RoundTripper
}

func (c *countStreams) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == api.PathRevocations {
		c.n.Add(1)
	}
	return c.next.RoundTrip(r)
}

// TestFollowAcrossStreamEnds: the issuer ends every revocation stream after its lifetime
// (here 200 ms) instead of holding it for ever; the relying party's follower reconnects after
// each end (the Redis subscription behind the stream stops and starts again with it) and
// loses nothing: a revocation made after several server-side ends still makes the relying
// party refuse the token, although its status list stays fresh for the whole test (ttl 1 min),
// so only the stream (an event, or the resync that opens each stream) can have told it.
func TestFollowAcrossStreamEnds(t *testing.T) {
	a := testenv.Attester(t, testenv.DefaultLog)
	st := testenv.Redis(t)
	srv := issuerWith(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}, Nonces: st},
		func(c *issuer.Config) { c.StreamLifetime = 200 * time.Millisecond })
	ctx := context.Background()
	res, err := (&attester.Client{IssuerURL: srv.URL}).Attest(ctx, a, "test")
	if err != nil {
		t.Fatal(err)
	}
	streams := &countStreams{next: http.DefaultTransport}
	ks := relyingparty.NewStaticKeySet(srv.Keyring.PublicSet())
	sc, err := relyingparty.NewStatusChecker(relyingparty.StatusConfig{Issuer: srv.URL, KeySet: ks, MaxStaleness: time.Hour,
		HTTPClient: &http.Client{Transport: streams, Timeout: 10 * time.Second}})
	if err != nil {
		t.Fatal(err)
	}
	v, err := relyingparty.NewVerifier(relyingparty.Config{Issuer: srv.URL, Audience: "test", KeySet: ks, Require: sc.Require})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(ctx, res.Token); err != nil {
		t.Fatal(err)
	}
	fctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = sc.Follow(fctx, srv.Issuer.Discovery().RevocationEventsEndpoint, v) }()
	// Liveness deadlines only: the follower waits 1 s before each reconnection.
	for deadline := time.Now().Add(30 * time.Second); streams.n.Load() < 3; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d stream connections in 30 s: the issuer never ended a stream, or the follower never reconnected", streams.n.Load())
		}
	}
	if _, err := v.Verify(ctx, res.Token); err != nil {
		t.Fatalf("before the revocation: %v", err)
	}
	if _, err := srv.Issuer.Revoke(ctx, store.Selector{ID: claimsOf(t, res.Token).ID}); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		_, err := v.Verify(ctx, res.Token)
		if errors.Is(err, relyingparty.ErrRevoked) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the revocation never reached the relying party across stream ends (%v)", err)
		}
	}
	t.Logf("%d stream connections", streams.n.Load())
}
