package testenv

import (
	"fmt"
	"net"
	"os/exec"
	"strconv"
	"testing"
	"time"
)

// SWTPM starts a fresh swtpm (Debian package swtpm) on two free loopback ports, with its state
// in a temporary directory, and returns its spec for attester.OpenTPM ("swtpm:127.0.0.1:PORT")
// and the port. The TPM is manufactured, started (TPM2_Startup(CLEAR)) and stopped at the end
// of the test. The test fails when swtpm is not installed (.ci/run installs it).
func SWTPM(t testing.TB) (spec string, port int) {
	t.Helper()
	bin, err := exec.LookPath("swtpm")
	if err != nil {
		t.Fatal("swtpm not installed (Debian package swtpm; .ci/run installs it)")
	}
	for try := 0; try < 5; try++ {
		port, ok := freePortPair()
		if !ok {
			continue
		}
		dir := t.TempDir()
		cmd := exec.Command(bin, "socket", "--tpm2", "--tpmstate", "dir="+dir,
			"--server", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port),
			"--ctrl", fmt.Sprintf("type=tcp,port=%d,bindaddr=127.0.0.1", port+1),
			"--flags", "not-need-init,startup-clear")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan struct{})
		go func() { _ = cmd.Wait(); close(exited) }()
		addr := "127.0.0.1:" + strconv.Itoa(port)
		if waitListening(addr, exited) {
			t.Cleanup(func() { _ = cmd.Process.Kill(); <-exited })
			return "swtpm:" + addr, port
		}
		_ = cmd.Process.Kill() // lost the port race, or too slow: try other ports
		<-exited
	}
	t.Fatal("could not start swtpm on free loopback ports")
	return "", 0
}

// freePortPair returns a port P such that P and P+1 were free on 127.0.0.1 a moment ago.
func freePortPair() (int, bool) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, false
	}
	port := l.Addr().(*net.TCPAddr).Port
	l2, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+1))
	l.Close()
	if err != nil {
		return 0, false
	}
	l2.Close()
	return port, true
}

// waitListening polls addr until it accepts a connection (true), the process exits or 5 s pass.
func waitListening(addr string, exited <-chan struct{}) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		select {
		case <-exited:
			return false
		default:
		}
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return true
		}
	}
	return false
}
