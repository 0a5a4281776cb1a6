package deploy

import (
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"

	"github.com/inferstack/inferstack/jobs"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/gohcl"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/hashicorp/hcl/v2/hclwrite"
	hcljson "github.com/hashicorp/hcl/v2/json"
)

// Variables are HCL2 variable values for the job specifications, kept as HCL
// expression source text so that the Nomad server converts them to each variable's
// declared type. An assignment applies to every job that declares the variable, or,
// when scoped, to one job only. Later assignments override earlier ones.
type Variables struct {
	list []assignment
}

type assignment struct {
	job    string // "" for every job
	name   string
	expr   string
	origin string
}

// NewVariables returns an empty set of variables.
func NewVariables() *Variables { return &Variables{} }

// AddFile reads a variables file (name = value lines in HCL syntax, or, for a name
// ending in .json, a JSON object as `nomad job run -var-file` accepts) and adds its
// assignments, scoped to job unless job is "". Syntax errors are input errors naming
// file and line.
func (v *Variables) AddFile(job, filename string) error {
	src, err := os.ReadFile(filename)
	if err != nil {
		return Errorf(KindInput, "read var file: %w", err)
	}
	return v.AddSource(job, filename, src)
}

// AddSource adds the assignments of variables-file content src, named filename in
// messages, scoped to job unless job is "".
func (v *Variables) AddSource(job, filename string, src []byte) error {
	if strings.HasSuffix(strings.ToLower(filename), ".json") {
		return v.addJSON(job, filename, src)
	}
	file, diags := hclsyntax.ParseConfig(src, filename, hcl.InitialPos)
	if diags.HasErrors() {
		return Errorf(KindInput, "parse var file %s: %s", filename, diags.Error())
	}
	attrs, diags := file.Body.JustAttributes()
	if diags.HasErrors() {
		return Errorf(KindInput, "var file %s: %s", filename, diags.Error())
	}
	names := make([]string, 0, len(attrs))
	for n := range attrs {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool {
		return attrs[names[i]].NameRange.Start.Byte < attrs[names[j]].NameRange.Start.Byte
	})
	for _, name := range names {
		attr := attrs[name]
		r := attr.Expr.Range()
		v.list = append(v.list, assignment{job: job, name: name, expr: string(src[r.Start.Byte:r.End.Byte]),
			origin: fmt.Sprintf("%s:%d", filename, attr.NameRange.Start.Line)})
	}
	return nil
}

// addJSON adds the assignments of a JSON variables file: one object whose members
// are the variables. Each value is rendered as the equivalent HCL expression.
func (v *Variables) addJSON(job, filename string, src []byte) error {
	file, diags := hcljson.Parse(src, filename)
	if diags.HasErrors() {
		return Errorf(KindInput, "parse JSON var file %s: %s", filename, diags.Error())
	}
	attrs, diags := file.Body.JustAttributes()
	if diags.HasErrors() {
		return Errorf(KindInput, "JSON var file %s: %s", filename, diags.Error())
	}
	names := slices.SortedFunc(maps.Keys(attrs), func(a, b string) int {
		return attrs[a].NameRange.Start.Byte - attrs[b].NameRange.Start.Byte
	})
	for _, name := range names {
		attr := attrs[name]
		val, diags := attr.Expr.Value(nil)
		if diags.HasErrors() {
			return Errorf(KindInput, "JSON var file %s: %s", filename, diags.Error())
		}
		v.list = append(v.list, assignment{job: job, name: name, expr: string(hclwrite.TokensForValue(val).Bytes()),
			origin: fmt.Sprintf("%s:%d", filename, attr.NameRange.Start.Line)})
	}
	return nil
}

// Set adds one assignment given as "name=value" or "job.name=value" (the --var
// flag). The value is a string, converted by the server to the variable's type; a
// value starting with "[" or "{" is taken as an HCL list or map expression.
func (v *Variables) Set(arg string) error {
	name, value, ok := strings.Cut(arg, "=")
	name = strings.TrimSpace(name)
	if !ok || name == "" {
		return Errorf(KindInput, "--var %q: want name=value or job.name=value", arg)
	}
	job := ""
	if j, n, scoped := strings.Cut(name, "."); scoped {
		job, name = j, n
	}
	if !hclsyntax.ValidIdentifier(name) || (job != "" && !hclsyntax.ValidIdentifier(job)) {
		return Errorf(KindInput, "--var %q: %q is not a valid variable name", arg, name)
	}
	expr := jobs.QuoteHCL(value)
	if t := strings.TrimSpace(value); strings.HasPrefix(t, "[") || strings.HasPrefix(t, "{") {
		if _, diags := hclsyntax.ParseExpression([]byte(t), "--var "+name, hcl.InitialPos); diags.HasErrors() {
			return Errorf(KindInput, "--var %s: %s", name, diags.Error())
		}
		expr = t
	}
	v.list = append(v.list, assignment{job: job, name: name, expr: expr, origin: "--var " + strings.TrimSpace(strings.SplitN(arg, "=", 2)[0])})
	return nil
}

// For renders, as variables-file content, the assignments that apply to the job
// named job among the variables it declares; the last assignment of a name wins.
func (v *Variables) For(job string, declared map[string]bool) string {
	text, _ := v.render(job, declared)
	return text
}

// render is For, also returning where each line of the text comes from
// (origins[i] for line i+1): "FILE:LINE" or "--var NAME".
func (v *Variables) render(job string, declared map[string]bool) (string, []string) {
	final := map[string]assignment{}
	for _, a := range v.list {
		if (a.job == "" || a.job == job) && declared[a.name] {
			final[a.name] = a
		}
	}
	var b strings.Builder
	var origins []string
	for _, n := range slices.Sorted(maps.Keys(final)) {
		a := final[n]
		line := fmt.Sprintf("%s = %s\n", n, a.expr)
		b.WriteString(line)
		for range strings.Count(line, "\n") {
			origins = append(origins, a.origin)
		}
	}
	return b.String(), origins
}

// Origin returns where the value of the variable name that applies to job comes
// from: "FILE:LINE" or "--var NAME" of the last such assignment, "" when none.
func (v *Variables) Origin(job, name string) string {
	origin := ""
	for _, a := range v.list {
		if (a.job == "" || a.job == job) && a.name == name {
			origin = a.origin
		}
	}
	return origin
}

// StringValue returns the value the Nomad server will give the string variable name
// of job src, as far as the deployer can tell offline: that of the last assignment
// applying to the job (see Origin), else the variable's default in the job file,
// with where it comes from ("FILE:LINE" or "--var NAME"). ok is false when the job
// does not declare the variable, or its value is not a constant string (an
// expression only the server can evaluate, or no value at all).
func (v *Variables) StringValue(src *JobSource, name string) (value, origin string, ok bool) {
	if src == nil || !src.Variables[name] {
		return "", "", false
	}
	expr := ""
	for _, a := range v.list {
		if (a.job == "" || a.job == src.Name) && a.name == name {
			expr, origin = a.expr, a.origin
		}
	}
	if origin == "" {
		def, found := src.defaults[name]
		if !found {
			return "", "", false
		}
		expr, origin = def.expr, def.origin
	}
	e, diags := hclsyntax.ParseExpression([]byte(expr), origin, hcl.InitialPos)
	if diags.HasErrors() {
		return "", "", false
	}
	if diags := gohcl.DecodeExpression(e, nil, &value); diags.HasErrors() {
		return "", "", false
	}
	return value, origin, true
}

// serverRef matches a position in the Nomad server's parse errors, which names both
// the job specification and the variables text "input.hcl": LINE,COL[-[LINE,]COL].
// Group 1: the var-content prefix; 2: the line; 3: a diagnostic about a variable's
// value.
var serverRef = regexp.MustCompile(`(unable to parse var content: )?input\.hcl:(\d+)(?:,\d+(?:-(?:\d+,)?\d+)?)?(: Invalid value for (?:varfile )?variable)?`)

// rewriteServerRefs rewrites the "input.hcl:…" positions of a server parse error:
// those in the variables text become the file and line (or --var) that assigned the
// value, per origins (from render); those in the job specification name jobPath.
func rewriteServerRefs(msg, jobPath string, origins []string) string {
	return serverRef.ReplaceAllStringFunc(msg, func(ref string) string {
		m := serverRef.FindStringSubmatch(ref)
		if m[1] == "" && m[3] == "" {
			return jobPath + strings.TrimPrefix(ref, "input.hcl")
		}
		line, _ := strconv.Atoi(m[2])
		if line < 1 || line > len(origins) {
			return ref
		}
		return m[1] + origins[line-1] + m[3]
	})
}

// CheckDeclared returns an input error naming every assignment that no job it
// applies to declares (a typo would otherwise be ignored silently), or that is scoped
// to a job the bundle does not have.
func (v *Variables) CheckDeclared(jobs []*JobSource) error {
	var unknown []string
	for _, a := range v.list {
		found, jobFound := false, a.job == ""
		for _, j := range jobs {
			if a.job != "" && a.job != j.Name {
				continue
			}
			jobFound = true
			if j.Variables[a.name] {
				found = true
				break
			}
		}
		switch {
		case !jobFound:
			unknown = append(unknown, fmt.Sprintf("%s (%s: no job %q in the bundle)", a.name, a.origin, a.job))
		case !found && a.job != "":
			unknown = append(unknown, fmt.Sprintf("%s (%s: job %q does not declare it)", a.name, a.origin, a.job))
		case !found:
			unknown = append(unknown, fmt.Sprintf("%s (%s)", a.name, a.origin))
		}
	}
	if len(unknown) > 0 {
		return Errorf(KindInput, "undeclared variable: %s", strings.Join(dedupe(unknown), ", "))
	}
	return nil
}
