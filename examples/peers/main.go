// Command peers runs two attested workloads on loopback that trust each other directly, and
// shows that a workload that is not attested is refused, whichever side it plays.
//
//	go run ./examples/peers [-event-log path/to/binary_bios_measurements]
//
// Everything runs in this process: an issuer, the go-tpm-tools TPM simulator replaying a real
// machine's event log (by default go-tpm-tools' Ubuntu 21.04 log from the module cache), and
// two workloads A and B. The simulator is process-wide, so both workloads attest from the same
// simulated TPM, one after the other, each with its own confirmation (cnf) key: two
// attester.Attester values on one TPM. Each keeps its token fresh with an attester.Refresher.
//
// B serves HTTPS with peer.Peer: its certificate is self-signed with its cnf key; A connects
// with its own cnf-key certificate. Each side checks the other's token against the key of the
// certificate the TLS handshake proved the other holds (package peer). Then:
//
//   - C holds a key but no token: B refuses it, and so does it with A's stolen token;
//   - D serves with B's stolen token next to its own certificate: A refuses D.
//
// The program exits non-zero if any of these outcomes is not what it should be.
package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
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

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/issuer"
	"github.com/passport-attest/passport/jwks"
	"github.com/passport-attest/passport/peer"
	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/relyingparty"
	"github.com/passport-attest/passport/store/memory"
	"github.com/passport-attest/passport/token"
)

// mesh is the audience of the workloads' tokens: every peer expects it.
const mesh = "urn:passport:example:peers"

// defaultLog is a real Ubuntu 21.04 event log in go-tpm-tools' test data.
const defaultLog = "internal/test/eventlogs/ubuntu-2104-no-dbx.bin"

func main() {
	eventLog := flag.String("event-log", "", "TCG event log to replay into the simulator (default: go-tpm-tools' "+defaultLog+")")
	flag.Parse()
	if err := run(context.Background(), os.Stdout, *eventLog); err != nil {
		fmt.Fprintln(os.Stderr, "peers:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, out io.Writer, eventLog string) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if eventLog == "" {
		p, err := moduleFile("github.com/google/go-tpm-tools", defaultLog)
		if err != nil {
			return err
		}
		eventLog = p
	}
	logBytes, err := os.ReadFile(eventLog)
	if err != nil {
		return err
	}

	// One simulated TPM with the machine's boot replayed into its PCRs.
	rw, err := attester.OpenTPM(attester.SpecSimulator)
	if err != nil {
		return err
	}
	defer rw.Close()
	if _, err := attester.ReplayEventLog(rw, logBytes); err != nil && !errors.Is(err, attester.ErrLocality) {
		return fmt.Errorf("replay %s: %w", filepath.Base(eventLog), err)
	}
	newWorkload := func() (*attester.Attester, error) {
		key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			return nil, err
		}
		return attester.New(attester.Options{TPM: rw, EventLog: logBytes, CNFKey: key})
	}
	attA, err := newWorkload()
	if err != nil {
		return err
	}
	defer attA.Close()
	attB, err := newWorkload()
	if err != nil {
		return err
	}
	defer attB.Close()

	// The issuer trusts this TPM's attestation key and mints tokens for the mesh only.
	issURL, err := startIssuer(ctx, attA)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "issuer on %s, TPM simulator replaying %s\n", issURL, filepath.Base(eventLog))

	// Each workload keeps its token fresh. Both share one TPM: quotes are serialised.
	var tpmMu sync.Mutex
	client := &attester.Client{IssuerURL: issURL}
	refresher := func(a *attester.Attester) *attester.Refresher {
		return &attester.Refresher{Fetch: func(ctx context.Context) (*api.AttestResponse, error) {
			tpmMu.Lock()
			defer tpmMu.Unlock()
			return client.Attest(ctx, a, mesh)
		}}
	}
	refA, refB := refresher(attA), refresher(attB)
	for name, r := range map[string]*attester.Refresher{"A": refA, "B": refB} {
		if err := r.Refresh(ctx); err != nil {
			return fmt.Errorf("attest workload %s: %w", name, err)
		}
		go r.Run(ctx) //nolint:errcheck // ends with ctx
	}

	// Every workload verifies peers' tokens against the issuer's published keys.
	verifier, err := relyingparty.NewVerifier(relyingparty.Config{
		Issuer: issURL, Audience: mesh, KeySet: relyingparty.NewRemoteKeySet(ctx, issURL+api.PathJWKS),
	})
	if err != nil {
		return err
	}
	newPeer := func(key *ecdsa.PrivateKey, tok func() (string, error)) (*peer.Peer, error) {
		return peer.New(peer.Config{Key: key, Token: tok, Verifier: verifier})
	}
	peerA, err := newPeer(attA.CNFPrivate(), refA.Token)
	if err != nil {
		return err
	}
	peerB, err := newPeer(attB.CNFPrivate(), refB.Token)
	if err != nil {
		return err
	}

	// B serves; A calls it.
	urlB, err := servePeer(ctx, peerB, "B")
	if err != nil {
		return err
	}
	var failures []string
	expect := func(ok bool, what string) {
		if ok {
			fmt.Fprintf(out, "  ok   %s\n", what)
		} else {
			fmt.Fprintf(out, "  FAIL %s\n", what)
			failures = append(failures, what)
		}
	}

	fmt.Fprintln(out, "\nA (attested) calls B (attested):")
	body, server, err := call(ctx, peerA, urlB)
	expect(err == nil && server != nil, fmt.Sprintf("A accepted B (server token sub %s…, status %s); B answered: %s", short(server), status(server), body))
	if err != nil {
		fmt.Fprintf(out, "       error: %v\n", err)
	}

	fmt.Fprintln(out, "\nC (not attested: a key, no token) calls B:")
	keyC, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	noToken, _ := newPeer(keyC, func() (string, error) { return "", errors.New("workload C never attested") })
	_, code, err := rawCall(ctx, noToken.ClientTLS(), urlB, "")
	expect(err == nil && code == http.StatusUnauthorized, fmt.Sprintf("B refused C without a token: HTTP %d", code))
	tokA, _ := refA.Token()
	thief, _ := newPeer(keyC, func() (string, error) { return tokA, nil })
	_, _, err = call(ctx, thief, urlB)
	var refused *peer.RefusedError
	expect(errors.As(err, &refused) && refused.Status == http.StatusUnauthorized,
		fmt.Sprintf("B refused C presenting A's stolen token with its own certificate: %v", err))

	fmt.Fprintln(out, "\nA calls D (not attested: serves B's stolen token next to its own certificate):")
	keyD, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	impostor, _ := newPeer(keyD, refB.Token)
	urlD, err := servePeer(ctx, impostor, "D")
	if err != nil {
		return err
	}
	_, _, err = call(ctx, peerA, urlD)
	expect(errors.Is(err, peer.ErrNotAttested) && errors.Is(err, relyingparty.ErrMTLSBinding),
		fmt.Sprintf("A refused D: %v", err))

	fmt.Fprintf(out, "\nA's token renews at about 80%% of its lifetime (expires %s).\n", refA.Expiry().UTC().Format(time.TimeOnly))
	if len(failures) > 0 {
		return fmt.Errorf("%d unexpected outcome(s): %s", len(failures), strings.Join(failures, "; "))
	}
	return nil
}

// startIssuer runs an issuer on loopback that trusts a's attestation key.
func startIssuer(ctx context.Context, a *attester.Attester) (string, error) {
	allow, err := evidence.NewAllowlist(a.AKPublic())
	if err != nil {
		return "", err
	}
	ev, err := evidence.NewVerifier(evidence.Options{AKTrust: allow})
	if err != nil {
		return "", err
	}
	key, err := jwks.GenerateKey(jose.ES256)
	if err != nil {
		return "", err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	url := "http://" + ln.Addr().String()
	is, err := issuer.New(issuer.Config{
		URL: url, Keyring: jwks.NewKeyring(key), Nonces: memory.New(), Evidence: ev,
		Policy: &policy.Reference{}, Audiences: []string{mesh}, TokenLifetime: 2 * time.Minute,
		Log: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return "", err
	}
	serve(ctx, ln, is.Handler())
	return url, nil
}

// servePeer serves p's protected handler over TLS on loopback.
func servePeer(ctx context.Context, p *peer.Peer, name string) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	h := p.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, _ := relyingparty.ClaimsFromContext(r.Context())
		fmt.Fprintf(w, "hello from %s to attester %s…", name, short(c))
	}))
	serve(ctx, tls.NewListener(ln, p.ServerTLS()), h)
	return "https://" + ln.Addr().String(), nil
}

func serve(ctx context.Context, ln net.Listener, h http.Handler) {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln) //nolint:errcheck // ends when closed
	context.AfterFunc(ctx, func() { srv.Close() })
}

// call makes one GET with p's peer transport.
func call(ctx context.Context, p *peer.Peer, url string) (string, *token.Claims, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", nil, err
	}
	resp, err := (&http.Client{Transport: p.Transport(nil), Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	c, _ := peer.ServerClaims(resp)
	return string(b), c, err
}

// rawCall makes one GET over cfg with an optional bearer token, without peer checks.
func rawCall(ctx context.Context, cfg *tls.Config, url, tok string) (string, int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", 0, err
	}
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	tr := &http.Transport{TLSClientConfig: cfg}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<10))
	return string(b), resp.StatusCode, nil
}

func short(c *token.Claims) string {
	if c == nil || len(c.Subject) < 12 {
		return "?"
	}
	return c.Subject[:12]
}

func status(c *token.Claims) string {
	if c == nil {
		return "?"
	}
	return c.OverallStatus().String()
}

// moduleFile locates a file of a module in the module cache with `go list -m`.
func moduleFile(module, rel string) (string, error) {
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module).Output()
	if err != nil {
		return "", fmt.Errorf("cannot locate %s in the module cache (go list: %w); pass -event-log", module, err)
	}
	p := filepath.Join(strings.TrimSpace(string(out)), rel)
	if _, err := os.Stat(p); err != nil {
		return "", err
	}
	return p, nil
}
