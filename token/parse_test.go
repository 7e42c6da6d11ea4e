package token_test

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/passport-attest/passport/token"
)

// TestParseClaimsMatchesUnmarshal: ParseClaims agrees with json.Unmarshal into Claims on
// valid claim sets in both EAR spellings and on every malformed one.
func TestParseClaimsMatchesUnmarshal(t *testing.T) {
	for _, p := range []string{
		`{"iss":"i","sub":"s","aud":"a","iat":1,"nbf":1,"exp":2,"jti":"j","eat_profile":"p",
		  "cnf":{"jwk":{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}},
		  "status":{"status_list":{"idx":3,"uri":"u"}},"ear_verifier_id":{"build":"b","developer":"d"},
		  "submods":{"tpm":{"ear_status":"affirming","ear_trustworthiness_vector":{"hardware":2},
		  "ear_appraisal_policy_id":"pol","measurements":{"bank":"sha256","pcrs":{"0":"aa"},"secure_boot":true}}}}`,
		`{"aud":["a","b"],"submods":{"tpm":{"ear.status":"warning","ear.trustworthiness-vector":{"executables":33},"ear.appraisal-policy-id":"p"}}}`,
		`{"submods":{"tpm":{"ear_status":2,"ear.status":"affirming"}}}`,
		`{"submods":{"tpm":null,"other":{"ear_status":"affirming"}}}`,
		`{"submods":null,"unknown":{"x":[1,2]}}`,
		`{"submods":{"tpm":{"ear_status":"affirming","ear.status":"warning"}}}`, // conflicting
		`{"submods":{"tpm":{"ear_status":"affirming","ear_trustworthiness_vector":{"executables":2},"ear.trustworthiness-vector":{"executables":96}}}}`,
		`{"submods":{"tpm":{"ear_status":"affirming","ear_appraisal_policy_id":"a","ear.appraisal-policy-id":"b"}}}`,
		`{"submods":{"tpm":{"ear_status":"affirming","ear_trustworthiness_vector":{"executables":2},"ear.trustworthiness-vector":{"executables":2}}}}`,
		`{"submods":{"tpm":{"ear_trustworthiness_vector":{}}}}`, // no status
		`{"submods":{"tpm":{"ear_status":"bogus"}}}`,
		`{"submods":{"tpm":{"ear_status":7}}}`,
		`{"submods":{"tpm":[]}}`,
		`{"aud":5}`,
		`{"exp":"soon"}`,
		`{"cnf":{"jwk":{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}}}`,
		`[]`,
		`{`,
	} {
		var want token.Claims
		wantErr := json.Unmarshal([]byte(p), &want)
		got, err := token.ParseClaims([]byte(p))
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%s:\nParseClaims error %v, json.Unmarshal error %v", p, err, wantErr)
		}
		if err == nil && !reflect.DeepEqual(*got, want) {
			t.Fatalf("%s:\nParseClaims %+v\njson.Unmarshal %+v", p, *got, want)
		}
	}
}

// TestConflictingSpellingsRefused: a submodule that says two different things in the two EAR
// spellings (status, trustworthiness vector, policy id) is malformed; agreeing spellings are
// accepted.
func TestConflictingSpellingsRefused(t *testing.T) {
	for p, ok := range map[string]bool{
		`{"submods":{"tpm":{"ear_status":"affirming","ear.status":"warning"}}}`:                                                                         false,
		`{"submods":{"tpm":{"ear_status":"affirming","ear_trustworthiness_vector":{"executables":2},"ear.trustworthiness-vector":{"executables":96}}}}`: false,
		`{"submods":{"tpm":{"ear_status":"affirming","ear_appraisal_policy_id":"a","ear.appraisal-policy-id":"b"}}}`:                                    false,
		`{"submods":{"tpm":{"ear_status":"affirming","ear_trustworthiness_vector":{"executables":2},"ear.trustworthiness-vector":{"executables":2}}}}`:  true,
		`{"submods":{"tpm":{"ear_status":"affirming","ear_appraisal_policy_id":"a","ear.appraisal-policy-id":"a"}}}`:                                    true,
	} {
		if _, err := token.ParseClaims([]byte(p)); (err == nil) != ok {
			t.Errorf("%s: err %v, want accepted %v", p, err, ok)
		}
	}
}

// benchPayload is a realistic claim set: cnf key, status reference, one TPM submodule with a
// four-claim vector and eight PCRs (~1.3 KiB).
const benchPayload = `{"iss":"https://issuer.example","sub":"ak-thumbprint-0123456789abcdefghijklmnopqrstuvwxyz0123","aud":"https://rp.example","iat":1800000000,"nbf":1800000000,"exp":1800000300,"jti":"4bX2y0Qw8p1kQm3o5s7u9w","eat_profile":"tag:github.com,2023:veraison/ear","cnf":{"jwk":{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM"}},"status":{"status_list":{"idx":42,"uri":"https://issuer.example/v1/status-list"}},"ear_verifier_id":{"build":"passport 0.1.0","developer":"https://github.com/passport-attest/passport"},"submods":{"tpm":{"ear_status":"affirming","ear_trustworthiness_vector":{"configuration":2,"executables":3,"hardware":2,"instance-identity":2},"ear_appraisal_policy_id":"policy:tpm/default","measurements":{"bank":"sha256","pcrs":{"0":"6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d","1":"4bf5122f344554c53bde2ebb8cd2b7e3d1600ad631c385a5d7cce23c7785459a","2":"dbc1b4c900ffe48d575b5da5c638040125f65db0fe3e24494b76ea986457d986","3":"084fed08b978af4d7d196a7446a86b58009e636b611db16211b65a9aadff29c5","4":"e52d9c508c502347344d8c07ad91cbd6068afc75ff6292f062a09ca381c89e71","5":"e77b9a9ae9e30b0dbdb6f510a264ef9de781501d7b6b92ae89eb059c5ab743db","6":"67586e98fad27da0b9968bc039a1ef34c939b9b8e523a8bef89d478608c5ecf6","7":"ca358758f6d27e6cf45272937977a748fd88391db679ceda7dc7bf1f005ee879"},"secure_boot":true}}}}`

func BenchmarkParseClaims(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := token.ParseClaims([]byte(benchPayload)); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshalClaims(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		var c token.Claims
		if err := json.Unmarshal([]byte(benchPayload), &c); err != nil {
			b.Fatal(err)
		}
	}
}
