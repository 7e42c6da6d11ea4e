package issuer

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"

	"github.com/passport-attest/passport/api"
)

// StatusListMediaType is the media type of a Status List Token response
// (draft-ietf-oauth-status-list section 8.1).
const StatusListMediaType = "application/statuslist+jwt"

// sseHeartbeat is the interval of comment lines that keep an idle event stream open through
// proxies and let either side notice a dead connection.
const sseHeartbeat = 15 * time.Second

// streamWriteGrace is how long past its lifetime a stream's last write may take: the write
// deadline of a stream is its end plus this, so a client that stops reading (its writes
// blocked on a full TCP window) is dropped too.
const streamWriteGrace = 10 * time.Second

// streamLifetime returns the lifetime of one stream: between 90% and 100% of limit.
func streamLifetime(limit time.Duration) time.Duration {
	return limit - rand.N(limit/10+1)
}

// statusRoutes registers the public status routes: the Status List Tokens and the revocation
// event stream.
func (is *Issuer) statusRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET "+api.PathStatusList+"/{id}", is.handleStatusList)
	mux.HandleFunc("GET "+api.PathRevocations, is.handleRevocations)
}

// handleStatusList answers GET /v1/status-list/{id} with the signed list, Cache-Control
// max-age = what is left of its ttl, and an ETag (304 to a matching If-None-Match). 404 for an
// unknown list, 503 when the store is down.
func (is *Issuer) handleStatusList(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		is.writeError(w, r, fmt.Errorf("%w: status list id %q is not a number", ErrBadRequest, r.PathValue("id")))
		return
	}
	tok, etag, maxAge, err := is.StatusListToken(r.Context(), id)
	if errors.Is(err, ErrStatusListUnknown) {
		writeJSON(w, http.StatusNotFound, &api.Error{Code: "not_found", Description: err.Error()})
		return
	}
	if err != nil {
		is.writeError(w, r, err)
		return
	}
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "public, max-age="+strconv.Itoa(int(maxAge/time.Second)))
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", StatusListMediaType)
	_, _ = w.Write([]byte(tok))
}

// handleRevocations streams revocations as server-sent events (HTML Living Standard, section
// 9.2): first an event "resync" (re-read your lists: events before this moment were not
// seen), then an event "revoked" with data {"uri", "idx"} for every revocation made through
// any issuer sharing the store, "resync" again whenever the issuer's own feed had to
// reconnect, and a comment line every 15 s. The stream ends (a clean end of the response)
// after Config.StreamLifetime less up to 10% jitter, when the client lags too far behind, and
// when CloseStreams is called (server shutdown); the client then reconnects, and the "resync"
// that opens every stream covers what it missed in between. 501 when the store has no feed.
func (is *Issuer) handleRevocations(w http.ResponseWriter, r *http.Request) {
	if is.status.hub == nil {
		writeJSON(w, http.StatusNotImplemented, &api.Error{Code: "not_implemented", Description: "this issuer's store pushes no revocations"})
		return
	}
	life := streamLifetime(is.cfg.StreamLifetime)
	end := time.NewTimer(life)
	defer end.Stop()
	rc := http.NewResponseController(w)
	// A stream outlives the server's WriteTimeout, but not its own lifetime.
	_ = rc.SetWriteDeadline(time.Now().Add(life + streamWriteGrace))
	events, unsubscribe := is.status.hub.subscribe()
	defer unsubscribe()
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	send := func(event string, data any) error {
		b, _ := json.Marshal(data)
		if _, err := fmt.Fprintf(w, "event: %s\ndata: %s\n\n", event, b); err != nil {
			return err
		}
		return rc.Flush()
	}
	if send("resync", struct{}{}) != nil {
		return
	}
	tick := time.NewTicker(sseHeartbeat)
	defer tick.Stop()
	for {
		var err error
		select {
		case <-r.Context().Done():
			return
		case <-is.status.hub.done: // CloseStreams: the server is shutting down
			return
		case <-end.C: // the stream's lifetime is over: the client reconnects and resyncs
			return
		case <-tick.C:
			if _, err = fmt.Fprint(w, ": ping\n\n"); err == nil {
				err = rc.Flush()
			}
		case ev, ok := <-events:
			if !ok {
				return // lagged too far behind: the client reconnects and resyncs
			}
			if ev.Resync {
				err = send("resync", struct{}{})
			} else {
				err = send("revoked", api.RevocationEvent{URI: is.StatusListURI(ev.List), Indexes: ev.Indexes})
			}
		}
		if err != nil {
			return
		}
	}
}
