package loadtest

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"sync"
	"time"
)

// profiler captures CPU profiles during the steady scenario's measured phase when
// Config.ProfileDir is set: each issuer's (serve --pprof on its loopback metrics listener,
// Config.ProfileDuration long, from the start of the phase) and the harness's own (the whole
// phase), written as issuer<N>.pprof and harness.pprof for `go tool pprof`.
type profiler struct {
	dir     string
	secs    int
	wg      sync.WaitGroup
	mu      sync.Mutex
	errs    []error
	harness *os.File
}

// startProfiles starts the captures; it returns nil when profiling is off.
func (e *env) startProfiles(ctx context.Context) (*profiler, error) {
	if e.cfg.ProfileDir == "" {
		return nil, nil
	}
	if err := os.MkdirAll(e.cfg.ProfileDir, 0o755); err != nil {
		return nil, err
	}
	secs := max(1, int(e.cfg.ProfileDuration/time.Second))
	p := &profiler{dir: e.cfg.ProfileDir, secs: secs}
	for i, is := range e.issuers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			u := "http://127.0.0.1:" + strconv.Itoa(is.metricsPort) + "/debug/pprof/profile?seconds=" + strconv.Itoa(secs)
			if err := fetchTo(ctx, u, filepath.Join(p.dir, fmt.Sprintf("issuer%d.pprof", i)), time.Duration(secs+30)*time.Second); err != nil {
				p.mu.Lock()
				p.errs = append(p.errs, err)
				p.mu.Unlock()
			}
		}()
	}
	f, err := os.Create(filepath.Join(p.dir, "harness.pprof"))
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	p.harness = f
	return p, nil
}

// stopHarness ends the harness's own profile (the measured phase is over).
func (p *profiler) stopHarness() {
	if p == nil || p.harness == nil {
		return
	}
	pprof.StopCPUProfile()
	p.harness.Close()
	p.harness = nil
}

// wait stops the harness profile, waits for the issuers' profiles and reports where they are.
func (p *profiler) wait(r *Result) {
	if p == nil {
		return
	}
	p.stopHarness()
	p.wg.Wait()
	if len(p.errs) > 0 {
		r.add("CPU profiles", "%s (errors: %v)", p.dir, p.errs)
		return
	}
	r.add("CPU profiles", "%s (issuer<N>.pprof: the first %d s of the measured phase; harness.pprof: all of it)", p.dir, p.secs)
}

// fetchTo GETs u into the file path.
func fetchTo(ctx context.Context, u, path string, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: %s", u, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
