package loadtest

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReplayNeedsDefiniteRefusal: a replay counts as refused only when the issuer's nonce
// check refused it (409 nonce_reused or nonce_expired). Replays answered 503, or not answered
// at all (a dead port), never reached that check: they are counted apart and fail the goal,
// instead of being reported as "0 tokens issued twice, 0 nonces accepted twice".
func TestReplayNeedsDefiniteRefusal(t *testing.T) {
	answer := func(status int, body string) string {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			_, _ = w.Write([]byte(body))
		}))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := "http://" + l.Addr().String()
	_ = l.Close()

	atts := []*attester{newAttester(0, http.DefaultClient), newAttester(1, http.DefaultClient)}
	work := [][]*prepared{
		{{body: []byte("{}")}, {body: []byte("{}")}, {body: []byte("{}")}},
		{{body: []byte("{}")}, {body: []byte("{}")}},
	}
	for _, c := range []struct {
		name       string
		urls       [2]string
		pass       bool
		undecided  int
		double     int
		reportHas  string
		reportLack string
	}{
		{"503 and a dead port", [2]string{answer(503, `{"error":"temporarily_unavailable"}`), dead}, false, 5, 0, "5 without a definite answer", ""},
		{"all 503", [2]string{answer(503, `{"error":"temporarily_unavailable"}`), answer(503, `{"error":"temporarily_unavailable"}`)}, false, 5, 0, "temporarily_unavailable 5", ""},
		{"nonce reused", [2]string{answer(409, `{"error":"nonce_reused"}`), answer(409, `{"error":"nonce_expired"}`)}, true, 0, 0, "5 refused as spent", "GOAL"},
		{"a second token", [2]string{answer(409, `{"error":"nonce_reused"}`), answer(200, `{"token":"x"}`)}, false, 0, 2, "2 tokens issued twice", ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			tally := replayTo(context.Background(), atts, work, 100, func(a int) string { return c.urls[a] })
			if tally.sent != 5 || tally.undecided != c.undecided || tally.double != c.double || tally.ok() != c.pass {
				t.Errorf("tally %+v, ok %v; want 5 sent, %d undecided, %d double, ok %v", tally, tally.ok(), c.undecided, c.double, c.pass)
			}
			r := &Result{Name: "replay"}
			tally.report(r)
			if c.pass != (len(r.Failed) == 0) {
				t.Errorf("failed goals %q, want pass %v", r.Failed, c.pass)
			}
			var md strings.Builder
			WriteMarkdown(&md, r)
			if !strings.Contains(md.String(), c.reportHas) || (c.reportLack != "" && strings.Contains(md.String(), c.reportLack)) {
				t.Errorf("report lacks %q (or has %q):\n%s", c.reportHas, c.reportLack, md.String())
			}
			if !c.pass && !strings.Contains(md.String(), "GOAL NOT MET") {
				t.Errorf("report does not show the missed goal:\n%s", md.String())
			}
		})
	}
}
