package loadtest

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/evidence"
)

// Result is what one scenario measured.
type Result struct {
	Name, Setup string
	Lines       []string // "label: value" lines of the report, in order
	// Failed lists the goals the scenario did not meet (empty: all met or none checked); Run
	// returns ErrGoalNotMet when any result has one.
	Failed []string
}

func (r *Result) add(label, format string, args ...any) {
	r.Lines = append(r.Lines, label+": "+fmt.Sprintf(format, args...))
}

// fail records a goal the scenario did not meet.
func (r *Result) fail(format string, args ...any) {
	r.Failed = append(r.Failed, fmt.Sprintf(format, args...))
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2f ms", float64(d.Microseconds())/1000) }
func us(d time.Duration) string { return fmt.Sprintf("%.1f µs", float64(d.Nanoseconds())/1000) }
func mib(b int64) string        { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

// attesterIP spreads attesters over 127.0.1.1-127.0.1.250: distinct clients for the issuer.
func attesterIP(i int) string { return fmt.Sprintf("127.0.1.%d", i%250+1) }

func (e *env) attesters() []*attester {
	clients := map[string]*http.Client{}
	out := make([]*attester, e.cfg.Attesters)
	for i := range out {
		ip := attesterIP(i)
		if clients[ip] == nil {
			clients[ip] = client(ip, 4)
		}
		out[i] = newAttester(i, clients[ip])
	}
	return out
}

// baseline measures, in this process on one goroutine, the issuer's two cryptographic steps for
// one attestation: evidence verification (quote signature, PCR digest, event-log replay) and
// token signing, over n iterations.
func (e *env) baseline(claims map[string]any, n int) (verify, sign time.Duration, err error) {
	allow, err := evidence.NewAllowlist(e.tpms[0].AKPublic())
	if err != nil {
		return 0, 0, err
	}
	v, err := evidence.NewVerifier(evidence.Options{AKTrust: allow})
	if err != nil {
		return 0, 0, err
	}
	a := newAttester(0, nil)
	nonce := make([]byte, 32)
	_, _ = rand.Read(nonce)
	req, err := e.tpms[0].Evidence(nonce, a.cnf)
	if err != nil {
		return 0, 0, err
	}
	ctx := context.Background()
	// CPU time of this thread only: other processes on the machine do not inflate it.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	start := threadCPU()
	for i := 0; i < n; i++ {
		if _, err := v.Verify(ctx, req.Nonce, req.CNF, req.Attestation); err != nil {
			return 0, 0, err
		}
	}
	verify = (threadCPU() - start) / time.Duration(n)
	start = threadCPU()
	for i := 0; i < n; i++ {
		if _, _, err := e.keyring.Sign(claims); err != nil {
			return 0, 0, err
		}
	}
	sign = (threadCPU() - start) / time.Duration(n)
	return verify, sign, nil
}

// threadCPU returns the calling OS thread's user+system CPU time (getrusage RUSAGE_THREAD).
func threadCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(1 /* RUSAGE_THREAD */, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func claimsOf(tok string) map[string]any {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return nil
	}
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	return m
}

type cpuSnap struct {
	issuers time.Duration
	each    []time.Duration // per replica, in e.issuers order (running ones)
	redis   time.Duration
}

func (e *env) cpu() cpuSnap {
	var s cpuSnap
	for _, pid := range e.issuerPids() {
		d, _ := cpuOf(pid)
		s.issuers += d
		s.each = append(s.each, d)
	}
	if pid := e.redis.Pid(); pid != 0 {
		s.redis, _ = cpuOf(pid)
	}
	return s
}

func (e *env) memory(r *Result) {
	var rss []string
	for _, pid := range e.issuerPids() {
		rss = append(rss, mib(rssOf(pid)))
	}
	r.add("issuer RSS", "%s", strings.Join(rss, ", "))
	rc := redis.NewClient(&redis.Options{Addr: e.redis.Addr()})
	defer rc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	n, _ := rc.DBSize(ctx).Result()
	info, _ := rc.Info(ctx, "memory").Result()
	used := ""
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "used_memory_human:"); ok {
			used = v
		}
	}
	r.add("Redis", "%d keys, %s used", n, used)
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	r.add("harness heap", "%s in use", mib(int64(m.HeapInuse)))
}

// Steady pre-generates cfg.Count pieces of evidence (challenges fetched and quotes signed before
// the clock starts, so neither the TPM nor the challenge is measured), then submits them all
// with one goroutine per attester against the issuers while relying parties validate every
// token five times. It then replays 2,000 of the spent pieces of evidence: every replay must be
// refused.
func Steady(ctx context.Context, cfg Config) (*Result, error) {
	e, err := newEnv(cfg, []string{"--challenge-rate", "0"}, nil)
	if err != nil {
		return nil, err
	}
	defer e.close()
	r := &Result{Name: "steady", Setup: fmt.Sprintf("%d attesters (software TPMs, %d-event logs, %d B), %d issuers, private redis-server, %d relying-party goroutines, %d attestations",
		cfg.Attesters, cfg.Events, len(e.tpms[0].EventLog()), cfg.Issuers, cfg.Verifiers, cfg.Count)}
	atts := e.attesters()
	per := max(1, cfg.Count/cfg.Attesters)
	work := make([][]*prepared, len(atts))
	var prepErr atomic.Int64
	var wg sync.WaitGroup
	prepStart := time.Now()
	for i, a := range atts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			iss := e.issuers[i%len(e.issuers)].url()
			for j := 0; j < per; j++ {
				p, _ := e.prepare(ctx, a, iss)
				if p == nil {
					prepErr.Add(1)
					continue
				}
				work[i] = append(work[i], p)
			}
		}()
	}
	wg.Wait()
	total := 0
	for _, w := range work {
		total += len(w)
	}
	r.add("pre-generation", "%d challenges answered and quoted in %s (%d failed), not measured", total, time.Since(prepStart).Round(time.Millisecond), prepErr.Load())

	rp, err := e.startRelyingParties(cfg.Verifiers, 5)
	if err != nil {
		return nil, err
	}
	st := newStats()
	var firstToken atomic.Value
	prof, err := e.startProfiles(ctx)
	if err != nil {
		return nil, err
	}
	okBy := make([]atomic.Int64, len(e.issuers))
	// The harness's heap holds every pre-generated piece of evidence (hundreds of MiB at the
	// default count): collect once now and let it grow 5x before the next collection, so that
	// marking it does not take CPU from the issuers during the measured phase. The setting
	// is restored, and the heap collected, before the baseline runs in this process: grown
	// into fresh pages, the baseline's allocations would fault them in and look slower.
	runtime.GC()
	gcPercent := debug.SetGCPercent(400)
	c0 := e.cpu()
	self0, _ := cpuOf(os.Getpid())
	start := time.Now()
	for i, a := range atts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			iss := e.issuers[i%len(e.issuers)].url()
			for _, p := range work[i] {
				t0 := time.Now()
				o := submit(ctx, a, iss, p)
				st.add(time.Since(t0), o)
				if o.status == http.StatusOK {
					okBy[i%len(e.issuers)].Add(1)
				}
				if o.token != "" {
					firstToken.CompareAndSwap(nil, o.token)
					rp.offer(o.token)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	c1 := e.cpu()
	self1, _ := cpuOf(os.Getpid())
	debug.SetGCPercent(gcPercent)
	prof.stopHarness()
	rp.stop()
	ok := st.ok
	r.add("throughput", "**%.0f attestations/s** (%d issued in %s; errors: %s)", float64(ok)/elapsed.Seconds(), ok, elapsed.Round(time.Millisecond), st.codeList())
	r.add("attest latency", "p50 %s, p90 %s, p99 %s, max %s", ms(st.pct(50)), ms(st.pct(90)), ms(st.pct(99)), ms(st.pct(100)))
	issuerCPU := (c1.issuers - c0.issuers) / time.Duration(max(ok, 1))
	r.add("issuer CPU per attestation", "%s (all replicas; Redis %s)", us(issuerCPU), us((c1.redis-c0.redis)/time.Duration(max(ok, 1))))
	r.add("harness CPU per attestation", "%s (the attesters' HTTP clients and the relying parties, on the same cores)", us((self1-self0)/time.Duration(max(ok, 1))))
	if len(c0.each) > 1 && len(c1.each) == len(c0.each) {
		var each []string
		for i := range c0.each {
			label := fmt.Sprintf("issuer %d", i+1)
			if e.issuers[i].compare {
				how := append([]string{e.issuers[i].bin}, cfg.CompareArgs...)
				if cfg.CompareRedisSocket {
					how = append(how, "Redis over its Unix socket")
				}
				label += " (compared: " + strings.Join(how, " ") + ")"
			}
			n := okBy[i].Load()
			each = append(each, fmt.Sprintf("%s %s (%d issued)", label, us((c1.each[i]-c0.each[i])/time.Duration(max(n, 1))), n))
		}
		r.add("issuer CPU per attestation by replica", "%s", strings.Join(each, ", "))
	}
	if tok, _ := firstToken.Load().(string); tok != "" {
		runtime.GC()
		v, s, err := e.baseline(claimsOf(tok), 500)
		if err != nil {
			return nil, err
		}
		r.add("baseline (same run, CPU time of one thread)", "evidence verification %s + token signing %s = %s", us(v), us(s), us(v+s))
		r.add("issuer CPU / baseline", "**%.2fx** (goal ≤ 1.5x)", float64(issuerCPU)/float64(v+s))
	}
	r.add("relying parties", "%d validations, %d refused; first sight p50 %s, cached p50 %s (cache hits %d)",
		rp.verified.Load(), rp.refused.Load(), us(rp.firstSeen.pct(50)), us(rp.cached.pct(50)), rp.hits.Load())
	if c := rp.cached.pct(50); c > 0 {
		r.add("per request: passport vs background check", "a passport costs the relying party a cached validation, p50 %s; a background check (fresh quote and appraisal per request) costs the issuer %s of CPU plus the attester's quote and a round trip (p50 %s): **%.0fx** the CPU of the cached validation",
			us(c), us(issuerCPU), ms(st.pct(50)), float64(issuerCPU)/float64(c))
	}
	e.memory(r)
	prof.wait(r)

	// Replays: the spent evidence of the first 2,000 attestations, submitted again.
	e.replay(ctx, atts, work, 2000).report(r)
	return r, nil
}

// replayTally counts the answers to replayed spent evidence.
type replayTally struct {
	sent int
	// double: answered with a token (the nonce was spent twice and a second token issued).
	double int
	// revived: got past the issuer's single-use check (a token, or a refusal by a later step,
	// 403: the evidence, TPM clock or policy).
	revived int
	// refused: definitively refused by the single-use check (409 nonce_reused or nonce_expired).
	refused int
	// undecided: no definite answer (503, another status, a connection error): the replay
	// never reached the nonce check, so it proves nothing either way.
	undecided int
	codes     map[string]int // the undecided ones' codes
}

// add counts one answer.
func (t *replayTally) add(o outcome) {
	t.sent++
	switch {
	case o.status == http.StatusOK:
		t.double++
		t.revived++
	case o.status == http.StatusConflict && (o.code == "nonce_reused" || o.code == "nonce_expired"):
		t.refused++
	case o.status == http.StatusForbidden:
		t.revived++ // got past the single-use check; refused later (e.g. TPM clock)
	default:
		t.undecided++
		if t.codes == nil {
			t.codes = map[string]int{}
		}
		t.codes[o.code]++
	}
}

// ok reports whether the replay goal was met: every replay definitively refused by the nonce
// check, none revived, none undecided.
func (t replayTally) ok() bool { return t.revived == 0 && t.undecided == 0 && t.refused == t.sent }

// report adds the replay line to r, and a failed goal unless t.ok().
func (t replayTally) report(r *Result) {
	codes := "none"
	if len(t.codes) > 0 {
		codes = (&stats{codes: t.codes}).codeList()
	}
	r.add("replayed spent evidence", "%d replays: %d tokens issued twice, %d nonces accepted twice, %d refused as spent (409), %d without a definite answer (%s) (goal: 0, 0, all, 0)",
		t.sent, t.double, t.revived, t.refused, t.undecided, codes)
	if !t.ok() {
		r.fail("replayed spent evidence: %d of %d replays not definitively refused as spent (%d tokens issued twice, %d nonces accepted twice, %d without a definite answer)",
			t.sent-t.refused, t.sent, t.double, t.revived, t.undecided)
	}
}

// replay resubmits up to n spent pieces of evidence, each to the issuer after the one that
// accepted it, and tallies the answers.
func (e *env) replay(ctx context.Context, atts []*attester, work [][]*prepared, n int) replayTally {
	return replayTo(ctx, atts, work, n, func(a int) string { return e.issuers[(a+1)%len(e.issuers)].url() })
}

// replayTo resubmits up to n pieces of evidence, round-robin over the attesters (work[a] is
// attester a's), attester a's to issuer(a).
func replayTo(ctx context.Context, atts []*attester, work [][]*prepared, n int, issuer func(a int) string) replayTally {
	var t replayTally
	for i := 0; t.sent < n; i++ {
		progress := false
		for a := range atts {
			if i < len(work[a]) && t.sent < n {
				progress = true
				t.add(submit(ctx, atts[a], issuer(a), work[a][i]))
			}
		}
		if !progress {
			break
		}
	}
	return t
}
