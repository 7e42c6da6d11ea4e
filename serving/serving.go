// Package serving runs passport's HTTP listeners (public API, admin API, metrics) with the
// timeouts of config.Server, optional TLS, and a graceful shutdown: when the context ends, every
// listener stops accepting, and requests in flight (an attestation half-way through appraisal)
// get up to the grace period to finish before connections are closed.
package serving

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/passport-attest/passport/config"
)

// Server is one listener and the HTTP server behind it.
type Server struct {
	// Name labels the listener in logs ("public", "admin", "metrics").
	Name string
	// Listener accepts connections; it is wrapped in TLS when the server has a TLS config.
	Listener net.Listener
	// HTTP serves the connections.
	HTTP *http.Server
}

// New returns a Server for h on ln with the timeouts of t; tlsCfg nil means plain HTTP. The
// server's error log goes to log at warn level (TLS handshake failures, panics).
func New(name string, ln net.Listener, h http.Handler, t config.Server, tlsCfg *tls.Config, log *slog.Logger) *Server {
	return &Server{Name: name, Listener: ln, HTTP: &http.Server{
		Handler:           h,
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: t.ReadHeaderTimeout,
		ReadTimeout:       t.ReadTimeout,
		WriteTimeout:      t.WriteTimeout,
		IdleTimeout:       t.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
}

// Scheme returns "https" when the server has a TLS config and "http" otherwise.
func (s *Server) Scheme() string {
	if s.HTTP.TLSConfig != nil {
		return "https"
	}
	return "http"
}

// Run serves every server until ctx is done or one of them fails, then shuts them all down
// concurrently: every listener closes at once, requests in flight have up to grace to
// complete. It returns the first serving error (nil after a shutdown asked for by ctx), or a
// shutdown error when the grace period ran out.
func Run(ctx context.Context, log *slog.Logger, grace time.Duration, servers ...*Server) error {
	return RunDraining(ctx, log, grace, nil, servers...)
}

// RunDraining is Run calling drain (when not nil) as soon as the shutdown starts, before any
// server stops: pass health.Checker.Drain so /readyz answers 503 on every listener while
// requests in flight finish.
func RunDraining(ctx context.Context, log *slog.Logger, grace time.Duration, drain func(), servers ...*Server) error {
	errc := make(chan error, len(servers))
	for _, s := range servers {
		log.Info("listening", "listener", s.Name, "addr", s.Listener.Addr().String(), "scheme", s.Scheme())
		go func() {
			var err error
			if s.HTTP.TLSConfig != nil {
				err = s.HTTP.Serve(tls.NewListener(s.Listener, s.HTTP.TLSConfig))
			} else {
				err = s.HTTP.Serve(s.Listener)
			}
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				err = fmt.Errorf("%s listener: %w", s.Name, err)
			} else {
				err = nil
			}
			errc <- err
		}()
	}
	var err error
	select {
	case err = <-errc:
	case <-ctx.Done():
		log.Info("shutting down: finishing requests in flight", "grace", grace.String())
	}
	if drain != nil {
		drain()
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), grace)
	defer cancel()
	errs := make([]error, len(servers))
	var wg sync.WaitGroup
	for i, s := range servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if e := s.HTTP.Shutdown(sctx); e != nil {
				errs[i] = fmt.Errorf("%s listener: shutdown: %w", s.Name, e)
			}
		}()
	}
	wg.Wait()
	for _, e := range errs {
		if e != nil && err == nil {
			err = e
		}
	}
	return err
}
