package issuer_test

import (
	"context"
	"crypto"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/internal/testenv"
	"github.com/passport-attest/passport/relyingparty"
)

// realLogOutcomes is what each real log yields end to end, measured on the simulator: true for
// a token, else the evidence check that refuses it. A change here is a behaviour change in us or
// in a dependency, and docs/EVENTLOGS.md must be regenerated (make docs).
var realLogOutcomes = map[string]string{
	"go-tpm-tools/arch-linux-workstation.bin":                        "quote",
	"go-tpm-tools/confidential-gke-debug-251000_eventlog.bin":        "token",
	"go-tpm-tools/cos-101-amd-sev.bin":                               "token",
	"go-tpm-tools/cos-85-amd-sev.bin":                                "token",
	"go-tpm-tools/cos-93-amd-sev.bin":                                "token",
	"go-tpm-tools/debian-10.bin":                                     "event_log",
	"go-tpm-tools/eventlogwithsp800155.bin":                          "token",
	"go-tpm-tools/gdc-host.bin":                                      "replay",
	"go-tpm-tools/glinux-alex.bin":                                   "replay",
	"go-tpm-tools/rhel8-uefi.bin":                                    "token",
	"go-tpm-tools/ubuntu-1804-amd-sev.bin":                           "token",
	"go-tpm-tools/ubuntu-2104-no-dbx.bin":                            "token",
	"go-tpm-tools/ubuntu-2104-no-secure-boot.bin":                    "token",
	"go-tpm-tools/ubuntu-2404-amd-sevsnp.bin":                        "token",
	"go-attestation/coreos_36_shielded_vm_no_secure_boot_eventlog":   "token",
	"go-attestation/crypto_agile_eventlog":                           "quote",
	"go-attestation/ebs_event_missing_eventlog":                      "event_log",
	"go-attestation/option_rom_eventlog":                             "event_log",
	"go-attestation/sb_cert_eventlog":                                "quote",
	"go-attestation/short_no_action_eventlog":                        "event_log",
	"go-attestation/ubuntu_2104_shielded_vm_no_secure_boot_eventlog": "token",
	"go-attestation/windows_gcp_shielded_vm.json (Log.Raw)":          "event_log",
}

// TestRealEventLogsEndToEnd runs every real event log through attest -> token -> local
// verification: each log is replayed into a fresh simulator whose AK the issuer trusts, the
// attester submits evidence over HTTP, and the token is validated by a relying party. A refusal
// must be a typed evidence error naming its check, and where the log is at fault the PCR and
// event.
func TestRealEventLogsEndToEnd(t *testing.T) {
	var rows []string
	for _, l := range testenv.RealLogs(t) {
		want, known := realLogOutcomes[l.Name]
		if !known {
			t.Errorf("%s: no expected outcome recorded", l.Name)
		}
		got, detail := runRealLog(t, l)
		if got != want {
			t.Errorf("%s: got %s (%s), want %s", l.Name, got, detail, want)
		}
		// A refusal where the log is at fault names the PCR (replay) or the event (parsing).
		switch {
		case got == "replay" && !strings.Contains(detail, "(PCR "):
			t.Errorf("%s: replay refusal does not name the PCR: %s", l.Name, detail)
		case got == "quote" && !strings.Contains(detail, "event"):
			t.Errorf("%s: parse refusal does not name the event: %s", l.Name, detail)
		}
		detail = strings.NewReplacer("|", "/", "\n", " ", "\r", " ").Replace(sortRegisters(detail))
		rows = append(rows, fmt.Sprintf("| %s | %s | %s |", l.Name, got, detail))
	}
	if os.Getenv("PASSPORT_UPDATE_DOCS") == "1" {
		doc := eventLogsDoc(rows)
		if err := os.WriteFile("../docs/EVENTLOGS.md", []byte(doc), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func runRealLog(t *testing.T, l testenv.RealLog) (outcome, detail string) {
	t.Helper()
	var out, det string
	t.Run(l.Name, func(t *testing.T) {
		a := testenv.AttesterFor(t, l.Data)
		srv := testenv.Issuer(t, testenv.IssuerOptions{TrustAKs: []crypto.PublicKey{a.AKPublic()}})
		c := &attester.Client{IssuerURL: srv.URL}
		res, err := c.Attest(context.Background(), a, "real-logs")
		if err != nil {
			var he *attester.HTTPError
			if !errors.As(err, &he) || !strings.HasPrefix(he.Err.Code, "evidence_rejected_") {
				t.Fatalf("refusal is not a typed evidence error: %v", err)
			}
			out = strings.TrimPrefix(he.Err.Code, "evidence_rejected_")
			det = he.Err.Description
			return
		}
		v, err := relyingparty.NewVerifier(relyingparty.Config{
			Issuer: srv.URL, Audience: "real-logs", KeySet: relyingparty.NewStaticKeySet(srv.Keyring.PublicSet()),
		})
		if err != nil {
			t.Fatal(err)
		}
		claims, err := v.Verify(context.Background(), res.Token)
		if err != nil {
			t.Fatalf("token for %s refused by the relying party: %v", l.Name, err)
		}
		m := claims.Submods["tpm"].Measurements
		out = "token"
		det = fmt.Sprintf("EAR %s; %d PCRs measured; secure boot %v", claims.OverallStatus(), len(m.PCRs), *m.SecureBoot)
	})
	return out, det
}

// registerList matches go-eventlog's list of registers that failed to replay, which it prints
// in map order.
var registerList = regexp.MustCompile(`failed to replay: \[([0-9 ]*)\]`)

// sortRegisters sorts the register lists in a refusal, so that the generated doc is stable.
func sortRegisters(s string) string {
	return registerList.ReplaceAllStringFunc(s, func(m string) string {
		f := strings.Fields(registerList.FindStringSubmatch(m)[1])
		slices.SortFunc(f, func(a, b string) int { x, _ := strconv.Atoi(a); y, _ := strconv.Atoi(b); return x - y })
		return "failed to replay: [" + strings.Join(f, " ") + "]"
	})
}

func eventLogsDoc(rows []string) string {
	var b strings.Builder
	b.WriteString(`# Real event logs, end to end

Generated by TestRealEventLogsEndToEnd (issuer/reallogs_test.go) with ` + "`make docs`" + `. Each real
TCG event log from our dependencies' test data is replayed into a fresh TPM simulator, whose AK
the issuer trusts; the attester submits a quote and the log over HTTP; the issuer appraises it
(go-tpm-tools with the SHA-256 bank pinned, plus passport's own checks) and either mints a token,
which a relying party then validates locally, or refuses with the check that failed and, where
the log is at fault, the PCR and event.

Why refusals happen:
- **StartupLocality 3** (gdc-host, glinux-alex; check "replay", PCR 0): the simulator cannot
  start PCR0 from locality 3, so the quoted PCR0 differs from the log's. On the real machine it
  would match. gdc-host would still be refused there: its EV_S_CRTM_VERSION digest is not the
  hash of its data (tpm2_eventlog warns about it too), which go-tpm-tools' platform extraction
  and our event rule 1 (docs/EVIDENCE.md) both refuse.
- **Legacy SHA-1 logs** (debian-10, ebs_event_missing, option_rom, the Windows dump; check
  "event_log"): the issuer refuses SHA-1 PCR banks (collisions); only the SHA-256 bank is
  appraised.
- **Strict event-log extraction** (arch-linux-workstation, crypto_agile, sb_cert; check "quote",
  naming the event where the library does): go-tpm-tools
  refuses an empty SecureBoot variable or an EFI application measured before "Calling EFI
  Application from Boot Option". These logs verify with the library's relaxations, which the
  issuer does not enable.
- **short_no_action_eventlog** measures nothing; it is refused even where SHA-1 is allowed.

| log | outcome | detail |
|---|---|---|
`)
	for _, r := range rows {
		b.WriteString(r + "\n")
	}
	return b.String()
}
