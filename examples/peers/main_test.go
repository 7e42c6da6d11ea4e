package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestRun runs the example end to end (simulator, real event log, issuer, three peers) and
// checks every outcome it reports: run fails when any refusal or acceptance is not as expected.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), &out, ""); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if n := strings.Count(out.String(), "  ok   "); n != 4 || strings.Contains(out.String(), "FAIL") {
		t.Fatalf("want 4 ok outcomes:\n%s", out.String())
	}
}
