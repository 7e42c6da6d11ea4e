package main

import (
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/passport-attest/passport/internal/loadtest"
)

func newLoadtestCmd() *cobra.Command {
	cfg := loadtest.Config{}
	var scenarios []string
	var out string
	cmd := &cobra.Command{
		Use:   "loadtest",
		Short: "Load and fault harness on loopback: attesters, issuers and a private Redis (bounded in count and time)",
		Long: "Runs `passport serve` replicas from this binary against a private redis-server on loopback,\n" +
			"simulated attesters with software TPMs (their AKs allowlisted) and relying parties validating\n" +
			"the tokens, and prints throughput, latency percentiles, errors, memory, recovery times and\n" +
			"replayed-evidence checks. Scenarios: steady, redis-restart, issuer-restart, nonce-flood\n" +
			"(all by default) and redis-restart-always (Redis fsyncing every write).",
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch {
			case cfg.Attesters < 1 || cfg.Attesters > 1000:
				return errors.New("--attesters must be 1..1000")
			case cfg.Issuers < 1 || cfg.Issuers > 2:
				return errors.New("--issuers must be 1 or 2")
			case cfg.Count < 1 || cfg.Count > 200_000:
				return errors.New("--count must be 1..200000")
			case cfg.Duration <= 0 || cfg.Duration > 2*time.Minute:
				return errors.New("--duration must be at most 2m")
			case cfg.Events < 9 || cfg.Events > 2000:
				return errors.New("--events must be 9..2000")
			case (cfg.CompareBinary != "" || len(cfg.CompareArgs) > 0 || cfg.CompareRedisSocket) && cfg.Issuers != 2:
				return errors.New("--compare-bin, --compare-args and --compare-redis-socket need --issuers 2")
			}
			if cfg.Binary == "" {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				cfg.Binary = exe
			}
			w := cmd.OutOrStdout()
			if out != "" {
				f, err := os.Create(out)
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			fmt.Fprintf(w, "%s\n\n", loadtest.Header())
			_, err := loadtest.Run(cmd.Context(), cfg, scenarios, w)
			return err
		},
	}
	fl := cmd.Flags()
	fl.StringSliceVar(&scenarios, "scenario", []string{"all"}, "scenarios to run: all, steady, redis-restart, issuer-restart, nonce-flood, redis-restart-always")
	fl.IntVar(&cfg.Attesters, "attesters", 64, "simulated attesters (software TPMs), each one goroutine")
	fl.IntVar(&cfg.Issuers, "issuers", 2, "issuer replicas (1 or 2) sharing the Redis")
	fl.IntVar(&cfg.Count, "count", 30000, "attestations of the steady scenario (pre-generated evidence)")
	fl.DurationVar(&cfg.Duration, "duration", 9*time.Second, "length of each fault scenario (at most 2m)")
	fl.IntVar(&cfg.Events, "events", 40, "events in each attester's synthetic event log")
	fl.IntVar(&cfg.Verifiers, "verifiers", 2, "relying-party goroutines validating tokens concurrently")
	fl.StringVar(&cfg.Binary, "bin", "", "passport binary that runs the issuers (default: this one)")
	fl.StringVar(&out, "out", "", "write the Markdown report to this file instead of stdout")
	fl.StringVar(&cfg.ProfileDir, "cpuprofile", "", "steady scenario: write CPU profiles of the issuers (serve --pprof on a loopback metrics listener) and of the harness to this directory")
	fl.StringVar(&cfg.CompareBinary, "compare-bin", "", "A/B comparison: run the second issuer from this passport binary (the report gives each replica's CPU per attestation under the same load)")
	fl.StringSliceVar(&cfg.CompareArgs, "compare-args", nil, "A/B comparison: extra serve flags for the second issuer only, e.g. --compare-args=--gogc=100")
	fl.BoolVar(&cfg.RedisSocket, "redis-socket", false, "issuers reach Redis through its Unix socket instead of TCP loopback")
	fl.BoolVar(&cfg.CompareRedisSocket, "compare-redis-socket", false, "A/B comparison: only the second issuer reaches Redis through its Unix socket")
	fl.DurationVar(&cfg.ProfileDuration, "profile-seconds", 5*time.Second, "with --cpuprofile: length of each issuer's profile, from the start of the measured phase")
	return cmd
}
