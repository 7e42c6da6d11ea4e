package eventlog_test

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-eventlog/tcg"

	"github.com/passport-attest/passport/eventlog"
	"github.com/passport-attest/passport/internal/logforge"
	"github.com/passport-attest/passport/internal/testenv"
)

// peerRefusals are the real logs on which Debian's tpm2_eventlog (tpm2-tools 5.x) gives no PCR
// values to compare with, and why. Every other real log must replay to exactly tpm2_eventlog's
// values on every bank both print.
var peerRefusals = map[string]string{
	// tpm2_eventlog dies with SIGSEGV on this legacy SHA-1 log (every run); we replay it.
	"go-attestation/option_rom_eventlog": "tpm2_eventlog crashes (SIGSEGV)",
	// A legacy-format log whose only event is a 17-byte EV_NO_ACTION: tpm2_eventlog refuses it
	// ("invalid eventDataSize in specid event"); we parse it as a SHA-1 log measuring nothing.
	"go-attestation/short_no_action_eventlog": "tpm2_eventlog refuses: invalid eventDataSize in specid event",
}

// noActionDivergence lists the real logs carrying EV_NO_ACTION events after the Spec ID Event
// (SP800-155 reference-manifest events, StartupLocality). tpm2_eventlog 5.4 extends those
// events' all-zero digests into their PCR and ignores StartupLocality; TCG PC Client PFP
// section 10.4.1 says an EV_NO_ACTION event is never extended and section 10.4.5.3 that PCR0
// then starts at the locality, which is what go-eventlog, go-tpm-tools and we do (and what
// the real GCE attestations' quotes confirm). On these logs the test requires tpm2_eventlog's
// values to equal our replay of the same log under its rule, so the whole difference is
// accounted for.
var noActionDivergence = map[string]bool{
	"go-tpm-tools/confidential-gke-debug-251000_eventlog.bin": true, // SP800-155 events on PCR0
	"go-tpm-tools/eventlogwithsp800155.bin":                   true, // SP800-155 events on PCR0
	"go-tpm-tools/gdc-host.bin":                               true, // StartupLocality 3
	"go-tpm-tools/glinux-alex.bin":                            true, // StartupLocality 3
}

// TestCrossCheckTPM2Tools replays every real log with our code and with Debian's tpm2_eventlog
// (an independent C parser, tpm2-tools) and requires equal PCR values per bank, or the
// documented refusal above.
func TestCrossCheckTPM2Tools(t *testing.T) {
	if _, err := exec.LookPath("tpm2_eventlog"); err != nil {
		t.Fatal("tpm2_eventlog not installed (Debian package tpm2-tools; .ci/run installs it)")
	}
	dir := t.TempDir()
	for i, rl := range testenv.RealLogs(t) {
		t.Run(rl.Name, func(t *testing.T) {
			path := filepath.Join(dir, strconv.Itoa(i)+".bin")
			if err := os.WriteFile(path, rl.Data, 0o600); err != nil {
				t.Fatal(err)
			}
			peer, perr := tpm2EventLog(path)
			why, refused := peerRefusals[rl.Name]
			switch {
			case refused && perr == nil:
				t.Fatalf("documented refusal (%s) but tpm2_eventlog now answers: update peerRefusals", why)
			case refused:
				t.Logf("no comparison: %s (%v)", why, perr)
				return
			case perr != nil:
				t.Fatalf("tpm2_eventlog: %v", perr)
			}
			l, err := eventlog.Parse(rl.Data)
			if err != nil {
				t.Fatal(err)
			}
			if noActionDivergence[rl.Name] {
				l = extendNoAction(t, l)
			} else if hasNoAction(l) {
				t.Fatal("log with EV_NO_ACTION events after the Spec ID Event: add it to noActionDivergence")
			}
			if len(peer) == 0 {
				t.Fatal("tpm2_eventlog printed no PCR bank")
			}
			for bank, want := range peer {
				b, err := eventlog.ParseBank(bank)
				if err != nil {
					t.Fatalf("tpm2_eventlog printed bank %q", bank)
				}
				r, err := l.Replay(b)
				if err != nil {
					t.Fatalf("%s: %v", bank, err)
				}
				if len(r.PCRs) != len(want) {
					t.Errorf("%s: we replay %d PCRs, tpm2_eventlog %d", bank, len(r.PCRs), len(want))
				}
				for p, v := range want {
					if !bytes.Equal(r.PCRs[p], v) {
						t.Errorf("%s PCR %d: ours %x, tpm2_eventlog %x", bank, p, r.PCRs[p], v)
					}
				}
			}
			for _, b := range l.Banks {
				if _, ok := peer[string(b)]; !ok {
					if r, _ := l.Replay(b); len(r.PCRs) > 0 {
						t.Errorf("we replay bank %s, tpm2_eventlog does not", b)
					}
				}
			}
		})
	}
}

func hasNoAction(l *eventlog.Log) bool {
	return slices.ContainsFunc(l.Events, func(e eventlog.Event) bool { return e.Type == tcg.NoAction })
}

// extendNoAction re-encodes l with its EV_NO_ACTION events relabelled as EV_POST_CODE, so that
// they are extended like tpm2_eventlog 5.4 does (and StartupLocality no longer applies).
func extendNoAction(t *testing.T, l *eventlog.Log) *eventlog.Log {
	t.Helper()
	if !hasNoAction(l) {
		t.Fatal("listed in noActionDivergence but has no EV_NO_ACTION event")
	}
	banks, evs := logforge.FromLog(l)
	for i := range evs {
		if evs[i].Type == uint32(tcg.NoAction) {
			evs[i].Type = uint32(tcg.PostCode)
		}
	}
	l2, err := eventlog.Parse(logforge.Encode(banks, evs))
	if err != nil {
		t.Fatal(err)
	}
	return l2
}

// errPeerCrash marks a tpm2_eventlog run killed by a signal.
var errPeerCrash = errors.New("tpm2_eventlog crashed")

// tpm2EventLog runs tpm2_eventlog on path and returns the "pcrs:" section of its YAML output:
// bank -> PCR index -> value. A crash is retried twice (tpm2_eventlog 5.4 occasionally dies with
// SIGSEGV on valid logs).
func tpm2EventLog(path string) (map[string]map[int][]byte, error) {
	var out []byte
	var err error
	for try := 0; try < 3; try++ {
		var stderr bytes.Buffer
		cmd := exec.Command("tpm2_eventlog", path)
		cmd.Stderr = &stderr
		out, err = cmd.Output()
		var ee *exec.ExitError
		if errors.As(err, &ee) && !ee.Exited() {
			err = fmt.Errorf("%w: %v", errPeerCrash, err)
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("%v: %s", err, strings.TrimSpace(stderr.String()))
		}
		break
	}
	if err != nil {
		return nil, err
	}
	res := map[string]map[int][]byte{}
	in := false
	bank := ""
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "pcrs:":
			in = true
		case !in:
		case strings.HasPrefix(line, "  ") && !strings.HasPrefix(line, "    ") && strings.HasSuffix(line, ":"):
			bank = strings.TrimSuffix(strings.TrimSpace(line), ":")
			res[bank] = map[int][]byte{}
		case strings.HasPrefix(line, "    ") && bank != "":
			idx, val, ok := strings.Cut(line, ":")
			n, err1 := strconv.Atoi(strings.TrimSpace(idx))
			v, err2 := hex.DecodeString(strings.TrimPrefix(strings.TrimSpace(val), "0x"))
			if !ok || err1 != nil || err2 != nil {
				return nil, fmt.Errorf("unexpected tpm2_eventlog line %q", line)
			}
			res[bank][n] = v
		default:
			in = false
		}
	}
	return res, sc.Err()
}
