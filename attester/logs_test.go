package attester_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// realLog is one real firmware event log from a dependency's test data (Apache-2.0).
type realLog struct {
	Name string // "<module>/<file>"
	Data []byte
}

var (
	modDirsOnce sync.Once
	modDirs     = map[string]string{}
	modDirsErr  error
)

// moduleDir finds a dependency's directory in the module cache with `go list -m`.
func moduleDir(t testing.TB, mod string) string {
	t.Helper()
	modDirsOnce.Do(func() {
		for _, m := range []string{"github.com/google/go-tpm-tools", "github.com/google/go-attestation"} {
			out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", m).Output()
			if err != nil {
				modDirsErr = err
				return
			}
			modDirs[m] = strings.TrimSpace(string(out))
		}
	})
	if modDirsErr != nil {
		t.Fatalf("go list -m: %v", modDirsErr)
	}
	d := modDirs[mod]
	if d == "" {
		t.Fatalf("module %s has no directory (is it downloaded?)", mod)
	}
	return d
}

// realLogs returns go-tpm-tools' internal/test/eventlogs/*.bin (14 logs), go-attestation's
// attest/testdata/*_eventlog (7 logs) and the raw log inside its windows_gcp_shielded_vm.json.
func realLogs(t testing.TB) []realLog {
	t.Helper()
	var logs []realLog
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
			logs = append(logs, realLog{Name: prefix + filepath.Base(p), Data: b})
		}
	}
	tt := moduleDir(t, "github.com/google/go-tpm-tools")
	ga := moduleDir(t, "github.com/google/go-attestation")
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
	logs = append(logs, realLog{Name: "go-attestation/windows_gcp_shielded_vm.json (Log.Raw)", Data: dump.Log.Raw})
	return logs
}

// readLog returns one go-tpm-tools test log by file name.
func readLog(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(moduleDir(t, "github.com/google/go-tpm-tools"), "internal", "test", "eventlogs", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}
