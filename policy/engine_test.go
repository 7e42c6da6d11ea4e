package policy_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/refvalues"
	"github.com/passport-attest/passport/token"
)

func writeFile(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// learnedFile writes the policy learned from the default real log to a temporary file.
func learnedFile(t *testing.T) (string, []byte) {
	t.Helper()
	f := learn(t, bareState(t, testenv.EventLog(t, testenv.DefaultLog)))
	y, err := f.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "policy.yaml")
	writeFile(t, path, y)
	return path, y
}

// TestEngineRefusesBadReloadKeepsPolicy: a reload with a CEL syntax error, then a type error,
// then an unknown claim, is refused with the rule's name and the running policy stays in force
// (same ID, same verdicts); a good change is then swapped in.
func TestEngineRefusesBadReloadKeepsPolicy(t *testing.T) {
	ctx := context.Background()
	path, good := learnedFile(t)
	e, err := policy.NewEngine(ctx, path, policy.EngineOptions{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	st := bareState(t, testenv.EventLog(t, testenv.DefaultLog))
	id := e.Current().ID()
	if a := e.Appraise(st); a.Status != token.TierAffirming || a.PolicyID != id {
		t.Fatalf("%v %s", a.Status, a.PolicyID)
	}
	bad := map[string]struct{ from, to, want string }{
		"syntax error":  {"expr: boot.kernel in refs.kernels", "expr: boot.kernel in in refs.kernels", "Syntax error"},
		"type error":    {"expr: boot.kernel in refs.kernels", "expr: boot.kernel in refs.kernels && boot.dbx_count == \"0\"", "no matching overload"},
		"unknown claim": {"claim: hardware", "claim: hardwar", `unknown claim "hardwar"`},
	}
	for name, b := range bad {
		t.Run(name, func(t *testing.T) {
			if !strings.Contains(string(good), b.from) {
				t.Fatalf("learned policy lacks %q", b.from)
			}
			writeFile(t, path, []byte(strings.Replace(string(good), b.from, b.to, 1)))
			changed, err := e.Reload(ctx)
			if err == nil || changed {
				t.Fatalf("bad policy loaded (changed=%v, err=%v)", changed, err)
			}
			if !strings.Contains(err.Error(), b.want) || !strings.Contains(err.Error(), "rule ") {
				t.Errorf("error %q lacks the rule or %q", err, b.want)
			}
			if e.Current().ID() != id {
				t.Fatal("the policy in force changed")
			}
			if a := e.Appraise(st); a.Status != token.TierAffirming || a.PolicyID != id {
				t.Fatalf("after refused reload: %v %s", a.Status, a.PolicyID)
			}
			if err := e.ReloadAndLog(ctx); err == nil {
				t.Fatal("SIGHUP-style reload accepted the bad policy")
			}
		})
	}
	// A good change (the kernel is no longer accepted) is swapped in.
	writeFile(t, path, []byte(strings.Replace(string(good), "expr: boot.kernel in refs.kernels", "expr: boot.kernel == \"\"", 1)))
	if changed, err := e.Reload(ctx); err != nil || !changed {
		t.Fatalf("good reload: %v %v", changed, err)
	}
	if e.Current().ID() == id {
		t.Fatal("ID unchanged after a rule change")
	}
	if a := e.Appraise(st); a.Status != token.TierContraindicated || !slices.Equal(failed(a), []string{"kernel"}) {
		t.Fatalf("after good reload: %v %v", a.Status, failed(a))
	}
	if changed, err := e.Reload(ctx); err != nil || changed {
		t.Fatalf("reload without a change: %v %v", changed, err)
	}
}

// TestEngineStartRefusesBadPolicy: a service does not start with a bad policy.
func TestEngineStartRefusesBadPolicy(t *testing.T) {
	path := filepath.Join(t.TempDir(), "p.yaml")
	writeFile(t, path, []byte("version: 1\nrules:\n  - {name: x, claim: hardware, expr: 'ak.id +', on_failure: 96}\n"))
	if _, err := policy.NewEngine(context.Background(), path, policy.EngineOptions{Log: quiet()}); err == nil || !strings.Contains(err.Error(), `rule "x"`) {
		t.Fatalf("NewEngine = %v", err)
	}
	if _, err := policy.NewEngine(context.Background(), filepath.Join(t.TempDir(), "missing.yaml"), policy.EngineOptions{}); err == nil {
		t.Fatal("a missing policy file was accepted")
	}
}

// TestEngineWatch: the poller notices a file change and a store change made by another writer
// (a hand edit of the reference-values file, or a replica).
func TestEngineWatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	path, good := learnedFile(t)
	refs := refvalues.NewFile(filepath.Join(t.TempDir(), "refs.yaml"))
	e, err := policy.NewEngine(ctx, path, policy.EngineOptions{Store: refs, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); e.Watch(ctx, 10*time.Millisecond) }()
	defer wg.Wait()
	defer cancel()
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("the engine did not pick up %s", what)
	}
	id0 := e.Current().ID()
	writeFile(t, path, append([]byte("# edited\n"), []byte(strings.Replace(string(good), "name: test", "name: test2", 1))...))
	waitFor("the policy file change", func() bool { return e.Current().ID() != id0 })
	id1 := e.Current().ID()
	other := refvalues.NewFile(refs.Path()) // another writer of the same file
	if _, _, err := other.Revoke(ctx, refvalues.Revocation{Digest: strings.Repeat("ee", 32), RevokedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	waitFor("the store change", func() bool { return e.Current().ID() != id1 })
	if got := e.Current().Revoked(); len(got) != 1 {
		t.Fatalf("revoked in force: %+v", got)
	}
}

// TestEngineRevoke: revoking through the engine refuses the next appraisal at once, lists the
// value, and reinstating accepts again; bad digests change nothing.
func TestEngineRevoke(t *testing.T) {
	ctx := context.Background()
	path, _ := learnedFile(t)
	now := time.Date(2026, 11, 29, 8, 0, 0, 0, time.UTC)
	e, err := policy.NewEngine(ctx, path, policy.EngineOptions{Log: quiet(), Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	st := bareState(t, testenv.EventLog(t, testenv.DefaultLog))
	kernel := e.Current().Program().File().ReferenceValues["kernels"][0]
	r, created, err := e.RevokeReferenceValue(ctx, strings.ToUpper(kernel), "CVE-2026-0002")
	if err != nil || !created || r.Digest != kernel || !r.RevokedAt.Equal(now) {
		t.Fatalf("revoke: %+v %v %v", r, created, err)
	}
	a := e.Appraise(st)
	if a.Status != token.TierContraindicated || failure(a, policy.RevokedRule) == nil {
		t.Fatalf("after revoke: %v %v", a.Status, failed(a))
	}
	l, err := e.ListRevokedReferenceValues(ctx)
	if err != nil || len(l) != 1 || l[0].Reason != "CVE-2026-0002" {
		t.Fatalf("list: %+v %v", l, err)
	}
	if _, _, err := e.RevokeReferenceValue(ctx, "xyz", ""); !errors.Is(err, refvalues.ErrBadDigest) {
		t.Fatalf("bad digest: %v", err)
	}
	if ok, err := e.ReinstateReferenceValue(ctx, kernel); err != nil || !ok {
		t.Fatalf("reinstate: %v %v", ok, err)
	}
	if a := e.Appraise(st); a.Status != token.TierAffirming {
		t.Fatalf("after reinstate: %v %v", a.Status, failed(a))
	}
}

// TestEngineConcurrentReloads: appraisals running while the policy is swapped always see one
// whole policy (the ID they report is one of the two).
func TestEngineConcurrentReloads(t *testing.T) {
	ctx := context.Background()
	path, good := learnedFile(t)
	e, err := policy.NewEngine(ctx, path, policy.EngineOptions{Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	st := bareState(t, testenv.EventLog(t, testenv.DefaultLog))
	alt := []byte(strings.Replace(string(good), "expr: boot.kernel in refs.kernels", "expr: boot.kernel == \"\"", 1))
	ids := map[string]token.Tier{e.Current().ID(): token.TierAffirming}
	writeFile(t, path, alt)
	if _, err := e.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	ids[e.Current().ID()] = token.TierContraindicated
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan string, 100)
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				a := e.Appraise(st)
				if want, ok := ids[a.PolicyID]; !ok || want != a.Status {
					errs <- a.PolicyID + " " + a.Status.String()
					return
				}
			}
		}()
	}
	for i := range 20 {
		if i%2 == 0 {
			writeFile(t, path, good)
		} else {
			writeFile(t, path, alt)
		}
		if _, err := e.Reload(ctx); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
	close(errs)
	for s := range errs {
		t.Errorf("appraisal saw a mixed policy: %s", s)
	}
}

// TestEngineRevocationDespiteBrokenFile: while the policy file holds a bad edit, a revocation
// made in the store still takes effect (the rules in force stay, bound to the new values).
func TestEngineRevocationDespiteBrokenFile(t *testing.T) {
	ctx := context.Background()
	path, good := learnedFile(t)
	store := refvalues.NewMemory()
	e, err := policy.NewEngine(ctx, path, policy.EngineOptions{Store: store, Log: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	st := bareState(t, testenv.EventLog(t, testenv.DefaultLog))
	writeFile(t, path, []byte(strings.Replace(string(good), "claim: hardware", "claim: hardwar", 1)))
	if _, err := e.Reload(ctx); err == nil {
		t.Fatal("bad file accepted")
	}
	kernel := e.Current().Program().File().ReferenceValues["kernels"][0]
	if _, _, err := store.Revoke(ctx, refvalues.Revocation{Digest: kernel, RevokedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	changed, err := e.Reload(ctx)
	if !changed || err == nil || !strings.Contains(err.Error(), "hardwar") {
		t.Fatalf("reload with a bad file and a new revocation: changed=%v err=%v", changed, err)
	}
	// Through the engine (the admin API's path) a revocation succeeds too.
	other := strings.Repeat("7e", 32)
	if _, _, err := e.RevokeReferenceValue(ctx, other, "x"); err != nil {
		t.Fatalf("RevokeReferenceValue with a broken file: %v", err)
	}
	if a := e.Appraise(st); a.Status != token.TierContraindicated || failure(a, policy.RevokedRule) == nil {
		t.Fatalf("revocation not in force: %v %v", a.Status, failed(a))
	}
	if got := e.Current().Program().Rules(); len(got) != 20 {
		t.Fatalf("rules in force changed: %v", got)
	}
	// Restoring the file clears the error; its rules were in force all along.
	id := e.Current().ID()
	writeFile(t, path, good)
	if _, err := e.Reload(ctx); err != nil || e.Current().ID() != id {
		t.Fatalf("restored file: %v (ID %s, was %s)", err, e.Current().ID(), id)
	}
}
