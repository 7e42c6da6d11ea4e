// Package metrics defines every Prometheus metric passport exports (client_golang), with one
// small method per event so that the issuer, relying parties, the key broker and the
// status-list code record what happens without knowing Prometheus.
//
// Label values are always drawn from small fixed sets (api.Error codes, route patterns, HTTP
// status codes, store operations): never a token, nonce, jti, key, subject or client address.
//
// Metrics (all prefixed passport_):
//
//	issuer_attestations_total{outcome,reason}    counter  outcome "issued" or "refused"; reason the api.Error code
//	issuer_appraisal_step_seconds{step}          histogram verify, policy, sign (issuer.Config.Observe)
//	http_request_duration_seconds{listener,route,code} histogram per endpoint (route = ServeMux pattern)
//	http_requests_in_flight{listener}            gauge
//	rate_limited_total{route,scope}              counter  requests refused by a limit: 429 over a rate,
//	                                                      503 over a concurrency cap; scope "client"
//	                                                      (the client's own) or "global" (shared)
//	nonce_store_errors_total{op}                 counter  put, consume: backend unavailable
//	status_list_store_errors_total{op}           counter  (for the status-list code)
//	rp_jwks_fetches_total{result}                counter  ok, not_modified, error
//	rp_jwks_fetch_seconds                        histogram
//	rp_token_cache_lookups_total{result}         counter  hit, miss: the hit ratio is
//	                                                      rate(..{result="hit"}) / rate(..)
//	kbs_releases_total{decision,reason,rule}     counter  key broker decisions: decision "release" or
//	                                                      "refuse", reason the audit word, rule the
//	                                                      policy rule's resource glob
//
// plus the Go runtime and process collectors.
package metrics

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Outcomes of an attestation.
const (
	OutcomeIssued  = "issued"
	OutcomeRefused = "refused"
)

// Results of a JWKS fetch and of a verified-token cache lookup.
const (
	ResultOK          = "ok"
	ResultNotModified = "not_modified"
	ResultError       = "error"
	ResultHit         = "hit"
	ResultMiss        = "miss"
)

// latencyBuckets span 100 µs to 10 s: a cached validation is microseconds, an attestation
// with a real event log a few milliseconds, a Redis outage seconds.
var latencyBuckets = []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}

// Metrics holds passport's metrics in their own registry. The zero value is not usable; a nil
// *Metrics is, and records nothing, so optional wiring needs no checks.
type Metrics struct {
	// Registry holds every metric below plus the Go and process collectors.
	Registry *prometheus.Registry

	attestations *prometheus.CounterVec
	steps        *prometheus.HistogramVec
	requests     *prometheus.HistogramVec
	inflight     *prometheus.GaugeVec
	rateLimited  *prometheus.CounterVec
	nonceErrors  *prometheus.CounterVec
	statusErrors *prometheus.CounterVec
	jwksFetches  *prometheus.CounterVec
	jwksSeconds  prometheus.Histogram
	tokenCache   *prometheus.CounterVec
	kbsReleases  *prometheus.CounterVec
}

// New returns a fresh set of metrics in a new registry.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		attestations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passport_issuer_attestations_total",
			Help: "Attestations by outcome (issued, refused) and refusal reason (the api.Error code).",
		}, []string{"outcome", "reason"}),
		steps: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "passport_issuer_appraisal_step_seconds", Buckets: latencyBuckets,
			Help: "Time of each appraisal step: verify (TPM evidence), policy, sign (token).",
		}, []string{"step"}),
		requests: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "passport_http_request_duration_seconds", Buckets: latencyBuckets,
			Help: "HTTP request latency by listener, route pattern and status code.",
		}, []string{"listener", "route", "code"}),
		inflight: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "passport_http_requests_in_flight", Help: "HTTP requests being served.",
		}, []string{"listener"}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passport_rate_limited_total", Help: "Requests refused by a limit (429 over a request rate, 503 over a concurrent-stream cap), by route pattern and scope (client: the client's own limit; global: the one shared by all clients).",
		}, []string{"route", "scope"}),
		nonceErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passport_nonce_store_errors_total", Help: "Nonce store operations that failed (backend unavailable).",
		}, []string{"op"}),
		statusErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passport_status_list_store_errors_total", Help: "Status-list store operations that failed (backend unavailable).",
		}, []string{"op"}),
		jwksFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passport_rp_jwks_fetches_total", Help: "Relying-party JWKS requests by result (ok, not_modified, error).",
		}, []string{"result"}),
		jwksSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "passport_rp_jwks_fetch_seconds", Help: "Relying-party JWKS request time.", Buckets: latencyBuckets,
		}),
		tokenCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passport_rp_token_cache_lookups_total", Help: "Relying-party verified-token cache lookups by result (hit, miss).",
		}, []string{"result"}),
		kbsReleases: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "passport_kbs_releases_total", Help: "Key broker resource requests by decision (release, refuse), reason and governing policy rule.",
		}, []string{"decision", "reason", "rule"}),
	}
	m.Registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.attestations, m.steps, m.requests, m.inflight, m.rateLimited, m.nonceErrors, m.statusErrors,
		m.jwksFetches, m.jwksSeconds, m.tokenCache, m.kbsReleases)
	// Expose the cache result series before the first lookup, so the ratio has a denominator.
	m.tokenCache.WithLabelValues(ResultHit)
	m.tokenCache.WithLabelValues(ResultMiss)
	return m
}

// Handler serves the registry in the Prometheus exposition format (GET /metrics).
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{Registry: m.Registry})
}

// Attestation counts one attestation: code "" when a token was issued, otherwise the refusal's
// api.Error code (issuer.StatusOf), e.g. "nonce_reused" or "evidence_rejected_quote". Its
// signature fits issuer.Config.Outcome.
func (m *Metrics) Attestation(code string) {
	if m == nil {
		return
	}
	if code == "" {
		m.attestations.WithLabelValues(OutcomeIssued, "").Inc()
		return
	}
	m.attestations.WithLabelValues(OutcomeRefused, code).Inc()
}

// Step records the duration of one appraisal step; its signature fits issuer.Config.Observe.
func (m *Metrics) Step(step string, d time.Duration) {
	if m == nil {
		return
	}
	m.steps.WithLabelValues(step).Observe(d.Seconds())
}

// RateLimited counts a request refused by a limit on route (a ServeMux pattern); scope is
// ratelimit.ScopeClient or ratelimit.ScopeGlobal. Its signature fits the callbacks of
// ratelimit's middlewares, given r.Pattern.
func (m *Metrics) RateLimited(route, scope string) {
	if m == nil {
		return
	}
	m.rateLimited.WithLabelValues(route, scope).Inc()
}

// NonceStoreError counts a failed nonce store operation ("put", "consume").
func (m *Metrics) NonceStoreError(op string) {
	if m == nil {
		return
	}
	m.nonceErrors.WithLabelValues(op).Inc()
}

// StatusListStoreError counts a failed status-list store operation (StatusOpAllocate,
// StatusOpRevoke, StatusOpRead); StatusStore calls it.
func (m *Metrics) StatusListStoreError(op string) {
	if m == nil {
		return
	}
	m.statusErrors.WithLabelValues(op).Inc()
}

// JWKSFetch records one relying-party JWKS request: result ResultOK, ResultNotModified or
// ResultError, and its duration.
func (m *Metrics) JWKSFetch(result string, d time.Duration) {
	if m == nil {
		return
	}
	m.jwksFetches.WithLabelValues(result).Inc()
	m.jwksSeconds.Observe(d.Seconds())
}

// TokenCache counts one verified-token cache lookup of a relying party; its signature fits
// relyingparty.Config.CacheObserver.
func (m *Metrics) TokenCache(hit bool) {
	if m == nil {
		return
	}
	if hit {
		m.tokenCache.WithLabelValues(ResultHit).Inc()
	} else {
		m.tokenCache.WithLabelValues(ResultMiss).Inc()
	}
}

// RuleNone labels a key broker decision taken before any policy rule governed the request
// (a malformed resource name, a missing or invalid token).
const RuleNone = "none"

// KBSRelease counts one key broker decision: decision "release" or "refuse", reason the
// broker's audit word (a fixed set: "granted", "policy", "revoked", "no_token", ...), rule the
// resource glob of the policy rule that governed the request (from the operator's policy file,
// "" becoming RuleNone). Never a resource name chosen by a client: the label sets stay bounded.
// Its signature fits kbs.Config.Observe.
func (m *Metrics) KBSRelease(decision, reason, rule string) {
	if m == nil {
		return
	}
	if rule == "" {
		rule = RuleNone
	}
	m.kbsReleases.WithLabelValues(decision, reason, rule).Inc()
}
