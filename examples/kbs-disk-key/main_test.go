package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/passport-attest/passport/internal/testenv"
)

// TestExample runs the example on the simulator with the real Ubuntu log: the seven steps
// print, the disk image decrypts with the released key, and the refusals are refusals.
func TestExample(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), testenv.EventLogPath(t, testenv.DefaultLog), &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	for _, want := range []string{"(1)", "(2)", "(3)", "(4)", "(5)", "(6)", "(7)",
		"releases default/key/disk", `first line: "/etc/hostname: passport-example"`,
		"stolen token, another key -> HTTP 401 invalid_dpop_proof",
		"a key that does not exist -> HTTP 404 not_found",
		"no token at all           -> HTTP 401"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
