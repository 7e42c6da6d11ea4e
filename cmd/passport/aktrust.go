package main

import (
	"crypto"
	"errors"
	"fmt"
	"os"

	"github.com/passport-attest/passport/enroll"
	"github.com/passport-attest/passport/evidence"
	"github.com/passport-attest/passport/store"
)

// akTrustFlags are serve's flags for trusting attestation keys and enrolling them by EK.
type akTrustFlags struct {
	roots, intermediates     []string
	ekRoots, ekIntermediates []string
	ekAllowlist              string
}

// enrollOn reports whether EK enrollment is configured.
func (f akTrustFlags) enrollOn() bool { return len(f.ekRoots) > 0 || f.ekAllowlist != "" }

// buildEnroller returns the EK enroller for --ek-roots/--ek-intermediates/--ek-allowlist, or
// nil when enrollment is off.
func buildEnroller(f akTrustFlags, sessions store.NonceStore, allow *evidence.Allowlist) (*enroll.Enroller, error) {
	if !f.enrollOn() {
		if len(f.ekIntermediates) > 0 {
			return nil, errors.New("--ek-intermediates needs --ek-roots")
		}
		return nil, nil
	}
	cfg := enroll.Config{Sessions: sessions, Allowlist: allow}
	var err error
	if cfg.EKRoots, err = evidence.LoadCertificates(f.ekRoots...); err != nil {
		return nil, err
	}
	if cfg.EKIntermediates, err = evidence.LoadCertificates(f.ekIntermediates...); err != nil {
		return nil, err
	}
	if f.ekAllowlist != "" {
		b, err := os.ReadFile(f.ekAllowlist)
		if err != nil {
			return nil, fmt.Errorf("--ek-allowlist: %w", err)
		}
		if cfg.PinnedEKs, err = evidence.ParsePublicKeys(b); err != nil {
			return nil, fmt.Errorf("--ek-allowlist %s: %w", f.ekAllowlist, err)
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
	if f.trustAny {
		return evidence.AnyAK{}, nil, nil
	}
	var methods evidence.AnyOf
	var allow *evidence.Allowlist
	if f.allowlist != "" || needAllowlist {
		var keys []crypto.PublicKey
		if f.allowlist != "" {
			b, err := os.ReadFile(f.allowlist)
			if err != nil {
				return nil, nil, fmt.Errorf("--ak-allowlist: %w", err)
			}
			if keys, err = evidence.ParsePublicKeys(b); err != nil {
				return nil, nil, fmt.Errorf("--ak-allowlist %s: %w", f.allowlist, err)
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
	if len(f.ak.roots) > 0 {
		roots, err := evidence.LoadCertificates(f.ak.roots...)
		if err != nil {
			return nil, nil, err
		}
		inter, err := evidence.LoadCertificates(f.ak.intermediates...)
		if err != nil {
			return nil, nil, err
		}
		methods = append(methods, &evidence.CertChain{Roots: roots, Intermediates: inter})
	} else if len(f.ak.intermediates) > 0 {
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
