package policy

import (
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"sync"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
	"cel.dev/cel-go/parser"

	"github.com/passport-attest/passport/token"
)

// RevokedRule is the name of the built-in rule that refuses evidence containing a revoked
// reference value; it is reserved.
const RevokedRule = "revoked-reference-value"

// Input variable names.
const (
	varPCRs  = "pcrs"
	varRefs  = "refs"
	varBoot  = "boot"
	varAK    = "ak"
	varClock = "clock"
	varTPM   = "tpm"
)

var inputVars = []string{varPCRs, varBoot, varAK, varClock, varTPM}

var (
	envOnce sync.Once
	env     *cel.Env
	envErr  error
)

// celEnv returns the CEL environment of every policy: the input variables, go native types
// for the structured ones, the strings extension and cross-type numeric comparisons.
func celEnv() (*cel.Env, error) {
	envOnce.Do(func() {
		env, envErr = cel.NewEnv(
			ext.NativeTypes(reflect.TypeFor[Boot](), reflect.TypeFor[AK](), reflect.TypeFor[Clock](), reflect.TypeFor[TPM](),
				ext.ParseStructTags(true)),
			cel.Variable(varPCRs, cel.MapType(cel.StringType, cel.MapType(cel.StringType, cel.StringType))),
			cel.Variable(varRefs, cel.MapType(cel.StringType, cel.MapType(cel.StringType, cel.BoolType))),
			cel.Variable(varBoot, cel.ObjectType("policy.Boot")),
			cel.Variable(varAK, cel.ObjectType("policy.AK")),
			cel.Variable(varClock, cel.ObjectType("policy.Clock")),
			cel.Variable(varTPM, cel.ObjectType("policy.TPM")),
			ext.Strings(),
			cel.CrossTypeNumericComparisons(true),
			cacheFields(),
		)
	})
	return env, envErr
}

// MaxExprSize bounds a rule's expression (bytes).
const MaxExprSize = 4096

// term is a sub-expression shown when a rule fails: its source text and its program.
type term struct {
	text string
	prg  cel.Program
}

type compiledRule struct {
	Rule
	prg     cel.Program
	explain cel.Program
	terms   []term
	sets    []string
	needs   needs
	// native, when set, decides success without CEL (see nativeCheck).
	native *nativeCheck
}

// Program is a compiled policy file: every rule's CEL checked and planned once. It is immutable
// and safe for concurrent use; bind reference values to it with Bind.
type Program struct {
	file     *File
	digest   string
	rules    []*compiledRule
	needs    needs
	revClaim string
	revValue int8
	// usesSets: some rule reads a reference-value set (by name, or any of them through refs
	// used whole or with a computed key), so appraisals set RecordMeasured.
	usesSets bool
}

// Compile checks and plans every rule of f (which Parse has validated). A rule whose expression
// does not parse, does not type-check, is not a bool, or names a reference-value set f does not
// declare is refused with a *LoadError naming the rule and carrying cel-go's message.
func Compile(f *File) (*Program, error) {
	e, err := celEnv()
	if err != nil {
		return nil, fmt.Errorf("policy: CEL environment: %w", err)
	}
	if err := f.validate(); err != nil {
		return nil, err
	}
	p := &Program{file: f, digest: f.Digest(), revClaim: token.ClaimExecutables, revValue: token.ValueContraindicated}
	if rv := f.Revocation; rv != nil {
		if rv.Claim != "" {
			p.revClaim = rv.Claim
		}
		if rv.OnMatch != nil {
			p.revValue = int8(*rv.OnMatch)
		}
	}
	for _, r := range f.Rules {
		cr, err := compileRule(e, f, r)
		if err != nil {
			return nil, err
		}
		p.rules = append(p.rules, cr)
		p.needs = p.needs.or(cr.needs)
		p.usesSets = p.usesSets || len(cr.sets) > 0
	}
	return p, nil
}

func compileExpr(e *cel.Env, src string) (*cel.Ast, cel.Program, error) {
	if len(src) > MaxExprSize {
		return nil, nil, fmt.Errorf("expression is %d bytes, at most %d", len(src), MaxExprSize)
	}
	a, iss := e.Compile(src)
	if iss != nil && iss.Err() != nil {
		return nil, nil, iss.Err()
	}
	prg, err := e.Program(a, cel.EvalOptions(cel.OptOptimize))
	if err != nil {
		return nil, nil, err
	}
	return a, prg, nil
}

func compileRule(e *cel.Env, f *File, r Rule) (*compiledRule, error) {
	a, prg, err := compileExpr(e, r.Expr)
	if err != nil {
		return nil, &LoadError{Rule: r.Name, Field: "expr", Err: err}
	}
	if !a.OutputType().IsExactType(types.BoolType) {
		return nil, &LoadError{Rule: r.Name, Field: "expr", Err: fmt.Errorf("must be a bool expression, is %s", a.OutputType())}
	}
	cr := &compiledRule{Rule: r, prg: prg, native: nativeFor(r.Expr)}
	native := a.NativeRep()
	var chains []ast.Expr
	walk(native.Expr(), &cr.needs, &chains, &cr.sets)
	if i := slices.Index(cr.sets, ""); i >= 0 { // any set may be read: all of them
		cr.sets = slices.Delete(cr.sets, i, i+1)
		for _, name := range slices.Sorted(maps.Keys(f.ReferenceValues)) {
			if !slices.Contains(cr.sets, name) {
				cr.sets = append(cr.sets, name)
			}
		}
	}
	for _, s := range cr.sets {
		if _, ok := f.ReferenceValues[s]; !ok {
			return nil, &LoadError{Rule: r.Name, Field: "expr", Err: fmt.Errorf("reference-value set %q is not declared under reference_values (declare it, empty if the store fills it)", s)}
		}
	}
	if r.Explain != "" {
		ea, eprg, err := compileExpr(e, r.Explain)
		if err != nil {
			return nil, &LoadError{Rule: r.Name, Field: "explain", Err: err}
		}
		cr.explain = eprg
		var more []ast.Expr
		walk(ea.NativeRep().Expr(), &cr.needs, &more, new([]string))
	} else {
		for _, c := range chains {
			if len(cr.terms) == 4 {
				break
			}
			text, err := parser.Unparse(c, native.SourceInfo())
			if err != nil || slices.ContainsFunc(cr.terms, func(t term) bool { return t.text == text }) {
				continue
			}
			if _, tp, err := compileExpr(e, text); err == nil {
				cr.terms = append(cr.terms, term{text: text, prg: tp})
			}
		}
	}
	return cr, nil
}

// walk visits an expression and records: the costly input parts it reads (needs), the maximal
// member chains rooted at an input variable (shown when the rule fails), and the names of the
// reference-value sets it selects as refs.<name> or refs["name"] ("" when it reads refs whole
// or with a computed key, so any set).
func walk(x ast.Expr, n *needs, chains *[]ast.Expr, sets *[]string) {
	if root, path, ok := chain(x); ok {
		switch root {
		case varRefs:
			name := "" // refs used whole or with a computed key: any set (compileRule)
			if len(path) > 0 {
				name = path[0]
			}
			if !slices.Contains(*sets, name) {
				*sets = append(*sets, name)
			}
			walkKeys(x, n, chains, sets)
			return
		case varPCRs:
			if i, err := strconv.Atoi(pathAt(path, 1)); err == nil && len(path) >= 2 && i >= 0 && i < 32 && strconv.Itoa(i) == path[1] {
				n.pcrMask |= 1 << i
			} else {
				n.pcrs = true
			}
		case varBoot:
			if len(path) == 0 {
				*n = allNeeds
				break
			}
			switch path[0] {
			case "events":
				if c, ok := eventTypeCodes[pathAt(path, 1)]; ok {
					if !slices.Contains(n.eventTypes, c) {
						n.eventTypes = append(n.eventTypes, c)
					}
				} else {
					n.events = true
				}
			case "grub_commands":
				n.grubCommands = true
			case "grub_files":
				n.grubFiles = true
			case "kernel", "kernel_cmdline", "kernel_cmdline_digest":
				n.kernel = true
			case "firmware", "efi_apps", "bootloaders":
				n.lists = true
			}
		}
		if len(path) > 0 {
			*chains = append(*chains, x)
		}
		walkKeys(x, n, chains, sets)
		return
	}
	switch x.Kind() {
	case ast.SelectKind:
		walk(x.AsSelect().Operand(), n, chains, sets)
	case ast.CallKind:
		c := x.AsCall()
		if c.IsMemberFunction() {
			walk(c.Target(), n, chains, sets)
		}
		for _, a := range c.Args() {
			walk(a, n, chains, sets)
		}
	case ast.ListKind:
		for _, el := range x.AsList().Elements() {
			walk(el, n, chains, sets)
		}
	case ast.MapKind:
		for _, en := range x.AsMap().Entries() {
			walk(en.AsMapEntry().Key(), n, chains, sets)
			walk(en.AsMapEntry().Value(), n, chains, sets)
		}
	case ast.StructKind:
		for _, fl := range x.AsStruct().Fields() {
			walk(fl.AsStructField().Value(), n, chains, sets)
		}
	case ast.ComprehensionKind:
		c := x.AsComprehension()
		for _, s := range []ast.Expr{c.IterRange(), c.AccuInit(), c.LoopCondition(), c.LoopStep(), c.Result()} {
			walk(s, n, chains, sets)
		}
	}
}

func pathAt(path []string, i int) string {
	if i < len(path) {
		return path[i]
	}
	return ""
}

// walkKeys walks the computed index keys of a chain (pcrs[tpm.bank]).
func walkKeys(x ast.Expr, n *needs, chains *[]ast.Expr, sets *[]string) {
	for {
		switch x.Kind() {
		case ast.SelectKind:
			x = x.AsSelect().Operand()
			continue
		case ast.CallKind:
			args := x.AsCall().Args()
			if args[1].Kind() != ast.LiteralKind {
				var sub []ast.Expr
				walk(args[1], n, &sub, sets)
			}
			x = args[0]
			continue
		}
		return
	}
}

// chain reports whether x is an input variable followed by field selections or constant-string
// indexes (boot.kernel, pcrs.sha256["7"], refs.kernels), returning the variable and the path.
func chain(x ast.Expr) (string, []string, bool) {
	switch x.Kind() {
	case ast.IdentKind:
		id := x.AsIdent()
		if id == varRefs || slices.Contains(inputVars, id) {
			return id, nil, true
		}
	case ast.SelectKind:
		s := x.AsSelect()
		if root, path, ok := chain(s.Operand()); ok {
			return root, append(path, s.FieldName()), true
		}
	case ast.CallKind:
		c := x.AsCall()
		if c.FunctionName() != "_[_]" || len(c.Args()) != 2 {
			break
		}
		key := c.Args()[1]
		k, isLit := "", key.Kind() == ast.LiteralKind
		if isLit {
			k, isLit = key.AsLiteral().Value().(string)
		}
		if _, _, isChain := chain(key); !isLit && !isChain {
			break
		}
		if root, path, ok := chain(c.Args()[0]); ok {
			return root, append(path, k), true // k is "" for a key computed from the input
		}
	}
	return "", nil, false
}

// errNoState is the cause of the failure recorded for a nil State.
var errNoState = errors.New("no verified evidence to appraise")

// Rules returns the names of the compiled rules, in file order.
func (p *Program) Rules() []string {
	out := make([]string, len(p.rules))
	for i, r := range p.rules {
		out[i] = r.Name
	}
	return out
}

// File returns the policy file p was compiled from (do not modify it).
func (p *Program) File() *File { return p.file }

// Digest returns the SHA-256 (hex) of the policy file's canonical encoding.
func (p *Program) Digest() string { return p.digest }
