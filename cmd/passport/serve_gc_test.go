package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/passport-attest/passport/config"
)

// TestGCTarget: the gogc key wins when set; otherwise a GOGC environment variable stays in
// force; otherwise the default applies.
func TestGCTarget(t *testing.T) {
	env := func(v string, ok bool) func(string) (string, bool) {
		return func(k string) (string, bool) {
			if k != "GOGC" {
				t.Fatalf("looked up %s", k)
			}
			return v, ok
		}
	}
	for _, c := range []struct {
		name      string
		gogc      int
		set       bool
		env       func(string) (string, bool)
		want      int
		wantApply bool
	}{
		{"default", config.DefaultGOGC, false, env("", false), config.DefaultGOGC, true},
		{"empty GOGC is unset", config.DefaultGOGC, false, env("", true), config.DefaultGOGC, true},
		{"GOGC env stays", config.DefaultGOGC, false, env("150", true), 0, false},
		{"GOGC=off stays", config.DefaultGOGC, false, env("off", true), 0, false},
		{"key wins over GOGC", 200, true, env("150", true), 200, true},
		{"key without GOGC", 800, true, env("", false), 800, true},
		{"zero never applied", 0, false, env("", false), 0, false},
	} {
		p, apply := gcTarget(c.gogc, c.set, c.env)
		if p != c.want || apply != c.wantApply {
			t.Errorf("%s: got (%d, %v), want (%d, %v)", c.name, p, apply, c.want, c.wantApply)
		}
	}
}

// TestServePprof: --pprof serves the runtime profiles on the metrics listener only, but never
// the command line (which carries --redis passwords --print-config redacts); without it
// neither listener has them.
func TestServePprof(t *testing.T) {
	r := startServe(t, "--trust-any-ak", "--metrics-addr", "127.0.0.1:0", "--pprof")
	if code, body, _ := get(t, "http://"+r.addrs["metrics"]+"/debug/pprof/heap?debug=1"); code != http.StatusOK || body == "" {
		t.Fatalf("metrics listener /debug/pprof/heap: %d", code)
	}
	if code, _, _ := get(t, "http://"+r.addrs["metrics"]+"/debug/pprof/cmdline"); code == http.StatusOK {
		t.Fatal("metrics listener serves /debug/pprof/cmdline: the command line may carry secrets")
	}
	if code, _, _ := get(t, r.url+"/debug/pprof/heap?debug=1"); code == http.StatusOK {
		t.Fatal("public listener serves /debug/pprof/")
	}
	off := startServe(t, "--trust-any-ak", "--metrics-addr", "127.0.0.1:0")
	for _, u := range []string{"http://" + off.addrs["metrics"], off.url} {
		if code, _, _ := get(t, u+"/debug/pprof/heap?debug=1"); code == http.StatusOK {
			t.Fatalf("%s serves /debug/pprof/ without --pprof", u)
		}
	}
}

// TestServeWildcardNeedsIssuerURL: serve on an address without a specific host and without
// --issuer-url refuses to start instead of minting tokens with iss http://[::]:PORT; with
// --issuer-url it starts.
func TestServeWildcardNeedsIssuerURL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err := run(ctx, t, "serve", "--addr", "0.0.0.0:0", "--trust-any-ak")
	if err == nil || !strings.Contains(err.Error(), "--issuer-url") {
		t.Fatalf("serve --addr 0.0.0.0:0 = %v; want an error naming --issuer-url", err)
	}
	r := startServe(t, "--trust-any-ak", "--addr", "0.0.0.0:0", "--issuer-url", "https://passport.example")
	if code, body, _ := get(t, "http://"+r.addrs["public"]+"/.well-known/openid-configuration"); code != http.StatusOK || !strings.Contains(body, `"issuer":"https://passport.example"`) {
		t.Fatalf("discovery: %d %s", code, body)
	}
}
