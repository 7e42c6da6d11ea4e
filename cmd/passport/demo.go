package main

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	pb "github.com/google/go-tpm-tools/proto/attest"
	"github.com/spf13/cobra"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/store/memory"
)

// demoEventLog is the real event log the demo replays: an Ubuntu 21.04 machine's
// binary_bios_measurements, shipped in go-tpm-tools' test data.
const demoEventLog = "internal/test/eventlogs/ubuntu-2104-no-dbx.bin"

func newDemoCmd() *cobra.Command {
	var eventLog string
	cmd := &cobra.Command{
		Use:   "demo",
		Short: "Run the whole passport flow in one process on loopback (simulated TPM, no Redis)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if eventLog == "" {
				var err error
				if eventLog, err = findModuleFile("github.com/google/go-tpm-tools", demoEventLog); err != nil {
					return fmt.Errorf("no --event-log given and %w", err)
				}
			}
			return runDemo(cmd.Context(), eventLog, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVar(&eventLog, "event-log", "", "real TCG event log to replay (default: go-tpm-tools' "+demoEventLog+" from the module cache)")
	return cmd
}

// findModuleFile locates a file of a module in the module cache with `go list -m`.
func findModuleFile(module, rel string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		return "", fmt.Errorf("cannot locate %s in the module cache (go list: %w)", module, err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), rel)
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
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

func runDemo(ctx context.Context, eventLog string, w io.Writer) error {
	fmt.Fprintf(w, "passport demo: issuer, attester (TPM simulator replaying %s) and relying party on loopback\n\n", filepath.Base(eventLog))

	// The attester: simulator with a real machine's boot replayed into its PCRs.
	a, closeA, err := openAttester("simulator", eventLog)
	if err != nil {
		return err
	}
	defer closeA()

	// The issuer trusts exactly this simulator's AK (an allowlist, as in production).
	allow, err := evidence.NewAllowlist(a.AKPublic())
	if err != nil {
		return err
	}
	ev, err := evidence.NewVerifier(evidence.Options{AKTrust: allow})
	if err != nil {
		return err
	}
	key, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		return err
	}
	times := &stepTimes{d: map[string]time.Duration{}}
	issLn, issURL, err := listen()
	if err != nil {
		return err
	}
	is, err := issuer.New(issuer.Config{
		URL: issURL, Keyring: jwks.NewKeyring(key), Nonces: memory.New(), Evidence: ev,
		Policy: &policy.Reference{}, Observe: times.observe, Log: quietLogger(),
	})
	if err != nil {
		return err
	}
	stopIss := serveOn(issLn, is.Handler())
	defer stopIss()

	// The relying party: a service whose handler sits behind the middleware, which demands a
	// DPoP proof (RFC 9449) by the token's cnf key: a token without that key is useless.
	ks := relyingparty.NewRemoteKeySet(ctx, issURL+api.PathJWKS)
	v, err := relyingparty.NewVerifier(relyingparty.Config{Issuer: issURL, Audience: "demo-service", KeySet: ks})
	if err != nil {
		return err
	}
	rpLn, rpURL, err := listen()
	if err != nil {
		return err
	}
	rpOrigin, err := url.Parse(rpURL) // proofs must name the relying party's own URL
	if err != nil {
		rpLn.Close()
		return err
	}
	protected := relyingparty.Middleware(v, relyingparty.RequirePoP(relyingparty.PoPDPoP), relyingparty.WithExternalURL(rpOrigin))(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := relyingparty.ClaimsFromContext(r.Context())
		fmt.Fprintf(w, "hello attester %s…, EAR status %s", c.Subject[:12], c.OverallStatus())
	}))
	stopRP := serveOn(rpLn, protected)
	defer stopRP()

	client := &attester.Client{IssuerURL: issURL}
	step := func(n int, text string, d time.Duration) {
		fmt.Fprintf(w, "  (%d) %-86s %9s\n", n, text, d.Round(time.Microsecond))
	}

	t0 := time.Now()
	ch, err := client.Challenge(ctx)
	if err != nil {
		return err
	}
	rtt := time.Since(t0)
	step(1, "attester asks the issuer for a challenge: POST /v1/challenge", rtt)
	step(2, fmt.Sprintf("issuer answers a fresh single-use nonce (%d bytes, expires %s)", len(ch.Nonce), ch.ExpiresAt.Format("15:04:05")), times.get(issuer.StepChallenge))
	t0 = time.Now()
	req, err := a.Evidence(ch.Nonce)
	if err != nil {
		return err
	}
	req.Audience = "demo-service"
	step(3, "attester quotes its PCRs, extraData = SHA-256(nonce || cnf key thumbprint)", time.Since(t0))
	res, err := client.Submit(ctx, req)
	if err != nil {
		return err
	}
	step(4, "verifier checks the evidence: AK, quote signature, nonce binding, event-log replay", times.get(issuer.StepVerify))
	step(5, "verifier applies policy: reference values, secure boot, EAR trustworthiness vector", times.get(issuer.StepPolicy))
	step(6, "issuer mints a short-lived ES256 token (typ eat+jwt) bound to the attester's key", times.get(issuer.StepSign))

	t0 = time.Now()
	body, status, err := callRP(ctx, rpURL, res.Token, a.CNFPrivate())
	if err != nil {
		return err
	}
	rpTime := time.Since(t0)
	claims, err := v.Verify(ctx, res.Token)
	if err != nil {
		return fmt.Errorf("relying party refused the demo token: %w", err)
	}
	tp, _ := a.CNF().Thumbprint(crypto.SHA256)
	ctp, _ := claims.Confirmation.JWK.Thumbprint(crypto.SHA256)
	step(7, fmt.Sprintf("token + DPoP proof by cnf key %s…; the relying party validates locally: HTTP %d", base64.RawURLEncoding.EncodeToString(tp)[:10], status), rpTime)
	if base64.RawURLEncoding.EncodeToString(tp) != base64.RawURLEncoding.EncodeToString(ctp) {
		return errors.New("token's cnf does not match the attester key")
	}
	kbsLine, err := demoKBS(ctx, v, res.Token, a.CNFPrivate())
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "      %s\n", kbsLine)
	fmt.Fprintf(w, "\n  protected handler answered: %q\n", body)
	fmt.Fprintf(w, "  token: %d bytes, exp in %s, sub (AK thumbprint) %s…, EAR status %s\n",
		len(res.Token), time.Until(claims.Expires()).Round(time.Second), claims.Subject[:12], claims.OverallStatus())

	fmt.Fprintf(w, "\nrefusals:\n")
	_, err = client.Submit(ctx, req)
	fmt.Fprintf(w, "  replayed nonce     -> %v\n", describe(err))
	ch2, err := client.Challenge(ctx)
	if err != nil {
		return err
	}
	req2, err := a.Evidence(ch2.Nonce)
	if err != nil {
		return err
	}
	req2.Audience = "demo-service"
	if err := tamperEventLog(req2); err != nil {
		return err
	}
	_, err = client.Submit(ctx, req2)
	fmt.Fprintf(w, "  tampered event log -> %v\n", describe(err))
	thief, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	_, status, err = callRP(ctx, rpURL, res.Token, nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  stolen token, no proof         -> HTTP %d\n", status)
	_, status, err = callRP(ctx, rpURL, res.Token, thief)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  stolen token, thief's proof    -> HTTP %d\n", status)
	_, status, err = callRP(ctx, rpURL, "", nil)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "  no token at all                -> HTTP %d\n", status)
	return nil
}

// separatorDigest is SHA-256(00000000), the measurement of every EV_SEPARATOR event (TCG PC
// Client PFP section 10.4.1).
var separatorDigest, _ = hex.DecodeString("df3f619804a92fdb4057192dc43dd748ea778adc52bc498ce80524c014b81119")

// tamperEventLog flips one bit of the first EV_SEPARATOR's SHA-256 digest in the evidence's log:
// the replay no longer reproduces the quoted PCRs. (Flipping a byte of event data that no digest
// covers, such as an EFI device path, is undetectable by design: such data is never trusted.)
func tamperEventLog(req *api.AttestRequest) error {
	var att pb.Attestation
	if err := proto.Unmarshal(req.Attestation, &att); err != nil {
		return err
	}
	log := append([]byte(nil), att.GetEventLog()...)
	i := bytes.Index(log, separatorDigest)
	if i < 0 {
		return errors.New("the event log has no SHA-256 EV_SEPARATOR digest to tamper with")
	}
	log[i+7] ^= 0x04
	att.EventLog = log
	b, err := proto.Marshal(&att)
	if err != nil {
		return err
	}
	req.Attestation = b
	return nil
}

func describe(err error) string {
	if err == nil {
		return "ACCEPTED (this is a bug)"
	}
	return "refused: " + err.Error()
}

// callRP calls the relying party: with key, through the attester's DPoP transport (token plus a
// fresh proof by key); without, presenting tok (if any) as a bare bearer token.
func callRP(ctx context.Context, url, tok string, key *ecdsa.PrivateKey) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/", nil)
	if err != nil {
		return "", 0, err
	}
	client := http.DefaultClient
	switch {
	case key != nil:
		client = &http.Client{Transport: &attester.DPoPTransport{Token: attester.StaticToken(tok), Key: key}}
	case tok != "":
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	res, err := client.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(io.LimitReader(res.Body, 1<<16))
	return string(b), res.StatusCode, err
}

func listen() (net.Listener, string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, "", err
	}
	return ln, "http://" + ln.Addr().String(), nil
}

func serveOn(ln net.Listener, h http.Handler) func() {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = srv.Serve(ln) }()
	return func() { _ = srv.Close() }
}
