package config

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"
)

// NonFlagEnv lists the PASSPORT_* environment variables that are not configuration fields of
// any section, which UnknownEnv therefore accepts:
//
//   - PASSPORT_CONFIG: the configuration file when --config is not given (EnvConfig);
//   - PASSPORT_REDIS_URL, PASSPORT_SKIP_REDIS: the Redis server of the test suites, and
//     skipping the tests that need it (internal/testenv, internal/testredis, store/redis);
//   - PASSPORT_UPDATE_DOCS: tests that regenerate documentation rewrite it instead of
//     comparing;
//   - PASSPORT_ISSUER, PASSPORT_JWKS_FILE: the relying-party sidecar's settings
//     (deploy/kubernetes/relying-party-sidecar.yaml), often set in the same pod.
//
// A variable added here must not be the EnvName of any flag.
var NonFlagEnv = []string{
	EnvConfig,
	"PASSPORT_REDIS_URL",
	"PASSPORT_SKIP_REDIS",
	"PASSPORT_UPDATE_DOCS",
	"PASSPORT_ISSUER",
	"PASSPORT_JWKS_FILE",
}

// UnknownEnv returns an error naming every variable of environ (names only, or KEY=VALUE as
// os.Environ gives them; values are never echoed) that carries the prefix of section's
// variables (EnvName(section, "")) but names no flag of fs, so that a misspelled variable
// (PASSPORT_ADRR) fails like a misspelled file key instead of being ignored. Variables of
// other sections (PASSPORT_KBS_* for serve), those in NonFlagEnv and those of flags excluded
// from the configuration are not flags: the first two are accepted, the last reported. It
// returns nil when there is none; the errors are joined with errors.Join, sorted by name.
func UnknownEnv(fs *pflag.FlagSet, section string, environ []string) error {
	known := map[string]bool{}
	fs.VisitAll(func(f *pflag.Flag) {
		if !excluded(f) {
			known[EnvName(section, f.Name)] = true
		}
	})
	prefix := EnvName(section, "")
	var names []string
	for _, kv := range environ {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, prefix) || known[k] || slices.Contains(NonFlagEnv, k) || otherSection(section, k) {
			continue
		}
		names = append(names, k)
	}
	slices.Sort(names)
	names = slices.Compact(names)
	errs := make([]error, 0, len(names))
	for _, k := range names {
		errs = append(errs, fmt.Errorf("%s: environment variable names no flag of %s (want %s<FLAG>)", k, section, prefix))
	}
	return errors.Join(errs...)
}

// otherSection reports whether the variable name belongs to a section other than section.
func otherSection(section, name string) bool {
	for _, s := range []string{SectionServe, SectionKBS} {
		if s != section && s != SectionServe && strings.HasPrefix(name, EnvName(s, "")) {
			return true
		}
	}
	return false
}
