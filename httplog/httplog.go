// Package httplog gives every HTTP request an id and makes log/slog lines carry it.
//
// Middleware takes the request id from the X-Request-Id header when it is a plausible id (at
// most 64 characters of letters, digits, '.', '_' and '-') and generates 128 random bits
// otherwise, echoes it in the response's X-Request-Id, puts it in the request context and
// writes one access line per request. Handler wraps any slog.Handler so that every line logged
// with a context that carries an id gets a request_id attribute: the issuer's decision lines
// and the access line of one attestation share it.
//
// Access lines carry the method, the route pattern, the status, the duration, the response
// size and the client IP: never a header, a query string, a body or a token.
package httplog

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// HeaderRequestID carries the request id in requests and responses.
const HeaderRequestID = "X-Request-Id"

type ctxKey struct{}

// WithID returns ctx carrying request id id.
func WithID(ctx context.Context, id string) context.Context {
	return context.WithValue(ctx, ctxKey{}, id)
}

// IDFrom returns the request id in ctx, or "".
func IDFrom(ctx context.Context) string {
	id, _ := ctx.Value(ctxKey{}).(string)
	return id
}

// NewID returns a fresh request id: 16 random bytes in hexadecimal.
func NewID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// validID accepts ids a proxy or client may have set: 1-64 characters of [A-Za-z0-9._-].
func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '.', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}

// quietRoutes are logged at debug level: probes and scrapes every few seconds.
var quietRoutes = map[string]bool{"GET /healthz": true, "GET /readyz": true, "GET /metrics": true}

// Middleware assigns the request id, then serves next and logs one access line with log at
// info level (debug for health probes and metric scrapes). next should be (or wrap) a
// ServeMux so the route pattern is known.
func Middleware(log *slog.Logger, listener string, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get(HeaderRequestID)
		if !validID(id) {
			id = NewID()
		}
		w.Header().Set(HeaderRequestID, id)
		ctx := WithID(r.Context(), id)
		r = r.WithContext(ctx)
		cw := &countingWriter{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(cw, r)
		route := r.Pattern
		if route == "" {
			route = "unmatched"
		}
		level := slog.LevelInfo
		if quietRoutes[route] {
			level = slog.LevelDebug
		}
		host, _, err := net.SplitHostPort(r.RemoteAddr)
		if err != nil {
			host = r.RemoteAddr
		}
		log.LogAttrs(ctx, level, "http request",
			slog.String("listener", listener),
			slog.String("method", r.Method),
			slog.String("route", route),
			slog.Int("status", cw.status),
			slog.Int64("bytes", cw.n),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1000),
			slog.String("client", host),
		)
	})
}

type countingWriter struct {
	http.ResponseWriter
	status      int
	wroteHeader bool
	n           int64
}

func (c *countingWriter) WriteHeader(code int) {
	if !c.wroteHeader {
		c.status, c.wroteHeader = code, true
	}
	c.ResponseWriter.WriteHeader(code)
}

func (c *countingWriter) Write(b []byte) (int, error) {
	c.wroteHeader = true
	n, err := c.ResponseWriter.Write(b)
	c.n += int64(n)
	return n, err
}

func (c *countingWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }

// Handler is a slog.Handler that adds request_id from the record's context.
type Handler struct{ inner slog.Handler }

// NewHandler wraps inner.
func NewHandler(inner slog.Handler) *Handler { return &Handler{inner: inner} }

// Enabled implements slog.Handler.
func (h *Handler) Enabled(ctx context.Context, l slog.Level) bool { return h.inner.Enabled(ctx, l) }

// Handle implements slog.Handler, adding request_id when ctx carries one.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	if id := IDFrom(ctx); id != "" {
		r = r.Clone()
		r.AddAttrs(slog.String("request_id", id))
	}
	return h.inner.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{inner: h.inner.WithAttrs(as)}
}

// WithGroup implements slog.Handler.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{inner: h.inner.WithGroup(name)}
}

// NewLogger returns a logger writing to w in format "json" (default) or "text" at level
// "debug", "info" (default), "warn" or "error", with request ids from contexts.
func NewLogger(w io.Writer, level, format string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	opts := &slog.HandlerOptions{Level: l}
	var inner slog.Handler = slog.NewJSONHandler(w, opts)
	if format == "text" {
		inner = slog.NewTextHandler(w, opts)
	}
	return slog.New(NewHandler(inner))
}
