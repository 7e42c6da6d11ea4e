// Package config loads the configuration of passport's long-running commands (`serve`, `kbs`)
// from one YAML file, environment variables and command-line flags, with the precedence
//
//	flag > environment variable > file > default
//
// The flag set is the schema: every flag of a command is one configuration field, named the
// same everywhere. The flag --nonce-ttl of `serve` is the key nonce-ttl in the file's serve
// section and the environment variable PASSPORT_NONCE_TTL; the flag --addr of `kbs` is the key
// addr in the kbs section and PASSPORT_KBS_ADDR. A flag that another part of passport adds to a
// command is therefore configurable from the file and the environment with no change here.
//
// The file holds one mapping per command:
//
//	serve:
//	  addr: 0.0.0.0:8443
//	  issuer-url: https://issuer.example
//	  tls-cert: /etc/passport/tls/tls.crt
//	  audience: [billing, storage]
//	kbs:
//	  addr: 0.0.0.0:8444
//
// Values are parsed by the flag's own type (durations as "90s", lists as YAML sequences or
// comma-separated strings in the environment). Load reports every problem at once (unknown
// keys, values that do not parse) with errors.Join; typed checks of the values are the Validate
// methods of Serve and KBS. Print writes the effective configuration back as YAML with secrets
// redacted: it prints file paths, never reads the files they name.
package config

import (
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// Section names of the configuration file, one per command.
const (
	SectionServe = "serve"
	SectionKBS   = "kbs"
)

// Flags that select the configuration itself and are never read from it.
const (
	FlagConfig      = "config"
	FlagPrintConfig = "print-config"
)

// EnvConfig names the configuration file when --config is not given.
const EnvConfig = "PASSPORT_CONFIG"

// Redacted replaces secret values in Print's output.
const Redacted = "REDACTED"

// Flag annotations understood by Load and Print.
const (
	annSecret  = "passport/secret"   // value printed as Redacted
	annURL     = "passport/url"      // URL whose passwords are printed as Redacted (see RedactURL)
	annExclude = "passport/noconfig" // not part of the configuration (--config, --print-config)
)

// Source says where a field's effective value came from.
type Source string

// Sources, from weakest to strongest.
const (
	FromDefault Source = "default"
	FromFile    Source = "file"
	FromEnv     Source = "env"
	FromFlag    Source = "flag"
)

// Sources maps flag names to where their effective value came from.
type Sources map[string]Source

// MarkSecret makes Print show the flag's value as Redacted (for a value that is itself a
// secret; a path to a secret file is not one).
func MarkSecret(fs *pflag.FlagSet, name string) { _ = fs.SetAnnotation(name, annSecret, []string{"1"}) }

// MarkURL makes Print hide the password of the URL in the flag's value (redis://:pw@host).
func MarkURL(fs *pflag.FlagSet, name string) { _ = fs.SetAnnotation(name, annURL, []string{"1"}) }

// Exclude takes a flag out of the configuration: Load never sets it and Print omits it.
func Exclude(fs *pflag.FlagSet, name string) { _ = fs.SetAnnotation(name, annExclude, []string{"1"}) }

// RegisterMeta adds --config FILE and --print-config to fs, both excluded from the
// configuration itself.
func RegisterMeta(fs *pflag.FlagSet, path *string, print *bool) {
	fs.StringVar(path, FlagConfig, "", "YAML configuration file (env "+EnvConfig+"); flags and PASSPORT_* variables override it")
	fs.BoolVar(print, FlagPrintConfig, false, "print the effective configuration as YAML (secrets redacted) and exit")
	Exclude(fs, FlagConfig)
	Exclude(fs, FlagPrintConfig)
}

// EnvName returns the environment variable of a flag in a section: PASSPORT_ and, for sections
// other than serve, the section name, then the flag name upper-cased with '-' as '_'.
func EnvName(section, flag string) string {
	p := "PASSPORT_"
	if section != SectionServe {
		p += strings.ToUpper(section) + "_"
	}
	return p + strings.ToUpper(strings.ReplaceAll(flag, "-", "_"))
}

func annotated(f *pflag.Flag, ann string) bool { _, ok := f.Annotations[ann]; return ok }

func excluded(f *pflag.Flag) bool { return f.Name == "help" || annotated(f, annExclude) }

// Load fills every flag of fs that was not given on the command line from the environment
// (getenv, normally os.Getenv) or else from section of the YAML file at path (no file when path
// is empty). It returns where each value came from and every problem found, joined: a file
// that cannot be read or parsed, unknown top-level sections, unknown keys in section, and
// values that do not parse as their flag's type, and set environment variables with the
// section's prefix that name no flag (see UnknownEnv). Flags keep their values on error.
//
// The names checked for typos are those of the process environment (os.Environ) whose value
// getenv also returns, so a getenv that is not os.Getenv (a test's map) sees only its own.
func Load(fs *pflag.FlagSet, section, path string, getenv func(string) string) (Sources, error) {
	var errs []error
	file := map[string]yaml.Node{}
	if path != "" {
		m, err := readFile(path, section, fs)
		errs = append(errs, err)
		file = m
	}
	src := Sources{}
	fs.VisitAll(func(f *pflag.Flag) {
		if excluded(f) {
			return
		}
		switch node, inFile := file[f.Name]; {
		case f.Changed:
			src[f.Name] = FromFlag
		case getenv(EnvName(section, f.Name)) != "":
			env, undo := EnvName(section, f.Name), restore(f)
			if err := setString(f, getenv(env)); err != nil {
				undo()
				errs = append(errs, fmt.Errorf("%s: %w", env, err))
				return
			}
			src[f.Name] = FromEnv
		case inFile:
			undo := restore(f)
			if err := setNode(f, &node); err != nil {
				undo()
				errs = append(errs, fmt.Errorf("%s: %s.%s (line %d): %w", path, section, f.Name, node.Line, err))
				return
			}
			src[f.Name] = FromFile
		default:
			src[f.Name] = FromDefault
		}
	})
	var environ []string
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); getenv(k) != "" {
			environ = append(environ, k)
		}
	}
	errs = append(errs, UnknownEnv(fs, section, environ))
	return src, errors.Join(errs...)
}

// restore puts back a flag's previous value after a failed Set: some pflag types store a zero
// value before reporting a parse error.
func restore(f *pflag.Flag) func() {
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		old := sv.GetSlice()
		return func() { _ = sv.Replace(old) }
	}
	old := f.Value.String()
	return func() { _ = f.Value.Set(old) }
}

// readFile parses the file and returns the keys of section; it reports unknown sections and
// keys that are not flags of fs.
func readFile(path, section string, fs *pflag.FlagSet) (map[string]yaml.Node, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("configuration file: %w", err)
	}
	var doc map[string]map[string]yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("configuration file %s: %w", path, err)
	}
	var errs []error
	for name := range doc {
		if name != SectionServe && name != SectionKBS {
			errs = append(errs, fmt.Errorf("%s: unknown section %q (want %s or %s)", path, name, SectionServe, SectionKBS))
		}
	}
	keys := doc[section]
	names := make([]string, 0, len(keys))
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if f := fs.Lookup(k); f == nil || excluded(f) {
			n := keys[k]
			errs = append(errs, fmt.Errorf("%s: %s.%s (line %d): unknown key", path, section, k, n.Line))
			delete(keys, k)
		}
	}
	return keys, errors.Join(errs...)
}

// setString sets a flag from an environment variable: pflag's own parsing, which for list
// flags splits on commas and replaces the default.
func setString(f *pflag.Flag, s string) error { return f.Value.Set(s) }

// setNode sets a flag from a YAML value: a scalar for any flag, a sequence of scalars for list
// flags.
func setNode(f *pflag.Flag, n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		if sv, ok := f.Value.(pflag.SliceValue); ok {
			if n.Tag == "!!null" {
				return sv.Replace(nil)
			}
			return sv.Replace([]string{n.Value})
		}
		if n.Tag == "!!null" {
			return errors.New("empty value")
		}
		return f.Value.Set(n.Value)
	case yaml.SequenceNode:
		sv, ok := f.Value.(pflag.SliceValue)
		if !ok {
			return fmt.Errorf("a list given for a single %s value", f.Value.Type())
		}
		vals := make([]string, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return errors.New("list items must be plain values")
			}
			vals = append(vals, c.Value)
		}
		return sv.Replace(vals)
	}
	return fmt.Errorf("want a %s value, got a YAML mapping", f.Value.Type())
}

// Print writes section's effective configuration as YAML: one key per flag of fs in
// registration order, each commented with its source when src is not nil. Values of flags
// marked secret are Redacted, and URL passwords in flags marked as URLs; file paths are printed
// as they are and never opened.
func Print(w io.Writer, fs *pflag.FlagSet, section string, src Sources) error {
	body := &yaml.Node{Kind: yaml.MappingNode}
	sorted := fs.SortFlags
	fs.SortFlags = false
	fs.VisitAll(func(f *pflag.Flag) {
		if excluded(f) {
			return
		}
		k := &yaml.Node{Kind: yaml.ScalarNode, Value: f.Name}
		v := valueNode(f)
		if s, ok := src[f.Name]; ok {
			v.LineComment = string(s)
			if s == FromEnv {
				v.LineComment += " " + EnvName(section, f.Name)
			}
		}
		body.Content = append(body.Content, k, v)
	})
	fs.SortFlags = sorted
	doc := &yaml.Node{Kind: yaml.MappingNode, Content: []*yaml.Node{
		{Kind: yaml.ScalarNode, Value: section}, body,
	}}
	enc := yaml.NewEncoder(w)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return err
	}
	return enc.Close()
}

func valueNode(f *pflag.Flag) *yaml.Node {
	str := func(s string) *yaml.Node { return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: s} }
	switch {
	case annotated(f, annSecret):
		if f.Value.String() == "" {
			return str("")
		}
		return str(Redacted)
	case annotated(f, annURL):
		return str(RedactURL(f.Value.String()))
	}
	if sv, ok := f.Value.(pflag.SliceValue); ok {
		n := &yaml.Node{Kind: yaml.SequenceNode, Style: yaml.FlowStyle}
		for _, s := range sv.GetSlice() {
			n.Content = append(n.Content, str(s))
		}
		return n
	}
	switch f.Value.Type() {
	case "bool", "int", "int64", "uint", "uint64", "int32", "uint32", "float64", "float32":
		return &yaml.Node{Kind: yaml.ScalarNode, Value: f.Value.String()} // plain: YAML reads it back as a number or bool
	}
	return str(f.Value.String())
}

// RedactURL replaces with Redacted the password of a URL's userinfo and the value of every
// query parameter whose name contains "password" in any case ("redis://u:pw@h/0?sentinel_password=x"
// becomes "redis://u:REDACTED@h/0?sentinel_password=REDACTED"; a redacted query comes out
// re-encoded, parameters sorted by name). A value that does not parse as a scheme:// URL but
// contains '@' or "password", one with '@' in its path or fragment, and one whose query does
// not parse are redacted whole, so that nothing secret leaks through a typo.
func RedactURL(s string) string {
	if s == "" {
		return s
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme == "" || !strings.HasPrefix(s[len(u.Scheme):], "://") {
		if strings.Contains(s, "@") || strings.Contains(strings.ToLower(s), "password") {
			return Redacted
		}
		return s
	}
	if strings.Contains(u.Path, "@") || strings.Contains(u.Fragment, "@") { // redis:///:pw@h, a mistyped userinfo
		return Redacted
	}
	q, err := url.ParseQuery(u.RawQuery)
	if err != nil {
		return Redacted
	}
	changed := false
	if _, has := u.User.Password(); has {
		u.User = url.UserPassword(u.User.Username(), Redacted)
		changed = true
	}
	for name := range q {
		if strings.Contains(strings.ToLower(name), "password") {
			q[name] = []string{Redacted}
			changed = true
		}
	}
	if !changed {
		return s
	}
	u.RawQuery = q.Encode()
	return u.String()
}
