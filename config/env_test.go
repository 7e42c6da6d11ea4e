package config_test

import (
	"os"
	"strings"
	"testing"

	"github.com/passport-attest/passport/config"
)

// TestLoadUnknownEnv: a misspelled PASSPORT_* variable fails Load (with the other errors),
// like a misspelled file key; the variables of kbs, the config path and the documented
// non-flag variables do not.
func TestLoadUnknownEnv(t *testing.T) {
	t.Setenv("PASSPORT_ADRR", "127.0.0.1:1")
	t.Setenv("PASSPORT_PRINT_CONFIG", "true") // an excluded flag is no configuration field
	t.Setenv("PASSPORT_NONCE_TTL", "soon")
	t.Setenv("PASSPORT_KBS_ADDR", "127.0.0.1:2") // kbs's
	t.Setenv("PASSPORT_CONFIG", "")              // empty: as unset
	t.Setenv("PASSPORT_UPDATE_DOCS", "1")        // NonFlagEnv
	t.Setenv("PASSPORT_TOKEN_LIFETIME", "10m")   // a flag
	_, fs, _ := newServe(t)
	_, err := config.Load(fs, config.SectionServe, "", os.Getenv)
	if err == nil {
		t.Fatal("no error")
	}
	for _, want := range []string{"PASSPORT_ADRR: environment variable names no flag of serve", "PASSPORT_PRINT_CONFIG: environment", "PASSPORT_NONCE_TTL"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
	for _, not := range []string{"PASSPORT_KBS_ADDR", "PASSPORT_UPDATE_DOCS", "PASSPORT_TOKEN_LIFETIME", "127.0.0.1:1"} {
		if strings.Contains(err.Error(), not) {
			t.Errorf("error names %q:\n%v", not, err)
		}
	}

	// kbs sees only PASSPORT_KBS_*: serve's variables (and the typo above) are not its own.
	t.Setenv("PASSPORT_NONCE_TTL", "")
	t.Setenv("PASSPORT_KBS_AUDEINCE", "vault")
	_, kfs := newKBS(t)
	_, err = config.Load(kfs, config.SectionKBS, "", os.Getenv)
	if err == nil || !strings.Contains(err.Error(), "PASSPORT_KBS_AUDEINCE: environment variable names no flag of kbs (want PASSPORT_KBS_<FLAG>)") {
		t.Fatalf("kbs: err = %v, want PASSPORT_KBS_AUDEINCE", err)
	}
	if strings.Contains(err.Error(), "PASSPORT_ADRR") || strings.Contains(err.Error(), "PASSPORT_KBS_ADDR") {
		t.Errorf("kbs: error names another section's or a known variable:\n%v", err)
	}

	// A getenv that does not see a variable (a test's map) does not check it.
	_, kfs2 := newKBS(t)
	if _, err := config.Load(kfs2, config.SectionKBS, "", env(map[string]string{"PASSPORT_KBS_ADDR": "127.0.0.1:3"})); err != nil {
		t.Fatalf("map getenv: %v", err)
	}
}

func TestUnknownEnv(t *testing.T) {
	_, fs, _ := newServe(t)
	ok := []string{"PASSPORT_ADDR=x", "PASSPORT_REDIS_URL=redis://h", "PASSPORT_SKIP_REDIS=1", "PASSPORT_CONFIG=/c", "PASSPORT_KBS_ADDR=y", "HOME=/root", "PASSPORTX=1"}
	if err := config.UnknownEnv(fs, config.SectionServe, ok); err != nil {
		t.Fatalf("known variables: %v", err)
	}
	err := config.UnknownEnv(fs, config.SectionServe, append(ok, "PASSPORT_ADRR=secret", "PASSPORT_HELP", "PASSPORT_ADRR=secret"))
	if err == nil {
		t.Fatal("no error")
	}
	want := "PASSPORT_ADRR: environment variable names no flag of serve (want PASSPORT_<FLAG>)\n" +
		"PASSPORT_HELP: environment variable names no flag of serve (want PASSPORT_<FLAG>)"
	if err.Error() != want {
		t.Fatalf("err =\n%v\nwant\n%s", err, want)
	}
}
