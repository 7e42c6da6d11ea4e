package relyingparty

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/token"
)

// followIdle is how long Follow waits without a byte from the stream (the issuer sends a
// comment every 15 s) before it reconnects.
const followIdle = 45 * time.Second

// Follow reads the issuer's revocation event stream at url (the discovery document's
// revocation_events_endpoint, server-sent events) until ctx is done, and returns ctx.Err().
// For each event "revoked" it calls MarkRevoked, so the token is refused at once, and drops
// the revoked tokens from v's verified-token cache (v may be nil). For each "resync" (sent on
// every connection, and when the issuer may have missed events) it calls Invalidate. It
// reconnects after any failure, waiting 1 s and doubling up to 30 s.
func (c *StatusChecker) Follow(ctx context.Context, url string, v *Verifier) error {
	hc := *c.client
	hc.Timeout = 0 // a stream has no overall deadline; followIdle bounds silence instead
	backoff := time.Second
	for {
		connected, err := c.followOnce(ctx, &hc, url, v)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		_ = err // a broken stream is expected; lists stay fresh through their ttl meanwhile
		if connected {
			backoff = time.Second
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// followOnce reads one connection of the stream; connected reports whether it got as far as
// a 200 answer.
func (c *StatusChecker) followOnce(ctx context.Context, hc *http.Client, url string, v *Verifier) (connected bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false, err
	}
	req.Header.Set("Accept", "text/event-stream")
	res, err := hc.Do(req)
	if err != nil {
		return false, err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		return false, fmt.Errorf("GET %s: %s", url, res.Status)
	}
	idle := time.AfterFunc(followIdle, cancel)
	defer idle.Stop()
	r := bufio.NewReaderSize(res.Body, 4096)
	var event, data string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return true, err
		}
		idle.Reset(followIdle)
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			c.dispatch(event, data, v)
			event, data = "", ""
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(line[len("event:"):])
		case strings.HasPrefix(line, "data:"):
			if data != "" {
				data += "\n"
			}
			data += strings.TrimPrefix(line[len("data:"):], " ")
		}
	}
}

// dispatch applies one event.
func (c *StatusChecker) dispatch(event, data string, v *Verifier) {
	switch event {
	case "resync":
		c.Invalidate()
	case "revoked":
		var ev api.RevocationEvent
		if err := json.Unmarshal([]byte(data), &ev); err != nil || ev.URI == "" {
			c.Invalidate() // an event we cannot read: assume we missed a revocation
			return
		}
		c.MarkRevoked(ev.URI, ev.Indexes...)
		if v != nil {
			idx := make(map[uint64]bool, len(ev.Indexes))
			for _, i := range ev.Indexes {
				idx[i] = true
			}
			v.ForgetIf(func(cl *token.Claims) bool {
				return cl.Status != nil && cl.Status.StatusList.URI == ev.URI && idx[cl.Status.StatusList.Index]
			})
		}
	}
}
