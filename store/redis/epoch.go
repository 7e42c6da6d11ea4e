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

// ErrDataLoss means Redis lost data this store wrote, found by either of ArmEpoch's detectors:
//
//   - an epoch marker is missing or holds another id: Redis was emptied (a restart without
//     persistence, FLUSHALL, a lost volume, a restore from a backup taken before the marker
//     was first written). Markers are written once, at the first start, so they are in every
//     later snapshot: they do not show a rollback to a snapshot taken after that.
//   - a shard's status counter (INCR'ed once per issued token) answered a value this store
//     had already seen: Redis went back in time (a crash of a snapshot-only Redis, a restore of
//     an older snapshot or AOF, a failover to a replica that lagged). This is seen only by a
//     store that saw the later value, i.e. a replica that was running across the rollback.
//
// Revocations (status bits, reference-value revocations, pinned AKs) may have been lost, spent
// nonces may be accepted again and status list indexes may be handed out twice, so every
// operation of the store fails from then on with an error wrapping both ErrDataLoss and
// store.ErrUnavailable (fail closed: 503, /readyz failing) until the process is restarted,
// which is the operator's acknowledgement after restoring Redis or accepting the loss.
var ErrDataLoss = errors.New("redisstore: Redis lost data (epoch marker missing or changed, or a status counter went back): revocations may have been lost")

// epochState is the store's data-loss detector: the marker ids it expects, the highest value
// of each shard's status counter it has seen, and whether a loss was seen (a latch: only a new
// Store clears it).
type epochState struct {
	mu   sync.RWMutex
	ids  map[string]string // marker key -> expected id; empty until ArmEpoch
	lost atomic.Bool
	// why is the first loss's description, set once before lost.
	why atomic.Pointer[string]
	// high[shard] is the highest value of the shard's counter (<base>next) this store has read
	// or been given by INCR, 0 for none. Made by New, used once ArmEpoch ran.
	high []atomic.Int64
}

// epochKey returns the marker key of one status shard, in the shard's hash slot:
// <prefix>status:{<prefix>/N}:epoch.
func (s *Store) epochKey(shard uint64) string { return s.shardBase(shard) + "epoch" }

// aksEpochKey is the marker of the AK hash's slot: <prefix>epoch:{<prefix>aks}, whose hash
// tag is the AK hash's whole key.
func (s *Store) aksEpochKey() string { return s.prefix + "epoch:{" + s.aksKey() + "}" }

// counterKey returns the status counter of one shard (INCR'ed once per allocation).
func (s *Store) counterKey(shard uint64) string { return s.shardBase(shard) + "next" }

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

// armed reports whether ArmEpoch ran.
func (s *Store) armed() bool {
	s.epoch.mu.RLock()
	defer s.epoch.mu.RUnlock()
	return len(s.epoch.ids) > 0
}

// EpochArmed is what ArmEpoch found.
type EpochArmed struct {
	// Markers is the number of epoch markers (status shards + 1), Created how many of them
	// this call created because they were missing. Created == Markers on the first start on
	// an empty Redis, and equally after Redis lost everything while no replica was running:
	// the two cannot be told apart from Redis (see ArmEpoch).
	Markers, Created int
}

// ArmEpoch turns data-loss detection on (see ErrDataLoss).
//
// For every marker key (one per status shard, in the shard's Cluster slot, and one beside the
// AK records) it creates the marker with SET NX holding a fresh random id, or reads the id
// another replica created, and remembers it. From then on the allocation and revocation
// scripts and ReadStatusList compare the marker of the shard they touch (no extra round trip),
// and CheckEpoch (called by Ping and WatchEpoch) compares all of them. Markers never expire.
//
// It also reads each shard's status counter and remembers it: from then on every value of a
// counter this store reads (ReadStatusList, CheckEpoch) or is given by an allocation raises
// that shard's mark, and a value below the mark as it was when the request was sent (an
// allocation: not above it) means Redis went back in time. Concurrent requests cannot trip
// it: INCR and GET answer at least every value acknowledged before they were sent.
//
// Call it once at start, before serving; it returns an error wrapping store.ErrUnavailable
// when Redis fails. A marker it had to create means either a first start on this Redis or a
// Redis that lost its data while no replica was running: everything the issuer keeps is in
// that Redis, so an emptied one looks exactly like a new one (EpochArmed.Created tells the
// caller to warn).
func (s *Store) ArmEpoch(ctx context.Context) (EpochArmed, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return EpochArmed{}, fmt.Errorf("redisstore: epoch id: %w", err)
	}
	id := hex.EncodeToString(b[:])
	ids := map[string]string{}
	out := EpochArmed{}
	for _, k := range s.epochKeys() {
		created, err := s.client.SetNX(ctx, k, id, 0).Result()
		if err != nil {
			return EpochArmed{}, unavailable("arm epoch", err)
		}
		got, err := s.client.Get(ctx, k).Result()
		if err != nil {
			return EpochArmed{}, unavailable("arm epoch", err)
		}
		ids[k] = got
		out.Markers++
		if created {
			out.Created++
		}
	}
	for shard := uint64(0); shard < s.status.shards; shard++ {
		v, err := s.client.Get(ctx, s.counterKey(shard)).Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return EpochArmed{}, unavailable("arm epoch", err)
		}
		s.raise(shard, v)
	}
	s.epoch.mu.Lock()
	s.epoch.ids = ids
	s.epoch.mu.Unlock()
	return out, nil
}

// mark returns shard's counter mark, to be taken before a request that reads the counter is
// sent.
func (s *Store) mark(shard uint64) int64 { return s.epoch.high[shard].Load() }

// raise lifts shard's counter mark to v (never lowers it).
func (s *Store) raise(shard uint64, v int64) {
	h := &s.epoch.high[shard]
	for {
		cur := h.Load()
		if v <= cur || h.CompareAndSwap(cur, v) {
			return
		}
	}
}

// counterSeen checks a value v of shard's counter read by op against the mark taken before
// op's request was sent: an INCR result (incr) must be above it, a read at least equal. It
// raises the mark and returns nil, or latches the loss. Without ArmEpoch it does nothing.
func (s *Store) counterSeen(op string, shard uint64, before, v int64, incr bool) error {
	if !s.armed() {
		return nil
	}
	if v < before || (incr && v == before) {
		return s.markLost(op, fmt.Sprintf("status counter %s went back: Redis answered %d, this replica had seen %d (Redis rolled back to an older snapshot or AOF, or failed over to a replica that lagged)",
			s.counterKey(shard), v, before))
	}
	s.raise(shard, v)
	return nil
}

// lossErr is the error of every operation once a loss was seen.
func (s *Store) lossErr(op string) error {
	if why := s.epoch.why.Load(); why != nil {
		return unavailable(op, fmt.Errorf("%w: %s", ErrDataLoss, *why))
	}
	return unavailable(op, ErrDataLoss)
}

// guard returns the data-loss error when a loss was seen, and nil otherwise (no I/O).
func (s *Store) guard(op string) error {
	if s.epoch.lost.Load() {
		return s.lossErr(op)
	}
	return nil
}

// markLost latches the data-loss state, keeping the first loss's description why, and returns
// the operation's error.
func (s *Store) markLost(op, why string) error {
	s.epoch.why.CompareAndSwap(nil, &why)
	s.epoch.lost.Store(true)
	return s.lossErr(op)
}

// markerLost is markLost for a missing or different epoch marker.
func (s *Store) markerLost(op, key string) error {
	return s.markLost(op, "epoch marker "+key+" missing or changed (Redis was emptied: restarted without persistence, flushed, or restored from a backup older than the marker)")
}

// DataLost reports whether this store has seen Redis lose its data (see ErrDataLoss).
func (s *Store) DataLost() bool { return s.epoch.lost.Load() }

// CheckEpoch reads every marker and every shard's status counter in one pipeline and returns
// nil when each marker holds the id ArmEpoch remembered and no counter went back (or ArmEpoch
// was not called), an error wrapping ErrDataLoss (and latching the loss) otherwise, and an
// error wrapping store.ErrUnavailable alone when Redis does not answer.
func (s *Store) CheckEpoch(ctx context.Context) error {
	return s.check(ctx, "check epoch", false)
}

// probeTTL is how long a readiness probe's key lives (Ping with write set).
const probeTTL = 10 * time.Second

// check is CheckEpoch, and with write also sets one short-lived key of this store in each
// status shard's slot and the AK records' slot (SET PX probeTTL, in the same pipeline), so that
// a Redis that refuses writes (OOM under maxmemory with noeviction, a READONLY replica) is
// reported as unavailable.
func (s *Store) check(ctx context.Context, op string, write bool) error {
	if err := s.guard(op); err != nil {
		return err
	}
	armed := s.armed()
	if !armed && !write {
		return nil
	}
	pipe := s.client.Pipeline()
	var sets []*redis.StatusCmd
	if write {
		for i := uint64(0); i < s.status.shards; i++ {
			sets = append(sets, pipe.Set(ctx, s.shardBase(i)+"probe:"+s.replica, "1", probeTTL))
		}
		sets = append(sets, pipe.Set(ctx, s.prefix+"probe:{"+s.aksKey()+"}:"+s.replica, "1", probeTTL))
	}
	var (
		keys     []string
		markers  []*redis.StringCmd
		counters []*redis.StringCmd
		before   []int64
	)
	if armed {
		keys = s.epochKeys()
		for _, k := range keys {
			markers = append(markers, pipe.Get(ctx, k))
		}
		for i := uint64(0); i < s.status.shards; i++ {
			before = append(before, s.mark(i))
			counters = append(counters, pipe.Get(ctx, s.counterKey(i)))
		}
	}
	_, _ = pipe.Exec(ctx) // each command's own error is read below
	for i, k := range keys {
		got, err := markers[i].Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return unavailable(op, err)
		}
		if got != s.expected(k) {
			return s.markerLost(op, k)
		}
	}
	for i, c := range counters {
		v, err := c.Int64()
		if err != nil && !errors.Is(err, redis.Nil) {
			return unavailable(op, err)
		}
		if err := s.counterSeen(op, uint64(i), before[i], v, false); err != nil {
			return err
		}
	}
	for _, c := range sets {
		if err := c.Err(); err != nil {
			return unavailable(op+": write probe", err)
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

// newReplicaID returns the random id of one Store, naming its readiness probe keys.
func newReplicaID() string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail (Go 1.24+)
	return hex.EncodeToString(b[:])
}
