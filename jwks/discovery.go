package jwks

// Discovery is the issuer's discovery document served at /.well-known/openid-configuration
// (OpenID Connect Discovery 1.0 section 3, RFC 8414 section 2), with passport's own endpoints
// added. go-oidc's NewProvider reads issuer, jwks_uri and id_token_signing_alg_values_supported.
type Discovery struct {
	Issuer                 string   `json:"issuer"`
	JWKSURI                string   `json:"jwks_uri"`
	SigningAlgs            []string `json:"id_token_signing_alg_values_supported"`
	ResponseTypesSupported []string `json:"response_types_supported"`
	SubjectTypesSupported  []string `json:"subject_types_supported"`
	ChallengeEndpoint      string   `json:"challenge_endpoint"`
	AttestationEndpoint    string   `json:"attestation_endpoint"`
	AppraisalEndpoint      string   `json:"appraisal_endpoint,omitempty"`
	StatusListURI          string   `json:"status_list_uri,omitempty"`
	// RevocationEventsEndpoint streams revocations as server-sent events (passport's own).
	RevocationEventsEndpoint string `json:"revocation_events_endpoint,omitempty"`
	TokenType                string `json:"token_type"` // always "eat+jwt"
}

// NewDiscovery builds the document for an issuer whose public base URL is issuer (no trailing
// slash) and whose published keys use algs.
func NewDiscovery(issuer string, algs []string) Discovery {
	return Discovery{
		Issuer:                 issuer,
		JWKSURI:                issuer + "/.well-known/jwks.json",
		SigningAlgs:            algs,
		ResponseTypesSupported: []string{"id_token"},
		SubjectTypesSupported:  []string{"public"},
		ChallengeEndpoint:      issuer + "/v1/challenge",
		AttestationEndpoint:    issuer + "/v1/attest",
		TokenType:              "eat+jwt",
	}
}
