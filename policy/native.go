package policy

import "regexp"

// nativeCheck evaluates a rule whose expression has one of the forms Learn writes as plain set
// lookups instead of a CEL comprehension:
//
//	boot.<list>.all(d, d in refs.<set>)
//	size(boot.<list>) > 0 && boot.<list>.all(d, d in refs.<set>)
//	boot.<string field> in refs.<set>
//	pcrs.<bank>["<n>"] in refs.<set>
//
// It only ever answers "true" for an input on which CEL evaluates the expression to true
// (every set is the map Bind hands CEL as refs.<set>, and the input is the one CEL reads);
// any other outcome (false, a missing PCR, bank or set) falls back to CEL, which gives the
// verdict and the explanation.
type nativeCheck struct {
	list     func(*Boot) []string // a list field: every element must be in set
	nonEmpty bool                 // and the list must not be empty
	str      func(*Boot) string   // a string field that must be in set
	bank     string               // with pcr: pcrs.<bank>["<pcr>"] must be in set
	pcr      string
	set      string
}

var (
	nativeAll   = regexp.MustCompile(`^boot\.([a-z_]+)\.all\(([a-z_]+), ([a-z_]+) in refs\.([A-Za-z0-9_]+)\)$`)
	nativeSized = regexp.MustCompile(`^size\(boot\.([a-z_]+)\) > 0 && boot\.([a-z_]+)\.all\(([a-z_]+), ([a-z_]+) in refs\.([A-Za-z0-9_]+)\)$`)
	nativeIn    = regexp.MustCompile(`^boot\.([a-z_]+) in refs\.([A-Za-z0-9_]+)$`)
	nativePCR   = regexp.MustCompile(`^pcrs\.([a-z0-9]+)\["([0-9]+)"\] in refs\.([A-Za-z0-9_]+)$`)
)

// bootLists and bootStrings are the Boot fields a native check may read, by CEL name.
var (
	bootLists = map[string]func(*Boot) []string{
		"firmware":      func(b *Boot) []string { return b.Firmware },
		"efi_apps":      func(b *Boot) []string { return b.EFIApps },
		"bootloaders":   func(b *Boot) []string { return b.Bootloaders },
		"grub_files":    func(b *Boot) []string { return b.GRUBFiles },
		"grub_commands": func(b *Boot) []string { return b.GRUBCommands },
	}
	bootStrings = map[string]func(*Boot) string{
		"kernel":                  func(b *Boot) string { return b.Kernel },
		"kernel_cmdline":          func(b *Boot) string { return b.KernelCmdline },
		"kernel_cmdline_digest":   func(b *Boot) string { return b.KernelCmdlineDigest },
		"confidential_technology": func(b *Boot) string { return b.ConfidentialTechnology },
	}
)

// nativeFor returns the native check of expr, nil when expr is not one of the learned forms.
func nativeFor(expr string) *nativeCheck {
	if m := nativeAll.FindStringSubmatch(expr); m != nil {
		if l, ok := bootLists[m[1]]; ok && m[2] == m[3] && m[2] != varRefs {
			return &nativeCheck{list: l, set: m[4]}
		}
		return nil
	}
	if m := nativeSized.FindStringSubmatch(expr); m != nil {
		if l, ok := bootLists[m[1]]; ok && m[1] == m[2] && m[3] == m[4] && m[3] != varRefs {
			return &nativeCheck{list: l, nonEmpty: true, set: m[5]}
		}
		return nil
	}
	if m := nativeIn.FindStringSubmatch(expr); m != nil {
		if s, ok := bootStrings[m[1]]; ok {
			return &nativeCheck{str: s, set: m[2]}
		}
		return nil
	}
	if m := nativePCR.FindStringSubmatch(expr); m != nil {
		return &nativeCheck{bank: m[1], pcr: m[2], set: m[3]}
	}
	return nil
}

// holds reports whether the check certainly holds on in with the bound sets; false means
// "ask CEL".
func (c *nativeCheck) holds(in *input, sets map[string]map[string]any) bool {
	set, ok := sets[c.set]
	if !ok {
		return false
	}
	switch {
	case c.list != nil:
		l := c.list(in.boot)
		if c.nonEmpty && len(l) == 0 {
			return false
		}
		for _, d := range l {
			if _, ok := set[d]; !ok {
				return false
			}
		}
		return true
	case c.str != nil:
		_, ok := set[c.str(in.boot)]
		return ok
	}
	v, ok := in.pcrs[c.bank][c.pcr]
	if !ok {
		return false
	}
	_, ok = set[v]
	return ok
}
