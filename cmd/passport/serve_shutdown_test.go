package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/passport-attest/passport/api"
)

// TestServeShutdownEndsRevocationStreams: a relying party follows GET /v1/revocations when
// the issuer is asked to stop. http.Server.Shutdown does not cancel handler contexts, so
// without CloseStreams the stream would hold the shutdown for its whole grace period (20 s)
// and serve would return the grace deadline. Here the follower's stream must end (EOF) once
// shutdown starts, and serve must return nil.
func TestServeShutdownEndsRevocationStreams(t *testing.T) {
	f := baseFlags()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- serve(ctx, f, io.Discard, func(url string, _ map[string]string) { ready <- url })
	}()
	var url string
	select {
	case url = <-ready:
	case err := <-done:
		t.Fatalf("serve: %v", err)
	}
	resp, err := http.Get(url + api.PathRevocations)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d", api.PathRevocations, resp.StatusCode)
	}
	br := bufio.NewReader(resp.Body)
	first, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(first, "event: resync") {
		t.Fatalf("first stream line %q, %v; want the resync event", first, err)
	}

	cancel() // SIGTERM
	streamEnd := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, br)
		streamEnd <- err
	}()
	select {
	case err := <-streamEnd:
		if err != nil && !errors.Is(err, io.EOF) {
			t.Fatalf("stream ended with %v, want a clean end (EOF)", err)
		}
	case err := <-done:
		t.Fatalf("serve returned (%v) while the revocation stream was still open", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("serve: %v", err)
	}
}
