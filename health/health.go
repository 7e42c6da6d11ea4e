// Package health serves liveness (/healthz) and readiness (/readyz) probes.
//
// Liveness says the process serves HTTP at all; it checks nothing else, so that an orchestrator
// never restarts a healthy process because a dependency is down. Readiness runs every
// registered check (the state store answers, a signing key can sign) concurrently under a short
// timeout and answers 503 while any fails, so that load balancers send no attestations to an
// issuer that would refuse them. Failed checks are named in the answer and their errors logged,
// not returned: error texts may describe internal topology.
package health

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultTimeout bounds one readiness evaluation: 1 s.
const DefaultTimeout = time.Second

// Check reports nil when its dependency is usable. It must honour ctx.
type Check func(ctx context.Context) error

// Checker holds the readiness checks. Add them before serving; it is then safe for concurrent
// use.
type Checker struct {
	// Timeout bounds each evaluation (default DefaultTimeout).
	Timeout time.Duration
	// Log receives failed checks at warn level (default slog.Default()).
	Log      *slog.Logger
	names    []string
	checks   []Check
	draining atomic.Bool
}

// Drain marks the process as shutting down: from then on Ready reports
// {"shutdown":"draining"} and false without running the checks, so load balancers stop
// sending requests while those in flight finish. It cannot be undone.
func (c *Checker) Drain() { c.draining.Store(true) }

// Add registers a readiness check under name ("store", "signing_key", ...).
func (c *Checker) Add(name string, check Check) {
	c.names = append(c.names, name)
	c.checks = append(c.checks, check)
}

// Ready runs every check concurrently and returns the status of each ("ok" or "failed") and
// whether all passed.
func (c *Checker) Ready(ctx context.Context) (map[string]string, bool) {
	if c.draining.Load() {
		return map[string]string{"shutdown": "draining"}, false
	}
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	log := c.Log
	if log == nil {
		log = slog.Default()
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make(map[string]string, len(c.checks))
	var mu sync.Mutex
	var wg sync.WaitGroup
	ok := true
	for i, check := range c.checks {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := check(ctx)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				out[c.names[i]] = "failed"
				ok = false
				log.WarnContext(ctx, "readiness check failed", "check", c.names[i], "err", err)
				return
			}
			out[c.names[i]] = "ok"
		}()
	}
	wg.Wait()
	return out, ok
}

// Routes registers GET /healthz and GET /readyz on mux.
func (c *Checker) Routes(mux *http.ServeMux) {
	mux.HandleFunc("GET /healthz", c.Healthz)
	mux.HandleFunc("GET /readyz", c.Readyz)
}

// Healthz answers 200 {"status":"ok"} while the process serves HTTP.
func (c *Checker) Healthz(w http.ResponseWriter, _ *http.Request) {
	write(w, http.StatusOK, map[string]any{"status": "ok"})
}

// Readyz answers 200 {"status":"ready","checks":{...}} when every check passes and 503
// {"status":"not_ready","checks":{...}} otherwise.
func (c *Checker) Readyz(w http.ResponseWriter, r *http.Request) {
	checks, ok := c.Ready(r.Context())
	if !ok {
		write(w, http.StatusServiceUnavailable, map[string]any{"status": "not_ready", "checks": checks})
		return
	}
	write(w, http.StatusOK, map[string]any{"status": "ready", "checks": checks})
}

func write(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
