package jobs

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"slices"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/ext/dynblock"
	"github.com/hashicorp/hcl/v2/ext/typeexpr"
	"github.com/hashicorp/hcl/v2/hclparse"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
	"github.com/zclconf/go-cty/cty/convert"
	"github.com/zclconf/go-cty/cty/function"
	"github.com/zclconf/go-cty/cty/function/stdlib"
)

// Variable is a job file's input variable.
type Variable struct {
	Name        string
	Description string
	Type        cty.Type
	Default     cty.Value // null when the declaration has no default
	Value       cty.Value // the value used: default, overridden by var files and Options.Vars
}

// Block is one evaluated block of a job specification: every attribute evaluated, every
// dynamic block expanded. Values that Nomad interpolates at run time (${NOMAD_…},
// ${attr.…}, ${meta.…}, ${device.…}) are kept as the literal "${…}" text, as Nomad's
// own parser keeps them.
type Block struct {
	Type   string
	Labels []string
	Attrs  map[string]cty.Value
	Blocks []*Block
	Range  hcl.Range
}

// Job is a job file evaluated the way `nomad job run` evaluates it before submission.
type Job struct {
	Name      string               // file name, e.g. "inference.nomad.hcl"
	Variables map[string]*Variable // by name
	Root      *Block               // the job block
}

// Options are the variable values for Evaluate, as `nomad job run -var-file … -var …`.
type Options struct {
	// VarFiles are names in FS (e.g. "dev/inference.vars.hcl") applied in order.
	VarFiles []string
	// Vars are -var name=value assignments; a value is read as HCL unless the variable's
	// type is string.
	Vars map[string]string
	// NoFS evaluates without the file() function, as Nomad's /v1/jobs/parse endpoint does;
	// use it on the output of Inline.
	NoFS bool
	// Source replaces the job file's text (for example with Inline's output).
	Source []byte
}

// Evaluate parses and evaluates the named job file from FS with the given variable
// values. It checks what `nomad job validate` would reject before the server sees the
// job: unknown blocks and attributes, missing required attributes, undeclared variables,
// values that do not convert to a variable's type, and failing variable validations.
func Evaluate(name string, opts Options) (*Job, error) {
	src := opts.Source
	if src == nil {
		b, err := fs.ReadFile(FS, name)
		if err != nil {
			return nil, fmt.Errorf("read job: %w", err)
		}
		src = b
	}
	p := hclparse.NewParser()
	file, diags := p.ParseHCL(src, name)
	if diags.HasErrors() {
		return nil, fmt.Errorf("parse %s: %w", name, diags)
	}
	content, diags := file.Body.Content(specs[""].schema())
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s: %w", name, diags)
	}
	job := &Job{Name: name, Variables: map[string]*Variable{}}
	funcs := functions(!opts.NoFS)

	var jobBlocks, localBlocks []*hcl.Block
	for _, b := range content.Blocks {
		switch b.Type {
		case "variable":
			v, err := decodeVariable(b)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if _, dup := job.Variables[v.Name]; dup {
				return nil, fmt.Errorf("%s: variable %q declared twice", name, v.Name)
			}
			job.Variables[v.Name] = v
		case "locals":
			localBlocks = append(localBlocks, b)
		case "job":
			jobBlocks = append(jobBlocks, b)
		}
	}
	if len(jobBlocks) != 1 {
		return nil, fmt.Errorf("%s: want exactly one job block, found %d", name, len(jobBlocks))
	}
	for _, vf := range opts.VarFiles {
		if err := applyVarFile(job.Variables, vf); err != nil {
			return nil, err
		}
	}
	for _, k := range slices.Sorted(maps.Keys(opts.Vars)) {
		v, ok := job.Variables[k]
		if !ok {
			return nil, fmt.Errorf("%s: -var %s: undefined variable", name, k)
		}
		val, err := parseVarValue(v, opts.Vars[k])
		if err != nil {
			return nil, fmt.Errorf("%s: -var %s: %w", name, k, err)
		}
		v.Value = val
	}
	vars := map[string]cty.Value{}
	for n, v := range job.Variables {
		if v.Value.IsNull() {
			return nil, fmt.Errorf("%s: variable %q has no value", name, n)
		}
		vars[n] = v.Value
	}
	ctx := &hcl.EvalContext{
		Functions: funcs,
		Variables: map[string]cty.Value{"var": cty.ObjectVal(vars)},
	}
	for _, b := range content.Blocks {
		if b.Type == "variable" {
			if err := checkValidations(b, job.Variables[b.Labels[0]], ctx); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
	}
	if err := evalLocals(localBlocks, ctx); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	// Names that are not var/local are Nomad's run-time interpolations.
	addRuntimeVariables(ctx, file.Body.(*hclsyntax.Body))

	root, err := evalBlock(jobBlocks[0], ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	job.Root = root
	return job, nil
}

func decodeVariable(b *hcl.Block) (*Variable, error) {
	content, diags := b.Body.Content(specs["variable"].schema())
	if diags.HasErrors() {
		return nil, diags
	}
	v := &Variable{Name: b.Labels[0], Type: cty.DynamicPseudoType, Default: cty.NullVal(cty.DynamicPseudoType)}
	if a, ok := content.Attributes["description"]; ok {
		d, diags := a.Expr.Value(nil)
		if diags.HasErrors() || d.Type() != cty.String || d.IsNull() {
			return nil, fmt.Errorf("variable %q: description must be a literal string", v.Name)
		}
		v.Description = d.AsString()
	}
	if a, ok := content.Attributes["type"]; ok {
		t, diags := typeexpr.TypeConstraint(a.Expr)
		if diags.HasErrors() {
			return nil, fmt.Errorf("variable %q: type: %w", v.Name, diags)
		}
		v.Type = t
	}
	if a, ok := content.Attributes["default"]; ok {
		d, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			return nil, fmt.Errorf("variable %q: default: %w", v.Name, diags)
		}
		cv, err := convert.Convert(d, v.Type)
		if err != nil {
			return nil, fmt.Errorf("variable %q: default does not match type %s: %w", v.Name, v.Type.FriendlyName(), err)
		}
		v.Default = cv
	}
	v.Value = v.Default
	return v, nil
}

func applyVarFile(vars map[string]*Variable, name string) error {
	src, err := fs.ReadFile(FS, name)
	if err != nil {
		return fmt.Errorf("read var file: %w", err)
	}
	f, diags := hclparse.NewParser().ParseHCL(src, name)
	if diags.HasErrors() {
		return fmt.Errorf("parse %s: %w", name, diags)
	}
	attrs, diags := f.Body.JustAttributes()
	if diags.HasErrors() {
		return fmt.Errorf("%s: %w", name, diags)
	}
	for _, k := range slices.Sorted(maps.Keys(attrs)) {
		a := attrs[k]
		v, ok := vars[k]
		if !ok {
			// nomad job run is strict by default (-hcl2-strict): an undeclared variable is an error.
			return fmt.Errorf("%s: undefined variable %q", name, k)
		}
		val, diags := a.Expr.Value(nil)
		if diags.HasErrors() {
			return fmt.Errorf("%s: %s: %w", name, k, diags)
		}
		cv, err := convert.Convert(val, v.Type)
		if err != nil {
			return fmt.Errorf("%s: %s: want %s: %w", name, k, v.Type.FriendlyName(), err)
		}
		v.Value = cv
	}
	return nil
}

func parseVarValue(v *Variable, raw string) (cty.Value, error) {
	if v.Type == cty.String {
		return cty.StringVal(raw), nil
	}
	expr, diags := hclsyntax.ParseExpression([]byte(raw), "-var", hcl.InitialPos)
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	val, diags := expr.Value(nil)
	if diags.HasErrors() {
		return cty.NilVal, diags
	}
	return convert.Convert(val, v.Type)
}

func checkValidations(b *hcl.Block, v *Variable, ctx *hcl.EvalContext) error {
	content, _ := b.Body.Content(specs["variable"].schema())
	for _, vb := range content.Blocks {
		vc, diags := vb.Body.Content(specs["validation"].schema())
		if diags.HasErrors() {
			return fmt.Errorf("variable %q: %w", v.Name, diags)
		}
		cond, diags := vc.Attributes["condition"].Expr.Value(ctx)
		if diags.HasErrors() {
			return fmt.Errorf("variable %q: validation: %w", v.Name, diags)
		}
		if cond.Type() != cty.Bool || cond.IsNull() {
			return fmt.Errorf("variable %q: validation condition is not a bool", v.Name)
		}
		if cond.False() {
			msg, _ := vc.Attributes["error_message"].Expr.Value(nil)
			return fmt.Errorf("variable %q: %s", v.Name, msg.AsString())
		}
	}
	return nil
}

// evalLocals evaluates locals in dependency order (a local may use another).
func evalLocals(blocks []*hcl.Block, ctx *hcl.EvalContext) error {
	pending := map[string]*hcl.Attribute{}
	for _, b := range blocks {
		attrs, diags := b.Body.JustAttributes()
		if diags.HasErrors() {
			return diags
		}
		for k, a := range attrs {
			pending[k] = a
		}
	}
	locals := map[string]cty.Value{}
	for len(pending) > 0 {
		progressed := false
		for _, k := range slices.Sorted(maps.Keys(pending)) {
			a := pending[k]
			ready := true
			for _, t := range a.Expr.Variables() {
				if t.RootName() == "local" && len(t) > 1 {
					if n, ok := t[1].(hcl.TraverseAttr); ok {
						if _, done := locals[n.Name]; !done {
							ready = false
						}
					}
				}
			}
			if !ready {
				continue
			}
			v, diags := a.Expr.Value(ctx)
			if diags.HasErrors() {
				return fmt.Errorf("local.%s: %w", k, diags)
			}
			locals[k] = v
			ctx.Variables["local"] = cty.ObjectVal(locals)
			delete(pending, k)
			progressed = true
		}
		if !progressed {
			return fmt.Errorf("locals %v: undefined or cyclic references", slices.Sorted(maps.Keys(pending)))
		}
	}
	ctx.Variables["local"] = cty.ObjectVal(locals)
	return nil
}

// addRuntimeVariables defines every other root name used in the file (NOMAD_PORT_http,
// attr.unique.network.ip-address, meta.x, …) as a value that prints back as "${…}",
// which is what Nomad's parser leaves in the job for the client to interpolate.
func addRuntimeVariables(ctx *hcl.EvalContext, body *hclsyntax.Body) {
	tree := map[string]any{}
	_ = hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		st, ok := n.(*hclsyntax.ScopeTraversalExpr)
		if !ok {
			return nil
		}
		root := st.Traversal.RootName()
		if root == "var" || root == "local" {
			return nil
		}
		parts := []string{root}
		for _, step := range st.Traversal[1:] {
			switch s := step.(type) {
			case hcl.TraverseAttr:
				parts = append(parts, s.Name)
			case hcl.TraverseIndex:
				if s.Key.Type() == cty.String {
					parts = append(parts, s.Key.AsString())
				}
			}
		}
		insertPath(tree, parts, parts)
		return nil
	})
	for k, v := range tree {
		if _, exists := ctx.Variables[k]; !exists {
			ctx.Variables[k] = treeValue(v)
		}
	}
}

func insertPath(tree map[string]any, parts, full []string) {
	head := parts[0]
	if len(parts) == 1 {
		if _, ok := tree[head]; !ok {
			tree[head] = "${" + strings.Join(full, ".") + "}"
		}
		return
	}
	sub, ok := tree[head].(map[string]any)
	if !ok {
		sub = map[string]any{}
		tree[head] = sub
	}
	insertPath(sub, parts[1:], full)
}

func treeValue(v any) cty.Value {
	switch t := v.(type) {
	case string:
		return cty.StringVal(t)
	case map[string]any:
		m := map[string]cty.Value{}
		for k, sub := range t {
			m[k] = treeValue(sub)
		}
		return cty.ObjectVal(m)
	}
	return cty.NilVal
}

func evalBlock(b *hcl.Block, ctx *hcl.EvalContext) (*Block, error) {
	return evalBody(b.Type, b.Labels, b.DefRange, dynblock.Expand(b.Body, ctx), ctx)
}

func evalBody(typ string, labels []string, rng hcl.Range, body hcl.Body, ctx *hcl.EvalContext) (*Block, error) {
	spec, ok := specs[typ]
	if !ok {
		return nil, fmt.Errorf("%s: no schema for block %q", rng, typ)
	}
	out := &Block{Type: typ, Labels: labels, Attrs: map[string]cty.Value{}, Range: rng}
	if spec.freeForm {
		attrs, diags := body.JustAttributes()
		if diags.HasErrors() {
			return nil, diags
		}
		for k, a := range attrs {
			v, diags := a.Expr.Value(ctx)
			if diags.HasErrors() {
				return nil, diags
			}
			out.Attrs[k] = v
		}
		return out, nil
	}
	content, diags := body.Content(spec.schema())
	if diags.HasErrors() {
		return nil, diags
	}
	for k, a := range content.Attributes {
		v, diags := a.Expr.Value(ctx)
		if diags.HasErrors() {
			return nil, diags
		}
		out.Attrs[k] = v
	}
	for _, r := range spec.required {
		if _, ok := out.Attrs[r]; !ok {
			return nil, fmt.Errorf("%s: %s block: missing required attribute %q", rng, typ, r)
		}
	}
	seen := map[string]bool{}
	for _, nb := range content.Blocks {
		if seen[nb.Type] && !repeatable[nb.Type] {
			return nil, fmt.Errorf("%s: %s block: more than one %q block", nb.DefRange, typ, nb.Type)
		}
		seen[nb.Type] = true
		child, err := evalBody(nb.Type, nb.Labels, nb.DefRange, nb.Body, ctx)
		if err != nil {
			return nil, err
		}
		out.Blocks = append(out.Blocks, child)
	}
	return out, nil
}

func functions(allowFS bool) map[string]function.Function {
	fileFn := function.New(&function.Spec{
		Params: []function.Parameter{{Name: "path", Type: cty.String}},
		Type:   function.StaticReturnType(cty.String),
		Impl: func(args []cty.Value, _ cty.Type) (cty.Value, error) {
			if !allowFS {
				return cty.NilVal, errors.New("file() is not allowed here (Nomad's parse API has no file system access)")
			}
			b, err := readFile(args[0].AsString())
			if err != nil {
				return cty.NilVal, err
			}
			return cty.StringVal(string(b)), nil
		},
	})
	return map[string]function.Function{
		"file":       fileFn,
		"concat":     stdlib.ConcatFunc,
		"contains":   stdlib.ContainsFunc,
		"join":       stdlib.JoinFunc,
		"length":     stdlib.LengthFunc,
		"format":     stdlib.FormatFunc,
		"lower":      stdlib.LowerFunc,
		"upper":      stdlib.UpperFunc,
		"max":        stdlib.MaxFunc,
		"min":        stdlib.MinFunc,
		"merge":      stdlib.MergeFunc,
		"jsonencode": stdlib.JSONEncodeFunc,
		"replace":    stdlib.ReplaceFunc,
		"split":      stdlib.SplitFunc,
		"trimspace":  stdlib.TrimSpaceFunc,
	}
}

// Get returns the first nested block of the given type (and labels, when given), or nil.
func (b *Block) Get(typ string, labels ...string) *Block {
	for _, c := range b.All(typ) {
		if len(labels) == 0 || strings.Join(c.Labels, "\x00") == strings.Join(labels, "\x00") {
			return c
		}
	}
	return nil
}

// All returns the nested blocks of the given type.
func (b *Block) All(typ string) []*Block {
	var out []*Block
	for _, c := range b.Blocks {
		if c.Type == typ {
			out = append(out, c)
		}
	}
	return out
}

// String returns a string attribute ("" and false when absent or not a string).
func (b *Block) String(name string) (string, bool) {
	v, ok := b.Attrs[name]
	if !ok || v.IsNull() || !v.IsKnown() {
		return "", false
	}
	s, err := convert.Convert(v, cty.String)
	if err != nil {
		return "", false
	}
	return s.AsString(), true
}

// StringMap returns a free-form block's attributes (env, meta, config) as strings.
func (b *Block) StringMap() (map[string]string, error) {
	out := map[string]string{}
	for k, v := range b.Attrs {
		s, err := convert.Convert(v, cty.String)
		if err != nil {
			return nil, fmt.Errorf("%s.%s: %w", b.Type, k, err)
		}
		out[k] = s.AsString()
	}
	return out, nil
}
