package main

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
)

type attestFlags struct {
	issuer, tpm, eventLog, audience, out string
	kbs, fetch, token                    string
	enroll                               bool
	ek                                   string
}

func newAttestCmd() *cobra.Command {
	var f attestFlags
	cmd := &cobra.Command{
		Use:   "attest",
		Short: "Attest this machine's TPM to an issuer and write the passport token",
		Long: `attest asks the issuer for a challenge, quotes the TPM's PCRs with extraData =
SHA-256(nonce || thumbprint of a fresh P-256 cnf key), submits the quote and the TCG event log,
and writes the token to --out and the cnf private key (PKCS#8 PEM, mode 0600) to --out.key.

With --tpm simulator and --event-log FILE, the in-process TPM simulator first replays FILE
(a binary_bios_measurements log) into its PCRs and presents it as its own log; so does a
freshly started swtpm (--tpm swtpm:HOST:PORT).

With --enroll, the AK is first enrolled through the TPM's endorsement key (POST /v1/enroll,
TPM2_ActivateCredential, POST /v1/enroll/activate), for issuers that trust EKs rather than AKs.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runAttest(cmd.Context(), f, cmd.OutOrStdout())
		},
	}
	fl := cmd.Flags()
	fl.StringVar(&f.issuer, "issuer", "", "issuer base URL (required)")
	fl.StringVar(&f.tpm, "tpm", "simulator", "TPM: simulator, swtpm:HOST:PORT or a device path such as /dev/tpmrm0")
	fl.StringVar(&f.eventLog, "event-log", "", "TCG event log to present (and, on the simulator, to replay first)")
	fl.StringVar(&f.audience, "audience", "", "audience of the token (required)")
	fl.StringVar(&f.out, "out", "", "token file (the cnf key goes to FILE.key); stdout when empty")
	fl.StringVar(&f.kbs, "kbs", "", "key broker base URL: fetch the --fetch secret with the token instead of writing the token")
	fl.StringVar(&f.fetch, "fetch", "", "resource repository/type/tag to fetch from --kbs; the decrypted secret goes to --out (stdout when empty)")
	fl.StringVar(&f.token, "token", "", "with --kbs: reuse the token in FILE (and its cnf key FILE.key) while fresh; otherwise attest and save the new one there")
	fl.BoolVar(&f.enroll, "enroll", false, "first enroll the AK through the TPM's endorsement key (TPM2_ActivateCredential), for issuers that trust EKs")
	fl.StringVar(&f.ek, "ek", "rsa", "endorsement key template for --enroll: rsa or ecc")
	_ = cmd.MarkFlagRequired("issuer")
	_ = cmd.MarkFlagRequired("audience")
	cmd.MarkFlagsRequiredTogether("kbs", "fetch")
	return cmd
}

// openAttester opens the TPM, replays the event log into a simulator, and creates the AK and
// cnf key. The returned func closes both.
func openAttester(spec, eventLog string) (*attester.Attester, func(), error) {
	var logBytes []byte
	if eventLog != "" {
		b, err := os.ReadFile(eventLog)
		if err != nil {
			return nil, nil, fmt.Errorf("event log: %w", err)
		}
		logBytes = b
	}
	rw, err := attester.OpenTPM(spec)
	if err != nil {
		return nil, nil, err
	}
	if logBytes != nil && (spec == "" || spec == "simulator" || strings.HasPrefix(spec, attester.SpecSWTPMPrefix)) {
		if _, err := attester.ReplayEventLog(rw, logBytes); err != nil {
			rw.Close()
			return nil, nil, fmt.Errorf("replay %s into the simulator: %w", eventLog, err)
		}
	}
	a, err := attester.New(attester.Options{TPM: rw, EventLog: logBytes})
	if err != nil {
		rw.Close()
		return nil, nil, err
	}
	return a, func() { a.Close(); rw.Close() }, nil
}

// attestOnce enrolls the AK first when --enroll asks for it, then attests for --audience.
func attestOnce(ctx context.Context, f attestFlags, a *attester.Attester) (*api.AttestResponse, error) {
	c := &attester.Client{IssuerURL: f.issuer}
	if f.enroll {
		en, err := c.Enroll(ctx, a, attester.EK(f.ek))
		if err != nil {
			return nil, fmt.Errorf("enroll: %w", err)
		}
		fmt.Fprintf(os.Stderr, "AK %s enrolled\n", en.AKID)
	}
	return c.Attest(ctx, a, f.audience)
}

func runAttest(ctx context.Context, f attestFlags, stdout io.Writer) error {
	for _, p := range []string{f.out, f.out + ".key", f.token} {
		if fi, err := os.Stat(p); p != "" && err == nil && fi.IsDir() {
			return fmt.Errorf("%s is a directory: name a file for the token and its key", p)
		}
	}
	if f.kbs != "" || f.token != "" {
		return runFetch(ctx, f, stdout)
	}
	a, closeFn, err := openAttester(f.tpm, f.eventLog)
	if err != nil {
		return err
	}
	defer closeFn()
	res, err := attestOnce(ctx, f, a)
	if err != nil {
		return err
	}
	if f.out == "" {
		fmt.Fprintln(os.Stderr, "warning: no --out: the token goes to stdout and its cnf private key is discarded, so it can only be presented as a bearer token")
		_, err = fmt.Fprintln(stdout, res.Token)
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(a.CNFPrivate())
	if err != nil {
		return err
	}
	if err := writeFile(f.out+".key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return err
	}
	if err := writeFile(f.out, []byte(res.Token+"\n"), 0o600); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "token written to %s (expires %s), cnf key to %s.key\n", f.out, res.ExpiresAt.Format("15:04:05Z07:00"), f.out)
	return nil
}

// writeFile writes data atomically with mode perm: a new temporary file (O_EXCL, random name, so
// it never follows a planted link) in the target's directory, chmod before any byte is written,
// then a rename over path.
func writeFile(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp) // no-op after a successful rename
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
