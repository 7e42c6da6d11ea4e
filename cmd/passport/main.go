// Command passport is the attestation token service: the issuer (serve), the attester client
// (attest), a local token verifier (verify) and a one-process demo of the whole flow (demo).
// Flags form a contract that scripts rely on; see README.md.
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := newRoot().ExecuteContext(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "passport:", err)
		os.Exit(1)
	}
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "passport",
		Short:         "Remote attestation tokens: TPM evidence in, short-lived signed passports out",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newRevokeCmd(), newKeysCmd()) // revoke.go, keys.go
	root.AddCommand(newServeCmd(), newAttestCmd(), newVerifyCmd(), newDemoCmd())
	root.AddCommand(newKBSCmd())
	root.AddCommand(newEventLogCmd())
	root.AddCommand(newLoadtestCmd())
	root.AddCommand(newPolicyCmd())
	return root
}

// logger writes structured logs to stderr (log/slog text handler).
func logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// quietLogger discards info logs (the demo prints its own narrative).
func quietLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}
