package policy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/refvalues"
)

// EngineOptions configure an Engine.
type EngineOptions struct {
	// Store keeps reference values and revocations beside the policy file's (default: a new
	// refvalues.Memory, whose revocations last until the process ends).
	Store refvalues.Store
	// Log receives one line per reload and per refused reload (default slog.Default()).
	Log *slog.Logger
	// Now stamps revocations (default time.Now).
	Now func() time.Time
}

// Engine is the policy in force for a running issuer: a Policy loaded from a file and bound to
// the reference values of a store, swapped atomically (sync/atomic.Pointer) when the file or
// the store changes. A policy that does not load (bad YAML, a CEL syntax or type error, an
// unknown claim or value) is refused and the running one stays in force. Appraise is pure and
// lock-free. An Engine is safe for concurrent use.
type Engine struct {
	path string
	o    EngineOptions
	cur  atomic.Pointer[Policy]

	mu       sync.Mutex // serializes loads
	fileSum  [sha256.Size]byte
	storeVer uint64
	prog     *Program
	lastErr  string
}

var _ Appraiser = (*Engine)(nil)

// NewEngine loads the policy file at path (ReadFile: the current format, or a starter policy
// migrated) and the store's reference values. It fails when either does not load: a service
// does not start without a policy.
func NewEngine(ctx context.Context, path string, o EngineOptions) (*Engine, error) {
	if o.Store == nil {
		o.Store = refvalues.NewMemory()
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	e := &Engine{path: path, o: o}
	if _, err := e.Reload(ctx); err != nil {
		return nil, err
	}
	return e, nil
}

// Appraise evaluates s under the policy in force.
func (e *Engine) Appraise(s *evidence.State) *Appraisal { return e.cur.Load().Appraise(s) }

// Current returns the policy in force.
func (e *Engine) Current() *Policy { return e.cur.Load() }

// PolicyID returns the ID (ear_appraisal_policy_id) of the policy in force.
func (e *Engine) PolicyID() string { return e.cur.Load().ID() }

// Store returns the reference-value store.
func (e *Engine) Store() refvalues.Store { return e.o.Store }

// Reload re-reads the policy file and the store's version; when either changed it compiles
// and binds a new Policy and swaps it in, reporting changed = true. A file that does not load
// is refused with an error (which rule and why) and the rules in force stay; a change of the
// store's reference values or revocations is still bound to them, so that a broken edit of the
// policy file never holds back a revocation. When the store cannot be read nothing changes.
func (e *Engine) Reload(ctx context.Context) (changed bool, err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	b, err := os.ReadFile(e.path)
	if err != nil {
		return false, fmt.Errorf("policy: %w", err)
	}
	sum := sha256.Sum256(b)
	ver, err := e.o.Store.Version(ctx)
	if err != nil {
		return false, fmt.Errorf("policy: reference values: %w", err)
	}
	cur := e.cur.Load()
	prog, fileErr := e.prog, error(nil)
	if cur == nil || sum != e.fileSum {
		f, err := parseAny(b)
		if err == nil {
			prog, err = Compile(f)
		}
		if err != nil {
			fileErr = fmt.Errorf("%s: %w", e.path, err)
			if cur == nil {
				return false, fileErr
			}
			prog = e.prog
		}
	}
	if prog == e.prog && ver == e.storeVer {
		return false, fileErr
	}
	snap, err := e.o.Store.Snapshot(ctx)
	if err != nil {
		return false, errors.Join(fileErr, fmt.Errorf("policy: reference values: %w", err))
	}
	p, err := prog.Bind(snap)
	if err != nil {
		return false, errors.Join(fileErr, fmt.Errorf("%s: %w", e.path, err))
	}
	if fileErr == nil {
		e.fileSum = sum
	}
	e.prog, e.storeVer = prog, ver
	e.cur.Store(p)
	if cur == nil || cur.ID() != p.ID() {
		e.o.Log.Info("policy in force", "path", e.path, "policy_id", p.ID(), "rules", len(prog.rules),
			"policy_digest", prog.digest, "reference_values_digest", p.refsHash)
	}
	return true, fileErr
}

// Watch reloads every interval (polling the file's content hash and the store's version, so it
// needs no file-system notifications and follows replicas sharing a Redis store) until ctx
// ends. A refused reload is logged once per distinct error; the policy in force stays.
func (e *Engine) Watch(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			e.reloadAndLog(ctx, "poll")
		}
	}
}

// ReloadAndLog reloads (as on SIGHUP) and logs the outcome; it returns the error too.
func (e *Engine) ReloadAndLog(ctx context.Context) error { return e.reloadAndLog(ctx, "signal") }

func (e *Engine) reloadAndLog(ctx context.Context, why string) error {
	_, err := e.Reload(ctx)
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case err != nil && err.Error() != e.lastErr:
		e.lastErr = err.Error()
		e.o.Log.Error("policy reload refused; the policy in force stays", "trigger", why, "policy_id", e.cur.Load().ID(), "error", err)
	case err == nil:
		e.lastErr = ""
	}
	return err
}

// RevokeReferenceValue revokes digest in the store (reason in operator words, e.g. a CVE) and
// binds the new revocation at once, so the next appraisal refuses evidence containing it. It
// returns the stored revocation and whether it is new. Errors: refvalues.ErrBadDigest,
// refvalues.ErrBadRevocation, or a store failure wrapping refvalues.ErrUnavailable (the
// revocation may then not be in force).
func (e *Engine) RevokeReferenceValue(ctx context.Context, digest, reason string) (refvalues.Revocation, bool, error) {
	r, created, err := e.o.Store.Revoke(ctx, refvalues.Revocation{Digest: digest, Reason: reason, RevokedAt: e.o.Now()})
	if err != nil {
		return refvalues.Revocation{}, false, err
	}
	if _, err := e.Reload(ctx); err != nil && !e.revokedInForce(r.Digest) {
		return r, created, fmt.Errorf("policy: revocation stored but not yet in force: %w", err)
	}
	return r, created, nil
}

// revokedInForce reports whether the policy in force refuses digest.
func (e *Engine) revokedInForce(digest string) bool {
	raw, err := hex.DecodeString(digest)
	if err != nil {
		return false
	}
	_, ok := e.cur.Load().revoked.get(digestKey(raw), raw)
	return ok
}

// ReinstateReferenceValue removes the store's revocation of digest and binds the change. It
// reports whether there was one; a revocation listed in the policy file itself stays.
func (e *Engine) ReinstateReferenceValue(ctx context.Context, digest string) (bool, error) {
	ok, err := e.o.Store.Reinstate(ctx, digest)
	if err != nil {
		return false, err
	}
	if _, err := e.Reload(ctx); err != nil && e.revokedInForce(digest) {
		return ok, fmt.Errorf("policy: reinstatement stored but not yet in force: %w", err)
	}
	return ok, nil
}

// ListRevokedReferenceValues lists every revoked reference value: the store's and the policy
// file's, sorted by digest. Tokens whose submods.tpm.measurements.reference_values hold one of
// these digests were issued for a configuration that is no longer accepted.
func (e *Engine) ListRevokedReferenceValues(ctx context.Context) ([]refvalues.Revocation, error) {
	rs, err := e.o.Store.ListRevoked(ctx)
	if err != nil {
		return nil, err
	}
	all := refvalues.Snapshot{Revoked: map[string]refvalues.Revocation{}}
	for _, r := range rs {
		all.Revoked[r.Digest] = r
	}
	for _, r := range e.cur.Load().prog.file.Revoked {
		if _, ok := all.Revoked[r.Digest]; !ok {
			all.Revoked[r.Digest] = r
		}
	}
	return all.RevokedList(), nil
}
