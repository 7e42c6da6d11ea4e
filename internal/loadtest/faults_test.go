package loadtest

import (
	"testing"
	"time"
)

// redisOutage is a synthetic slot series (100 ms slots) of a Redis kill and restart:
//
//   - slot 0: warm-up, slots 1-19: 10 successes each (the baseline; half the rate is 5);
//   - the kill at 2.095 s, late in slot 20, which holds 9 successes from before it;
//   - slot 21: 6 stragglers, requests past their Redis step before the kill answered after it;
//   - slots 22-30: Redis down, nothing succeeds;
//   - the restart at 3.12 s, in slot 31 (2 successes); slot 32: 4, below half the rate;
//     slot 33: 5, exactly half the rate, so recovered at its end, 3.4 s; then 10 a slot.
func redisOutage() (series []int64, kill, restart time.Duration) {
	series = make([]int64, 40)
	series[0] = 3
	for s := 1; s < 20; s++ {
		series[s] = 10
	}
	series[20], series[21] = 9, 6
	series[31], series[32], series[33] = 2, 4, 5
	for s := 34; s < len(series); s++ {
		series[s] = 10
	}
	return series, 2095 * time.Millisecond, 3120 * time.Millisecond
}

// TestRestartRecovery: recovery is found after the restart, never in the slot holding the kill
// (whose successes came before it) nor in the stragglers' slot right after it, so recovery
// after the kill is at least the downtime. The old search from the kill's slot reported 5 ms
// after the kill for a downtime of 1.025 s.
func TestRestartRecovery(t *testing.T) {
	series, kill, restart := redisOutage()
	afterUp, afterDown, ok := restartRecovery(series, kill, restart)
	if !ok {
		t.Fatal("no recovery found")
	}
	if afterUp != 280*time.Millisecond || afterDown != 1305*time.Millisecond {
		t.Fatalf("recovered %s after the restart, %s after the kill; want 280ms and 1.305s", afterUp, afterDown)
	}
	if afterDown < restart-kill {
		t.Fatalf("recovered %s after the kill, shorter than the downtime %s", afterDown, restart-kill)
	}
}

// TestRecoveredAt: the baseline is the mean of slots 1 to the one before the fault's; the
// search starts at the first slot beginning at or after from; a slot at exactly half the
// baseline counts, one below does not.
func TestRecoveredAt(t *testing.T) {
	series, kill, restart := redisOutage()
	flat := make([]int64, 40)
	for s := range flat {
		flat[s] = 10
	}
	for _, c := range []struct {
		name        string
		series      []int64
		fault, from time.Duration
		want        time.Duration
		ok          bool
	}{
		{"from the restart", series, kill, restart, 3400 * time.Millisecond, true},
		// A slot that begins at the restart is searched: slot 34 holds 10.
		{"from a slot boundary", series, kill, 3400 * time.Millisecond, 3500 * time.Millisecond, true},
		// Searching from the kill skips the kill's slot (9 successes before it) but not the
		// stragglers after it: that is why restartRecovery searches from the restart.
		{"from the kill", series, kill, kill, 2200 * time.Millisecond, true},
		// Slots 1-2 give the baseline, 10 (slot 0 is warm-up, slot 3 holds the fault): slot 5's
		// 5 is exactly half and counts; 4 does not.
		{"exactly half", []int64{0, 10, 10, 0, 0, 5, 10}, 350 * time.Millisecond, 400 * time.Millisecond, 600 * time.Millisecond, true},
		{"never back", []int64{0, 10, 10, 0, 0, 4, 4}, 350 * time.Millisecond, 400 * time.Millisecond, 0, false},
		{"no baseline slot", flat, 150 * time.Millisecond, 300 * time.Millisecond, 0, false},
		{"no success before the fault", make([]int64, 40), 2 * time.Second, 3 * time.Second, 0, false},
		{"from past the end", flat, 2 * time.Second, 5 * time.Second, 0, false},
	} {
		got, ok := recoveredAt(c.series, c.fault, c.from)
		if got != c.want || ok != c.ok {
			t.Errorf("%s: recoveredAt = %s, %v; want %s, %v", c.name, got, ok, c.want, c.ok)
		}
	}
}
