package issuer

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/passport-attest/passport/store"
)

// subscriberBuffer is how many events an event-stream client may lag behind; a client that
// falls further behind is disconnected (it reconnects and resynchronises).
const subscriberBuffer = 64

// revocationHub fans the store's revocation feed out to the event-stream clients of this
// issuer. It watches the feed (one Redis subscription) only while at least one client is
// connected.
type revocationHub struct {
	feed store.RevocationFeed
	log  *slog.Logger

	mu     sync.Mutex
	subs   map[chan store.RevocationEvent]struct{}
	cancel context.CancelFunc

	// done is closed by close: every stream ends, and streams opened later end at once.
	done      chan struct{}
	closeOnce sync.Once
}

func newRevocationHub(feed store.RevocationFeed, log *slog.Logger) *revocationHub {
	return &revocationHub{feed: feed, log: log, subs: map[chan store.RevocationEvent]struct{}{}, done: make(chan struct{})}
}

// close ends every event stream (now and later); it is safe to call more than once.
func (h *revocationHub) close() { h.closeOnce.Do(func() { close(h.done) }) }

// CloseStreams ends every GET /v1/revocations event stream this issuer serves, and makes
// streams opened afterwards end right after their first "resync" event; other requests are
// unaffected. http.Server.Shutdown waits for handlers to return but does not cancel their
// contexts, so a server shutting down calls this as soon as the shutdown starts (register it
// with http.Server.RegisterOnShutdown): followers then see the stream end (EOF) and reconnect
// elsewhere instead of holding the shutdown for its whole grace period. Safe to call more
// than once and concurrently; a no-op when the store pushes no revocations.
func (is *Issuer) CloseStreams() {
	if is.status.hub != nil {
		is.status.hub.close()
	}
}

// subscribe registers a client. The returned channel is closed when the client lags too far
// behind; unsubscribe must be called when the client leaves.
func (h *revocationHub) subscribe() (<-chan store.RevocationEvent, func()) {
	ch := make(chan store.RevocationEvent, subscriberBuffer)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.subs[ch] = struct{}{}
	if h.cancel == nil {
		ctx, cancel := context.WithCancel(context.Background())
		h.cancel = cancel
		go h.watch(ctx)
	}
	return ch, func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		if _, ok := h.subs[ch]; ok {
			delete(h.subs, ch)
			close(ch)
		}
		if len(h.subs) == 0 && h.cancel != nil {
			h.cancel()
			h.cancel = nil
		}
	}
}

// watch relays the feed until ctx is done. WatchRevocations retries by itself; should it
// return early, watch restarts it after a pause.
func (h *revocationHub) watch(ctx context.Context) {
	for ctx.Err() == nil {
		err := h.feed.WatchRevocations(ctx, h.broadcast)
		if ctx.Err() != nil {
			return
		}
		h.log.Warn("revocation feed stopped; restarting", "err", err)
		h.broadcast(store.RevocationEvent{Resync: true})
		select {
		case <-ctx.Done():
		case <-time.After(time.Second):
		}
	}
}

// broadcast hands ev to every client without blocking; a client whose buffer is full is
// dropped.
func (h *revocationHub) broadcast(ev store.RevocationEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.subs {
		select {
		case ch <- ev:
		default:
			delete(h.subs, ch)
			close(ch)
		}
	}
}
