package main

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/passport-attest/passport/policy"
	"github.com/passport-attest/passport/refvalues"
	"github.com/passport-attest/passport/refvalues/redisrefs"
)

// startPolicyEngine loads serve's --policy with its reference-value store (--reference-values:
// a file, "redis" for the --redis server, or in memory when empty), then reloads it on SIGHUP and
// every --policy-poll until ctx ends. The returned function closes the store's connection.
func startPolicyEngine(ctx context.Context, f serveFlags) (*policy.Engine, func(), error) {
	log := logger()
	store, closeStore, err := openReferenceValues(ctx, f.ReferenceValues, f.Redis, f.RedisTimeout)
	if err != nil {
		return nil, nil, err
	}
	if f.ReferenceValues == "" {
		log.Warn("reference values and revocations made through the admin API are kept in memory and lost at restart; use --reference-values FILE or redis")
	}
	eng, err := policy.NewEngine(ctx, f.Policy, policy.EngineOptions{Store: store, Log: log})
	if err != nil {
		closeStore()
		return nil, nil, err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				_ = eng.ReloadAndLog(ctx)
			}
		}
	}()
	if f.PolicyPoll > 0 {
		go eng.Watch(ctx, f.PolicyPoll)
	}
	return eng, closeStore, nil
}

// openReferenceValues opens the --reference-values store; "redis" opens redisURL as serve's
// own --redis (dialRedis, timeout per call).
func openReferenceValues(ctx context.Context, source, redisURL string, timeout time.Duration) (refvalues.Store, func(), error) {
	switch source {
	case "":
		return refvalues.NewMemory(), func() {}, nil
	case "redis":
		if redisURL == "" {
			return nil, nil, errors.New("--reference-values redis needs --redis URL")
		}
		client, err := dialRedis(ctx, "redis", redisURL, timeout)
		if err != nil {
			return nil, nil, err
		}
		return redisrefs.New(client, "passport"), func() { client.Close() }, nil
	}
	return refvalues.NewFile(source), func() {}, nil
}
