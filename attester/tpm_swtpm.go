package attester

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// SpecSWTPMPrefix starts a spec naming an external swtpm (Debian package swtpm) over TCP:
// "swtpm:HOST:PORT", the command channel of `swtpm socket --tpm2 --server type=tcp,port=PORT
// --ctrl type=tcp,port=PORT+1 --flags not-need-init,startup-clear`. The channel carries raw
// TPM 2.0 commands and responses (what tpm2-tools' TCTI "swtpm:host=HOST,port=PORT" sends);
// the control channel (power, reset) is not used, so swtpm must be started with
// not-need-init and a startup flag.
const SpecSWTPMPrefix = "swtpm:"

// swtpmTimeout bounds one command (RSA key generation on swtpm takes up to a few seconds).
const swtpmTimeout = 2 * time.Minute

// maxTPMResponse caps a response's declared size (TPM 2.0 responses are at most a few KiB;
// TPM_PT_MAX_RESPONSE_SIZE is 4096 on common TPMs).
const maxTPMResponse = 64 << 10

// tcpTPM is a TPM command stream over one TCP connection. go-tpm writes a whole command and
// then reads the response with one Read; TCP may split it, so Write waits for the complete
// response, framed by the responseSize field of its header (TPM 2.0 Part 1 section 18.9:
// tag, responseSize, responseCode), and Read hands it out.
type tcpTPM struct {
	mu   sync.Mutex
	conn net.Conn
	resp []byte
}

func openSWTPM(addr string) (io.ReadWriteCloser, error) {
	if _, _, err := net.SplitHostPort(addr); err != nil {
		return nil, fmt.Errorf("%w %q: want swtpm:HOST:PORT: %w", ErrUnknownTPMSpec, SpecSWTPMPrefix+addr, err)
	}
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return nil, err
	}
	return &tcpTPM{conn: conn}, nil
}

// Write sends one TPM command and reads its whole response.
func (t *tcpTPM) Write(cmd []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.resp) > 0 {
		return 0, errors.New("attester: swtpm: command sent before the previous response was read")
	}
	if err := t.conn.SetDeadline(time.Now().Add(swtpmTimeout)); err != nil {
		return 0, err
	}
	if _, err := t.conn.Write(cmd); err != nil {
		return 0, fmt.Errorf("attester: swtpm: send command: %w", err)
	}
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(t.conn, hdr); err != nil {
		return 0, fmt.Errorf("attester: swtpm: read response header: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxTPMResponse {
		return 0, fmt.Errorf("attester: swtpm: response size %d out of range", size)
	}
	resp := make([]byte, size)
	copy(resp, hdr)
	if _, err := io.ReadFull(t.conn, resp[10:]); err != nil {
		return 0, fmt.Errorf("attester: swtpm: read response: %w", err)
	}
	t.resp = resp
	return len(cmd), nil
}

// Read returns the response to the last command.
func (t *tcpTPM) Read(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.resp) == 0 {
		return 0, errors.New("attester: swtpm: no response pending")
	}
	n := copy(p, t.resp)
	t.resp = t.resp[n:]
	return n, nil
}

// Close closes the connection; swtpm keeps its state.
func (t *tcpTPM) Close() error { return t.conn.Close() }
