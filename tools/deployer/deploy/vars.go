package deploy

import (
	"fmt"
	"maps"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/inferstack/inferstack/jobs"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
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

// AddFile reads a variables file (name = value lines, HCL syntax) and adds its
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
	final := map[string]string{}
	for _, a := range v.list {
		if (a.job == "" || a.job == job) && declared[a.name] {
			final[a.name] = a.expr
		}
	}
	var b strings.Builder
	for _, n := range slices.Sorted(maps.Keys(final)) {
		fmt.Fprintf(&b, "%s = %s\n", n, final[n])
	}
	return b.String()
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
