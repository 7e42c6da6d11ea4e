package redisstore

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/passport-attest/passport/internal/redisproc"
	"github.com/passport-attest/passport/store"
	"github.com/passport-attest/passport/store/storetest"
)

// freePorts returns n loopback ports that are free, each with port+10000 free too (a
// Cluster node also listens on its bus port, port+10000).
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	var hold []net.Listener
	defer func() {
		for _, l := range hold {
			_ = l.Close()
		}
	}()
	for tries := 0; len(ports) < n && tries < 200; tries++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		if p+10000 > 65535 {
			_ = l.Close()
			continue
		}
		bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			_ = l.Close()
			continue
		}
		hold = append(hold, l, bus)
		ports = append(ports, p)
	}
	if len(ports) < n {
		t.Fatalf("found %d free port pairs, want %d", len(ports), n)
	}
	return ports
}

// startProcess runs bin with args as a child process that is killed (by its pid) when t
// ends, and waits until addr answers PING.
func startProcess(t *testing.T, addr string, bin string, args ...string) *redisServer {
	t.Helper()
	path, err := exec.LookPath(bin)
	if err != nil {
		t.Fatalf("%s not found: %v", bin, err)
	}
	cmd := exec.Command(path, args...)
	cmd.SysProcAttr = childAttr()
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", bin, err)
	}
	srv := &redisServer{addr: addr, cmd: cmd}
	t.Cleanup(srv.stop)
	waitPing(t, addr)
	return srv
}

// startCluster starts a three-master Redis Cluster on loopback (no replicas, no persistence),
// joins it with redis-cli --cluster create and waits (at most 30 s) for cluster_state:ok on
// every node. Everything is stopped when t ends.
func startCluster(t *testing.T) *redis.ClusterClient {
	t.Helper()
	dir := t.TempDir()
	ports := freePorts(t, 3)
	var addrs []string
	for _, p := range ports {
		addr := "127.0.0.1:" + strconv.Itoa(p)
		addrs = append(addrs, addr)
		startProcess(t, addr, "redis-server",
			"--port", strconv.Itoa(p), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
			"--dir", dir, "--cluster-enabled", "yes", "--cluster-config-file", filepath.Join(dir, fmt.Sprintf("nodes-%d.conf", p)),
			"--cluster-node-timeout", "5000")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, "redis-cli", args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		for {
			info, err := c.ClusterInfo(ctx).Result()
			if err == nil && strings.Contains(info, "cluster_state:ok") {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("cluster node %s not ok: %v %q", a, err, info)
			}
			time.Sleep(100 * time.Millisecond)
		}
		_ = c.Close()
	}
	url := "redis+cluster://" + strings.Join(addrs, ",")
	uc, err := Open(url)
	if err != nil {
		t.Fatal(err)
	}
	cc, ok := uc.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("Open(%s) = %T, want *redis.ClusterClient", url, uc)
	}
	t.Cleanup(func() { _ = cc.Close() })
	if err := cc.ForEachShard(ctx, func(ctx context.Context, c *redis.Client) error { return c.Ping(ctx).Err() }); err != nil {
		t.Fatal(err)
	}
	return cc
}

var clusterPrefixSeq int

// TestCluster runs every conformance suite against a real three-node Redis Cluster, with
// status lists spread over three shards, and checks the hash-tag layout.
func TestCluster(t *testing.T) {
	if os.Getenv("PASSPORT_SKIP_REDIS") == "1" {
		t.Skip("PASSPORT_SKIP_REDIS=1")
	}
	cc := startCluster(t)
	prefix := func() string { clusterPrefixSeq++; return "c" + strconv.Itoa(clusterPrefixSeq) }
	t.Run("NonceStore", func(t *testing.T) {
		storetest.RunNonceStore(t, func(t *testing.T) (store.NonceStore, storetest.Clock) {
			return New(cc, prefix()), storetest.RealClock{}
		})
	})
	t.Run("ClockStore", func(t *testing.T) {
		storetest.RunClockStore(t, func(t *testing.T) (store.ClockStore, storetest.Clock) {
			return New(cc, prefix()), storetest.RealClock{}
		})
	})
	t.Run("StatusStore", func(t *testing.T) {
		storetest.RunStatusStore(t, func(t *testing.T) (store.StatusStore, storetest.Clock) {
			return New(cc, prefix(), WithStatusListSize(16), WithStatusShards(3)), storetest.RealClock{}
		})
	})
	t.Run("RevocationFeed", func(t *testing.T) {
		storetest.RunRevocationFeed(t, func(t *testing.T) (store.StatusStore, store.RevocationFeed) {
			p := prefix()
			return New(cc, p, WithStatusListSize(16), WithStatusShards(3)), New(cc, p, WithStatusListSize(16), WithStatusShards(3))
		})
	})
	t.Run("BlobStore", func(t *testing.T) {
		storetest.RunBlobStore(t, func(t *testing.T) store.BlobStore { return New(cc, prefix()) })
	})
	t.Run("EvictionPolicy", func(t *testing.T) {
		if p, err := CheckEvictionPolicy(context.Background(), cc); p != "noeviction" || err != nil {
			t.Fatalf("CheckEvictionPolicy = %q, %v", p, err)
		}
	})
	t.Run("HashTags", func(t *testing.T) { testHashTags(t, cc, prefix()) })
}

// testHashTags allocates entries (with labels and a clock record) for many subjects, revokes
// them, then lists every key of the prefix on every master: the keys of one shard (one
// token's id record, its subject and label sets, its AK's clock record and its list bitmap)
// share one hash slot, and the shards use different slots.
func testHashTags(t *testing.T, cc *redis.ClusterClient, prefix string) {
	ctx := context.Background()
	s := New(cc, prefix, WithStatusListSize(16), WithStatusShards(3))
	for i := 0; i < 12; i++ {
		sub := "ak-" + strconv.Itoa(i)
		e := store.StatusEntry{ID: "jti-" + strconv.Itoa(i), Subject: sub, Labels: []string{"rv-1", "rv-2"},
			Expires: time.Now().Add(time.Minute), Clock: &store.ClockAdvance{AK: sub, TTL: time.Minute}}
		if _, err := s.AllocateStatus(ctx, e); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.RevokeStatus(ctx, store.Selector{Label: "rv-1"}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex            // ForEachMaster calls back concurrently
	slotOf := map[string]int64{} // shard base -> slot
	nodesOf := map[int64]string{}
	keys := 0
	err := cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		mu.Lock()
		defer mu.Unlock()
		iter := c.Scan(ctx, 0, prefix+":status:*", 1000).Iterator()
		for iter.Next(ctx) {
			k := iter.Val()
			slot, err := c.ClusterKeySlot(ctx, k).Result()
			if err != nil {
				return err
			}
			i := strings.Index(k, "}:")
			base := k[:i+2]
			kind := strings.SplitN(k[i+2:], ":", 2)[0]
			if kind != "next" && kind != "lexp" && kind != "id" && kind != "sub" && kind != "lbl" && kind != "rlbls" && kind != "clock" && kind != "list" {
				return fmt.Errorf("unexpected key %s", k)
			}
			if old, ok := slotOf[base]; ok && old != slot {
				return fmt.Errorf("key %s is in slot %d, its shard's other keys in %d", k, slot, old)
			}
			slotOf[base] = slot
			nodesOf[slot] = c.Options().Addr
			keys++
		}
		return iter.Err()
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(slotOf) != 3 {
		t.Fatalf("keys of %d shards found, want 3: %v", len(slotOf), slotOf)
	}
	slots := map[int64]bool{}
	for _, s := range slotOf {
		slots[s] = true
	}
	if len(slots) != 3 {
		t.Fatalf("three shards share slots: %v", slotOf)
	}
	masters := map[string]bool{}
	for _, n := range nodesOf {
		masters[n] = true
	}
	t.Logf("%d keys in 3 shards (slot: master) on %d of 3 masters: %v", keys, len(masters), nodesOf)
}

// TestSentinel starts a master and a Sentinel monitoring it, opens the store through a
// redis+sentinel:// URL and runs the nonce and status suites through it.
func TestSentinel(t *testing.T) {
	if os.Getenv("PASSPORT_SKIP_REDIS") == "1" {
		t.Skip("PASSPORT_SKIP_REDIS=1")
	}
	master := startRedisServer(t)
	ports := freePorts(t, 1)
	dir := t.TempDir()
	_, mport, _ := net.SplitHostPort(master.addr)
	conf := filepath.Join(dir, "sentinel.conf")
	body := fmt.Sprintf("port %d\nbind 127.0.0.1\ndir %s\nsentinel monitor passport 127.0.0.1 %s 1\nsentinel down-after-milliseconds passport 5000\n",
		ports[0], dir, mport)
	if err := os.WriteFile(conf, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	sentinel := "127.0.0.1:" + strconv.Itoa(ports[0])
	startProcess(t, sentinel, "redis-server", conf, "--sentinel")
	c, err := Open("redis+sentinel://" + sentinel + "/0?master_name=passport")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, ok := c.(*redis.Client); !ok {
		t.Fatalf("Open(redis+sentinel) = %T", c)
	}
	seq := 0
	prefix := func() string { seq++; return "s" + strconv.Itoa(seq) }
	t.Run("suites", func(t *testing.T) { // returns once the parallel cases are done
		storetest.RunNonceStore(t, func(t *testing.T) (store.NonceStore, storetest.Clock) {
			return New(c, prefix()), storetest.RealClock{}
		})
		storetest.RunStatusStore(t, func(t *testing.T) (store.StatusStore, storetest.Clock) {
			return New(c, prefix(), WithStatusListSize(16)), storetest.RealClock{}
		})
	})
	// The commands really went to the master the Sentinel names.
	m := redis.NewClient(&redis.Options{Addr: master.addr})
	defer m.Close()
	if n := m.DBSize(context.Background()).Val(); n == 0 {
		t.Fatal("the master holds no keys")
	}
}

func TestOpen(t *testing.T) {
	cases := []struct {
		url   string
		typ   string
		addrs []string
		err   bool
	}{
		{url: "redis://127.0.0.1:6379/0", typ: "*redis.Client", addrs: []string{"127.0.0.1:6379"}},
		{url: "redis://user:pw@10.0.0.1:7000/2?dial_timeout=2s", typ: "*redis.Client", addrs: []string{"10.0.0.1:7000"}},
		{url: "redis+cluster://a:7000,b:7001,c:7002", typ: "*redis.ClusterClient", addrs: []string{"a:7000", "b:7001", "c:7002"}},
		{url: "redis+cluster://a:7000?addr=b:7001&read_timeout=1s", typ: "*redis.ClusterClient", addrs: []string{"a:7000", "b:7001"}},
		{url: "rediss+cluster://u:p@a:7000,b:7001", typ: "*redis.ClusterClient", addrs: []string{"a:7000", "b:7001"}},
		{url: "redis+sentinel://s1:26379,s2:26379/1?master_name=mymaster", typ: "*redis.Client"},
		{url: "unix:///run/redis/redis.sock?db=3", typ: "*redis.Client", addrs: []string{"/run/redis/redis.sock"}},
		{url: "unix://", err: true},           // no path
		{url: "unix://tmp/r.sock", err: true}, // go-redis would take "tmp" as a host and dial /r.sock
		{url: "unix://u:pw@tmp/r.sock", err: true},
		{url: "unix://u:pw@/tmp/r.sock", typ: "*redis.Client", addrs: []string{"/tmp/r.sock"}},
		{url: "redis+sentinel://s1:26379/0", err: true}, // no master_name
		{url: "redis+cluster://a:7000,b", err: true},
		{url: "memcached://a:1", err: true},
		{url: "redis+foo://a:1", err: true},
		{url: "127.0.0.1:6379", err: true},
		// go-redis drops what url.URL.Query cannot parse: the options would silently not apply.
		{url: "redis://h:6379/0?dial_timeout=1s;pool_size=3", err: true},
		{url: "unix:///run/redis.sock?db=3;protocol=3", err: true},
		{url: "redis://h:6379/0?dial_timeout=%zz", err: true},
		// Reads from a lagging replica would see a status counter behind the one INCR just
		// returned (a false data-loss latch); some of these make go-redis panic with Sentinel.
		{url: "redis+cluster://a:7000?read_only=true", err: true},
		{url: "redis+cluster://a:7000?route_by_latency=true", err: true},
		{url: "redis+cluster://a:7000?Route_Randomly=true", err: true},
		{url: "redis+sentinel://s1:26379/0?master_name=m&route_randomly=true", err: true},
		{url: "redis+sentinel://s1:26379/0?master_name=m&route_by_latency=true", err: true},
		{url: "redis+sentinel://s1:26379/0?master_name=m&replica_only=true", err: true},
	}
	for _, tc := range cases {
		c, err := Open(tc.url)
		if tc.err {
			if err == nil {
				t.Errorf("Open(%q) succeeded, want an error", tc.url)
				_ = c.Close()
			}
			continue
		}
		if err != nil {
			t.Errorf("Open(%q): %v", tc.url, err)
			continue
		}
		if got := fmt.Sprintf("%T", c); got != tc.typ {
			t.Errorf("Open(%q) = %s, want %s", tc.url, got, tc.typ)
		}
		switch cl := c.(type) {
		case *redis.ClusterClient:
			if got := cl.Options().Addrs; fmt.Sprint(got) != fmt.Sprint(tc.addrs) {
				t.Errorf("Open(%q) addrs %v, want %v", tc.url, got, tc.addrs)
			}
		case *redis.Client:
			if tc.addrs != nil && cl.Options().Addr != tc.addrs[0] {
				t.Errorf("Open(%q) addr %s, want %s", tc.url, cl.Options().Addr, tc.addrs[0])
			}
		}
		_ = c.Close()
	}
	for _, u := range []string{"redis+sentinel://user:secret@s1:1", "redis://u:secret@host:badport/0",
		"rediss://u:secret@[::1/0", "unix://u:secret@/x?db=abc", "redis+cluster://u:secret@[a:1",
		"redis+sentinel://h1:26379/0?password=secret", "redis+cluster://h1:7000?password=secret&bogus=1",
		"redis+sentinel://h1:26379/0?sentinel_password=secret&db=x", "redis://h:1/0?Password=secret&dial_timeout=x",
		"redis+cluster://h1:7000?bogus=1&pass%77ord=secret", "redis://h:1/x?db=1;password=secret",
		"unix://u:secret@tmp/r.sock?password=secret", "redis:///:secret@h", "redis:///:secret@h/0",
		"unix:///x/:secret@h?db=x", "redis+sentinel:///:secret@h:1", "redis://u:secret/x@h:1/0"} {
		_, err := Open(u)
		if err == nil || strings.Contains(err.Error(), "secret") {
			t.Errorf("Open(%s): error %v reveals the password or is missing", redact(u), err)
		}
	}
	// redact keeps what is not a password readable.
	for in, want := range map[string]string{
		"redis+cluster://h1:7000?password=pw&bogus=1":           "redis+cluster://h1:7000?password=xxxxx&bogus=1",
		"redis+sentinel://u:pw@h1:26379/0?SENTINEL_PASSWORD=pw": "redis+sentinel://u:xxxxx@h1:26379/0?SENTINEL_PASSWORD=xxxxx",
		"redis://h:1/0?db=1;password=pw&x":                      "redis://h:1/0?db=1;password=xxxxx&x",
		"redis://h:1/0?pass%zzword=pw":                          "redis://h:1/0?pass%zzword=xxxxx",
		"redis://h:1/0":                                         "redis://h:1/0",
		"h:1?password=pw":                                       "(unparsable URL)",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestOpenUnixSocket runs the nonce store conformance suite against a redis-server reached
// through its Unix socket (Open with a unix:// URL), as `serve --redis unix:///path` does.
func TestOpenUnixSocket(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed (Debian package redis-server; .ci/run installs it)")
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "redis.sock")
	srv := &redisproc.Server{Dir: dir, Args: []string{"--unixsocket", sock, "--unixsocketperm", "700"}}
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	c, err := Open("unix://" + sock + "?db=2")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if addr := c.(*redis.Client).Options().Addr; addr != sock {
		t.Fatalf("client dials %q, want the socket %q", addr, sock)
	}
	storetest.RunNonceStore(t, func(t *testing.T) (store.NonceStore, storetest.Clock) {
		return New(c, testPrefix(t, c)), storetest.RealClock{}
	})
}

// TestOpenHonoursContextDeadline: every client Open makes stops a call at its context's
// deadline (go-redis waits for the read timeout otherwise), so a readiness probe bounded at
// 1 s answers in 1 s whatever --redis-timeout is.
func TestOpenHonoursContextDeadline(t *testing.T) {
	for _, u := range []string{"redis://127.0.0.1:6379/0", "unix:///run/redis.sock",
		"redis+sentinel://s1:26379/0?master_name=m", "redis+cluster://a:7000,b:7001"} {
		c, err := OpenTimeout(u, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		var on bool
		switch cl := c.(type) {
		case *redis.Client:
			on = cl.Options().ContextTimeoutEnabled
		case *redis.ClusterClient:
			on = cl.Options().ContextTimeoutEnabled
		default:
			t.Fatalf("%s: unexpected client %T", u, c)
		}
		_ = c.Close()
		if !on {
			t.Errorf("%s: the client ignores context deadlines", u)
		}
	}
}
