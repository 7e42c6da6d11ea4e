package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// ErrDataLoss means Redis lost data this store wrote: an epoch marker (see ArmEpoch) is missing
// or holds another id, as after a restart without persistence, a FLUSHALL or a restore from an
// older backup. Revocations (status bits, reference-value revocations, pinned AKs) may have
// been lost and status list indexes may be handed out twice, so every operation of the store
// fails from then on with an error wrapping both ErrDataLoss and store.ErrUnavailable (fail
// closed: 503, /readyz failing) until the process is restarted, which is the operator's
// acknowledgement after restoring Redis or accepting the loss.
var ErrDataLoss = errors.New("redisstore: Redis lost data (epoch marker missing or changed): revocations may have been lost")

// epochState is the store's data-loss detector: the marker ids it expects and whether a loss
// was seen (a latch: only a new Store clears it).
type epochState struct {
	mu   sync.RWMutex
	ids  map[string]string // marker key -> expected id; empty until ArmEpoch
	lost atomic.Bool
}

// epochKey returns the marker key of one status shard, in the shard's hash slot:
// <prefix>status:{<prefix>/N}:epoch.
func (s *Store) epochKey(shard uint64) string { return s.shardBase(shard) + "epoch" }

// aksEpochKey is the marker of the AK hash's slot: <prefix>epoch:{<prefix>aks}, whose hash
// tag is the AK hash's whole key.
func (s *Store) aksEpochKey() string { return s.prefix + "epoch:{" + s.aksKey() + "}" }

// epochKeys returns every marker key: one per status shard and one for the AK records.
func (s *Store) epochKeys() []string {
	keys := make([]string, 0, s.status.shards+1)
	for i := uint64(0); i < s.status.shards; i++ {
		keys = append(keys, s.epochKey(i))
	}
	return append(keys, s.aksEpochKey())
}

// expected returns the id the store expects under key ("" when not armed).
func (s *Store) expected(key string) string {
	s.epoch.mu.RLock()
	defer s.epoch.mu.RUnlock()
	return s.epoch.ids[key]
}

// ArmEpoch turns data-loss detection on: for every marker key (one per status shard, in the
// shard's Cluster slot, and one beside the AK records) it creates the marker with SET NX
// holding a fresh random id, or reads the id another replica created, and remembers it. From
// then on the allocation and revocation scripts and ReadStatusList compare the marker of the
// shard they touch (no extra round trip), and CheckEpoch (called by Ping and WatchEpoch)
// compares all of them. Markers never expire. Call it once at start, before serving; it
// returns an error wrapping store.ErrUnavailable when Redis fails.
func (s *Store) ArmEpoch(ctx context.Context) error {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return fmt.Errorf("redisstore: epoch id: %w", err)
	}
	id := hex.EncodeToString(b[:])
	ids := map[string]string{}
	for _, k := range s.epochKeys() {
		if err := s.client.SetNX(ctx, k, id, 0).Err(); err != nil {
			return unavailable("arm epoch", err)
		}
		got, err := s.client.Get(ctx, k).Result()
		if err != nil {
			return unavailable("arm epoch", err)
		}
		ids[k] = got
	}
	s.epoch.mu.Lock()
	s.epoch.ids = ids
	s.epoch.mu.Unlock()
	return nil
}

// lossErr is the error of every operation once a loss was seen.
func lossErr(op string) error { return unavailable(op, ErrDataLoss) }

// guard returns the data-loss error when a loss was seen, and nil otherwise (no I/O).
func (s *Store) guard(op string) error {
	if s.epoch.lost.Load() {
		return lossErr(op)
	}
	return nil
}

// markLost latches the data-loss state and returns the operation's error.
func (s *Store) markLost(op string) error {
	s.epoch.lost.Store(true)
	return lossErr(op)
}

// DataLost reports whether this store has seen Redis lose its data (see ErrDataLoss).
func (s *Store) DataLost() bool { return s.epoch.lost.Load() }

// CheckEpoch reads every marker in one pipeline and returns nil when each holds the id ArmEpoch
// remembered (or ArmEpoch was not called), an error wrapping ErrDataLoss (and latching the
// loss) when one is missing or different, and an error wrapping store.ErrUnavailable alone
// when Redis does not answer.
func (s *Store) CheckEpoch(ctx context.Context) error {
	if err := s.guard("check epoch"); err != nil {
		return err
	}
	s.epoch.mu.RLock()
	n := len(s.epoch.ids)
	s.epoch.mu.RUnlock()
	if n == 0 {
		return nil
	}
	keys := s.epochKeys()
	pipe := s.client.Pipeline()
	cmds := make([]*redis.StringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.Get(ctx, k)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return unavailable("check epoch", err)
	}
	for i, k := range keys {
		got, err := cmds[i].Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return unavailable("check epoch", err)
		}
		if got != s.expected(k) {
			return s.markLost("check epoch")
		}
	}
	return nil
}

// WatchEpoch runs CheckEpoch every interval until ctx is done, so that a loss is found even
// while no token is issued; onLoss (may be nil) is called once, with the error, when the loss
// is first seen by this watcher (by its own check or by an operation of the store).
func (s *Store) WatchEpoch(ctx context.Context, interval time.Duration, onLoss func(error)) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		cctx, cancel := context.WithTimeout(ctx, interval)
		err := s.CheckEpoch(cctx)
		cancel()
		if errors.Is(err, ErrDataLoss) {
			if onLoss != nil {
				onLoss(err)
			}
			return
		}
	}
}
