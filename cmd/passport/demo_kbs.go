package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"

	"github.com/passport-attest/passport/api"
	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/kbs"
)

// demoKBS is the demo's key broker: it trusts the relying party's verifier v, holds a random
// disk key, and releases it to tok with a DPoP proof by key. It returns the line the demo
// prints, after checking that the released bytes are the stored ones and that the same token
// with another key is refused.
func demoKBS(ctx context.Context, v kbs.TokenVerifier, tok string, key *ecdsa.PrivateKey) (string, error) {
	dir, err := os.MkdirTemp("", "passport-demo-kbs-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	secret := make([]byte, 32)
	if _, err := rand.Read(secret); err != nil {
		return "", err
	}
	id := api.ResourceID{Repository: "default", Type: "key", Tag: "disk"}
	st, err := kbs.NewDirStore(dir)
	if err != nil {
		return "", err
	}
	defer st.Close()
	if err := st.Put(ctx, id, secret); err != nil {
		return "", err
	}
	ln, url, err := listen()
	if err != nil {
		return "", err
	}
	b, err := kbs.New(kbs.Config{Verifier: v, Store: st, Audit: slog.New(slog.DiscardHandler), PublicURL: url})
	if err != nil {
		ln.Close()
		return "", err
	}
	stop := serveOn(ln, b.Handler())
	defer stop()
	kc := &attester.KBSClient{URL: url}
	got, err := kc.Fetch(ctx, id, tok, key)
	if err != nil {
		return "", fmt.Errorf("the demo key broker refused the demo token: %w", err)
	}
	if !bytes.Equal(got, secret) {
		return "", errors.New("the key broker released other bytes than it holds")
	}
	thief, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return "", err
	}
	_, err = kc.Fetch(ctx, id, tok, thief)
	var be *attester.BrokerError
	if !errors.As(err, &be) || be.Status != http.StatusUnauthorized {
		return "", fmt.Errorf("the key broker did not refuse a stolen token: %v", err)
	}
	return fmt.Sprintf("KBS released %s (%d bytes) as a JWE (ECDH-ES+A256KW, A256GCM) to that key only; with another key -> %d",
		id, len(got), be.Status), nil
}
