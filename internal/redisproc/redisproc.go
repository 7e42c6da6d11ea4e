// Package redisproc runs a private redis-server on a loopback port, for tests and the load
// harness that must stop and restart Redis without touching the shared server on 6379.
package redisproc

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is one redis-server process on 127.0.0.1:Port. Stop and Start may be called any
// number of times; the port stays the same, so clients reconnect to the restarted server.
type Server struct {
	Port int
	// Args are extra redis-server arguments (e.g. "--appendonly", "yes").
	Args []string
	Dir  string
	cmd  *exec.Cmd
	tmp  bool // Dir was created by Start
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func FreePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// Start launches redis-server on a free port (the same port on a restart) without persistence
// unless Args ask for it, working in Dir (a temporary directory when empty), and waits until it
// answers PING (5 s at most).
func (s *Server) Start() error {
	if s.cmd != nil {
		return errors.New("redisproc: already running")
	}
	if s.Port == 0 {
		p, err := FreePort()
		if err != nil {
			return err
		}
		s.Port = p
	}
	if s.Dir == "" {
		d, err := os.MkdirTemp("", "passport-redis-")
		if err != nil {
			return err
		}
		s.Dir, s.tmp = d, true
	}
	args := append([]string{"--port", strconv.Itoa(s.Port), "--bind", "127.0.0.1", "--save", "",
		"--appendonly", "no", "--dir", s.Dir, "--maxmemory-policy", "noeviction"}, s.Args...)
	cmd := exec.Command("redis-server", args...)
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("redisproc: start redis-server: %w", err)
	}
	s.cmd = cmd
	go func() { _ = cmd.Wait() }()
	c := redis.NewClient(&redis.Options{Addr: s.Addr(), MaxRetries: -1})
	defer c.Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			s.Stop()
			return fmt.Errorf("redisproc: redis-server on %s does not answer: %w", s.Addr(), err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Stop kills the server (SIGKILL: a crash, no final save) and waits until the port is closed.
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	s.cmd = nil
	for i := 0; i < 250; i++ {
		c, err := net.DialTimeout("tcp", s.Addr(), 50*time.Millisecond)
		if err != nil {
			return
		}
		c.Close()
		time.Sleep(20 * time.Millisecond)
	}
}

// Pid returns the process id, 0 when stopped.
func (s *Server) Pid() int {
	if s.cmd == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// Addr returns "127.0.0.1:Port".
func (s *Server) Addr() string { return "127.0.0.1:" + strconv.Itoa(s.Port) }

// URL returns "redis://127.0.0.1:Port/0".
func (s *Server) URL() string { return "redis://" + s.Addr() + "/0" }

// Close stops the server and removes Dir if Start created it.
func (s *Server) Close() {
	s.Stop()
	if s.tmp {
		_ = os.RemoveAll(s.Dir)
	}
}
