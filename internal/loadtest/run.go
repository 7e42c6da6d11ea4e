package loadtest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"time"
)

// Scenarios lists the scenario names Run accepts, in the order "all" runs them.
var Scenarios = []string{"steady", "redis-restart", "issuer-restart", "nonce-flood"}

// ErrGoalNotMet is returned, wrapped, by Run when a scenario missed a goal it checks
// (Result.Failed), after every scenario ran and was written.
var ErrGoalNotMet = errors.New("loadtest: goal not met")

// Run runs the named scenarios ("all" for every one) and writes each result to w as it
// finishes, as a Markdown section. It stops at the first scenario that cannot run; once all
// ran, it returns an error wrapping ErrGoalNotMet naming every missed goal, if any.
func Run(ctx context.Context, cfg Config, names []string, w io.Writer) ([]*Result, error) {
	if len(names) == 1 && names[0] == "all" {
		names = Scenarios
	}
	var out []*Result
	var missed []string
	for _, n := range names {
		var r *Result
		var err error
		switch n {
		case "steady":
			r, err = Steady(ctx, cfg)
		case "redis-restart":
			r, err = RedisRestart(ctx, cfg, "everysec")
		case "redis-restart-always":
			r, err = RedisRestart(ctx, cfg, "always")
		case "issuer-restart":
			r, err = IssuerRestart(ctx, cfg)
		case "nonce-flood":
			r, err = NonceFlood(ctx, cfg)
		default:
			return out, fmt.Errorf("loadtest: unknown scenario %q (want all, %s or redis-restart-always)", n, strings.Join(Scenarios, ", "))
		}
		if err != nil {
			return out, fmt.Errorf("loadtest: %s: %w", n, err)
		}
		out = append(out, r)
		WriteMarkdown(w, r)
		for _, f := range r.Failed {
			missed = append(missed, n+": "+f)
		}
	}
	if len(missed) > 0 {
		return out, fmt.Errorf("%w: %s", ErrGoalNotMet, strings.Join(missed, "; "))
	}
	return out, nil
}

// WriteMarkdown writes one result as a Markdown section.
func WriteMarkdown(w io.Writer, r *Result) {
	fmt.Fprintf(w, "### %s\n\n%s.\n\n", r.Name, r.Setup)
	for _, l := range r.Lines {
		label, value, _ := strings.Cut(l, ": ")
		fmt.Fprintf(w, "- %s: %s\n", label, value)
	}
	for _, f := range r.Failed {
		fmt.Fprintf(w, "- **GOAL NOT MET**: %s\n", f)
	}
	fmt.Fprintln(w)
}

// Header describes the machine, for the top of a report.
func Header() string {
	load, _ := os.ReadFile("/proc/loadavg")
	return fmt.Sprintf("Measured %s on %s/%s, %d CPUs, %s; load average before the run: %s (other work on the machine competes for the same cores).",
		time.Now().UTC().Format("2006-01-02 15:04"), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), strings.Join(strings.Fields(string(load))[:3], " "))
}
