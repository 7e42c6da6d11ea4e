//go:build !windows

package attester

import (
	"io"

	"github.com/google/go-tpm/legacy/tpm2"
)

// openDevice opens a TPM character device (Linux /dev/tpmrm0, /dev/tpm0) or a Unix socket.
func openDevice(path string) (io.ReadWriteCloser, error) {
	return tpm2.OpenTPM(path)
}
