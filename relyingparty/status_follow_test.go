package relyingparty

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/passport-attest/passport/token"
)

// TestFollowResyncsAfterServerEnd: the issuer ends each revocation stream after its lifetime
// (a clean end of the response). A revocation made while the follower is between two
// connections is never pushed as an event; the follower must reconnect by itself and apply
// the "resync" that opens the new stream, so the list is refetched and the token refused.
// The list stays fresh for the whole test (the clock does not move): without the resync the
// token would be accepted until the list's ttl.
func TestFollowResyncsAfterServerEnd(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	clk := newClock()
	s := newSigner(t)
	ls := newListServer(t, s, clk)
	c := ls.checker(t, nil)
	v, err := NewVerifier(Config{Issuer: testIssuer, Audience: testAudience, KeySet: NewStaticKeySet(s.ring.PublicSet()), Now: clk.Now, Require: c.Require})
	if err != nil {
		t.Fatal(err)
	}
	cl := claimsAt(t, clk.Now())
	cl.Status = &token.Status{StatusList: token.StatusListRef{URI: ls.uri("0"), Index: 6}}
	tok := s.sign(t, cl)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}

	var conns atomic.Int64
	firstEnded := make(chan struct{})
	secondIn := make(chan struct{})
	revoked := make(chan struct{})
	es := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := conns.Add(1)
		w.Header().Set("Content-Type", "text/event-stream")
		switch n {
		case 1: // opens with a resync, then the issuer ends the stream (its lifetime is over)
			fmt.Fprint(w, "event: resync\ndata: {}\n\n")
			w.(http.Flusher).Flush()
			close(firstEnded)
			return
		case 2: // the reconnection: its resync is sent once the test has revoked
			w.WriteHeader(http.StatusOK)
			w.(http.Flusher).Flush()
			close(secondIn)
			select {
			case <-revoked:
			case <-r.Context().Done():
				return
			}
			fmt.Fprint(w, "event: resync\ndata: {}\n\n")
			w.(http.Flusher).Flush()
		}
		<-r.Context().Done()
	}))
	defer func() { cancel(); es.Close() }()
	go func() { _ = c.Follow(ctx, es.URL, v) }()

	<-firstEnded
	<-secondIn // the follower reconnected after the server ended its stream
	// The first stream's resync was applied before the reconnection: this check refetches
	// the list, which is then fresh; the revocation below happens between two resyncs.
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatal(err)
	}
	ls.revoke("0", 6)
	if _, err := v.Verify(ctx, tok); err != nil {
		t.Fatalf("before the second resync the fresh list is used: Verify = %v", err)
	}
	close(revoked)
	waitStatus(t, func() bool {
		_, err := v.Verify(ctx, tok)
		return errors.Is(err, ErrRevoked)
	})
	if n := conns.Load(); n != 2 {
		t.Fatalf("%d connections, want 2", n)
	}
}
