package main

import (
	"context"
	"net"
	"strings"
	"testing"
	"time"
)

// fakeServer listens on loopback and handles each connection with serve, standing in for a
// Redis port that speaks the other protocol (TLS or plaintext) than the URL asks for.
func fakeServer(t *testing.T, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go serve(c)
		}
	}()
	return ln.Addr().String()
}

// TestDialRedisNamesTLSMismatch: a rediss:// URL on a port that never answers the handshake
// and a redis:// URL on a port that hangs up both fail with a sentence naming the likely
// mismatch, and the URL's password is not in the error.
func TestDialRedisNamesTLSMismatch(t *testing.T) {
	silent := fakeServer(t, func(c net.Conn) { // a plaintext Redis waits for a command line
		defer c.Close()
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	})
	hangUp := fakeServer(t, func(c net.Conn) { c.Close() }) // a TLS port refusing plaintext
	for _, tc := range []struct{ url, want string }{
		{"rediss://u:sekrit@" + silent + "/0", "use redis://"},
		{"redis://u:sekrit@" + hangUp + "/0", "use rediss://"},
	} {
		_, err := dialRedis(context.Background(), "redis", tc.url, 300*time.Millisecond)
		if err == nil {
			t.Fatalf("%s: dialRedis succeeded", tc.url)
		}
		if !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "sekrit") {
			t.Errorf("%s: error %q: want the hint %q and no password", tc.url, err, tc.want)
		}
	}
	// No hint where nothing suggests a mismatch.
	if h := tlsMismatchHint("redis://h:1/0", context.DeadlineExceeded); h != "" {
		t.Errorf("plaintext timeout hinted %q", h)
	}
}
