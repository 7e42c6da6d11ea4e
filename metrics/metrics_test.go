package metrics_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/passport-attest/passport/metrics"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
)

func scrape(t *testing.T, m *metrics.Metrics) string {
	t.Helper()
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	return w.Body.String()
}

// brokenStore fails every operation as an unavailable backend.
type brokenStore struct{}

func (brokenStore) PutNonce(context.Context, []byte, []byte, time.Duration) error {
	return fmt.Errorf("x: %w", store.ErrUnavailable)
}
func (brokenStore) ConsumeNonce(context.Context, []byte) ([]byte, error) {
	return nil, fmt.Errorf("x: %w", store.ErrUnavailable)
}

func TestNonceStoreCountsOnlyOutages(t *testing.T) {
	m := metrics.New()
	ctx := context.Background()
	ok := m.NonceStore(memory.New())
	_ = ok.PutNonce(ctx, []byte("n"), nil, time.Minute)
	_, _ = ok.ConsumeNonce(ctx, []byte("n"))
	_, _ = ok.ConsumeNonce(ctx, []byte("n")) // reused: an answer, not an outage
	bad := m.NonceStore(brokenStore{})
	_ = bad.PutNonce(ctx, []byte("n"), nil, time.Minute)
	_, _ = bad.ConsumeNonce(ctx, []byte("n"))
	_, _ = bad.ConsumeNonce(ctx, []byte("n"))
	body := scrape(t, m)
	for _, want := range []string{`passport_nonce_store_errors_total{op="put"} 1`, `passport_nonce_store_errors_total{op="consume"} 2`} {
		if !strings.Contains(body, want) {
			t.Errorf("lacks %s", want)
		}
	}
}

func (brokenStore) StatusListSize() int { return 8 }
func (brokenStore) AllocateStatus(context.Context, store.StatusEntry) (store.StatusRef, error) {
	return store.StatusRef{}, fmt.Errorf("x: %w", store.ErrUnavailable)
}
func (brokenStore) RevokeStatus(context.Context, store.Selector) ([]store.Revocation, error) {
	return nil, fmt.Errorf("x: %w", store.ErrUnavailable)
}
func (brokenStore) ReadStatusList(context.Context, uint64) ([]byte, error) {
	return nil, fmt.Errorf("x: %w", store.ErrUnavailable)
}
func (brokenStore) ReinstateLabel(context.Context, string) error {
	return fmt.Errorf("x: %w", store.ErrUnavailable)
}

func TestStatusStoreCountsOnlyOutages(t *testing.T) {
	m := metrics.New()
	ctx := context.Background()
	ok := m.StatusStore(memory.New())
	if _, isClocks := ok.(store.ClockStore); !isClocks {
		t.Fatal("the wrapper of a store that keeps clocks does not")
	}
	e := store.StatusEntry{ID: "j", Subject: "s", Expires: time.Now().Add(time.Minute)}
	if _, err := ok.AllocateStatus(ctx, e); err != nil {
		t.Fatal(err)
	}
	_, _ = ok.AllocateStatus(ctx, e)                     // exists: an answer, not an outage
	_, _ = ok.ReadStatusList(ctx, 99)                    // unknown list: an answer
	_, _ = ok.RevokeStatus(ctx, store.Selector{})        // bad selector: an answer
	_, _ = ok.RevokeStatus(ctx, store.Selector{ID: "j"}) // revoked
	bad := m.StatusStore(brokenStore{})
	if _, isClocks := bad.(store.ClockStore); isClocks {
		t.Fatal("the wrapper of a store without clocks claims to keep them")
	}
	_, _ = bad.AllocateStatus(ctx, e)
	_, _ = bad.RevokeStatus(ctx, store.Selector{ID: "j"})
	_, _ = bad.ReadStatusList(ctx, 0)
	_, _ = bad.ReadStatusList(ctx, 0)
	body := scrape(t, m)
	for _, want := range []string{`passport_status_list_store_errors_total{op="allocate"} 1`,
		`passport_status_list_store_errors_total{op="revoke"} 1`, `passport_status_list_store_errors_total{op="read"} 2`} {
		if !strings.Contains(body, want) {
			t.Errorf("lacks %s", want)
		}
	}
}

func TestMiddlewareRoutesNotPaths(t *testing.T) {
	m := metrics.New()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /kbs/v0/resource/{repo}/{type}/{tag}", func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(401) })
	h := m.Middleware("public", mux)
	for _, p := range []string{"/kbs/v0/resource/a/b/secret-name", "/kbs/v0/resource/c/d/other", "/random/probe/path"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	body := scrape(t, m)
	if !strings.Contains(body, `passport_http_request_duration_seconds_count{code="401",listener="public",route="GET /kbs/v0/resource/{repo}/{type}/{tag}"} 2`) ||
		!strings.Contains(body, `passport_http_request_duration_seconds_count{code="404",listener="public",route="unmatched"} 1`) {
		t.Fatalf("unexpected series:\n%s", body)
	}
	for _, leak := range []string{"secret-name", "random/probe"} {
		if strings.Contains(body, leak) {
			t.Fatalf("a request path reached a label: %s", leak)
		}
	}
}

func TestNilMetricsRecordNothing(t *testing.T) {
	var m *metrics.Metrics
	m.Attestation("nonce_reused")
	m.Step("verify", time.Millisecond)
	m.TokenCache(true)
	m.KBSRelease("release", "granted", "")
	m.JWKSFetch(metrics.ResultOK, time.Millisecond)
	m.StatusListStoreError("revoke")
	m.RateLimited("POST /v1/challenge", "client")
	if s := m.NonceStore(memory.New()); s == nil {
		t.Fatal("nil")
	}
	if s := m.StatusStore(memory.New()); s == nil {
		t.Fatal("nil")
	}
}

func TestCacheHitRatio(t *testing.T) {
	m := metrics.New()
	body := scrape(t, m)
	if !strings.Contains(body, `passport_rp_token_cache_lookups_total{result="miss"} 0`) {
		t.Fatal("cache series not exposed before the first lookup")
	}
	for i := 0; i < 9; i++ {
		m.TokenCache(true)
	}
	m.TokenCache(false)
	body = scrape(t, m)
	for _, want := range []string{`passport_rp_token_cache_lookups_total{result="hit"} 9`, `passport_rp_token_cache_lookups_total{result="miss"} 1`} {
		if !strings.Contains(body, want) {
			t.Errorf("lacks %s", want)
		}
	}
}

func ExampleMetrics_Attestation() {
	m := metrics.New()
	m.Attestation("")             // a token was issued
	m.Attestation("nonce_reused") // a refusal, by its api.Error code
	m.Attestation("nonce_reused")
	w := httptest.NewRecorder()
	m.Handler().ServeHTTP(w, httptest.NewRequest("GET", "/metrics", nil))
	for _, l := range strings.Split(w.Body.String(), "\n") {
		if strings.HasPrefix(l, "passport_issuer_attestations_total") {
			fmt.Println(l)
		}
	}
	// Output:
	// passport_issuer_attestations_total{outcome="issued",reason=""} 1
	// passport_issuer_attestations_total{outcome="refused",reason="nonce_reused"} 2
}
