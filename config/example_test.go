package config_test

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/passport-attest/passport/config"
)

// ExampleLoad shows the precedence: the flag beats the environment, which beats the file.
func ExampleLoad() {
	dir, _ := os.MkdirTemp("", "passport-config")
	defer os.RemoveAll(dir)
	file := dir + "/passport.yaml"
	_ = os.WriteFile(file, []byte("serve:\n  addr: 0.0.0.0:8443\n  token-lifetime: 10m\n  nonce-ttl: 30s\n  trust-any-ak: true\n"), 0o600)

	s := config.DefaultServe()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	s.RegisterFlags(fs)
	_ = fs.Parse([]string{"--nonce-ttl", "45s"})
	env := map[string]string{"PASSPORT_TOKEN_LIFETIME": "2m"}
	src, err := config.Load(fs, config.SectionServe, file, func(k string) string { return env[k] })
	if err == nil {
		err = s.Validate()
	}
	fmt.Println(err)
	fmt.Println(s.Addr, src["addr"])
	fmt.Println(s.TokenLifetime, src["token-lifetime"])
	fmt.Println(s.NonceTTL, src["nonce-ttl"])
	fmt.Println(s.Alg, src["alg"])
	// Output:
	// <nil>
	// 0.0.0.0:8443 file
	// 2m0s env
	// 45s flag
	// ES256 default
}
