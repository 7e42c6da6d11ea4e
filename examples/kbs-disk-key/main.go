// Command kbs-disk-key runs passport's seven-step flow end to end in one process, on loopback:
// a machine (the TPM simulator replaying a real machine's boot event log) attests to the issuer,
// the key broker (KBS) releases that machine's disk encryption key to it, and the machine
// decrypts its disk image with the key.
//
//	go run ./examples/kbs-disk-key [-event-log FILE]
//
// Setup (what an operator does once): a random 256-bit disk key is stored in the broker's
// secrets directory under default/key/disk, a "disk image" is encrypted with it (AES-256-GCM),
// the issuer trusts this machine's attestation key and enrols its PCR 7 as a reference value,
// and the broker's policy releases default/key/disk to this machine only (its AK thumbprint)
// and only while its attestation is affirming.
package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-tpm-tools/client"
	"github.com/google/go-tpm/legacy/tpm2"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/kbs"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/store/memory"
	"github.com/passport-attest/passport/token"
)

// defaultLog is the real event log replayed by default: an Ubuntu 21.04 machine's
// binary_bios_measurements from go-tpm-tools' test data (module cache).
const defaultLog = "internal/test/eventlogs/ubuntu-2104-no-dbx.bin"

// diskAAD binds the disk image's ciphertext to its purpose (AES-GCM additional data).
const diskAAD = "passport kbs-disk-key example disk image v1"

func main() {
	eventLog := flag.String("event-log", "", "TCG event log to replay (default: go-tpm-tools' "+defaultLog+")")
	flag.Parse()
	if err := run(context.Background(), *eventLog, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "kbs-disk-key:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, eventLog string, w io.Writer) error {
	if eventLog == "" {
		out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "github.com/google/go-tpm-tools").Output()
		if err != nil {
			return fmt.Errorf("no -event-log and go-tpm-tools is not in the module cache: %w", err)
		}
		eventLog = filepath.Join(strings.TrimSpace(string(out)), defaultLog)
	}
	logBytes, err := os.ReadFile(eventLog)
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "kbs-disk-key-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)

	// --- Setup -------------------------------------------------------------------------------
	// The machine: the simulator with a real machine's boot replayed into its PCRs.
	rw, err := attester.OpenTPM("simulator")
	if err != nil {
		return err
	}
	defer rw.Close()
	if _, err := attester.ReplayEventLog(rw, logBytes); err != nil {
		return fmt.Errorf("replay %s: %w", filepath.Base(eventLog), err)
	}
	machine, err := attester.New(attester.Options{TPM: rw, EventLog: logBytes})
	if err != nil {
		return err
	}
	defer machine.Close()
	pcr7, err := readPCR7(rw)
	if err != nil {
		return err
	}
	sub, err := thumbprint(machine.AKPublic())
	if err != nil {
		return err
	}

	// The disk key in the broker's secrets directory, and a disk image encrypted with it.
	secrets := filepath.Join(work, "secrets")
	diskKey := make([]byte, 32)
	if _, err := rand.Read(diskKey); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(secrets, "default", "key"), 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(secrets, "default", "key", "disk"), diskKey, 0o600); err != nil {
		return err
	}
	contents := []byte("/etc/hostname: passport-example\n/home/alice/notes.txt: the quarterly numbers\n")
	image := filepath.Join(work, "disk.img")
	if err := sealFile(image, diskKey, contents); err != nil {
		return err
	}
	clear(diskKey) // from now on only the broker holds it

	// The issuer: trusts this AK, with PCR 7 of this machine as reference value.
	issURL, stopIss, times, err := startIssuer(machine.AKPublic(), pcr7)
	if err != nil {
		return err
	}
	defer stopIss()

	// The broker: discovers the issuer's keys; default/key/disk goes to this machine only.
	kbsURL, stopKBS, err := startKBS(ctx, issURL, secrets, fmt.Sprintf(`
rules:
  - resource: "default/key/disk"
    allow: 'status == "affirming" && claims.sub == "%s" && claims.submods.tpm.measurements.pcrs["7"] == "%s"'
`, sub, pcr7))
	if err != nil {
		return err
	}
	defer stopKBS()

	fmt.Fprintf(w, "kbs-disk-key: machine (TPM simulator replaying %s), issuer and key broker on loopback\n", filepath.Base(eventLog))
	fmt.Fprintf(w, "setup: disk key stored as default/key/disk; %s encrypted with it (AES-256-GCM, %d bytes)\n\n", filepath.Base(image), fileSize(image))
	step := func(n int, text string, d time.Duration) {
		fmt.Fprintf(w, "  (%d) %-96s %9s\n", n, text, d.Round(time.Microsecond))
	}

	// --- The seven steps ---------------------------------------------------------------------
	ic := &attester.Client{IssuerURL: issURL}
	t0 := time.Now()
	ch, err := ic.Challenge(ctx)
	if err != nil {
		return err
	}
	rtt := time.Since(t0)
	step(1, "machine asks the issuer for a challenge: POST /v1/challenge", rtt)
	step(2, fmt.Sprintf("issuer answers a fresh single-use nonce (%d bytes)", len(ch.Nonce)), rtt)
	t0 = time.Now()
	req, err := machine.Evidence(ch.Nonce)
	if err != nil {
		return err
	}
	req.Audience = "kbs"
	step(3, "machine quotes its PCRs with extraData = SHA-256(nonce || cnf key thumbprint)", time.Since(t0))
	res, err := ic.Submit(ctx, req)
	if err != nil {
		return err
	}
	step(4, "verifier checks the evidence: AK, quote signature, nonce binding, event-log replay", times.get(issuer.StepVerify))
	step(5, "verifier applies policy: PCR 7 reference value, EAR trustworthiness vector", times.get(issuer.StepPolicy))
	t0 = time.Now()
	kc := &attester.KBSClient{URL: kbsURL}
	disk := api.ResourceID{Repository: "default", Type: "key", Tag: "disk"}
	key, err := kc.Fetch(ctx, disk, res.Token, machine.CNFPrivate())
	if err != nil {
		return fmt.Errorf("the broker refused the machine: %w", err)
	}
	fetch := time.Since(t0)
	step(6, "issuer mints the token; the KBS checks it, the DPoP proof and the policy, releases default/key/disk", fetch)
	t0 = time.Now()
	plain, err := openFile(image, key)
	clear(key)
	if err != nil {
		return fmt.Errorf("decrypt the disk image: %w", err)
	}
	step(7, fmt.Sprintf("the key came as a JWE (ECDH-ES+A256KW, %s) to the machine's cnf key only; it unlocks %s", kbs.ContentEncryption, filepath.Base(image)), time.Since(t0))

	fmt.Fprintf(w, "\n  disk image decrypted: %d bytes; first line: %q\n", len(plain), strings.SplitN(string(plain), "\n", 2)[0])
	if !bytes.Equal(plain, contents) {
		return errors.New("the decrypted disk image differs from the original")
	}

	fmt.Fprintf(w, "\nrefusals:\n")
	thief, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	_, err = kc.Fetch(ctx, disk, res.Token, thief)
	fmt.Fprintf(w, "  stolen token, another key -> %s\n", describe(err))
	_, err = kc.Fetch(ctx, api.ResourceID{Repository: "default", Type: "key", Tag: "other"}, res.Token, machine.CNFPrivate())
	fmt.Fprintf(w, "  a key that does not exist -> %s\n", describe(err))
	hr, _ := http.NewRequestWithContext(ctx, http.MethodGet, kbsURL+disk.Path(), nil)
	if r, err := http.DefaultClient.Do(hr); err == nil {
		r.Body.Close()
		fmt.Fprintf(w, "  no token at all           -> HTTP %d\n", r.StatusCode)
	}
	return nil
}

func describe(err error) string {
	if err == nil {
		return "RELEASED (this is a bug)"
	}
	var be *attester.BrokerError
	if errors.As(err, &be) {
		return fmt.Sprintf("HTTP %d %s", be.Status, be.Err.Code)
	}
	return err.Error()
}

// readPCR7 reads the SHA-256 PCR 7 (Secure Boot policy) of the machine: the reference value
// an operator enrols.
func readPCR7(rw io.ReadWriter) (string, error) {
	pcrs, err := client.ReadPCRs(rw, tpm2.PCRSelection{Hash: tpm2.AlgSHA256, PCRs: []int{7}})
	if err != nil {
		return "", fmt.Errorf("read PCR 7: %w", err)
	}
	return hex.EncodeToString(pcrs.GetPcrs()[7]), nil
}

// thumbprint is the token's sub for an AK: its RFC 7638 SHA-256 thumbprint, base64url.
func thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

type stepTimes struct {
	mu sync.Mutex
	d  map[string]time.Duration
}

func (s *stepTimes) observe(step string, d time.Duration) {
	s.mu.Lock()
	s.d[step] = d
	s.mu.Unlock()
}

func (s *stepTimes) get(step string) time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.d[step]
}

func startIssuer(ak crypto.PublicKey, pcr7 string) (string, func(), *stepTimes, error) {
	allow, err := evidence.NewAllowlist(ak)
	if err != nil {
		return "", nil, nil, err
	}
	ev, err := evidence.NewVerifier(evidence.Options{AKTrust: allow})
	if err != nil {
		return "", nil, nil, err
	}
	key, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		return "", nil, nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, nil, err
	}
	url := "http://" + ln.Addr().String()
	times := &stepTimes{d: map[string]time.Duration{}}
	is, err := issuer.New(issuer.Config{
		URL: url, Keyring: jwks.NewKeyring(key), Nonces: memory.New(), Evidence: ev,
		Policy:  &policy.Reference{PCRs: map[string][]string{"7": {pcr7}}},
		Observe: times.observe, Log: slog.New(slog.DiscardHandler),
	})
	if err != nil {
		ln.Close()
		return "", nil, nil, err
	}
	return url, serve(ln, is.Handler()), times, nil
}

func startKBS(ctx context.Context, issURL, secrets, policyYAML string) (string, func(), error) {
	d, err := relyingparty.Discover(ctx, issURL, nil)
	if err != nil {
		return "", nil, err
	}
	v, err := relyingparty.NewVerifier(relyingparty.Config{
		Issuer: issURL, Audience: "kbs", KeySet: relyingparty.NewRemoteKeySet(ctx, d.JWKSURI), MinStatus: token.TierWarning,
	})
	if err != nil {
		return "", nil, err
	}
	pol, err := kbs.ParsePolicy([]byte(policyYAML))
	if err != nil {
		return "", nil, err
	}
	st, err := kbs.NewDirStore(secrets)
	if err != nil {
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		st.Close()
		return "", nil, err
	}
	// The broker's public URL, which DPoP proofs must name: its own listener here.
	public := "http://" + ln.Addr().String()
	b, err := kbs.New(kbs.Config{Verifier: v, Store: st, Policy: pol, Audit: slog.New(slog.DiscardHandler), PublicURL: public})
	if err != nil {
		ln.Close()
		st.Close()
		return "", nil, err
	}
	stop := serve(ln, b.Handler())
	return public, func() { stop(); st.Close() }, nil
}

func serve(ln net.Listener, h http.Handler) func() {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }
}

// sealFile writes nonce || AES-256-GCM(key, plaintext) to path.
func sealFile(path string, key, plaintext []byte) error {
	aead, err := gcm(key)
	if err != nil {
		return err
	}
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return err
	}
	return os.WriteFile(path, aead.Seal(nonce, nonce, plaintext, []byte(diskAAD)), 0o600)
}

// openFile reverses sealFile; a wrong key fails authentication.
func openFile(path string, key []byte) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	aead, err := gcm(key)
	if err != nil {
		return nil, err
	}
	if len(b) < aead.NonceSize() {
		return nil, errors.New("disk image too short")
	}
	return aead.Open(nil, b[:aead.NonceSize()], b[aead.NonceSize():], []byte(diskAAD))
}

func gcm(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

func fileSize(path string) int64 {
	fi, err := os.Stat(path)
	if err != nil {
		return 0
	}
	return fi.Size()
}
