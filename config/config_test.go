package config_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"

	"github.com/passport-attest/passport/config"
)

// newServe returns defaults bound to a fresh flag set with the meta flags, like the command.
func newServe(t *testing.T) (*config.Serve, *pflag.FlagSet, *string) {
	t.Helper()
	s := config.DefaultServe()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	s.RegisterFlags(fs)
	var path string
	var print bool
	config.RegisterMeta(fs, &path, &print)
	return &s, fs, &path
}

func writeFile(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestPrecedenceFlagEnvFileDefault(t *testing.T) {
	s, fs, _ := newServe(t)
	file := writeFile(t, "c.yaml", `
serve:
  addr: 127.0.0.1:1001          # overridden by env and flag
  nonce-ttl: 90s                # overridden by env
  token-lifetime: 10m           # from the file
  ek-reenroll-interval: 0s      # from the file: 0 turns the wait off
  audience: [billing, storage]  # a YAML list
  trust-any-ak: true
kbs:
  addr: 127.0.0.1:9999          # another command's section: ignored by serve
`)
	if err := fs.Parse([]string{"--addr", "127.0.0.1:3003"}); err != nil {
		t.Fatal(err)
	}
	src, err := config.Load(fs, config.SectionServe, file, env(map[string]string{
		"PASSPORT_ADDR":      "127.0.0.1:2002",
		"PASSPORT_NONCE_TTL": "2m",
	}))
	if err != nil {
		t.Fatal(err)
	}
	checks := []struct {
		name string
		got  any
		want any
		src  config.Source
	}{
		{"addr", s.Addr, "127.0.0.1:3003", config.FromFlag},
		{"nonce-ttl", s.NonceTTL, 2 * time.Minute, config.FromEnv},
		{"token-lifetime", s.TokenLifetime, 10 * time.Minute, config.FromFile},
		{"ek-reenroll-interval", s.AK.EKReenrollInterval, time.Duration(0), config.FromFile},
		{"audience", strings.Join(s.Audiences, ","), "billing,storage", config.FromFile},
		{"trust-any-ak", s.TrustAnyAK, true, config.FromFile},
		{"alg", s.Alg, "ES256", config.FromDefault},
	}
	for _, c := range checks {
		if c.got != c.want || src[c.name] != c.src {
			t.Errorf("%s = %v from %s, want %v from %s", c.name, c.got, src[c.name], c.want, c.src)
		}
	}
	if err := s.Validate(); err != nil {
		t.Fatalf("valid configuration refused: %v", err)
	}
}

func TestEnvListReplacesDefault(t *testing.T) {
	s, fs, _ := newServe(t)
	if _, err := config.Load(fs, config.SectionServe, "", env(map[string]string{"PASSPORT_AUDIENCE": "a,b"})); err != nil {
		t.Fatal(err)
	}
	if strings.Join(s.Audiences, "|") != "a|b" {
		t.Fatalf("audience = %v", s.Audiences)
	}
}

// TestLoadReportsEveryProblem: unknown sections, unknown keys and unparsable values from the
// file and the environment come back together.
func TestLoadReportsEveryProblem(t *testing.T) {
	_, fs, _ := newServe(t)
	file := writeFile(t, "c.yaml", `
serve:
  adr: 127.0.0.1:1
  nonce-ttl: soon
  trust-any-ak: [true]
  print-config: true
relying-party:
  x: 1
`)
	_, err := config.Load(fs, config.SectionServe, file, env(map[string]string{"PASSPORT_TOKEN_LIFETIME": "forever"}))
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{
		`unknown section "relying-party"`,
		"serve.adr (line 3): unknown key",
		"serve.print-config (line 6): unknown key",
		"serve.nonce-ttl (line 4)",
		"serve.trust-any-ak (line 5): a list given",
		"PASSPORT_TOKEN_LIFETIME",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, fs, _ := newServe(t)
	_, err := config.Load(fs, config.SectionServe, filepath.Join(t.TempDir(), "none.yaml"), env(nil))
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("err = %v, want ErrNotExist", err)
	}
}

// TestValidateReportsAllErrors: one pass finds every bad field.
func TestValidateReportsAllErrors(t *testing.T) {
	s := config.DefaultServe()
	s.Addr = "nohost"
	s.IssuerURL = "ftp://x"
	s.Redis = "http://127.0.0.1:6379"
	s.TrustAnyAK = true
	s.AKAllowlist = "/nonexistent/aks.pem"
	s.SigningKey = "/nonexistent/key.pem"
	s.NonceTTL = 0
	s.TokenLifetime = -time.Second
	s.AK.EKReenrollInterval = -time.Second
	s.TLS.Cert = "/nonexistent/cert.pem"
	s.AdminAddr = "127.0.0.1:9443"
	s.MetricsAddr = "127.0.0.1:9443"
	s.AdminClientCA = "/nonexistent/ca.pem"
	s.Limits.ChallengeRate = -1
	s.Limits.ChallengeClients = 0
	s.Limits.GlobalRate, s.Limits.GlobalBurst = 10, 0
	s.Limits.RevocationStreams = 0
	s.Limits.RevocationStreamsPerClient = -1
	s.Limits.RevocationStreamLifetime = 0
	s.Server.ShutdownTimeout = 0
	s.Log.Level = "loud"
	s.Log.Format = "xml"
	err := s.Validate()
	if err == nil {
		t.Fatal("no error")
	}
	want := []string{
		`addr: "nohost" is not HOST:PORT`,
		`issuer-url: scheme "ftp"`,
		`redis: redisstore: unsupported URL scheme "http"`,
		"trust-any-ak: is exclusive with ak-allowlist",
		"ak-allowlist: open /nonexistent/aks.pem",
		"signing-key: open /nonexistent/key.pem",
		"nonce-ttl: 0s is not a positive duration",
		"token-lifetime: -1s",
		"ek-reenroll-interval: must not be negative",
		"tls-cert, tls-key: give both or neither",
		"admin-credential: the admin API needs a credential",
		"metrics-addr: must differ from addr and admin-addr",
		"admin-client-ca: open /nonexistent/ca.pem",
		"admin-client-ca: client certificates need TLS",
		"challenge-rate: must not be negative",
		"challenge-clients: must be at least 1",
		"challenge-global-burst: must be at least 1 when challenge-global-rate is set",
		"revocation-streams: must be at least 1",
		"revocation-streams-per-client: must be at least 1",
		"revocation-stream-lifetime: 0s is not a positive duration",
		"shutdown-timeout: 0s",
		`log-level: "loud"`,
		`log-format: "xml"`,
	}
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error is not an errors.Join: %T", err)
	}
	if n := len(joined.Unwrap()); n < len(want) {
		t.Errorf("%d errors, want at least %d", n, len(want))
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q", w)
		}
	}
}

// TestValidateRedisURLs: every URL form the store opens (README: one server, Sentinel,
// Cluster, a Unix socket) passes validation, and a malformed one is refused without echoing
// its password.
func TestValidateRedisURLs(t *testing.T) {
	for _, u := range []string{"redis://127.0.0.1:6379/0", "rediss://u:pw@h:6380/1", "unix:///run/redis.sock?db=2",
		"redis+sentinel://s1:26379,s2:26379/0?master_name=m", "redis+cluster://a:7000,b:7001"} {
		s := config.DefaultServe()
		s.TrustAnyAK, s.Redis = true, u
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", u, err)
		}
		k := config.DefaultKBS()
		k.Redis = u
		if err := k.Validate(); err != nil && strings.Contains(err.Error(), "redis:") {
			t.Errorf("kbs %s: %v", u, err)
		}
	}
	for _, u := range []string{"redis://u:secret@h:bad/0", "http://h:1", "redis+sentinel://u:secret@s1:1/0"} {
		s := config.DefaultServe()
		s.TrustAnyAK, s.Redis = true, u
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), "redis: ") || strings.Contains(err.Error(), "secret") {
			t.Errorf("%s: err = %v, want a redis error without the password", u, err)
		}
	}
}

func TestValidateAdminNeverOnPublicListener(t *testing.T) {
	s := config.DefaultServe()
	s.TrustAnyAK = true
	s.AdminAddr, s.AdminCredential = s.Addr, writeFile(t, "cred", "0123456789abcdef0123")
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "admin-addr: must differ from addr") {
		t.Fatalf("err = %v", err)
	}
	s.Addr, s.AdminAddr = "127.0.0.1:0", "127.0.0.1:0" // two free ports: no collision
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}

func TestValidateNoAKTrust(t *testing.T) {
	s := config.DefaultServe()
	if err := s.Validate(); err == nil || !strings.Contains(err.Error(), "no AK trust configured") {
		t.Fatalf("err = %v", err)
	}
	s.TrustAnyAK = true
	if err := s.Validate(); err != nil {
		t.Fatalf("defaults with trust-any-ak refused: %v", err)
	}
}

// TestPrintRedacts: URL passwords are hidden; file paths are shown and their contents never
// read; inline secrets show REDACTED.
func TestPrintRedacts(t *testing.T) {
	s, fs, _ := newServe(t)
	key := writeFile(t, "signing.pem", "-----BEGIN PRIVATE KEY-----\nSECRET-KEY-MATERIAL\n-----END PRIVATE KEY-----\n")
	cred := writeFile(t, "admin.cred", "SECRET-ADMIN-CREDENTIAL-0123456789")
	var inline string
	fs.StringVar(&inline, "inline-token", "", "a secret given inline (test)")
	config.MarkSecret(fs, "inline-token")
	args := []string{"--redis", "redis://user:hunter2-password@127.0.0.1:6379/0", "--signing-key", key,
		"--admin-addr", "127.0.0.1:9", "--admin-credential", cred, "--inline-token", "SECRET-INLINE", "--trust-any-ak"}
	if err := fs.Parse(args); err != nil {
		t.Fatal(err)
	}
	src, err := config.Load(fs, config.SectionServe, "", env(map[string]string{"PASSPORT_NONCE_TTL": "45s"}))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := config.Print(&out, fs, config.SectionServe, src); err != nil {
		t.Fatal(err)
	}
	got := out.String()
	for _, secret := range []string{"hunter2", "SECRET-KEY-MATERIAL", "SECRET-ADMIN-CREDENTIAL", "SECRET-INLINE"} {
		if strings.Contains(got, secret) {
			t.Errorf("printed configuration contains %q:\n%s", secret, got)
		}
	}
	for _, want := range []string{
		"redis: redis://user:REDACTED@127.0.0.1:6379/0 # flag",
		"signing-key: " + key + " # flag",
		"inline-token: REDACTED # flag",
		"nonce-ttl: 45s # env PASSPORT_NONCE_TTL",
		"trust-any-ak: true # flag",
		"audience: [] # default",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("output lacks %q:\n%s", want, got)
		}
	}
	if strings.Contains(got, "print-config") || strings.Contains(got, "config:") {
		t.Errorf("meta flags printed:\n%s", got)
	}
	_ = s
}

// TestPrintRoundTrips: Print's output, used as a file, gives the same configuration.
func TestPrintRoundTrips(t *testing.T) {
	s, fs, _ := newServe(t)
	if err := fs.Parse([]string{"--audience", "a", "--audience", "b", "--challenge-rate", "2.5", "--trust-any-ak", "--nonce-ttl", "1m30s"}); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := config.Print(&out, fs, config.SectionServe, nil); err != nil {
		t.Fatal(err)
	}
	s2, fs2, _ := newServe(t)
	if _, err := config.Load(fs2, config.SectionServe, writeFile(t, "c.yaml", out.String()), env(nil)); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if strings.Join(s2.Audiences, ",") != "a,b" || s2.Limits.ChallengeRate != 2.5 || !s2.TrustAnyAK || s2.NonceTTL != 90*time.Second {
		t.Fatalf("round trip lost values: %+v", s2)
	}
	_ = s
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"":                               "",
		"redis://127.0.0.1:6379/0":       "redis://127.0.0.1:6379/0",
		"redis://:pw@h:1/0":              "redis://:REDACTED@h:1/0",
		"rediss://u:pw@h:1":              "rediss://u:REDACTED@h:1",
		"redis://h:1/0?password=pw&db=1": "redis://h:1/0?db=1&password=REDACTED",
		"redis://u:p%zz@h":               config.Redacted,
		"redis//:pw13SECRET@h":           config.Redacted, // no scheme://
		"redis:pw@h":                     config.Redacted,
		"redis:///:pw@h":                 config.Redacted, // '@' in the path
		"h:6379?password=pw":             config.Redacted,
		"redis://h:1/0?x=1;password=pw":  config.Redacted, // query does not parse
		"redis+sentinel://u:pw@s1:26379/0?master_name=m&sentinel_password=pw2": "redis+sentinel://u:REDACTED@s1:26379/0?master_name=m&sentinel_password=REDACTED",
		"redis://h:1/0?PassWord=pw&db=1":                                       "redis://h:1/0?PassWord=REDACTED&db=1",
		"redis://h:1/0?db=1&dial_timeout=2s":                                   "redis://h:1/0?db=1&dial_timeout=2s",
		"unix:///run/redis/redis.sock?db=2":                                    "unix:///run/redis/redis.sock?db=2",
		"redis+cluster://u:pw@a:7000,b:7001?password=pw":                       "redis+cluster://u:REDACTED@a:7000,b:7001?password=REDACTED",
	} {
		if got := config.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestKBSValidate(t *testing.T) {
	k := config.DefaultKBS()
	err := k.Validate()
	for _, w := range []string{"issuer: is required", "audience: is required", "secrets: is required"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error lacks %q: %v", w, err)
		}
	}
	k.Issuer, k.Audience, k.Secrets = "https://issuer.example", "kbs", t.TempDir()
	if err := k.Validate(); err != nil {
		t.Fatal(err)
	}
	fs := pflag.NewFlagSet("kbs", pflag.ContinueOnError)
	k2 := config.DefaultKBS()
	k2.RegisterFlags(fs)
	if _, err := config.Load(fs, config.SectionKBS, "", env(map[string]string{"PASSPORT_KBS_AUDIENCE": "vault"})); err != nil {
		t.Fatal(err)
	}
	if k2.Audience != "vault" {
		t.Fatalf("PASSPORT_KBS_AUDIENCE not applied: %q", k2.Audience)
	}
}
