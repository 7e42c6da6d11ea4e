package main

import (
	"fmt"
	"net"
)

// publicURL is a server's public base URL: flag (the value of --flagName: serve's
// --issuer-url, the iss of every token; kbs's --public-url, the URL DPoP proofs must name) when
// set, else derived from addr (--addr): http://HOST:PORT, https when the listener serves TLS,
// with the port the listener bound (so HOST:0 works). It is never taken from requests. An
// --addr without a specific host (":8443", "0.0.0.0:8443", "[::]:8443") names no URL clients
// could use (tokens would carry iss http://[::]:8443): flag is required then.
func publicURL(flagName, flag, addr string, bound net.Addr, tlsOn bool) (string, error) {
	if flag != "" {
		return flag, nil
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", fmt.Errorf("--addr %q: %w", addr, err)
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		return "", fmt.Errorf("--addr %q listens on every address: set --%s to the URL clients use", addr, flagName)
	}
	_, port, err := net.SplitHostPort(bound.String())
	if err != nil {
		return "", fmt.Errorf("listener address %q: %w", bound, err)
	}
	scheme := "http"
	if tlsOn {
		scheme = "https"
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}
