package main

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"testing"

	"github.com/passport-attest/passport/eventlog"
	"github.com/passport-attest/passport/internal/testenv"
)

func runCLI(t *testing.T, args ...string) ([]byte, error) {
	t.Helper()
	root := newRoot()
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetArgs(args)
	err := root.Execute()
	return out.Bytes(), err
}

// TestEventLogReplayCLI checks the contract shape {"sha256": {"0": "hex", ...}} and values.
func TestEventLogReplayCLI(t *testing.T) {
	path := testenv.EventLogPath(t, "ubuntu-2104-no-dbx.bin")
	out, err := runCLI(t, "eventlog", "replay", path)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]map[string]string
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("output is not {bank: {pcr: hex}}: %v\n%s", err, out)
	}
	l, err := eventlog.Parse(testenv.EventLog(t, "ubuntu-2104-no-dbx.bin"))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(l.Banks) {
		t.Fatalf("banks %v, want %v", got, l.Banks)
	}
	for _, b := range l.Banks {
		r, _ := l.Replay(b)
		for p, v := range r.PCRs {
			if got[string(b)][strconv.Itoa(p)] != hex.EncodeToString(v) {
				t.Fatalf("%s PCR %d: %s, want %x", b, p, got[string(b)][strconv.Itoa(p)], v)
			}
		}
	}
	out, err = runCLI(t, "eventlog", "replay", "--bank", "sha1", path)
	if err != nil {
		t.Fatal(err)
	}
	got = nil
	if err := json.Unmarshal(out, &got); err != nil || len(got) != 1 || len(got["sha1"]["0"]) != 40 {
		t.Fatalf("--bank sha1: %s (%v)", out, err)
	}
	if _, err := runCLI(t, "eventlog", "replay", "--bank", "sha256", testenv.EventLogPath(t, "debian-10.bin")); err == nil {
		t.Fatal("SHA-256 replay of a SHA-1-only log succeeded")
	}
	if _, err := runCLI(t, "eventlog", "replay", "--bank", "md5", path); err == nil {
		t.Fatal("unknown bank accepted")
	}
}

func TestEventLogSummaryCLI(t *testing.T) {
	out, err := runCLI(t, "eventlog", "summary", testenv.EventLogPath(t, "cos-101-amd-sev.bin"))
	if err != nil {
		t.Fatal(err)
	}
	var s eventlog.Summary
	if err := json.Unmarshal(out, &s); err != nil {
		t.Fatal(err)
	}
	if s.Bank != eventlog.SHA256 || s.SecureBoot == nil || !s.SecureBoot.Enabled || s.Firmware == nil {
		t.Fatalf("summary %s", out)
	}
}
