package attester_test

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-tpm-tools/proto/attest"
	"github.com/google/go-tpm-tools/server"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
)

// outcome is one row of the replay-and-verify table.
type outcome struct {
	Log      string
	Format   string
	LogBanks string
	Replayed string
	Events   int
	PCR0     string // how PCR0 starts: "0", "locality 3", "H-CRTM"
	Hash     string // bank used for verification
	Verifies bool
	Err      string
	Relaxed  string // what a relaxed VerifyOpts achieves when the strict one fails
}

// TestReplayRealLogs replays every real event log into a freshly started simulator, produces
// evidence for a random nonce and verifies it with go-tpm-tools server.VerifyAttestation,
// pinned to SHA-256 (SHA-1 with AllowSHA1 for logs without a SHA-256 bank). The outcome table
// goes to the test log and, with PASSPORT_UPDATE_DOCS=1 (make docs), to docs/REPLAY.md.
func TestReplayRealLogs(t *testing.T) {
	logs := realLogs(t)
	var rows []outcome
	for _, l := range logs {
		rows = append(rows, replayAndVerify(t, l))
	}
	table := outcomeTable(rows)
	t.Logf("replay outcomes:\n%s", table)
	if os.Getenv("PASSPORT_UPDATE_DOCS") == "1" {
		if err := os.WriteFile("../docs/REPLAY.md", []byte(outcomeDoc(table, rows)), 0o644); err != nil {
			t.Fatalf("could not write docs/REPLAY.md: %v", err)
		}
	}

	// Expectations, measured: a change here is a behaviour change in us or in a dependency.
	want := map[string]bool{}
	for _, r := range rows {
		want[r.Log] = r.Verifies
	}
	for name, ok := range expectedVerifies {
		got, found := want[name]
		if !found {
			t.Errorf("log %s missing from the test data", name)
			continue
		}
		if got != ok {
			t.Errorf("log %s: verifies = %v, want %v", name, got, ok)
		}
	}
}

// expectedVerifies records which logs verify end to end after replay (see the table).
var expectedVerifies = map[string]bool{
	"go-tpm-tools/arch-linux-workstation.bin":                        false, // strict extraction only
	"go-tpm-tools/confidential-gke-debug-251000_eventlog.bin":        true,
	"go-tpm-tools/cos-101-amd-sev.bin":                               true,
	"go-tpm-tools/cos-85-amd-sev.bin":                                true,
	"go-tpm-tools/cos-93-amd-sev.bin":                                true,
	"go-tpm-tools/debian-10.bin":                                     true, // SHA-1 only
	"go-tpm-tools/eventlogwithsp800155.bin":                          true,
	"go-tpm-tools/gdc-host.bin":                                      false, // StartupLocality 3
	"go-tpm-tools/glinux-alex.bin":                                   false, // StartupLocality 3
	"go-tpm-tools/rhel8-uefi.bin":                                    true,
	"go-tpm-tools/ubuntu-1804-amd-sev.bin":                           true,
	"go-tpm-tools/ubuntu-2104-no-dbx.bin":                            true,
	"go-tpm-tools/ubuntu-2104-no-secure-boot.bin":                    true,
	"go-tpm-tools/ubuntu-2404-amd-sevsnp.bin":                        true,
	"go-attestation/coreos_36_shielded_vm_no_secure_boot_eventlog":   true,
	"go-attestation/crypto_agile_eventlog":                           false,
	"go-attestation/ebs_event_missing_eventlog":                      false,
	"go-attestation/option_rom_eventlog":                             false,
	"go-attestation/sb_cert_eventlog":                                false,
	"go-attestation/short_no_action_eventlog":                        true, // vacuously: no measured event
	"go-attestation/ubuntu_2104_shielded_vm_no_secure_boot_eventlog": true,
	"go-attestation/windows_gcp_shielded_vm.json (Log.Raw)":          false,
}

func replayAndVerify(t *testing.T, l realLog) outcome {
	t.Helper()
	o := outcome{Log: l.Name, PCR0: "0"}
	sim, err := attester.OpenTPM("simulator")
	if err != nil {
		t.Fatalf("%s: %v", l.Name, err)
	}
	defer sim.Close()
	if err := assertFreshPCRs(sim); err != nil {
		t.Fatalf("%s: %v", l.Name, err)
	}

	rep, rerr := attester.ReplayEventLog(sim, l.Data)
	o.Format = "legacy SHA-1"
	if rep.CryptoAgile {
		o.Format = "crypto-agile"
	}
	o.LogBanks = bankNames(rep.LogBanks)
	o.Replayed = bankNames(rep.Banks)
	o.Events = len(rep.Events)
	switch {
	case rep.StartupLocality > 0:
		o.PCR0 = fmt.Sprintf("locality %d", rep.StartupLocality)
	case rep.HCRTM:
		o.PCR0 = "H-CRTM"
	}
	if rerr != nil && !errors.Is(rerr, attester.ErrLocality) {
		o.Err = "replay: " + rerr.Error()
		return o
	}

	a, err := attester.New(attester.Options{TPM: sim, EventLog: l.Data})
	if err != nil {
		t.Fatalf("%s: New: %v", l.Name, err)
	}
	defer a.Close()
	nonce := make([]byte, api.NonceSize)
	rand.Read(nonce)
	req, err := a.Evidence(nonce)
	if err != nil {
		t.Fatalf("%s: Evidence: %v", l.Name, err)
	}
	var att attest.Attestation
	if err := proto.Unmarshal(req.Attestation, &att); err != nil {
		t.Fatalf("%s: %v", l.Name, err)
	}
	extra, err := api.ExtraData(nonce, req.CNF)
	if err != nil {
		t.Fatal(err)
	}
	opts := server.VerifyOpts{
		Nonce:      extra,
		TrustedAKs: []crypto.PublicKey{a.AKPublic()},
		HashAlgo:   tpm2.AlgSHA256,
		Loader:     server.UnsupportedLoader,
	}
	o.Hash = "sha256"
	if !slices.Contains(rep.LogBanks, tpm2.AlgSHA256) {
		opts.HashAlgo, opts.AllowSHA1, o.Hash = tpm2.AlgSHA1, true, "sha1"
	}
	_, verr := server.VerifyAttestation(&att, opts)
	o.Verifies = verr == nil
	if verr == nil && len(rep.Events) == 0 {
		o.Relaxed = "verifies vacuously: the log measures nothing; the issuer must refuse it"
	}
	if verr != nil {
		o.Err = verr.Error()
		relaxed := opts
		relaxed.AllowEFIAppBeforeCallingEvent = true
		relaxed.AllowEmptySBVar = true
		if _, err := server.VerifyAttestation(&att, relaxed); err == nil {
			o.Relaxed = "verifies with AllowEFIAppBeforeCallingEvent+AllowEmptySBVar"
		}
	}
	return o
}

// assertFreshPCRs checks that the simulator starts with PCR 0-15 of the SHA-256 bank at zero:
// each OpenTPM("simulator") must be a fresh TPM.
func assertFreshPCRs(rw interface {
	Read([]byte) (int, error)
	Write([]byte) (int, error)
}) error {
	sel := tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: []int{0, 1, 2, 3, 4, 5, 6, 7}}
	vals, err := tpm2.ReadPCRs(rw, sel)
	if err != nil {
		return fmt.Errorf("read PCRs: %w", err)
	}
	for i, v := range vals {
		if !bytes.Equal(v, make([]byte, 32)) {
			return fmt.Errorf("PCR %d is %x on a fresh simulator", i, v)
		}
	}
	return nil
}

func bankNames(algs []tpm2.Algorithm) string {
	var s []string
	for _, a := range algs {
		switch a {
		case tpm2.AlgSHA1:
			s = append(s, "sha1")
		case tpm2.AlgSHA256:
			s = append(s, "sha256")
		case tpm2.AlgSHA384:
			s = append(s, "sha384")
		default:
			s = append(s, fmt.Sprintf("0x%04x", uint16(a)))
		}
	}
	if len(s) == 0 {
		return "-"
	}
	return strings.Join(s, ",")
}

func outcomeTable(rows []outcome) string {
	var b strings.Builder
	b.WriteString("| log | format | log banks | replayed banks | events | PCR0 starts | verified bank | verifies | error or note |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		yes := "no"
		if r.Verifies {
			yes = "yes"
		}
		e := r.Err
		switch {
		case r.Relaxed != "" && e != "":
			e += " (" + r.Relaxed + ")"
		case r.Relaxed != "":
			e = "note: " + r.Relaxed
		}
		e = strings.ReplaceAll(e, "|", "\\|")
		e = strings.ReplaceAll(e, "\n", "; ")
		if e == "" {
			e = "-"
		}
		hash := r.Hash
		if hash == "" {
			hash = "-"
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %s | %d | %s | %s | %s | %s |\n",
			r.Log, r.Format, r.LogBanks, r.Replayed, r.Events, r.PCR0, hash, yes, e)
	}
	return b.String()
}

func outcomeDoc(table string, rows []outcome) string {
	n, vacuous := 0, 0
	for _, r := range rows {
		if r.Verifies {
			n++
			if r.Events == 0 {
				vacuous++
			}
		}
	}
	return fmt.Sprintf(`# Real event logs replayed into the simulator

Generated by TestReplayRealLogs (attester/replay_test.go) with make docs. Each log is replayed into a freshly
started go-tpm-tools simulator with attester.ReplayEventLog (TPM2_PCR_Extend per event and bank,
EV_NO_ACTION skipped), quoted by attester.Attester.Evidence with extraData = api.ExtraData(nonce,
cnf), and verified with go-tpm-tools server.VerifyAttestation{Nonce: extraData, TrustedAKs: [AK],
HashAlgo: SHA-256 (SHA-1 with AllowSHA1 when the log has no SHA-256 bank), Loader:
UnsupportedLoader}. "events" counts measured events (EV_NO_ACTION excluded).

%d of %d logs verify (%d of them vacuously: no measured event). Failures are StartupLocality 3
logs (the simulator cannot start PCR0 at locality 3) and logs that go-tpm-tools' strict
event-log extraction refuses; the error column says which.

%s`, n, len(rows), vacuous, table)
}

// TestReplayMalformed feeds broken logs to ReplayEventLog: each must fail before extending.
func TestReplayMalformed(t *testing.T) {
	sim, err := attester.OpenTPM("simulator")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	good := readLog(t, "ubuntu-2104-no-secure-boot.bin")

	hugeEvent := binary.LittleEndian.AppendUint32(nil, 0)      // PCR 0
	hugeEvent = binary.LittleEndian.AppendUint32(hugeEvent, 1) // EV_POST_CODE
	hugeEvent = append(hugeEvent, make([]byte, 20)...)         // SHA-1 digest
	hugeEvent = binary.LittleEndian.AppendUint32(hugeEvent, 0xFFFFFFF0)

	badPCR := binary.LittleEndian.AppendUint32(nil, 99)
	badPCR = binary.LittleEndian.AppendUint32(badPCR, 1)
	badPCR = append(badPCR, make([]byte, 20)...)
	badPCR = binary.LittleEndian.AppendUint32(badPCR, 0)

	cases := map[string][]byte{
		"empty":                  nil,
		"too large":              make([]byte, attester.MaxEventLogSize+1),
		"truncated header":       good[:10],
		"truncated mid-log":      good[:len(good)/2+3],
		"event size past end":    hugeEvent,
		"PCR index out of range": badPCR,
		"garbage":                bytes.Repeat([]byte{0xA5}, 4096),
	}
	for name, log := range cases {
		t.Run(name, func(t *testing.T) {
			rep, err := attester.ReplayEventLog(sim, log)
			if err == nil {
				t.Fatalf("no error for %s", name)
			}
			if errors.Is(err, attester.ErrLocality) {
				t.Fatalf("wrong error kind: %v", err)
			}
			if rep.Extends != 0 {
				t.Fatalf("%d extends before refusing", rep.Extends)
			}
		})
	}
	if err := assertFreshPCRs(sim); err != nil {
		t.Fatalf("malformed logs changed PCRs: %v", err)
	}
}

// TestReplayLocality checks that a StartupLocality 3 log is replayed in full and reported
// with ErrLocality.
func TestReplayLocality(t *testing.T) {
	// A legacy-format log: StartupLocality 3 (like go-attestation's short_no_action_eventlog),
	// then one measured event in PCR0.
	ev := binary.LittleEndian.AppendUint32(nil, 0)
	ev = binary.LittleEndian.AppendUint32(ev, 3) // EV_NO_ACTION
	ev = append(ev, make([]byte, 20)...)
	data := append([]byte("StartupLocality\x00"), 3)
	ev = binary.LittleEndian.AppendUint32(ev, uint32(len(data)))
	ev = append(ev, data...)
	ev = binary.LittleEndian.AppendUint32(ev, 0)
	ev = binary.LittleEndian.AppendUint32(ev, 8) // EV_S_CRTM_VERSION
	ev = append(ev, bytes.Repeat([]byte{1}, 20)...)
	ev = binary.LittleEndian.AppendUint32(ev, 2)
	ev = append(ev, 0, 0)

	sim, err := attester.OpenTPM("simulator")
	if err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	rep, err := attester.ReplayEventLog(sim, ev)
	if !errors.Is(err, attester.ErrLocality) {
		t.Fatalf("err = %v, want ErrLocality", err)
	}
	if rep.StartupLocality != 3 || rep.NoAction != 1 || len(rep.Events) != 1 || rep.Extends != 1 || rep.CryptoAgile {
		t.Fatalf("report = %+v", rep)
	}
	if got := rep.Events[0].TypeName(); got != "EV_S_CRTM_VERSION" {
		t.Fatalf("TypeName = %q", got)
	}
}
