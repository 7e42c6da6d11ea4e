package api

import (
	"errors"
	"fmt"
	"strings"
)

// PathKBSResource is the prefix of a key broker's resource endpoint: GET PathKBSResource +
// "{repository}/{type}/{tag}" (the resource path convention of the Confidential Containers KBS
// protocol, Trustee docs/kbs_attestation_protocol.md, "Secret Resource").
const PathKBSResource = "/kbs/v0/resource/"

// MaxResourceComponent is the longest repository, type or tag name accepted: 128 bytes.
const MaxResourceComponent = 128

// ErrResourceName is returned (wrapped) for a resource name that is not three valid components.
var ErrResourceName = errors.New("api: invalid resource name")

// ResourceID names one secret held by a key broker: repository (a group of resources, e.g.
// "default"), type (e.g. "key") and tag (the instance, e.g. "disk"). Each component is 1 to
// MaxResourceComponent bytes of [A-Za-z0-9._-] and starts with a letter or digit, so that no
// component is ".", "..", empty, hidden or carries a path separator: a valid ResourceID is always
// a safe relative file path and a safe key suffix.
type ResourceID struct {
	Repository string
	Type       string
	Tag        string
}

// ParseResourceID reads "repository/type/tag" (exactly two slashes). Errors wrap ErrResourceName
// and never echo more than the component index.
func ParseResourceID(s string) (ResourceID, error) {
	parts := strings.Split(s, "/")
	if len(parts) != 3 {
		return ResourceID{}, fmt.Errorf("%w: want repository/type/tag, got %d component(s)", ErrResourceName, len(parts))
	}
	id := ResourceID{Repository: parts[0], Type: parts[1], Tag: parts[2]}
	if err := id.Validate(); err != nil {
		return ResourceID{}, err
	}
	return id, nil
}

// Validate checks every component against the charset and length rules of ResourceID. Errors
// wrap ErrResourceName.
func (id ResourceID) Validate() error {
	for i, c := range [3]string{id.Repository, id.Type, id.Tag} {
		if err := validComponent(c); err != nil {
			return fmt.Errorf("%w: component %d %s", ErrResourceName, i+1, err)
		}
	}
	return nil
}

func validComponent(c string) error {
	switch {
	case c == "":
		return errors.New("is empty")
	case len(c) > MaxResourceComponent:
		return fmt.Errorf("exceeds %d bytes", MaxResourceComponent)
	case !isAlnum(c[0]):
		return errors.New("must start with a letter or digit")
	}
	for i := 1; i < len(c); i++ {
		if b := c[i]; !isAlnum(b) && b != '.' && b != '_' && b != '-' {
			return errors.New("has a byte outside [A-Za-z0-9._-]")
		}
	}
	return nil
}

func isAlnum(b byte) bool {
	return (b >= 'a' && b <= 'z') || (b >= 'A' && b <= 'Z') || (b >= '0' && b <= '9')
}

// String returns "repository/type/tag".
func (id ResourceID) String() string { return id.Repository + "/" + id.Type + "/" + id.Tag }

// Path returns the resource endpoint path, PathKBSResource + String(). The components need no
// escaping: their charset is URL-safe.
func (id ResourceID) Path() string { return PathKBSResource + id.String() }
