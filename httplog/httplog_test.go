package httplog_test

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/passport-attest/passport/httplog"
)

func TestRequestIDReachesLogsAndResponse(t *testing.T) {
	var buf bytes.Buffer
	log := httplog.NewLogger(&buf, "info", "json")
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/attest", func(w http.ResponseWriter, r *http.Request) {
		log.InfoContext(r.Context(), "decision")
		w.WriteHeader(http.StatusForbidden)
	})
	h := httplog.Middleware(log, "public", mux)

	for _, tc := range []struct{ in, want string }{
		{"abc-123_x.y", "abc-123_x.y"}, // a proxy's id is kept
		{"", ""},                       // generated
		{"bad id\nwith newline", ""},   // replaced
		{strings.Repeat("a", 65), ""},  // too long: replaced
	} {
		buf.Reset()
		r := httptest.NewRequest("POST", "/v1/attest?token=SECRET", strings.NewReader("SECRET-BODY"))
		if tc.in != "" {
			r.Header.Set(httplog.HeaderRequestID, tc.in)
		}
		r.Header.Set("Authorization", "Bearer SECRET")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		id := w.Header().Get(httplog.HeaderRequestID)
		if tc.want != "" && id != tc.want || tc.want == "" && len(id) != 32 {
			t.Fatalf("in %q: response id %q", tc.in, id)
		}
		lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
		if len(lines) != 2 {
			t.Fatalf("%d log lines, want 2:\n%s", len(lines), buf.String())
		}
		for _, l := range lines {
			var m map[string]any
			if err := json.Unmarshal([]byte(l), &m); err != nil {
				t.Fatal(err)
			}
			if m["request_id"] != id {
				t.Fatalf("line %s lacks request_id %s", l, id)
			}
		}
		if !strings.Contains(lines[1], `"route":"POST /v1/attest"`) || !strings.Contains(lines[1], `"status":403`) {
			t.Fatalf("access line: %s", lines[1])
		}
		if strings.Contains(buf.String(), "SECRET") {
			t.Fatalf("a query string, header or body reached the log:\n%s", buf.String())
		}
	}
}

func TestProbesAtDebug(t *testing.T) {
	var buf bytes.Buffer
	log := httplog.NewLogger(&buf, "info", "text")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(http.ResponseWriter, *http.Request) {})
	httplog.Middleware(log, "public", mux).ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", "/healthz", nil))
	if buf.Len() != 0 {
		t.Fatalf("health probe logged at info: %s", buf.String())
	}
	var _ slog.Handler = httplog.NewHandler(slog.NewTextHandler(&buf, nil))
}
