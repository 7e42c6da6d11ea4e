package jwks

import (
	"context"
	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/store"
)

// Key states in a rotating key set. A key is published as "next" for at least one rotation
// period before it signs, signs while "active" (exactly one key at a time), and stays
// published as "retired" until the last JWT it signed has expired (the approach of SPIRE's CA
// rotator and dex's key rotation).
const (
	StateNext    = "next"
	StateActive  = "active"
	StateRetired = "retired"
)

// StorageName is the document name of the key set in a Storage.
const StorageName = "jwks"

// Storage keeps the shared key-set document with optimistic concurrency: store.BlobStore
// (memory, store/redis or store/dir). PutBlob fails with an error wrapping store.ErrConflict
// when another replica wrote first.
type Storage interface {
	GetBlob(ctx context.Context, name string) ([]byte, uint64, error)
	PutBlob(ctx context.Context, name string, data []byte, version uint64) (uint64, error)
}

// RotatorConfig configures NewRotator. Keyring and Retention are required.
type RotatorConfig struct {
	// Keyring receives the active key and the published keys after every change.
	Keyring *Keyring
	// Storage shares the key set between replicas; nil keeps it in this process only.
	Storage Storage
	// KEK seals private keys in Storage. Required with a Storage; a random one is generated
	// when both are nil.
	KEK *KEK
	// Algorithm of generated keys (default ES256).
	Algorithm jose.SignatureAlgorithm
	// Period is the scheduled rotation interval: every Period the next key starts signing
	// and a new next key is published. Zero rotates only on Rotate.
	Period time.Duration
	// Retention is how long a retired key stays published after it stopped signing: at
	// least the longest lifetime of a JWT it signed, plus the relying parties' leeway, plus
	// the interval at which replicas Sync (a replica may sign with the old key until then).
	Retention time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Log receives one line per rotation and per failed Run step (default slog.Default()).
	Log *slog.Logger
}

// KeyInfo describes one key of the set, for `passport keys list`. Times are zero when they
// do not apply.
type KeyInfo struct {
	KID       string    `json:"kid"`
	Algorithm string    `json:"alg"`
	State     string    `json:"state"`
	Created   time.Time `json:"created"`
	Activated time.Time `json:"activated,omitzero"`
	Retired   time.Time `json:"retired,omitzero"`
	// PublishedUntil is when a retired key leaves the JWKS.
	PublishedUntil time.Time `json:"published_until,omitzero"`
}

// keySetDoc is the persisted key set (JSON). Private keys are PKCS#8 sealed under the KEK.
type keySetDoc struct {
	Format       int       `json:"format"`
	NextRotation time.Time `json:"next_rotation,omitzero"`
	Keys         []keyDoc  `json:"keys"`
}

type keyDoc struct {
	KeyInfo
	Sealed []byte `json:"sealed"`
}

const docFormat = 1

// Rotator keeps a Keyring in step with a rotating key set shared through a Storage. Replicas
// each run a Rotator on the same Storage; whichever notices first that a rotation is due
// writes it, the others' writes conflict and they adopt it, so a rotation creates exactly one
// new key however many replicas race. It is safe for concurrent use.
type Rotator struct {
	cfg RotatorConfig

	mu      sync.Mutex      // serialises Sync and Rotate in this process
	keys    map[string]*Key // opened private keys by kid
	info    []KeyInfo       // the key set last applied to the Keyring
	rotated []any           // log attributes of a rotation not yet written
}

// maxAttempts bounds the load-modify-store loop under write conflicts.
const maxAttempts = 8

// NewRotator checks cfg, loads the key set from the Storage (creating it, with an active and a
// next key, when there is none) and applies it to the Keyring.
func NewRotator(ctx context.Context, cfg RotatorConfig) (*Rotator, error) {
	switch {
	case cfg.Keyring == nil:
		return nil, errors.New("jwks: rotator needs a keyring")
	case cfg.Retention <= 0:
		return nil, errors.New("jwks: rotator needs a positive retention")
	case cfg.Period < 0:
		return nil, errors.New("jwks: negative rotation period")
	case cfg.Storage != nil && cfg.KEK == nil:
		return nil, errors.New("jwks: a shared key storage needs a key-encryption key")
	}
	if cfg.Storage == nil {
		cfg.Storage = &localStorage{}
		if cfg.KEK == nil {
			k, err := GenerateKEK()
			if err != nil {
				return nil, err
			}
			cfg.KEK = k
		}
	}
	if cfg.Algorithm == "" {
		cfg.Algorithm = jose.ES256
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	r := &Rotator{cfg: cfg, keys: map[string]*Key{}}
	if err := r.Sync(ctx); err != nil {
		return nil, err
	}
	return r, nil
}

// Sync loads the shared key set, performs the scheduled rotation if it is due, drops retired
// keys whose retention has passed, writes the result if it changed (adopting another
// replica's write on a conflict) and applies it to the Keyring. Errors wrap
// store.ErrUnavailable (storage down: the Keyring keeps its keys) or ErrUnseal.
func (r *Rotator) Sync(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.update(ctx, func(doc *keySetDoc, now time.Time) (bool, error) {
		changed := false
		if r.cfg.Period > 0 && !doc.NextRotation.IsZero() && !now.Before(doc.NextRotation) {
			if err := r.rotateDoc(doc, now); err != nil {
				return false, err
			}
			changed = true
		}
		if r.cfg.Period > 0 && doc.NextRotation.IsZero() {
			doc.NextRotation = now.Add(r.cfg.Period)
			changed = true
		}
		return r.prune(doc, now) || changed, nil
	})
}

// Rotate rotates now, whatever the schedule: the next key (published since the previous
// rotation) starts signing, the active key retires and a new next key is published. If
// another replica rotates at the same moment only one rotation happens: Rotate then adopts it.
func (r *Rotator) Rotate(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	startActive := ""
	return r.update(ctx, func(doc *keySetDoc, now time.Time) (bool, error) {
		active := activeOf(doc)
		if startActive == "" {
			startActive = active
		} else if active != startActive {
			return false, nil // another replica rotated while we tried: that is the rotation
		}
		if err := r.rotateDoc(doc, now); err != nil {
			return false, err
		}
		r.prune(doc, now)
		return true, nil
	})
}

// Keys returns the key set last applied to the Keyring: next, active, then retired keys.
func (r *Rotator) Keys() []KeyInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.info)
}

// Run calls Sync every interval until ctx is done, logging failures (the Keyring keeps its
// keys while the storage is unreachable).
func (r *Rotator) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := r.Sync(ctx); err != nil && ctx.Err() == nil {
				r.cfg.Log.Warn("key set sync failed; signing keys unchanged", "err", err)
			}
		}
	}
}

// update runs the load, modify, store cycle: modify edits the loaded document (a fresh one
// when the storage is empty) and reports whether to write it. A write conflict starts over.
func (r *Rotator) update(ctx context.Context, modify func(*keySetDoc, time.Time) (bool, error)) error {
	for attempt := 0; attempt < maxAttempts; attempt++ {
		raw, version, err := r.cfg.Storage.GetBlob(ctx, StorageName)
		if err != nil {
			return fmt.Errorf("jwks: load key set: %w", err)
		}
		now := r.cfg.Now()
		var doc *keySetDoc
		changed := false
		if raw == nil {
			if doc, err = r.initialDoc(now); err != nil {
				return err
			}
			changed = true
		} else {
			doc = new(keySetDoc)
			if err := json.Unmarshal(raw, doc); err != nil || doc.Format != docFormat {
				return fmt.Errorf("jwks: key set document (format %d): %w", doc.Format, err)
			}
		}
		// Open every key before changing anything: a wrong KEK fails here.
		if err := r.openAll(doc); err != nil {
			return err
		}
		r.rotated = nil
		c, err := modify(doc, now)
		if err != nil {
			return err
		}
		if changed || c {
			b, err := json.Marshal(doc)
			if err != nil {
				return fmt.Errorf("jwks: marshal key set: %w", err)
			}
			if _, err := r.cfg.Storage.PutBlob(ctx, StorageName, b, version); err != nil {
				if errors.Is(err, store.ErrConflict) {
					continue
				}
				return fmt.Errorf("jwks: store key set: %w", err)
			}
			if r.rotated != nil {
				r.cfg.Log.Info("signing key rotated", r.rotated...)
			}
		}
		return r.apply(doc)
	}
	return fmt.Errorf("jwks: key set kept changing under %d attempts: %w", maxAttempts, store.ErrConflict)
}

// initialDoc returns a key set with an active and a next key.
func (r *Rotator) initialDoc(now time.Time) (*keySetDoc, error) {
	doc := &keySetDoc{Format: docFormat}
	if r.cfg.Period > 0 {
		doc.NextRotation = now.Add(r.cfg.Period)
	}
	for _, state := range []string{StateActive, StateNext} {
		kd, err := r.newKeyDoc(now)
		if err != nil {
			return nil, err
		}
		kd.State = state
		if state == StateActive {
			kd.Activated = now
		}
		doc.Keys = append(doc.Keys, kd)
	}
	return doc, nil
}

// newKeyDoc generates a key, seals it and remembers it opened.
func (r *Rotator) newKeyDoc(now time.Time) (keyDoc, error) {
	k, err := GenerateKey(r.cfg.Algorithm)
	if err != nil {
		return keyDoc{}, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(k.private)
	if err != nil {
		return keyDoc{}, fmt.Errorf("jwks: marshal key: %w", err)
	}
	sealed, err := r.cfg.KEK.seal(k.kid, der)
	if err != nil {
		return keyDoc{}, err
	}
	r.keys[k.kid] = k
	return keyDoc{KeyInfo: KeyInfo{KID: k.kid, Algorithm: string(k.alg), State: StateNext, Created: now}, Sealed: sealed}, nil
}

// rotateDoc retires the active key, activates the next one and publishes a new next key.
func (r *Rotator) rotateDoc(doc *keySetDoc, now time.Time) error {
	ai, ni := -1, -1
	for i, k := range doc.Keys {
		switch k.State {
		case StateActive:
			ai = i
		case StateNext:
			ni = i
		}
	}
	if ai < 0 || ni < 0 {
		return errors.New("jwks: key set lacks an active or a next key")
	}
	doc.Keys[ai].State = StateRetired
	doc.Keys[ai].Retired = now
	doc.Keys[ai].PublishedUntil = now.Add(r.cfg.Retention)
	doc.Keys[ni].State = StateActive
	doc.Keys[ni].Activated = now
	kd, err := r.newKeyDoc(now)
	if err != nil {
		return err
	}
	doc.Keys = append(doc.Keys, kd)
	if r.cfg.Period > 0 {
		doc.NextRotation = now.Add(r.cfg.Period)
	}
	r.rotated = []any{"active", doc.Keys[ni].KID, "retired", doc.Keys[ai].KID, "next", kd.KID}
	return nil
}

// prune drops retired keys whose retention has passed and reports whether any was.
func (r *Rotator) prune(doc *keySetDoc, now time.Time) bool {
	n := len(doc.Keys)
	doc.Keys = slices.DeleteFunc(doc.Keys, func(k keyDoc) bool {
		return k.State == StateRetired && !now.Before(k.PublishedUntil)
	})
	return len(doc.Keys) != n
}

// openAll unseals the keys not opened yet.
func (r *Rotator) openAll(doc *keySetDoc) error {
	for _, kd := range doc.Keys {
		if _, ok := r.keys[kd.KID]; ok {
			continue
		}
		der, err := r.cfg.KEK.open(kd.KID, kd.Sealed)
		if err != nil {
			return err
		}
		priv, err := x509.ParsePKCS8PrivateKey(der)
		if err != nil {
			return fmt.Errorf("jwks: key %s: %w", kd.KID, err)
		}
		signer, ok := priv.(crypto.Signer)
		if !ok {
			return fmt.Errorf("jwks: key %s cannot sign", kd.KID)
		}
		k, err := NewKey(signer, jose.SignatureAlgorithm(kd.Algorithm))
		if err != nil {
			return fmt.Errorf("jwks: key %s: %w", kd.KID, err)
		}
		if k.kid != kd.KID {
			return fmt.Errorf("jwks: key stored as %s has thumbprint %s", kd.KID, k.kid)
		}
		r.keys[kd.KID] = k
	}
	return nil
}

// apply hands the key set to the Keyring (the active key signs; next and retired keys are
// published) and forgets opened keys that left the set.
func (r *Rotator) apply(doc *keySetDoc) error {
	var active *Key
	var others []*Key
	info := make([]KeyInfo, 0, len(doc.Keys))
	order := map[string]int{StateNext: 0, StateActive: 1, StateRetired: 2}
	keys := slices.Clone(doc.Keys)
	slices.SortStableFunc(keys, func(a, b keyDoc) int { return order[a.State] - order[b.State] })
	seen := map[string]bool{}
	for _, kd := range keys {
		k := r.keys[kd.KID]
		seen[kd.KID] = true
		info = append(info, kd.KeyInfo)
		if kd.State == StateActive {
			if active != nil {
				return errors.New("jwks: key set has two active keys")
			}
			active = k
		} else {
			others = append(others, k)
		}
	}
	if active == nil {
		return errors.New("jwks: key set has no active key")
	}
	for kid := range r.keys {
		if !seen[kid] {
			delete(r.keys, kid)
		}
	}
	r.cfg.Keyring.SetKeys(active, others)
	r.info = info
	return nil
}

func activeOf(doc *keySetDoc) string {
	for _, k := range doc.Keys {
		if k.State == StateActive {
			return k.KID
		}
	}
	return ""
}

// localStorage is the Storage of a Rotator without a shared one.
type localStorage struct {
	mu      sync.Mutex
	data    []byte
	version uint64
}

func (l *localStorage) GetBlob(_ context.Context, _ string) ([]byte, uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.data, l.version, nil
}

func (l *localStorage) PutBlob(_ context.Context, _ string, data []byte, version uint64) (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if version != l.version {
		return 0, store.ErrConflict
	}
	l.data, l.version = data, version+1
	return l.version, nil
}
