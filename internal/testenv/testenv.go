// Package testenv builds the pieces that end-to-end tests share: a simulated TPM attester that
// replays a real event log from the module cache, and an issuer served over httptest. It is for
// tests only; the simulator is process-wide, so callers must not run these in parallel.
package testenv

import (
	"context"
	"crypto/rand"

	"crypto"
	"crypto/x509"
	"encoding/json"
	"errors"
	"github.com/passport-attest/passport/api"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"net/http/httptest"

	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/enroll"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/memory"
)

// DefaultLog is a real Ubuntu 21.04 event log that verifies end to end on the simulator.
const DefaultLog = "ubuntu-2104-no-dbx.bin"

var (
	dirOnce sync.Map
)

// ModuleDir returns the module cache directory of mod, a module of the build list (a test-data
// module such as go-attestation need not be imported by any package). It runs `go mod download
// -json MOD`, which fetches the module when a fresh machine lacks it, and fails the test when
// that does not work.
func ModuleDir(t testing.TB, mod string) string {
	t.Helper()
	if v, ok := dirOnce.Load(mod); ok {
		return v.(string)
	}
	out, err := exec.Command("go", "mod", "download", "-json", mod).Output()
	if err != nil {
		t.Fatalf("go mod download %s: %v", mod, err)
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil || info.Dir == "" {
		t.Fatalf("module %s not available (%v %s)", mod, err, info.Error)
	}
	dirOnce.Store(mod, info.Dir)
	return info.Dir
}

// EventLogPath returns the path of one of go-tpm-tools' real event logs.
func EventLogPath(t testing.TB, name string) string {
	return filepath.Join(ModuleDir(t, "github.com/google/go-tpm-tools"), "internal/test/eventlogs", name)
}

// EventLog reads one of go-tpm-tools' real event logs.
func EventLog(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(EventLogPath(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// RealLog is one real firmware event log from a dependency's test data (Apache-2.0).
type RealLog struct {
	Name string // "<module>/<file>"
	Data []byte
}

// RealLogs returns every real event log we have: go-tpm-tools' internal/test/eventlogs/*.bin
// (14 logs), go-attestation's attest/testdata/*_eventlog (7 logs) and the raw log inside its
// windows_gcp_shielded_vm.json.
func RealLogs(t testing.TB) []RealLog {
	t.Helper()
	var logs []RealLog
	add := func(prefix, pattern string) {
		paths, err := filepath.Glob(pattern)
		if err != nil || len(paths) == 0 {
			t.Fatalf("no event logs match %s (%v)", pattern, err)
		}
		sort.Strings(paths)
		for _, p := range paths {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			logs = append(logs, RealLog{Name: prefix + filepath.Base(p), Data: b})
		}
	}
	tt := ModuleDir(t, "github.com/google/go-tpm-tools")
	ga := ModuleDir(t, "github.com/google/go-attestation")
	add("go-tpm-tools/", filepath.Join(tt, "internal", "test", "eventlogs", "*.bin"))
	add("go-attestation/", filepath.Join(ga, "attest", "testdata", "*_eventlog"))
	raw, err := os.ReadFile(filepath.Join(ga, "attest", "testdata", "windows_gcp_shielded_vm.json"))
	if err != nil {
		t.Fatal(err)
	}
	var dump struct {
		Log struct{ Raw []byte }
	}
	if err := json.Unmarshal(raw, &dump); err != nil || len(dump.Log.Raw) == 0 {
		t.Fatalf("windows_gcp_shielded_vm.json: no Log.Raw (%v)", err)
	}
	return append(logs, RealLog{Name: "go-attestation/windows_gcp_shielded_vm.json (Log.Raw)", Data: dump.Log.Raw})
}

// AttesterFor opens a fresh simulator, replays log into it (a locality error from the replay is
// tolerated: the quote will then show PCR0's mismatch) and returns an attester presenting log.
func AttesterFor(t testing.TB, log []byte) *attester.Attester {
	t.Helper()
	rw, err := attester.OpenTPM("simulator")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := attester.ReplayEventLog(rw, log); err != nil && !errors.Is(err, attester.ErrLocality) {
		rw.Close()
		t.Fatal(err)
	}
	a, err := attester.New(attester.Options{TPM: rw, EventLog: log})
	if err != nil {
		rw.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(); rw.Close() })
	return a
}

// Attester opens the simulator, replays the named real log into it and returns an attester
// presenting that log. Both are closed at the end of the test.
func Attester(t testing.TB, logName string) *attester.Attester {
	t.Helper()
	return AttesterFor(t, EventLog(t, logName))
}

// IssuerOptions tune Issuer. Zero values give: memory store, allowlist of TrustAKs, empty
// reference policy, ES256 key, real clock.
type IssuerOptions struct {
	TrustAKs []crypto.PublicKey
	// AKTrust, when set, replaces the allowlist of TrustAKs.
	AKTrust evidence.AKTrust
	// Allowlist, when set, is the issuer's Config.Allowlist (admin API, enrollment) and, unless
	// AKTrust is set, its AK trust.
	Allowlist *evidence.Allowlist
	// PinnedEKs and EKRoots, when either is set, turn EK enrollment on; enrolled AKs go to
	// Allowlist, created on AKs (default: a memory store) when nil.
	PinnedEKs []crypto.PublicKey
	EKRoots   []*x509.Certificate
	AKs       store.AKStore
	Nonces    store.NonceStore
	Clocks    store.ClockStore
	Policy    policy.Appraiser
	Now       func() time.Time
	Lifetime  time.Duration
	// Audiences is issuer.Config.Audiences (empty: any audience).
	Audiences []string
}

// Server is an issuer running over httptest.
type Server struct {
	URL     string
	Issuer  *issuer.Issuer
	Keyring *jwks.Keyring
	HTTP    *httptest.Server
}

// Issuer starts an issuer over httptest, closed at the end of the test.
func Issuer(t testing.TB, o IssuerOptions) *Server {
	t.Helper()
	if (len(o.PinnedEKs) > 0 || len(o.EKRoots) > 0) && o.Allowlist == nil {
		if o.AKs == nil {
			o.AKs = memory.New()
		}
		al, err := evidence.NewStoredAllowlist(o.AKs, o.TrustAKs...)
		if err != nil {
			t.Fatal(err)
		}
		o.Allowlist = al
	}
	var trust evidence.AKTrust = o.AKTrust
	if trust == nil && o.Allowlist != nil {
		trust = o.Allowlist
	}
	if trust == nil {
		allow, err := evidence.NewAllowlist(o.TrustAKs...)
		if err != nil {
			t.Fatal(err)
		}
		trust = allow
	}
	ev, err := evidence.NewVerifier(evidence.Options{AKTrust: trust})
	if err != nil {
		t.Fatal(err)
	}
	key, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		t.Fatal(err)
	}
	ring := jwks.NewKeyring(key)
	if o.Nonces == nil {
		var opts []memory.Option
		if o.Now != nil {
			opts = append(opts, memory.WithClock(o.Now))
		}
		m := memory.New(opts...)
		o.Nonces = m
		if o.Clocks == nil {
			o.Clocks = m
		}
	}
	if o.Policy == nil {
		o.Policy = &policy.Reference{}
	}
	var enr *enroll.Enroller
	if len(o.PinnedEKs) > 0 || len(o.EKRoots) > 0 {
		if enr, err = enroll.New(enroll.Config{EKRoots: o.EKRoots, PinnedEKs: o.PinnedEKs, Sessions: o.Nonces, Allowlist: o.Allowlist, Now: o.Now}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.Start()
	t.Cleanup(srv.Close)
	is, err := issuer.New(issuer.Config{
		URL: srv.URL, Keyring: ring, Nonces: o.Nonces, Clocks: o.Clocks, Evidence: ev, Allowlist: o.Allowlist, Enroll: enr,
		Policy: o.Policy, Now: o.Now, TokenLifetime: o.Lifetime, Audiences: o.Audiences,
	})
	if err != nil {
		t.Fatal(err)
	}
	srv.Config.Handler = is.Handler()
	return &Server{URL: srv.URL, Issuer: is, Keyring: ring, HTTP: srv}
}

// VerifiedState attests once with the named real log on the simulator and returns the verified
// evidence state (what policies evaluate). It closes the simulator before returning, so it can
// be called several times in one test.
func VerifiedState(t testing.TB, logName string) *evidence.State {
	t.Helper()
	log := EventLog(t, logName)
	rw, err := attester.OpenTPM("simulator")
	if err != nil {
		t.Fatal(err)
	}
	defer rw.Close()
	if _, err := attester.ReplayEventLog(rw, log); err != nil {
		t.Fatal(err)
	}
	a, err := attester.New(attester.Options{TPM: rw, EventLog: log})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	nonce := make([]byte, api.NonceSize)
	if _, err := rand.Read(nonce); err != nil {
		t.Fatal(err)
	}
	req, err := a.Evidence(nonce)
	if err != nil {
		t.Fatal(err)
	}
	allow, err := evidence.NewAllowlist(a.AKPublic())
	if err != nil {
		t.Fatal(err)
	}
	v, err := evidence.NewVerifier(evidence.Options{AKTrust: allow})
	if err != nil {
		t.Fatal(err)
	}
	st, err := v.Verify(context.Background(), req.Nonce, req.CNF, req.Attestation)
	if err != nil {
		t.Fatalf("%s does not verify: %v", logName, err)
	}
	return st
}
