package relyingparty

import (
	"context"
	"encoding/json"
	"fmt"

	"cel.dev/cel-go/cel"

	"github.com/passport-attest/passport/token"
)

// celCostLimit bounds one evaluation of Config.RequireCEL (cel-go cost units), so that an
// expression over a hostile claim set cannot run away.
const celCostLimit = 1_000_000

// celRule is a compiled Config.RequireCEL expression.
type celRule struct {
	src string
	prg cel.Program
}

// compileCEL compiles expr once. Its variables are:
//
//	claims  map(string, dyn)  the verified JWT claim set as JSON (numbers are doubles)
//	status  string            the overall EAR status: "affirming", "warning", "none", ...
//
// It must yield a bool.
func compileCEL(expr string) (*celRule, error) {
	env, err := cel.NewEnv(
		cel.Variable("claims", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("status", cel.StringType),
	)
	if err != nil {
		return nil, fmt.Errorf("cel environment: %w", err)
	}
	ast, iss := env.Compile(expr)
	if iss != nil && iss.Err() != nil {
		return nil, fmt.Errorf("compile %q: %w", expr, iss.Err())
	}
	if !ast.OutputType().IsExactType(cel.BoolType) {
		return nil, fmt.Errorf("expression %q yields %s, not bool", expr, ast.OutputType())
	}
	prg, err := env.Program(ast, cel.CostLimit(celCostLimit), cel.InterruptCheckFrequency(100))
	if err != nil {
		return nil, fmt.Errorf("program %q: %w", expr, err)
	}
	return &celRule{src: expr, prg: prg}, nil
}

// eval runs the rule over the verified payload. Errors match ErrRequirement.
func (r *celRule) eval(ctx context.Context, payload []byte, c *token.Claims) error {
	var m map[string]any
	if err := json.Unmarshal(payload, &m); err != nil {
		return fmt.Errorf("%w: claims as JSON: %w", ErrRequirement, err)
	}
	out, _, err := r.prg.ContextEval(ctx, map[string]any{"claims": m, "status": c.OverallStatus().String()})
	if err != nil {
		return fmt.Errorf("%w: %q: %w", ErrRequirement, r.src, err)
	}
	if ok, isBool := out.Value().(bool); !isBool || !ok {
		return fmt.Errorf("%w: %q is false", ErrRequirement, r.src)
	}
	return nil
}
