package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"github.com/passport-attest/passport/eventlog"
)

func newEventLogCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "eventlog",
		Short: "Replay or summarise a TCG PC Client event log (binary_bios_measurements)",
	}
	cmd.AddCommand(newEventLogReplayCmd(), newEventLogSummaryCmd())
	return cmd
}

func newEventLogReplayCmd() *cobra.Command {
	var bank string
	cmd := &cobra.Command{
		Use:   "replay FILE",
		Short: "Print the PCR values the log replays to, as JSON {\"sha256\": {\"0\": \"hex\", ...}}",
		Long: `replay parses a TCG PC Client event log (crypto-agile or legacy SHA-1) and prints the PCR
values it extends to, per bank: {"sha256": {"0": "<hex>", ...}, ...}. Every bank the log carries
is printed unless --bank names one. Events that cannot be replayed (no digest for the bank, a PCR
index past 23, ...) are listed under "unparsed_events" and their PCR is left out.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return runEventLogReplay(cmd.OutOrStdout(), args[0], bank)
		},
	}
	cmd.Flags().StringVar(&bank, "bank", "", "only this bank: sha1, sha256 or sha384 (default: every bank of the log)")
	return cmd
}

func newEventLogSummaryCmd() *cobra.Command {
	var bank string
	cmd := &cobra.Command{
		Use:   "summary FILE",
		Short: "Summarise the measured boot: secure boot and its variables, firmware, boot loader, kernel",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			raw, err := readLog(args[0])
			if err != nil {
				return err
			}
			b, err := pickBank(raw, bank)
			if err != nil {
				return err
			}
			s, err := eventlog.Summarise(raw, b)
			if err != nil {
				return err
			}
			return printJSON(cmd.OutOrStdout(), s)
		},
	}
	cmd.Flags().StringVar(&bank, "bank", "", "bank to summarise: sha1, sha256 or sha384 (default sha256, else the log's first)")
	return cmd
}

// readLog reads at most eventlog.MaxSize bytes of path, refusing larger files.
func readLog(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	raw, err := io.ReadAll(io.LimitReader(f, eventlog.MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(raw) > eventlog.MaxSize {
		return nil, fmt.Errorf("%s: %w", path, eventlog.ErrTooLarge)
	}
	return raw, nil
}

func pickBank(raw []byte, name string) (eventlog.Bank, error) {
	if name != "" {
		return eventlog.ParseBank(name)
	}
	l, err := eventlog.Parse(raw)
	if err != nil {
		return "", err
	}
	if l.HasBank(eventlog.SHA256) {
		return eventlog.SHA256, nil
	}
	return l.Banks[0], nil
}

func runEventLogReplay(w io.Writer, path, bank string) error {
	raw, err := readLog(path)
	if err != nil {
		return err
	}
	l, err := eventlog.Parse(raw)
	if err != nil {
		return err
	}
	banks := l.Banks
	if bank != "" {
		b, err := eventlog.ParseBank(bank)
		if err != nil {
			return err
		}
		banks = []eventlog.Bank{b}
	}
	out := map[string]any{}
	var unparsed []eventlog.Unparsed
	for _, b := range banks {
		r, err := l.Replay(b)
		if err != nil {
			return err
		}
		pcrs := map[string]string{}
		for p, v := range r.PCRs {
			pcrs[strconv.Itoa(p)] = hex.EncodeToString(v)
		}
		out[string(b)] = pcrs
		unparsed = append(unparsed, r.Unparsed...)
	}
	if len(unparsed) > 0 {
		out["unparsed_events"] = unparsed
	}
	return printJSON(w, out)
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
