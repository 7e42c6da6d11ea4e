package config_test

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/passport-attest/passport/config"
)

func newKBS(t *testing.T) (*config.KBS, *pflag.FlagSet) {
	t.Helper()
	k := config.DefaultKBS()
	fs := pflag.NewFlagSet("kbs", pflag.ContinueOnError)
	k.RegisterFlags(fs)
	var path string
	var print bool
	config.RegisterMeta(fs, &path, &print)
	return &k, fs
}

// TestKBSPrecedence: flag > PASSPORT_KBS_* > kbs section of the file > default, and the serve
// section and PASSPORT_* serve variables do not leak into kbs.
func TestKBSPrecedence(t *testing.T) {
	k, fs := newKBS(t)
	file := writeFile(t, "c.yaml", `
serve:
  addr: 0.0.0.0:1
kbs:
  addr: 127.0.0.1:9000
  issuer: https://file.example
  audience: from-file
  status-max-age: 3m
  redis-prefix: file-prefix
`)
	if err := fs.Parse([]string{"--audience", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	src, err := config.Load(fs, config.SectionKBS, file, env(map[string]string{
		"PASSPORT_KBS_ISSUER": "https://env.example", "PASSPORT_KBS_AUDIENCE": "from-env", "PASSPORT_ADDR": "0.0.0.0:2",
	}))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		got, want string
		src       config.Source
		name      string
	}{
		{k.Audience, "from-flag", config.FromFlag, "audience"},
		{k.Issuer, "https://env.example", config.FromEnv, "issuer"},
		{k.Addr, "127.0.0.1:9000", config.FromFile, "addr"},
		{k.RedisPrefix, "file-prefix", config.FromFile, "redis-prefix"},
		{k.PublicURL, "", config.FromDefault, "public-url"},
	} {
		if c.got != c.want || src[c.name] != c.src {
			t.Errorf("%s = %q from %s, want %q from %s", c.name, c.got, src[c.name], c.want, c.src)
		}
	}
	if k.StatusMaxAge != 3*time.Minute || k.JWKSTimeout != 10*time.Second {
		t.Errorf("status-max-age %v, jwks-timeout %v", k.StatusMaxAge, k.JWKSTimeout)
	}
}

// TestKBSLoadUnknownKey: a key that is not a kbs flag is refused with its line.
func TestKBSLoadUnknownKey(t *testing.T) {
	_, fs := newKBS(t)
	file := writeFile(t, "c.yaml", "kbs:\n  addr: 127.0.0.1:1\n  issuer-url: https://x\n  print-config: true\n")
	_, err := config.Load(fs, config.SectionKBS, file, env(nil))
	for _, w := range []string{"kbs.issuer-url (line 3): unknown key", "kbs.print-config (line 4): unknown key"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
}

// TestKBSValidateReportsAllErrors: one run reports every problem, each naming its key.
func TestKBSValidateReportsAllErrors(t *testing.T) {
	k := config.DefaultKBS()
	k.Addr = "no-port"
	k.Issuer = "ftp://issuer"
	k.Secrets = t.TempDir()
	k.Redis = "redis://127.0.0.1:6379/0"
	k.JWKS = "/does/not/exist.json"
	k.StatusMaxAge = 0
	k.PublicURL = "kbs.example"
	k.TLS.Cert = "/nope.crt"
	k.AdminCredential = "/nope.cred"
	k.MetricsAddr = "bad"
	k.Log.Format = "xml"
	err := k.Validate()
	for _, w := range []string{
		`addr: "no-port" is not HOST:PORT`,
		`issuer: scheme "ftp"`,
		"audience: is required",
		"secrets: is exclusive with redis",
		"kek: redis needs a key-encryption key file",
		"jwks: open /does/not/exist.json",
		"status-list: jwks (offline) needs a status list file",
		"status-max-age: 0s is not a positive duration",
		`public-url: scheme ""`,
		"tls-cert, tls-key: give both or neither",
		"admin-addr: admin-credential and admin-tls-* need an admin listener",
		`metrics-addr: "bad" is not HOST:PORT`,
		`log-format: "xml" is not json or text`,
	} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q:\n%v", w, err)
		}
	}

	k = config.DefaultKBS()
	k.Issuer, k.Audience = "https://issuer.example", "kbs"
	if err := k.Validate(); err == nil || !strings.Contains(err.Error(), "secrets: is required") {
		t.Errorf("no secret store accepted: %v", err)
	}
	k.Secrets = t.TempDir()
	k.AdminAddr = k.Addr
	k.AdminCredential = writeFile(t, "cred", "0123456789abcdef0123")
	if err := k.Validate(); err == nil || !strings.Contains(err.Error(), "admin-addr: must differ from addr") {
		t.Errorf("admin on the public listener accepted: %v", err)
	}
	k.AdminAddr = "127.0.0.1:9445"
	if err := k.Validate(); err != nil {
		t.Errorf("valid configuration refused: %v", err)
	}
}

// TestKBSPrintRedacts: --print-config hides the Redis password and never prints the contents
// of the key-encryption key or credential files.
func TestKBSPrintRedacts(t *testing.T) {
	k, fs := newKBS(t)
	kek := writeFile(t, "kek", "SECRET-KEK-0123456789abcdef0123456789abcdef")
	if err := fs.Parse([]string{"--redis", "redis://:hunter2pw@127.0.0.1:6379/0", "--kek", kek, "--issuer", "https://i"}); err != nil {
		t.Fatal(err)
	}
	src, err := config.Load(fs, config.SectionKBS, "", env(nil))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := config.Print(&out, fs, config.SectionKBS, src); err != nil {
		t.Fatal(err)
	}
	s := out.String()
	if strings.Contains(s, "hunter2pw") || strings.Contains(s, "SECRET-KEK") {
		t.Fatalf("print-config leaks a secret:\n%s", s)
	}
	for _, w := range []string{"redis: redis://:REDACTED@127.0.0.1:6379/0 # flag", "kek: " + kek, "kbs:", "addr: 127.0.0.1:8444 # default"} {
		if !strings.Contains(s, w) {
			t.Errorf("print-config lacks %q:\n%s", w, s)
		}
	}
	if strings.Contains(s, "config:") || strings.Contains(s, "print-config") {
		t.Errorf("print-config prints its own flags:\n%s", s)
	}
	_ = k
}
