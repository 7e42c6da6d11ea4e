package health_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/passport-attest/passport/health"
)

func TestReadyz(t *testing.T) {
	storeErr := errors.New("redis 10.0.0.7:6379: connection refused")
	var failing bool
	c := &health.Checker{Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Timeout: 200 * time.Millisecond}
	c.Add("store", func(context.Context) error {
		if failing {
			return storeErr
		}
		return nil
	})
	c.Add("signing_key", func(context.Context) error { return nil })
	c.Add("slow", func(ctx context.Context) error {
		if failing {
			<-ctx.Done() // a dependency that hangs: the timeout bounds the probe
			return ctx.Err()
		}
		return nil
	})
	mux := http.NewServeMux()
	c.Routes(mux)
	probe := func(path string) (int, string) {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest("GET", path, nil))
		return w.Code, w.Body.String()
	}
	if code, body := probe("/readyz"); code != 200 || !strings.Contains(body, `"status":"ready"`) {
		t.Fatalf("ready: %d %s", code, body)
	}
	failing = true
	code, body := probe("/readyz")
	if code != 503 || !strings.Contains(body, `"store":"failed"`) || !strings.Contains(body, `"slow":"failed"`) || !strings.Contains(body, `"signing_key":"ok"`) {
		t.Fatalf("not ready: %d %s", code, body)
	}
	if strings.Contains(body, "10.0.0.7") {
		t.Fatalf("readiness answer leaks the check's error: %s", body)
	}
	if code, _ := probe("/healthz"); code != 200 {
		t.Fatalf("healthz while not ready: %d", code)
	}
}
