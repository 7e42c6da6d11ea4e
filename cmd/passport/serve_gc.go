package main

import (
	"log/slog"
	"runtime/debug"
)

// gcTarget decides serve's garbage-collection target (runtime/debug.SetGCPercent): the gogc
// key when it was set by flag, PASSPORT_GOGC or the file (set), else nothing when the GOGC
// environment variable is set (the runtime has applied it at start), else the key's default
// (config.DefaultGOGC). apply is false when the runtime's own setting stays, and for a value
// below 1 (refused by config validation; a zero Serve in tests keeps Go's default).
func gcTarget(gogc int, set bool, lookupEnv func(string) (string, bool)) (percent int, apply bool) {
	if gogc < 1 {
		return 0, false
	}
	if !set {
		if v, ok := lookupEnv("GOGC"); ok && v != "" {
			return 0, false
		}
	}
	return gogc, true
}

// applyGC sets the collector's target as gcTarget decides and logs it.
func applyGC(f serveFlags, lookupEnv func(string) (string, bool), log *slog.Logger) {
	p, apply := gcTarget(f.GOGC, f.gogcSet, lookupEnv)
	if !apply {
		v, ok := lookupEnv("GOGC")
		if !ok || v == "" {
			return
		}
		log.Info("garbage collection target from the GOGC environment variable", "gogc", v)
		return
	}
	debug.SetGCPercent(p)
	log.Debug("garbage collection target", "gogc", p)
}
