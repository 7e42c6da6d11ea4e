package attester_test

import (
	"testing"

	"github.com/passport-attest/passport/internal/testenv"
)

// realLog is one real firmware event log from a dependency's test data (Apache-2.0).
type realLog = testenv.RealLog

// realLogs returns every real event log we have (see testenv.RealLogs).
func realLogs(t testing.TB) []realLog { return testenv.RealLogs(t) }

// readLog returns one go-tpm-tools test log by file name.
func readLog(t testing.TB, name string) []byte { return testenv.EventLog(t, name) }
