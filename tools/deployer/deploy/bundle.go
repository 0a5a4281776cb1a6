package deploy

import (
	"fmt"
	"io/fs"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// JobFileSuffix is how the name of a job specification file ends.
const JobFileSuffix = ".nomad.hcl"

// preferredOrder is the order in which `up` submits the bundled jobs it knows; any
// other job follows in name order.
var preferredOrder = []string{"inference", "prometheus", "grafana", "loadtest"}

// Bundle is a set of Nomad job specifications: files named NAME.nomad.hcl at the root
// of FS, the files they inline with file(), and dev var files dev/NAME.vars.hcl.
type Bundle struct {
	FS fs.FS
	// ReadFile reads the target of a file() call: the call's path, cleaned (joined
	// to the job file's directory inside FS, "." for the bundle's job files). Nil:
	// read it from FS, refusing paths outside it.
	ReadFile func(name string) ([]byte, error)
	// Inline, when set, returns the job file at path (inside FS) with its file()
	// calls inlined; it replaces the deployer's own inlining (ReadFile is then
	// unused).
	Inline func(path string) ([]byte, error)
}

// DevVarFile returns the path in FS of the dev var file of the named job, and whether
// it exists.
func (b *Bundle) DevVarFile(name string) (string, bool) {
	p := "dev/" + name + ".vars.hcl"
	_, err := fs.Stat(b.FS, p)
	return p, err == nil
}

func (b *Bundle) readFile(name string) ([]byte, error) {
	if b.ReadFile != nil {
		return b.ReadFile(name)
	}
	if !fs.ValidPath(name) {
		return nil, fmt.Errorf("%s is outside the job bundle", name)
	}
	return fs.ReadFile(b.FS, name)
}

// JobSource is one job specification, ready to be sent to the Nomad server.
type JobSource struct {
	Name          string          // bundle name: the file name without .nomad.hcl
	Path          string          // path of the file inside the bundle
	ID            string          // the label of the job block
	HCL           string          // the specification with every file() call inlined
	Variables     map[string]bool // names of the variables it declares
	Parameterized bool            // whether the job has a parameterized block
}

// Names returns the names of the bundle's jobs in submission order.
func (b *Bundle) Names() ([]string, error) {
	entries, err := fs.ReadDir(b.FS, ".")
	if err != nil {
		return nil, Errorf(KindInput, "read job bundle: %w", err)
	}
	var names []string
	for _, e := range entries {
		if e.IsDir() || !strings.HasSuffix(e.Name(), JobFileSuffix) {
			continue
		}
		names = append(names, strings.TrimSuffix(e.Name(), JobFileSuffix))
	}
	if len(names) == 0 {
		return nil, Errorf(KindInput, "job bundle has no *%s file", JobFileSuffix)
	}
	rank := func(n string) int {
		if i := slices.Index(preferredOrder, n); i >= 0 {
			return i
		}
		return len(preferredOrder)
	}
	sort.SliceStable(names, func(i, j int) bool {
		ri, rj := rank(names[i]), rank(names[j])
		if ri != rj {
			return ri < rj
		}
		return names[i] < names[j]
	})
	return names, nil
}

// Select returns the named jobs, or all of them when names is empty. An unknown name
// is an input error that lists the known ones.
func (b *Bundle) Select(names []string) ([]string, error) {
	all, err := b.Names()
	if err != nil {
		return nil, err
	}
	if len(names) == 0 {
		return all, nil
	}
	var out []string
	for _, n := range names {
		if !slices.Contains(all, n) {
			return nil, Errorf(KindInput, "unknown job %q (the bundle has: %s)", n, strings.Join(all, ", "))
		}
		if !slices.Contains(out, n) {
			out = append(out, n)
		}
	}
	return out, nil
}

// Load reads the named job, checks its syntax and structure offline and inlines its
// file() calls: the Nomad server parses job specifications without file system access,
// so the deployer reads those files from the bundle and replaces each call with the
// file's content as a string literal. Problems are input errors naming file and line.
func (b *Bundle) Load(name string) (*JobSource, error) {
	p := name + JobFileSuffix
	src, err := fs.ReadFile(b.FS, p)
	if err != nil {
		return nil, Errorf(KindInput, "read job %s: %w", name, err)
	}
	file, diags := hclsyntax.ParseConfig(src, p, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, Errorf(KindInput, "parse %s: %s", p, diags.Error())
	}
	body := file.Body.(*hclsyntax.Body)
	js := &JobSource{Name: name, Path: p, Variables: map[string]bool{}}
	var jobBlocks int
	for _, blk := range body.Blocks {
		switch blk.Type {
		case "variable":
			if len(blk.Labels) == 1 {
				js.Variables[blk.Labels[0]] = true
			}
		case "job":
			jobBlocks++
			if len(blk.Labels) == 1 {
				js.ID = blk.Labels[0]
			}
			for _, inner := range blk.Body.Blocks {
				if inner.Type == "parameterized" {
					js.Parameterized = true
				}
			}
		}
	}
	if jobBlocks != 1 || js.ID == "" {
		return nil, Errorf(KindInput, "%s: want exactly one labelled job block, found %d", p, jobBlocks)
	}
	var inlined []byte
	if b.Inline != nil {
		inlined, err = b.Inline(p)
		if err != nil {
			err = Errorf(KindInput, "inline the files of %s: %w", p, err)
		}
	} else {
		inlined, err = inlineFiles(b.readFile, p, src, body)
	}
	if err != nil {
		return nil, err
	}
	js.HCL = string(inlined)
	return js, nil
}

// inlineFiles replaces every file("literal/path") call in src (parsed as body) with
// the content of that file, relative to the job file's directory inside fsys.
func inlineFiles(readFile func(string) ([]byte, error), p string, src []byte, body *hclsyntax.Body) ([]byte, error) {
	type repl struct {
		start, end int
		text       string
	}
	var repls []repl
	var firstErr error
	diags := hclsyntax.VisitAll(body, func(n hclsyntax.Node) hcl.Diagnostics {
		call, ok := n.(*hclsyntax.FunctionCallExpr)
		if !ok || firstErr != nil {
			return nil
		}
		if call.Name == "fileset" || call.Name == "filebase64" || call.Name == "fileexists" || call.Name == "abspath" || call.Name == "pathexpand" {
			firstErr = Errorf(KindInput, "%s: %s() is not supported: the Nomad server parses job specs without file system access; use file() with a literal path",
				call.Range(), call.Name)
			return nil
		}
		if call.Name != "file" {
			return nil
		}
		if len(call.Args) != 1 {
			firstErr = Errorf(KindInput, "%s: file() takes one argument", call.Range())
			return nil
		}
		v, d := call.Args[0].Value(nil)
		if d.HasErrors() || !v.IsKnown() || v.IsNull() || v.Type() != cty.String {
			firstErr = Errorf(KindInput, "%s: file() needs a literal path (no variables): the deployer inlines it because the Nomad server parses job specs without file system access",
				call.Range())
			return nil
		}
		rel := v.AsString()
		target := path.Clean(rel)
		if !path.IsAbs(rel) {
			target = path.Clean(path.Join(path.Dir(p), rel))
		}
		content, err := readFile(target)
		if err != nil {
			firstErr = Errorf(KindInput, "%s: file(%q): %w", call.Range(), rel, err)
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
		return nil, Errorf(KindInput, "%s: %s", p, diags.Error())
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
