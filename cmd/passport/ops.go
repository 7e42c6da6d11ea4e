package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/config"
	"github.com/passport-attest/passport/health"
	"github.com/passport-attest/passport/httplog"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/metrics"
	"github.com/passport-attest/passport/ratelimit"
	"github.com/passport-attest/passport/serving"
)

// ops is what serve adds around the issuer to run it in production: JSON logs with request
// ids, Prometheus metrics, health probes, the rate limits of the routes that store state and
// the cap on revocation event streams.
type ops struct {
	log     *slog.Logger
	metrics *metrics.Metrics
	health  *health.Checker
	// pprof adds net/http/pprof's /debug/pprof/ routes to the metrics listener (serve --pprof).
	pprof bool
}

// maxBody caps every request body on every listener (the attest endpoint's own cap; smaller
// endpoints have smaller caps of their own).
const maxBody = issuer.MaxAttestBody

// stateRoutes are the public routes that store something for a TTL on an anonymous request:
// a challenge's nonce, an enrollment's session; activation is a store round trip that
// consumes one (and records an AK when it succeeds). They share one rate limit: one bucket
// per client for the three and the global ceiling over all clients (config.Limits).
var stateRoutes = []string{"POST " + api.PathChallenge, "POST " + api.PathEnroll, "POST " + api.PathEnrollActivate}

// streamRetryAfter is the Retry-After of a revocation stream refused over its cap: a slot
// frees when another stream ends (every stream ends within revocation-stream-lifetime).
const streamRetryAfter = 30 * time.Second

// publicHandler is the public listener: the issuer API with the rate limit of the routes that
// store state and the cap on revocation event streams, health probes and, unless they have
// their own listener, the metrics; every request gets an id, an access line and a latency
// sample. Requests refused by a limit are counted with their route and scope.
func (o *ops) publicHandler(is *issuer.Issuer, f serveFlags) http.Handler {
	h := is.Handler()
	mux := http.NewServeMux()
	mux.Handle("/", h)
	limited := func(r *http.Request, scope string) { o.metrics.RateLimited(r.Pattern, scope) }
	l := f.Limits
	lim := ratelimit.New(l.ChallengeRate, l.ChallengeBurst, l.ChallengeClients, ratelimit.WithGlobal(l.GlobalRate, l.GlobalBurst))
	for _, route := range stateRoutes {
		mux.Handle(route, lim.Middleware(h, limited))
	}
	streams := ratelimit.NewConcurrency(l.RevocationStreams, l.RevocationStreamsPerClient)
	mux.Handle("GET "+api.PathRevocations, streams.Middleware(h, streamRetryAfter, limited))
	o.health.Routes(mux)
	if f.MetricsAddr == "" {
		mux.Handle("GET /metrics", o.metrics.Handler())
	}
	return o.wrap("public", mux)
}

// metricsHandler is the optional metrics listener: /metrics and the health probes.
func (o *ops) metricsHandler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", o.metrics.Handler())
	o.health.Routes(mux)
	if o.pprof { // no /debug/pprof/cmdline: the command line may carry secrets (--redis URLs)
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return o.wrap("metrics", mux)
}

// wrap adds the body cap, request ids and access logs, and latency metrics to a listener's mux.
func (o *ops) wrap(listener string, mux http.Handler) http.Handler {
	return httplog.Middleware(o.log, listener, o.metrics.Middleware(listener, capBody(mux, maxBody)))
}

// capBody limits the request body to n bytes. Unlike http.MaxBytesHandler it keeps the request
// value, so the route pattern the mux records stays visible to the middleware above.
func capBody(next http.Handler, n int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.Body = http.MaxBytesReader(w, r.Body, n)
		next.ServeHTTP(w, r)
	})
}

// redisLogger sends go-redis's own messages (reconnects, pool dial failures) to slog at warn
// level instead of the standard logger; they carry addresses, never credentials or values.
type redisLogger struct{ log *slog.Logger }

func (l redisLogger) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, "redis client", "detail", fmt.Sprintf(format, v...))
}

// metricsServer opens the own listener of /metrics, /healthz and /readyz (--metrics-addr),
// with TLS when t names a certificate (reloaded on change); serve and kbs share it.
func (o *ops) metricsServer(addr string, t config.TLS, timeouts config.Server, log *slog.Logger) (*serving.Server, error) {
	tlsCfg, err := serverTLS(t, "", log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	return serving.New("metrics", ln, o.metricsHandler(), timeouts, tlsCfg, log), nil
}
