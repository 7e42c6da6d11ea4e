package serving_test

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/passport-attest/passport/config"
	"github.com/passport-attest/passport/health"
	"github.com/passport-attest/passport/serving"
)

// TestShutdownDrainsEveryListenerAtOnce: a request is in flight on the public listener when
// shutdown starts. While it is still running, readiness must already be failing (so load
// balancers stop sending traffic) and the metrics listener, given after the public one, must
// already be closed: listeners shut down together, not one after the other.
func TestShutdownDrainsEveryListenerAtOnce(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	checker := &health.Checker{Log: log}
	checker.Add("always", func(context.Context) error { return nil })
	if _, ok := checker.Ready(context.Background()); !ok {
		t.Fatal("not ready before shutdown")
	}

	pub, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	met, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	entered, release := make(chan struct{}), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { close(entered); <-release })
	mux := http.NewServeMux()
	checker.Routes(mux)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- serving.RunDraining(ctx, log, 10*time.Second, checker.Drain,
			serving.New("public", pub, slow, config.DefaultServer(), nil, log),
			serving.New("metrics", met, mux, config.DefaultServer(), nil, log))
	}()
	inflight := make(chan error, 1)
	go func() {
		resp, err := http.Get("http://" + pub.Addr().String())
		if err == nil {
			resp.Body.Close()
		}
		inflight <- err
	}()
	<-entered
	// The metrics listener answers /readyz 200 before the shutdown.
	resp, err := http.Get("http://" + met.Addr().String() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz before shutdown: %d", resp.StatusCode)
	}
	cancel()

	deadline := time.Now().Add(5 * time.Second)
	for {
		_, ready := checker.Ready(context.Background())
		c, dialErr := net.DialTimeout("tcp", met.Addr().String(), 100*time.Millisecond)
		if dialErr == nil {
			c.Close()
		}
		if !ready && dialErr != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("with a request in flight on the public listener: ready=%v, metrics listener accepting=%v; want not ready and closed",
				ready, dialErr == nil)
		}
		time.Sleep(20 * time.Millisecond)
	}
	select {
	case err := <-done:
		t.Fatalf("Run returned %v while a request was in flight", err)
	default:
	}
	close(release)
	if err := <-inflight; err != nil {
		t.Fatalf("request in flight: %v", err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	if checks, ok := checker.Ready(context.Background()); ok || checks["shutdown"] != "draining" {
		t.Fatalf("Ready after shutdown = %v, %v", checks, ok)
	}
}
