// Package jobs holds the Nomad job bundle — inference, Prometheus, Grafana and the
// parameterized load test — with the files the jobs inline (Prometheus configuration and
// alert rules, Grafana provisioning), the dev-agent var files, and the tools that check
// them: an evaluator that reads a job file the way `nomad job run` does (variables, var
// files, locals, dynamic blocks, file()) and rejects unknown blocks and attributes, and a
// renderer for the consul-template subset the Prometheus template uses.
//
// The deployer embeds the bundle through FS; Inline produces a job's source with every
// file() call replaced by the file's contents, for Nomad's /v1/jobs/parse endpoint, which
// has no file system access.
package jobs

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"

	"github.com/inferstack/inferstack/grafana"
)

// FS holds the job files (*.nomad.hcl), the dev var files and agent configuration
// (dev/), and the files the jobs inline (prometheus/; the Grafana job inlines files of
// grafana/, served from the grafana package).
//
//go:embed *.nomad.hcl dev prometheus
var FS embed.FS

// Files lists the job files in FS, sorted: "grafana.nomad.hcl", "inference.nomad.hcl", ….
func Files() []string {
	entries, err := fs.Glob(FS, "*.nomad.hcl")
	if err != nil {
		panic(err) // the pattern is constant and valid
	}
	sort.Strings(entries)
	return entries
}

// DevVarFile returns the dev var file of a job file ("inference.nomad.hcl" →
// "dev/inference.vars.hcl"): settings for one `nomad agent -dev` with raw_exec and host
// networking.
func DevVarFile(job string) string {
	return "dev/" + strings.TrimSuffix(job, ".nomad.hcl") + ".vars.hcl"
}

// readFile reads a path as file() in a job file sees it. Nomad resolves file() against
// the directory `nomad job run` runs in, so the job files name their files from the
// repository root ("jobs/prometheus/…", "grafana/dashboards/…"), and the jobs are run
// from there. jobs/ is served from FS, grafana/ from the grafana package's files.
func readFile(p string) ([]byte, error) {
	p = path.Clean(p)
	if rest, ok := strings.CutPrefix(p, "jobs/"); ok {
		return fs.ReadFile(FS, rest)
	}
	if rest, ok := strings.CutPrefix(p, "grafana/"); ok {
		return fs.ReadFile(grafana.Files, rest)
	}
	return nil, fmt.Errorf("file %q: not in the bundle (job files name files from the repository root: jobs/… or grafana/…)", p)
}

// Inline returns the source of a job file with every file("…") call replaced by an HCL
// string holding that file's contents, so that the job parses without file system
// access (Nomad's /v1/jobs/parse endpoint, which the deployer uses).
func Inline(name string) ([]byte, error) {
	src, err := fs.ReadFile(FS, name)
	if err != nil {
		return nil, fmt.Errorf("read job: %w", err)
	}
	return InlineFiles(name, src, readFile)
}

// InlineFiles returns src, the job file name, with every file("literal/path") call
// replaced by the content of that file as an HCL string literal. readFile resolves a
// path: relative paths are joined to name's directory first. Calls Nomad's server
// cannot evaluate without file system access (fileset, filebase64, fileexists,
// abspath, pathexpand, or file() of a non-literal path) are errors naming the line.
func InlineFiles(name string, src []byte, readFile func(path string) ([]byte, error)) ([]byte, error) {
	f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("parse %s: %w", name, diags)
	}
	type repl struct {
		start, end int
		text       string
	}
	var repls []repl
	var firstErr error
	diags = hclsyntax.VisitAll(f.Body.(*hclsyntax.Body), func(n hclsyntax.Node) hcl.Diagnostics {
		call, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok || firstErr != nil {
			return nil
		}
		switch call.Name {
		case "fileset", "filebase64", "fileexists", "abspath", "pathexpand":
			firstErr = fmt.Errorf("%s: %s() is not supported: the Nomad server parses job specs without file system access; use file() with a literal path",
				call.Range(), call.Name)
			return nil
		case "file":
		default:
			return nil
		}
		if len(call.Args) != 1 {
			firstErr = fmt.Errorf("%s: file() takes one argument", call.Range())
			return nil
		}
		v, d := call.Args[0].Value(nil)
		if d.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
			firstErr = fmt.Errorf("%s: file() needs a literal path (no variables): it is inlined because the Nomad server parses job specs without file system access",
				call.Range())
			return nil
		}
		rel := v.AsString()
		target := path.Clean(rel)
		if !path.IsAbs(rel) {
			target = path.Clean(path.Join(path.Dir(name), rel))
		}
		content, err := readFile(target)
		if err != nil {
			firstErr = fmt.Errorf("%s: file(%q): %w", call.Range(), rel, err)
			return nil
		}
		r := call.Range()
		repls = append(repls, repl{start: r.Start.Byte, end: r.End.Byte, text: QuoteHCL(string(content))})
		return nil
	})
	if firstErr != nil {
		return nil, firstErr
	}
	if diags.HasErrors() {
		return nil, fmt.Errorf("%s: %w", name, diags)
	}
	sort.Slice(repls, func(i, j int) bool { return repls[i].start > repls[j].start })
	out := slices.Clone(src)
	for _, r := range repls {
		out = slices.Concat(out[:r.start], []byte(r.text), out[r.end:])
	}
	return out, nil
}

// QuoteHCL returns s as an HCL quoted string literal whose value is exactly s:
// backslashes, quotes and control characters are escaped, and so are the template
// sequences "${" and "%{".
func QuoteHCL(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 16)
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\':
			b.WriteString(`\\`)
		case c == '"':
			b.WriteString(`\"`)
		case c == '\n':
			b.WriteString(`\n`)
		case c == '\r':
			b.WriteString(`\r`)
		case c == '\t':
			b.WriteString(`\t`)
		case (c == '$' || c == '%') && i+1 < len(s) && s[i+1] == '{':
			b.WriteByte(c)
			b.WriteByte(c)
		case c < 0x20 || c == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
	return b.String()
}
