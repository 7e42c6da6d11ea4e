package redisstore

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Open returns a go-redis UniversalClient for a URL naming one server, a Sentinel-managed
// master or a Cluster:
//
//	redis://[user:password@]host:port[/db][?option=value...]            one server (rediss:// for TLS)
//	unix://[user:password@]/path/to/redis.sock[?db=N&option=value...]   one server on the same host
//	redis+sentinel://[user:password@]host:port[,host:port...][/db]?master_name=NAME[&option=value...]
//	redis+cluster://[user:password@]host:port[,host:port...][?option=value...]
//
// (rediss+sentinel:// and rediss+cluster:// for TLS). Options are those of go-redis's
// ParseURL, ParseFailoverURL and ParseClusterURL (dial_timeout, read_timeout, pool_size, ...);
// further sentinels or cluster seeds may also be given as repeated addr=host:port options. For
// Sentinel the user and password in the URL are the sentinels' (the master's go in the
// username and password options). Open does not connect: the first command does.
func Open(rawURL string) (redis.UniversalClient, error) { return OpenTimeout(rawURL, 0) }

// OpenTimeout is Open with timeout (when > 0) as the dial, read and write timeout of every
// Redis call, so a stalled server fails a request quickly (fail closed, 503) instead of
// holding it.
func OpenTimeout(rawURL string, timeout time.Duration) (redis.UniversalClient, error) {
	set := func(dial, read, write *time.Duration) {
		if timeout > 0 {
			*dial, *read, *write = timeout, timeout, timeout
		}
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fmt.Errorf("redisstore: %q is not a redis:// URL", redact(rawURL))
	}
	if strings.ToLower(scheme) == "unix" { // a local server's socket: no TCP loopback cost
		opt, err := redis.ParseURL("unix://" + rest)
		if err != nil {
			return nil, fmt.Errorf("redisstore: %s: %w", redact(rawURL), scrub(err))
		}
		set(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout)
		return redis.NewClient(opt), nil
	}
	base, mode, _ := strings.Cut(strings.ToLower(scheme), "+")
	if base != "redis" && base != "rediss" {
		return nil, fmt.Errorf("redisstore: unsupported URL scheme %q", scheme)
	}
	switch mode {
	case "":
		opt, err := redis.ParseURL(base + "://" + rest)
		if err != nil {
			return nil, fmt.Errorf("redisstore: %s: %w", redact(rawURL), scrub(err))
		}
		set(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout)
		return redis.NewClient(opt), nil
	case "sentinel":
		u, err := withAddrs(base, rest)
		if err != nil {
			return nil, fmt.Errorf("redisstore: %s: %w", redact(rawURL), scrub(err))
		}
		opt, err := redis.ParseFailoverURL(u)
		if err != nil {
			return nil, fmt.Errorf("redisstore: %s: %w", redact(rawURL), scrub(err))
		}
		if opt.MasterName == "" {
			return nil, fmt.Errorf("redisstore: %s: Sentinel URL needs master_name=NAME", redact(rawURL))
		}
		set(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout)
		return redis.NewFailoverClient(opt), nil
	case "cluster":
		u, err := withAddrs(base, rest)
		if err != nil {
			return nil, fmt.Errorf("redisstore: %s: %w", redact(rawURL), scrub(err))
		}
		opt, err := redis.ParseClusterURL(u)
		if err != nil {
			return nil, fmt.Errorf("redisstore: %s: %w", redact(rawURL), scrub(err))
		}
		set(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout)
		return redis.NewClusterClient(opt), nil
	}
	return nil, fmt.Errorf("redisstore: unsupported URL scheme %q (want redis, redis+sentinel or redis+cluster)", scheme)
}

// withAddrs rewrites "userinfo@h1:p1,h2:p2/path?query" as a redis URL on h1:p1 with addr=h2:p2
// options, the form go-redis's ParseFailoverURL and ParseClusterURL read.
func withAddrs(scheme, rest string) (string, error) {
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	userinfo, hosts := "", authority
	if i := strings.LastIndex(authority, "@"); i >= 0 {
		userinfo, hosts = authority[:i+1], authority[i+1:]
	}
	list := strings.Split(hosts, ",")
	for _, h := range list {
		if _, _, err := net.SplitHostPort(h); err != nil {
			return "", fmt.Errorf("address %q: %w", h, err)
		}
	}
	path, query, _ := strings.Cut(tail, "?")
	q, err := url.ParseQuery(query)
	if err != nil {
		return "", err
	}
	for _, h := range list[1:] {
		q.Add("addr", h)
	}
	out := scheme + "://" + userinfo + list[0] + path
	if len(q) > 0 {
		out += "?" + q.Encode()
	}
	return out, nil
}

// redact hides the password of a URL for error messages.
func redact(raw string) string {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "(unparsable URL)"
	}
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	if i := strings.LastIndex(rest[:end], "@"); i >= 0 {
		user, _, _ := strings.Cut(rest[:i], ":")
		return scheme + "://" + user + ":xxxxx@" + rest[i+1:]
	}
	return raw
}

// scrub returns err without the URL that url.Parse's errors repeat in full, password included
// (go-redis's URL parsers return them as they are).
func scrub(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}
