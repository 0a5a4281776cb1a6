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
	"regexp"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"

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
	f, diags := hclsyntax.ParseConfig(src, name, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, fmt.Errorf("parse %s: %w", name, diags)
	}
	type repl struct {
		start, end int
		text       string
	}
	var repls []repl
	var walkErr error
	_ = hclsyntax.VisitAll(f.Body.(*hclsyntax.Body), func(n hclsyntax.Node) hcl.Diagnostics {
		call, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok || call.Name != "file" || walkErr != nil {
			return nil
		}
		if len(call.Args) != 1 {
			walkErr = fmt.Errorf("%s: file() takes one argument", call.Range())
			return nil
		}
		arg, diags := call.Args[0].Value(nil)
		if diags.HasErrors() {
			walkErr = fmt.Errorf("%s: file() argument must be a literal string to inline", call.Range())
			return nil
		}
		b, err := readFile(arg.AsString())
		if err != nil {
			walkErr = fmt.Errorf("%s: %w", call.Range(), err)
			return nil
		}
		r := call.Range()
		repls = append(repls, repl{r.Start.Byte, r.End.Byte, quoteHCL(string(b))})
		return nil
	})
	if walkErr != nil {
		return nil, walkErr
	}
	sort.Slice(repls, func(i, j int) bool { return repls[i].start > repls[j].start })
	out := append([]byte(nil), src...)
	for _, r := range repls {
		out = append(out[:r.start], append([]byte(r.text), out[r.end:]...)...)
	}
	return out, nil
}

var templateSeq = regexp.MustCompile(`([$%])\{`)

// quoteHCL writes s as a quoted HCL string whose value is exactly s: escapes for quotes,
// backslashes and control characters, and "${" / "%{" doubled so HCL does not read them
// as template sequences.
func quoteHCL(s string) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < 0x20 || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return templateSeq.ReplaceAllString(b.String(), "$1$1{")
}
