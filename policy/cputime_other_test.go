//go:build !unix

package policy_test

import "time"

func processCPU() (time.Duration, bool) { return 0, false }
