package config_test

import (
	"testing"
	"time"

	"github.com/passport-attest/passport/config"
)

// TestLimitsSources: the limits added for enrollment and revocation streams are each a flag,
// an environment variable and a file key, with their documented defaults.
func TestLimitsSources(t *testing.T) {
	d := config.DefaultServe().Limits
	if d.GlobalRate != 20_000 || d.GlobalBurst != 20_000 || d.RevocationStreams != 2048 ||
		d.RevocationStreamsPerClient != 32 || d.RevocationStreamLifetime != 5*time.Minute {
		t.Fatalf("defaults %+v", d)
	}
	s, fs, _ := newServe(t)
	file := writeFile(t, "c.yaml", `
serve:
  trust-any-ak: true
  challenge-global-burst: 500
  revocation-streams: 10
  revocation-streams-per-client: 2
`)
	if err := fs.Parse([]string{"--revocation-stream-lifetime", "2m"}); err != nil {
		t.Fatal(err)
	}
	src, err := config.Load(fs, config.SectionServe, file, env(map[string]string{"PASSPORT_CHALLENGE_GLOBAL_RATE": "123.5"}))
	if err != nil {
		t.Fatal(err)
	}
	l := s.Limits
	if l.GlobalRate != 123.5 || l.GlobalBurst != 500 || l.RevocationStreams != 10 || l.RevocationStreamsPerClient != 2 || l.RevocationStreamLifetime != 2*time.Minute {
		t.Fatalf("loaded %+v", l)
	}
	if src["challenge-global-rate"] != config.FromEnv || src["revocation-streams"] != config.FromFile || src["revocation-stream-lifetime"] != config.FromFlag {
		t.Fatalf("sources %v", src)
	}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
}
