package attester_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"fmt"

	"github.com/go-jose/go-jose/v4"

	"github.com/passport-attest/passport/attester"
	"github.com/passport-attest/passport/kbs"
)

// A key broker encrypts a secret to the attester's cnf key; only that key opens it.
// KBSClient.Fetch does this after requesting the resource with a DPoP proof.
func ExampleOpenSecret() {
	cnf, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader) // Attester.CNFPrivate() in practice
	jwe, _ := kbs.EncryptTo(&jose.JSONWebKey{Key: &cnf.PublicKey}, []byte("disk key"))

	secret, err := attester.OpenSecret(jwe, cnf)
	fmt.Printf("%s %v\n", secret, err)

	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	_, err = attester.OpenSecret(jwe, other)
	fmt.Println(err != nil)
	// Output:
	// disk key <nil>
	// true
}
