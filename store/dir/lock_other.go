//go:build !unix

package dirstore

import "errors"

// lock is not implemented outside Unix: a key directory shared by replicas needs flock.
func lock(string) (func(), error) {
	return nil, errors.New("file locking is only implemented on Unix")
}
