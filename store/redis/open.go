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
//	unix://[user:password@]/path/to/redis.sock[?db=N&option=value...]   one server on the same host (absolute path, no host)
//	redis+sentinel://[user:password@]host:port[,host:port...][/db]?master_name=NAME[&option=value...]
//	redis+cluster://[user:password@]host:port[,host:port...][?option=value...]
//
// (rediss+sentinel:// and rediss+cluster:// for TLS). Options are those of go-redis's
// ParseURL, ParseFailoverURL and ParseClusterURL (dial_timeout, read_timeout, pool_size, ...);
// further sentinels or cluster seeds may also be given as repeated addr=host:port options. For
// Sentinel the user and password in the URL are the sentinels' (the master's go in the
// username and password options). Options that send reads to replicas (read_only,
// route_by_latency, route_randomly, replica_only) are refused, and so are query options go-redis
// would silently drop (';'-separated, badly escaped). Open does not connect: the first command
// does.
func Open(rawURL string) (redis.UniversalClient, error) { return OpenTimeout(rawURL, 0) }

// OpenTimeout is Open with timeout (when > 0) as the dial, read and write timeout of every
// Redis call, so a stalled server fails a request quickly (fail closed, 503) instead of
// holding it. Clients of both also stop at their context's deadline, when that comes first.
func OpenTimeout(rawURL string, timeout time.Duration) (redis.UniversalClient, error) {
	// set applies timeout, and makes every call honour its context's deadline too (go-redis
	// ignores it otherwise and waits for the read timeout): a readiness probe or an HTTP
	// request bounded tighter than timeout stops waiting for a stalled Redis when it must.
	set := func(dial, read, write *time.Duration, ctxTimeout *bool) {
		if timeout > 0 {
			*dial, *read, *write = timeout, timeout, timeout
		}
		*ctxTimeout = true
	}
	scheme, rest, ok := strings.Cut(rawURL, "://")
	if !ok {
		return nil, fmt.Errorf("redisstore: %q is not a redis:// URL", redact(rawURL))
	}
	// go-redis reads options through url.URL.Query, which drops what it cannot parse
	// (';'-separated pairs, bad escapes) without a word: refuse them instead of running on
	// defaults the operator did not choose.
	if _, query, ok := strings.Cut(rest, "?"); ok {
		if strings.Contains(query, ";") {
			return nil, fmt.Errorf("redisstore: %s: separate query options with '&', not ';'", redact(rawURL))
		}
		q, err := url.ParseQuery(query)
		if err != nil {
			return nil, fail(rawURL, fmt.Errorf("query options: %w", err))
		}
		for name := range q {
			if replicaRouting[strings.ToLower(name)] {
				return nil, fmt.Errorf("redisstore: %s: option %s sends reads to replicas, which lag the master: passport reads what it has just written (nonces, status counters) and would take a lagging counter for a data loss", redact(rawURL), name)
			}
		}
	}
	if strings.ToLower(scheme) == "unix" { // a local server's socket: no TCP loopback cost
		// go-redis takes unix://tmp/r.sock as host "tmp" and path /r.sock, and dials /r.sock:
		// refuse a host part rather than dial a socket the operator did not name.
		u, err := url.Parse("unix://" + rest)
		if err != nil {
			return nil, fail(rawURL, err)
		}
		if u.Host != "" {
			return nil, fmt.Errorf("redisstore: %s: a unix URL takes no host: write unix:///absolute/path/to/redis.sock", redact(rawURL))
		}
		opt, err := redis.ParseURL("unix://" + rest)
		if err != nil {
			return nil, fail(rawURL, err)
		}
		set(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.ContextTimeoutEnabled)
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
			return nil, fail(rawURL, err)
		}
		set(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.ContextTimeoutEnabled)
		return redis.NewClient(opt), nil
	case "sentinel":
		u, err := withAddrs(base, rest)
		if err != nil {
			return nil, fail(rawURL, err)
		}
		opt, err := redis.ParseFailoverURL(u)
		if err != nil {
			return nil, fail(rawURL, err)
		}
		if opt.MasterName == "" {
			return nil, fmt.Errorf("redisstore: %s: Sentinel URL needs master_name=NAME", redact(rawURL))
		}
		set(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.ContextTimeoutEnabled)
		return redis.NewFailoverClient(opt), nil
	case "cluster":
		u, err := withAddrs(base, rest)
		if err != nil {
			return nil, fail(rawURL, err)
		}
		opt, err := redis.ParseClusterURL(u)
		if err != nil {
			return nil, fail(rawURL, err)
		}
		set(&opt.DialTimeout, &opt.ReadTimeout, &opt.WriteTimeout, &opt.ContextTimeoutEnabled)
		return redis.NewClusterClient(opt), nil
	}
	return nil, fmt.Errorf("redisstore: unsupported URL scheme %q (want redis, redis+sentinel or redis+cluster)", scheme)
}

// replicaRouting are the go-redis URL options that route commands to replicas (Cluster's
// read_only, route_by_latency, route_randomly; Sentinel's replica_only; go-redis panics on some
// of them with a Sentinel URL): Open refuses them.
var replicaRouting = map[string]bool{"read_only": true, "route_by_latency": true, "route_randomly": true, "replica_only": true}

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

// fail returns err as the error of Open(rawURL), rawURL redacted. When err's own text
// repeats a value redact hides (go-redis's errors quote a database number or path, where a
// mistyped URL such as redis:///:pw@h puts the password), its detail is withheld.
func fail(rawURL string, err error) error {
	shown, hidden := redactSecrets(rawURL)
	err = scrub(err)
	for _, h := range hidden {
		if h != "" && strings.Contains(err.Error(), h) {
			return fmt.Errorf("redisstore: %s: invalid URL (the parser's message, which repeats a password, is withheld)", shown)
		}
	}
	return fmt.Errorf("redisstore: %s: %w", shown, err)
}

// redact hides, for error messages, the password of a URL's userinfo and the value of every
// query option whose name contains "password" in any case (go-redis reads password and
// sentinel_password there), keeping the rest readable. A value without "://" is hidden whole.
func redact(raw string) string {
	shown, _ := redactSecrets(raw)
	return shown
}

// redactSecrets returns redact(raw) and the values it hid (as written, unescaped and, for a
// password with a '/', each part). The userinfo ends at the last '@' before the query,
// wherever a mistyped or unescaped '/' puts it.
func redactSecrets(raw string) (shown string, hidden []string) {
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		return "(unparsable URL)", []string{raw}
	}
	head, query, hasQuery := strings.Cut(rest, "?")
	if i := strings.LastIndex(head, "@"); i >= 0 {
		user, pw, _ := strings.Cut(head[:i], ":")
		hidden = append(hidden, pw)
		if u, err := url.PathUnescape(pw); err == nil {
			hidden = append(hidden, u)
		}
		if strings.Contains(pw, "/") { // url.Parse ends the authority at a '/': its errors quote what precedes
			hidden = append(hidden, strings.Split(pw, "/")...)
		}
		head = user + ":xxxxx@" + head[i+1:]
	}
	if !hasQuery {
		return scheme + "://" + head, hidden
	}
	query, values := redactQuery(query)
	return scheme + "://" + head + "?" + query, append(hidden, values...)
}

// redactQuery returns a raw query string with xxxxx as the value of every option whose name
// contains "password" in any case, or does not unescape (fail closed), and the values it
// hid (as written and unescaped). Options are split at '&' and also at ';', which
// url.ParseQuery refuses, so that no password hides behind one.
func redactQuery(query string) (string, []string) {
	var b strings.Builder
	var hidden []string
	for {
		i := strings.IndexAny(query, "&;")
		pair := query
		if i >= 0 {
			pair = query[:i]
		}
		name, value, hasValue := strings.Cut(pair, "=")
		if n, err := url.QueryUnescape(name); hasValue && (err != nil || strings.Contains(strings.ToLower(n), "password")) {
			pair = name + "=xxxxx"
			hidden = append(hidden, value)
			if v, err := url.QueryUnescape(value); err == nil {
				hidden = append(hidden, v)
			}
		}
		b.WriteString(pair)
		if i < 0 {
			return b.String(), hidden
		}
		b.WriteByte(query[i])
		query = query[i+1:]
	}
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
