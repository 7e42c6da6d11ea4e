package metrics

import (
	"net/http"
	"strconv"
	"time"
)

// RouteUnmatched labels requests that matched no route (404s, probes of random paths): their
// paths are never used as label values.
const RouteUnmatched = "unmatched"

// Middleware records the latency of every request to next on listener ("public", "admin",
// "metrics") by route and status code, and the number in flight. The route is the pattern of
// the http.ServeMux that served the request (e.g. "POST /v1/attest"), read after next returns,
// so next must be (or wrap) a ServeMux; requests no pattern matched share RouteUnmatched.
func (m *Metrics) Middleware(listener string, next http.Handler) http.Handler {
	if m == nil {
		return next
	}
	inflight := m.inflight.WithLabelValues(listener)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		inflight.Inc()
		sw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		defer func() {
			inflight.Dec()
			route := r.Pattern
			if route == "" {
				route = RouteUnmatched
			}
			m.requests.WithLabelValues(listener, route, strconv.Itoa(sw.status)).Observe(time.Since(start).Seconds())
		}()
		next.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status code written.
type statusWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
}

func (s *statusWriter) WriteHeader(code int) {
	if !s.wroteHeader {
		s.status, s.wroteHeader = code, true
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	s.wroteHeader = true
	return s.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
