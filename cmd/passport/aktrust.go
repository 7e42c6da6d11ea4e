package main

import (
	"crypto"
	"errors"
	"fmt"
	"os"

	"github.com/passport-attest/passport/config"
	"github.com/passport-attest/passport/enroll"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/store"
)

// buildEnroller returns the EK enroller for --ek-roots/--ek-intermediates/--ek-allowlist, or
// nil when enrollment is off.
func buildEnroller(f config.AKTrust, sessions store.NonceStore, allow *evidence.Allowlist) (*enroll.Enroller, error) {
	if !f.EnrollOn() {
		if len(f.EKIntermediates) > 0 {
			return nil, errors.New("--ek-intermediates needs --ek-roots")
		}
		return nil, nil
	}
	cfg := enroll.Config{Sessions: sessions, Allowlist: allow, ReenrollInterval: f.EKReenrollInterval}
	if cfg.ReenrollInterval == 0 {
		cfg.ReenrollInterval = -1 // --ek-reenroll-interval 0: no wait (enroll's zero means its default)
	}
	var err error
	if cfg.EKRoots, err = evidence.LoadCertificates(f.EKRoots...); err != nil {
		return nil, err
	}
	if cfg.EKIntermediates, err = evidence.LoadCertificates(f.EKIntermediates...); err != nil {
		return nil, err
	}
	if f.EKAllowlist != "" {
		if cfg.PinnedEKs, err = readPublicKeys(f.EKAllowlist); err != nil {
			return nil, fmt.Errorf("--ek-allowlist: %w", err)
		}
	}
	return enroll.New(cfg)
}

// buildAKTrust returns the issuer's AK trust and the allowlist the admin API and EK enrollment
// manage (nil when neither is configured and no allowlist file is given):
//   - --trust-any-ak: every AK (demo only), exclusive with the others;
//   - --ak-allowlist FILE (pinned keys) and, when the admin API or enrollment is on, the AKs
//     recorded in aks (memory or Redis);
//   - --ak-roots FILE... with --ak-intermediates FILE...: AK certificates chaining to those
//     roots (verified chains cached per AK).
//
// Several methods combine with evidence.AnyOf, allowlist first: the first that trusts wins and
// names the token's trust method.
func buildAKTrust(f serveFlags, aks store.AKStore, needAllowlist bool) (evidence.AKTrust, *evidence.Allowlist, error) {
	if f.TrustAnyAK {
		return evidence.AnyAK{}, nil, nil
	}
	var methods evidence.AnyOf
	var allow *evidence.Allowlist
	if f.AKAllowlist != "" || needAllowlist {
		var keys []crypto.PublicKey
		if f.AKAllowlist != "" {
			var err error
			if keys, err = readPublicKeys(f.AKAllowlist); err != nil {
				return nil, nil, fmt.Errorf("--ak-allowlist: %w", err)
			}
		}
		var err error
		if needAllowlist {
			allow, err = evidence.NewStoredAllowlist(aks, keys...)
		} else {
			allow, err = evidence.NewAllowlist(keys...)
		}
		if err != nil {
			return nil, nil, err
		}
		methods = append(methods, allow)
	}
	if len(f.AK.Roots) > 0 {
		roots, err := evidence.LoadCertificates(f.AK.Roots...)
		if err != nil {
			return nil, nil, err
		}
		inter, err := evidence.LoadCertificates(f.AK.Intermediates...)
		if err != nil {
			return nil, nil, err
		}
		methods = append(methods, &evidence.CertChain{Roots: roots, Intermediates: inter})
	} else if len(f.AK.Intermediates) > 0 {
		return nil, nil, errors.New("--ak-intermediates needs --ak-roots")
	}
	switch len(methods) {
	case 0:
		return nil, nil, errors.New("no AK trust configured: pass --ak-allowlist FILE, --ak-roots FILE or enable the admin API or EK enrollment (or --trust-any-ak for a demo)")
	case 1:
		return methods[0], allow, nil
	}
	return methods, allow, nil
}

// readPublicKeys reads a file of pinned public keys (--ak-allowlist, --ek-allowlist): PEM
// PUBLIC KEY blocks or a JWKS (evidence.ParsePublicKeys). Errors name the file, never its
// content.
func readPublicKeys(path string) ([]crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	keys, err := evidence.ParsePublicKeys(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return keys, nil
}
