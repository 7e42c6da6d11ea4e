//go:build windows

package attester

import (
	"errors"
	"io"
)

// openDevice is unsupported on Windows, where the TPM is reached through TBS, not a path.
func openDevice(string) (io.ReadWriteCloser, error) {
	return nil, errors.New("TPM device paths are not supported on Windows")
}
