package api

import "time"

// Paths of the status and admin APIs (issue 6).
const (
	// PathStatusList is the base of the Token Status Lists: GET PathStatusList + "/{id}"
	// answers a Status List Token (draft-ietf-oauth-status-list section 8.1).
	PathStatusList = "/v1/status-list"
	// PathRevocations is the revocation event stream (text/event-stream).
	PathRevocations = "/v1/revocations"
	// Admin API paths, on the admin listener only.
	PathAdminRevoke     = "/admin/v1/revoke"
	PathAdminKeys       = "/admin/v1/keys"
	PathAdminKeysRotate = "/admin/v1/keys/rotate"
)

// RevokeRequest is the body of POST /admin/v1/revoke: exactly one field is set.
type RevokeRequest struct {
	// JTI revokes the one live token with this jti.
	JTI string `json:"jti,omitempty"`
	// Subject revokes every live token of an attester: its sub, the AK thumbprint.
	Subject string `json:"subject,omitempty"`
	// ReferenceValue revokes every live token whose evidence matched this reference value
	// (a lowercase hex digest from submods.tpm.measurements.reference_values).
	ReferenceValue string `json:"reference_value,omitempty"`
}

// RevokeResponse answers a revocation: the status list entries set to invalid.
type RevokeResponse struct {
	Count   int           `json:"count"`
	Revoked []RevokedList `json:"revoked"`
}

// RevokedList is a status list (its URI, the tokens' status_list.uri) and the indexes set.
type RevokedList struct {
	URI     string   `json:"uri"`
	Indexes []uint64 `json:"idx"`
}

// RevocationEvent is the data of an event "revoked" of the revocation stream.
type RevocationEvent struct {
	URI     string   `json:"uri"`
	Indexes []uint64 `json:"idx"`
}

// KeyInfo describes one signing key in GET /admin/v1/keys.
type KeyInfo struct {
	KID            string    `json:"kid"`
	Algorithm      string    `json:"alg"`
	State          string    `json:"state"` // next, active, retired (or published for a static key set)
	Created        time.Time `json:"created,omitzero"`
	Activated      time.Time `json:"activated,omitzero"`
	Retired        time.Time `json:"retired,omitzero"`
	PublishedUntil time.Time `json:"published_until,omitzero"`
}

// KeysResponse answers GET /admin/v1/keys and POST /admin/v1/keys/rotate.
type KeysResponse struct {
	Keys []KeyInfo `json:"keys"`
}
