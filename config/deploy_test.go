package config_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"

	"github.com/passport-attest/passport/config"
)

// loadBoth loads both sections of the file at path against the serve and kbs flag sets.
func loadBoth(t *testing.T, path string) {
	t.Helper()
	s := config.DefaultServe()
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	s.RegisterFlags(fs)
	if _, err := config.Load(fs, config.SectionServe, path, env(nil)); err != nil {
		t.Errorf("%s serve: %v", path, err)
	}
	// config.KBS's flags are the whole kbs command (cmd/passport TestKBSFlagsAreTheConfigSchema
	// keeps them so), plus --config and --print-config, which a file may not set.
	k := config.DefaultKBS()
	kfs := pflag.NewFlagSet("kbs", pflag.ContinueOnError)
	k.RegisterFlags(kfs)
	var cfgPath string
	var printCfg bool
	config.RegisterMeta(kfs, &cfgPath, &printCfg)
	if _, err := config.Load(kfs, config.SectionKBS, path, env(nil)); err != nil {
		t.Errorf("%s kbs: %v", path, err)
	}
}

// TestDeployConfigsLoad keeps the shipped configuration files in step with the flags: the
// template deploy/passport.yaml and the one inside the Kubernetes ConfigMap.
func TestDeployConfigsLoad(t *testing.T) {
	loadBoth(t, filepath.Join("..", "deploy", "passport.yaml"))

	b, err := os.ReadFile(filepath.Join("..", "deploy", "kubernetes", "issuer.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	found := false
	for {
		var doc struct {
			Kind string
			Data map[string]string
		}
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		if doc.Kind == "ConfigMap" && doc.Data["passport.yaml"] != "" {
			found = true
			loadBoth(t, writeFile(t, "passport.yaml", doc.Data["passport.yaml"]))
		}
	}
	if !found {
		t.Fatal("no passport.yaml ConfigMap in deploy/kubernetes/issuer.yaml")
	}
}
