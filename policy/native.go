package policy

import (
	"encoding/hex"
	"regexp"
	"strconv"
	"strings"
)

// nativeCheck evaluates without CEL a rule whose expression has one of the forms Learn writes:
//
//	boot.<list>.all(d, d in refs.<set>)
//	size(boot.<list>) > 0 && boot.<list>.all(d, d in refs.<set>)
//	boot.<string field> in refs.<set>
//	pcrs.<bank>["<n>"] in refs.<set>
//	<ak|tpm|boot>.<string field> in ["<word>", ...]
//	<ak|tpm|boot>.<string field> == "<word>"
//	boot.secure_boot
//	boot.dbx_count >= <n>
//
// (a <word> is letters, digits, '_' and '-': a CEL string literal whose value is its text).
// Its verdict is the value CEL computes for the expression on the same input, with the same
// sets (see verdict); where CEL would fail with an error (a bank or PCR the quote lacks, a set
// not bound), it gives none and CEL decides. A PCR value is compared as raw bytes with the
// raw form of the set's lowercase hex values, so no PCR value is hex-encoded for it.
type nativeCheck struct {
	list     func(*Boot) []string // a list field: every element must be in set
	nonEmpty bool                 // and the list must not be empty
	str      func(*Boot) string   // a string field that must be in set
	bank     string               // with pcr: pcrs.<bank>["<pcr>"] must be in set
	pcr      uint32
	set      string
	// field with words: the string field must be one of words (in [...] or ==).
	field func(*input) string
	words []string
	// secureBoot: boot.secure_boot; dbxAtLeast >= 0: boot.dbx_count >= dbxAtLeast.
	secureBoot bool
	dbxAtLeast int64
}

// nativeSets are the sets one native check reads, bound by Policy.Bind: the set CEL sees as
// refs.<name> (nil when not bound) and, for a PCR check, the raw bytes of its values that
// are lowercase hex (the only ones the lowercase hex of a PCR value can equal).
type nativeSets struct {
	set map[string]any
	raw map[string]struct{}
}

var (
	nativeAll   = regexp.MustCompile(`^boot\.([a-z_]+)\.all\(([a-z_]+), ([a-z_]+) in refs\.([A-Za-z0-9_]+)\)$`)
	nativeSized = regexp.MustCompile(`^size\(boot\.([a-z_]+)\) > 0 && boot\.([a-z_]+)\.all\(([a-z_]+), ([a-z_]+) in refs\.([A-Za-z0-9_]+)\)$`)
	nativeIn    = regexp.MustCompile(`^boot\.([a-z_]+) in refs\.([A-Za-z0-9_]+)$`)
	nativePCR   = regexp.MustCompile(`^pcrs\.([a-z0-9]+)\["([0-9]+)"\] in refs\.([A-Za-z0-9_]+)$`)
	nativeWords = regexp.MustCompile(`^([a-z]+\.[a-z_]+) in \[("[A-Za-z0-9_-]*"(?:, "[A-Za-z0-9_-]*")*)\]$`)
	nativeEq    = regexp.MustCompile(`^([a-z]+\.[a-z_]+) == ("[A-Za-z0-9_-]*")$`)
	nativeDBX   = regexp.MustCompile(`^boot\.dbx_count >= (0|[1-9][0-9]{0,17})$`)
)

// bootLists and bootStrings are the Boot fields a native check may read, by CEL name;
// inputStrings the string fields of the input's variables, by CEL path.
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
	inputStrings = map[string]func(*input) string{
		"ak.id":    func(in *input) string { return in.ak.ID },
		"ak.trust": func(in *input) string { return in.ak.Trust },
		"tpm.bank": func(in *input) string { return in.tpm.Bank },
	}
)

func init() {
	for name, f := range bootStrings {
		inputStrings["boot."+name] = func(in *input) string { return f(in.boot) }
	}
}

// nativeFor returns the native check of expr, nil when expr is not one of the forms above.
func nativeFor(expr string) *nativeCheck {
	if m := nativeAll.FindStringSubmatch(expr); m != nil {
		if l, ok := bootLists[m[1]]; ok && m[2] == m[3] && m[2] != varRefs {
			return &nativeCheck{list: l, set: m[4], dbxAtLeast: -1}
		}
		return nil
	}
	if m := nativeSized.FindStringSubmatch(expr); m != nil {
		if l, ok := bootLists[m[1]]; ok && m[1] == m[2] && m[3] == m[4] && m[3] != varRefs {
			return &nativeCheck{list: l, nonEmpty: true, set: m[5], dbxAtLeast: -1}
		}
		return nil
	}
	if m := nativeIn.FindStringSubmatch(expr); m != nil {
		if s, ok := bootStrings[m[1]]; ok {
			return &nativeCheck{str: s, set: m[2], dbxAtLeast: -1}
		}
		return nil
	}
	if m := nativePCR.FindStringSubmatch(expr); m != nil {
		// Only the key pcrMap writes for a PCR ("7", not "07"): other keys are never present.
		if i, err := strconv.ParseUint(m[2], 10, 32); err == nil && strconv.FormatUint(i, 10) == m[2] {
			return &nativeCheck{bank: m[1], pcr: uint32(i), set: m[3], dbxAtLeast: -1}
		}
		return nil
	}
	m := nativeWords.FindStringSubmatch(expr)
	if m == nil {
		m = nativeEq.FindStringSubmatch(expr)
	}
	if m != nil {
		if f, ok := inputStrings[m[1]]; ok {
			var words []string
			for _, w := range strings.Split(m[2], ", ") {
				words = append(words, strings.Trim(w, `"`))
			}
			return &nativeCheck{field: f, words: words, dbxAtLeast: -1}
		}
		return nil
	}
	if expr == "boot.secure_boot" {
		return &nativeCheck{secureBoot: true, dbxAtLeast: -1}
	}
	if m := nativeDBX.FindStringSubmatch(expr); m != nil {
		n, err := strconv.ParseInt(m[1], 10, 64)
		if err == nil {
			return &nativeCheck{dbxAtLeast: n}
		}
	}
	return nil
}

// bind returns the sets c reads among a policy's sets (string sets, as CEL sees them) and the
// raw form of PCR sets.
func (c *nativeCheck) bind(sets map[string]map[string]any) nativeSets {
	if c.set == "" {
		return nativeSets{}
	}
	set := sets[c.set]
	if set == nil || c.list != nil || c.str != nil {
		return nativeSets{set: set}
	}
	raw := make(map[string]struct{}, len(set))
	for v := range set {
		if b, err := hex.DecodeString(v); err == nil && hex.EncodeToString(b) == v {
			raw[string(b)] = struct{}{}
		}
	}
	return nativeSets{set: set, raw: raw}
}

// verdict returns the value of the rule's expression on in (ok), or ok == false when CEL must
// decide (it would fail with an error: the set is not bound, the quote lacks the bank or the
// PCR).
func (c *nativeCheck) verdict(in *input, ns nativeSets) (holds, ok bool) {
	switch {
	case c.field != nil:
		v := c.field(in)
		for _, w := range c.words {
			if v == w {
				return true, true
			}
		}
		return false, true
	case c.secureBoot:
		return in.boot.SecureBoot, true
	case c.dbxAtLeast >= 0:
		return in.boot.DBXCount >= c.dbxAtLeast, true
	case ns.set == nil:
		return false, false // no such key: the set is not bound
	case c.list != nil:
		l := c.list(in.boot)
		if c.nonEmpty && len(l) == 0 {
			return false, true
		}
		for _, d := range l {
			if _, ok := ns.set[d]; !ok {
				return false, true
			}
		}
		return true, true
	case c.str != nil:
		_, ok := ns.set[c.str(in.boot)]
		return ok, true
	}
	if c.bank != in.s.Bank {
		return false, false // no such key
	}
	v, ok := in.s.PCRs[c.pcr]
	if !ok {
		return false, false // no such key: the quote lacks the PCR
	}
	_, ok = ns.raw[string(v)]
	return ok, true
}
