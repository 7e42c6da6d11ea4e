package evidence_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/go-jose/go-jose/v4"
	"github.com/google/go-eventlog/tcg"
	pb "github.com/google/go-tpm-tools/proto/attest"
	tpmpb "github.com/google/go-tpm-tools/proto/tpm"
	"github.com/google/go-tpm/legacy/tpm2"
	"google.golang.org/protobuf/proto"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/eventlog"
	"github.com/passport-attest/passport/internal/testenv"
)

// tpm2Tool runs a tpm2-tools command against the swtpm at port, in dir.
func tpm2Tool(t *testing.T, dir string, port int, args ...string) {
	t.Helper()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), fmt.Sprintf("TPM2TOOLS_TCTI=swtpm:host=127.0.0.1,port=%d", port))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestVerifyTPM2ToolsQuote checks our verifier against a quote no code of ours made: swtpm is
// booted with a real event log (each SHA-256 event digest extended by tpm2_pcrextend), Debian's
// tpm2-tools create an EK and an AK and quote all 24 SHA-256 PCRs with our nonce binding as
// qualifying data (tpm2_quote -q), and evidence.Verifier appraises the result. ECC and RSA AKs.
func TestVerifyTPM2ToolsQuote(t *testing.T) {
	for _, tool := range []string{"tpm2_pcrextend", "tpm2_createek", "tpm2_createak", "tpm2_quote", "tpm2_flushcontext"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (Debian package tpm2-tools)", tool)
		}
	}
	log := testenv.EventLog(t, testenv.DefaultLog)
	l, err := eventlog.Parse(log)
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []struct{ key, scheme string }{{"ecc", "ecdsa"}, {"rsa", "rsassa"}} {
		t.Run(alg.key, func(t *testing.T) {
			_, port := testenv.SWTPM(t)
			dir := t.TempDir()
			args := []string{"tpm2_pcrextend"}
			for _, e := range l.Events {
				if d, ok := e.Digests[eventlog.SHA256]; ok && e.Type != tcg.NoAction {
					args = append(args, fmt.Sprintf("%d:sha256=%x", e.PCR, d))
				}
			}
			tpm2Tool(t, dir, port, args...)
			tpm2Tool(t, dir, port, "tpm2_createek", "-c", "ek.ctx", "-G", "rsa", "-u", "ek.pub")
			tpm2Tool(t, dir, port, "tpm2_flushcontext", "-t")
			tpm2Tool(t, dir, port, "tpm2_createak", "-C", "ek.ctx", "-c", "ak.ctx", "-G", alg.key, "-g", "sha256", "-s", alg.scheme, "-u", "ak.pub")
			tpm2Tool(t, dir, port, "tpm2_flushcontext", "-t")
			tpm2Tool(t, dir, port, "tpm2_flushcontext", "-s")

			nonce := make([]byte, api.NonceSize)
			rand.Read(nonce)
			cnf := &jose.JSONWebKey{Key: newKey(t)}
			extra, _ := api.ExtraData(nonce, cnf)
			sel := "sha256:0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23"
			tpm2Tool(t, dir, port, "tpm2_quote", "-c", "ak.ctx", "-l", sel, "-q", hex.EncodeToString(extra),
				"-m", "quote.msg", "-s", "quote.sig", "-o", "pcrs.bin", "-F", "values", "-g", "sha256")

			read := func(name string) []byte {
				b, err := os.ReadFile(filepath.Join(dir, name))
				if err != nil {
					t.Fatal(err)
				}
				return b
			}
			akPub := read("ak.pub")[2:] // TPM2B_PUBLIC -> TPMT_PUBLIC
			values := read("pcrs.bin")
			if len(values) != 24*32 {
				t.Fatalf("tpm2_quote wrote %d bytes of PCR values, want %d", len(values), 24*32)
			}
			pcrs := map[uint32][]byte{}
			for i := 0; i < 24; i++ {
				pcrs[uint32(i)] = values[i*32 : (i+1)*32]
			}
			att := &pb.Attestation{AkPub: akPub, EventLog: log, Quotes: []*tpmpb.Quote{{
				Quote: read("quote.msg"), RawSig: read("quote.sig"), Pcrs: &tpmpb.PCRs{Hash: tpmpb.HashAlgo_SHA256, Pcrs: pcrs},
			}}}
			raw, _ := proto.Marshal(att)
			pub, err := tpm2.DecodePublic(akPub)
			if err != nil {
				t.Fatal(err)
			}
			ak, _ := pub.Key()
			v := verifierFor(t, ak)
			st, err := v.Verify(context.Background(), nonce, cnf, raw)
			if err != nil {
				t.Fatalf("tpm2_quote's quote refused: %v", err)
			}
			r, _ := l.Replay(eventlog.SHA256)
			for p, want := range r.PCRs {
				if !bytes.Equal(st.PCRs[uint32(p)], want) {
					t.Fatalf("PCR %d: quoted %x, log %x", p, st.PCRs[uint32(p)], want)
				}
			}
			// And the same quote is refused for another nonce, or with one bit flipped.
			other := append([]byte{nonce[0] ^ 1}, nonce[1:]...) // differs in one bit, always
			if _, err := v.Verify(context.Background(), other, cnf, raw); err == nil {
				t.Fatal("quote accepted for another nonce")
			}
			att.Quotes[0].Quote[40] ^= 0x08
			raw, _ = proto.Marshal(att)
			if _, err := v.Verify(context.Background(), nonce, cnf, raw); err == nil {
				t.Fatal("tampered quote accepted")
			}
		})
	}
}
