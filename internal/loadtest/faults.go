package loadtest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/passport-attest/passport/api"
)

// slot is the resolution of the timelines: 100 ms.
const slot = 100 * time.Millisecond

// live is a run of attesters doing the whole exchange (challenge, quote, attest) until the
// deadline, failing over to the next issuer on a connection error (as a load balancer would),
// with a timeline of successes for recovery times.
type live struct {
	e        *env
	st       *stats
	start    time.Time
	ok       []atomic.Int64 // successes per slot
	failover atomic.Int64
	mu       sync.Mutex
	spent    [][]*prepared // successful evidence per attester, for replays
	rp       *relyingParties
	tokens   []string // the first maxSampled tokens issued, for revocation checks (revocations.go)
}

// runLive runs attesters for d; pace > 0 makes each attester wait that long between
// attestations. fault, when set, runs alongside with the live run's start time.
func (e *env) runLive(ctx context.Context, d, pace time.Duration, fault func(l *live)) (*live, error) {
	rp, err := e.startRelyingParties(e.cfg.Verifiers, 3)
	if err != nil {
		return nil, err
	}
	atts := e.attesters()
	l := &live{e: e, st: newStats(), start: time.Now(), ok: make([]atomic.Int64, int(d/slot)+2), spent: make([][]*prepared, len(atts)), rp: rp}
	deadline := l.start.Add(d)
	var wg sync.WaitGroup
	if fault != nil {
		wg.Add(1)
		go func() { defer wg.Done(); fault(l) }()
	}
	for i, a := range atts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				l.once(ctx, i, a)
				if pace > 0 {
					time.Sleep(pace)
				}
			}
		}()
	}
	wg.Wait()
	rp.stop()
	return l, nil
}

// once runs one exchange for attester a starting at its home issuer.
func (l *live) once(ctx context.Context, i int, a *attester) {
	n := len(l.e.issuers)
	home := i % n
	t0 := time.Now()
	var p *prepared
	var o outcome
	for k := 0; k < n; k++ {
		p, o = l.e.prepare(ctx, a, l.e.issuers[(home+k)%n].url())
		if o.code != "connection_error" {
			break
		}
		l.failover.Add(1)
	}
	if p == nil {
		l.st.add(time.Since(t0), o)
		time.Sleep(10 * time.Millisecond) // an attester backs off after a refusal
		return
	}
	for k := 0; k < n; k++ {
		o = submit(ctx, a, l.e.issuers[(home+k)%n].url(), p)
		if o.code != "connection_error" {
			break
		}
		l.failover.Add(1)
	}
	l.st.add(time.Since(t0), o)
	if o.status == http.StatusOK {
		if s := int(time.Since(l.start) / slot); s < len(l.ok) {
			l.ok[s].Add(1)
		}
		l.rp.offer(o.token)
		l.mu.Lock()
		l.spent[i] = append(l.spent[i], p)
		if len(l.tokens) < maxSampled {
			l.tokens = append(l.tokens, o.token)
		}
		l.mu.Unlock()
		return
	}
	time.Sleep(10 * time.Millisecond)
}

// series returns a snapshot of the successes per slot: element s counts the attestations
// that succeeded in [s·slot, (s+1)·slot) after the run's start.
func (l *live) series() []int64 {
	out := make([]int64, len(l.ok))
	for i := range l.ok {
		out[i] = l.ok[i].Load()
	}
	return out
}

// recoveredAt returns when attestations are back to half their rate, as the end of the first
// slot reaching half the baseline, an offset from the run's start (so with one slot's
// resolution, an upper bound). ok[s] is the successes of slot s, [s·slot, (s+1)·slot) after the
// start; fault is when the fault took effect and from when recovery can begin (a restart), both
// offsets from the start. The baseline is the mean of the slots before the one holding fault,
// without slot 0 (warm-up). Only slots that begin at or after from are searched: a slot partly
// before it also counts successes from before from (before a kill, say), which say nothing about
// recovery. The bool is false when there is no baseline (fault in the first two slots, or no
// success before it) or no searched slot reaches half of it.
func recoveredAt(ok []int64, fault, from time.Duration) (time.Duration, bool) {
	before := min(int(fault/slot), len(ok))
	var sum int64
	for s := 1; s < before; s++ {
		sum += ok[s]
	}
	if before < 2 || sum == 0 {
		return 0, false
	}
	mean := float64(sum) / float64(before-1)
	for s := max(int((from+slot-1)/slot), 0); s < len(ok); s++ {
		if float64(ok[s]) >= mean/2 {
			return time.Duration(s+1) * slot, true
		}
	}
	return 0, false
}

// restartRecovery returns how long after a restart (up) and after the kill before it (down)
// attestations were back to half their rate, from the successes per slot in series (offsets
// from the run's start, as recoveredAt). Recovery is searched from the restart on: until then
// the service was down, the slot holding the kill counts attestations that succeeded before it,
// and requests that passed their Redis step before the kill can still succeed after it. So
// afterDown is never shorter than the downtime up - down. The bool is false as for recoveredAt.
func restartRecovery(series []int64, down, up time.Duration) (afterUp, afterDown time.Duration, ok bool) {
	at, ok := recoveredAt(series, down, up)
	if !ok {
		return 0, 0, false
	}
	return at - up, at - down, true
}

func (l *live) report(r *Result, d time.Duration) {
	r.add("attestations", "%d issued (%.0f/s over %s); failed: %s", l.st.ok, float64(l.st.ok)/d.Seconds(), d, l.st.codeList())
	r.add("whole-exchange latency", "p50 %s, p99 %s, max %s", ms(l.st.pct(50)), ms(l.st.pct(99)), ms(l.st.pct(100)))
	r.add("relying parties", "%d validations, %d refused", l.rp.verified.Load(), l.rp.refused.Load())
}

func (l *live) replayAll(ctx context.Context, r *Result) {
	n := 0
	for _, s := range l.spent {
		n += len(s)
	}
	l.e.replay(ctx, l.e.attesters(), l.spent, min(n, 20000)).report(r)
}

// RedisRestart kills the issuers' Redis (SIGKILL) a third of the way through a live run and
// restarts it one second later, with append-only persistence (fsync every second, the Redis
// default for AOF). Just before the kill it revokes a sample of the tokens issued so far
// through the admin API; after the run it checks the revoked and a non-revoked sample through
// the issuers' status lists (lost and wrongly revoked tokens), then replays every spent piece
// of evidence.
func RedisRestart(ctx context.Context, cfg Config, fsync string) (*Result, error) {
	e, err := newEnv(cfg, []string{"--challenge-rate", "0", "--redis-timeout", "500ms"},
		[]string{"--appendonly", "yes", "--appendfsync", fsync})
	if err != nil {
		return nil, err
	}
	defer e.close()
	r := &Result{Name: "redis-restart (appendfsync " + fsync + ")", Setup: fmt.Sprintf("%d attesters doing challenge + quote + attest, %d issuers, Redis with appendonly yes, appendfsync %s, killed with SIGKILL at %s and restarted 1 s later",
		cfg.Attesters, cfg.Issuers, fsync, cfg.Duration/3)}
	var killed, restarted time.Time
	var sample *revocationSample
	l, err := e.runLive(ctx, cfg.Duration, 0, func(l *live) {
		time.Sleep(cfg.Duration / 3)
		sample = e.revokeSample(ctx, l.sampled())
		killed = time.Now() // Stop sends SIGKILL first thing
		e.redis.Stop()
		time.Sleep(time.Second)
		if err := e.redis.Start(); err != nil {
			r.add("restart failed", "%v", err)
		}
		restarted = time.Now()
	})
	if err != nil {
		return nil, err
	}
	l.report(r, cfg.Duration)
	down, up := killed.Sub(l.start), restarted.Sub(l.start)
	if afterUp, afterDown, ok := restartRecovery(l.series(), down, up); ok {
		r.add("recovery", "Redis down %s (from SIGKILL to answering PING again); attestations back to half their rate %s after the restart (%s after the kill)",
			(up - down).Round(time.Millisecond), afterUp.Round(time.Millisecond), afterDown.Round(time.Millisecond))
	} else {
		r.add("recovery", "Redis down %s (from SIGKILL to answering PING again); attestations not back to half their rate by the end of the run",
			(up - down).Round(time.Millisecond))
	}
	r.add("lost", "%d attestations refused with 503 while Redis was down (fail closed; the attesters retried), %d outstanding challenges lost (refused as nonce_reused after the restart); issued tokens live with the attesters and lose nothing",
		l.st.codes["temporarily_unavailable"], l.st.codes["nonce_reused"])
	if err := e.checkSample(ctx, sample, killed, r); err != nil {
		return nil, err
	}
	l.replayAll(ctx, r)
	e.memory(r)
	return r, nil
}

// IssuerRestart stops one issuer with SIGTERM (graceful shutdown) a third of the way through
// and starts it again; attesters fail over to the other replica on connection errors.
func IssuerRestart(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Issuers < 2 {
		cfg.Issuers = 2
	}
	e, err := newEnv(cfg, []string{"--challenge-rate", "0"}, nil)
	if err != nil {
		return nil, err
	}
	defer e.close()
	r := &Result{Name: "issuer-restart", Setup: fmt.Sprintf("%d attesters doing the whole exchange against 2 issuers sharing Redis; issuer 1 gets SIGTERM at %s and is started again",
		cfg.Attesters, cfg.Duration/3)}
	var stopped, ready time.Time
	var stopTook time.Duration
	l, err := e.runLive(ctx, cfg.Duration, 0, func(l *live) {
		time.Sleep(cfg.Duration / 3)
		stopped = time.Now()
		e.issuers[0].stop()
		stopTook = time.Since(stopped)
		if err := e.issuers[0].start(); err != nil {
			r.add("restart failed", "%v", err)
		}
		ready = time.Now()
	})
	if err != nil {
		return nil, err
	}
	l.report(r, cfg.Duration)
	r.add("restart", "graceful stop took %s (requests in flight finished), ready again %s after SIGTERM; %d requests failed over to the other replica",
		stopTook.Round(time.Millisecond), ready.Sub(stopped).Round(time.Millisecond), l.failover.Load())
	l.replayAll(ctx, r)
	e.memory(r)
	return r, nil
}

// NonceFlood has one client hammer POST /v1/challenge from one address with 32 connections
// while attesters (each from its own address, one attestation per 200 ms) keep attesting; the
// issuers run with the default per-client limit (20/s, burst 40).
func NonceFlood(ctx context.Context, cfg Config) (*Result, error) {
	e, err := newEnv(cfg, nil, nil)
	if err != nil {
		return nil, err
	}
	defer e.close()
	r := &Result{Name: "nonce-flood", Setup: fmt.Sprintf("one client (127.0.0.200, 32 connections) floods /v1/challenge for %s; %d attesters attest every 200 ms; issuers limit 20 challenges/s per client (burst 40)",
		cfg.Duration, cfg.Attesters)}
	var sent, granted, limited atomic.Int64
	l, err := e.runLive(ctx, cfg.Duration, 200*time.Millisecond, func(l *live) {
		hc := client("127.0.0.200", 32)
		deadline := time.Now().Add(cfg.Duration)
		var wg sync.WaitGroup
		for g := 0; g < 32; g++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; time.Now().Before(deadline); i++ {
					o := post(ctx, hc, e.issuers[(g+i)%len(e.issuers)].url()+api.PathChallenge, []byte("{}"), nil)
					sent.Add(1)
					switch o.status {
					case http.StatusOK:
						granted.Add(1)
					case http.StatusTooManyRequests:
						limited.Add(1)
					}
				}
			}()
		}
		wg.Wait()
	})
	if err != nil {
		return nil, err
	}
	r.add("flood", "%d challenge requests (%.0f/s): %d answered with a nonce, %d refused with 429",
		sent.Load(), float64(sent.Load())/cfg.Duration.Seconds(), granted.Load(), limited.Load())
	r.add("nonces the flood stored", "%d (bound: per issuer, burst + rate × duration = %d)", granted.Load(),
		len(e.issuers)*(40+int(20*cfg.Duration.Seconds())))
	l.report(r, cfg.Duration)
	e.memory(r)
	return r, nil
}
