package deploy

import (
	"fmt"
	"io/fs"
	"slices"
	"sort"
	"strings"

	"github.com/inferstack/inferstack/jobs"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
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

	// defaults are the default expressions of the declared variables that have one.
	defaults map[string]varDefault
}

// varDefault is the default of a declared variable: its expression's source text
// and where it is.
type varDefault struct {
	expr   string
	origin string // "FILE:LINE"
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
	js := &JobSource{Name: name, Path: p, Variables: map[string]bool{}, defaults: map[string]varDefault{}}
	var jobBlocks int
	for _, blk := range body.Blocks {
		switch blk.Type {
		case "variable":
			if len(blk.Labels) == 1 {
				js.Variables[blk.Labels[0]] = true
				if def, ok := blk.Body.Attributes["default"]; ok {
					r := def.Expr.Range()
					js.defaults[blk.Labels[0]] = varDefault{expr: string(src[r.Start.Byte:r.End.Byte]),
						origin: fmt.Sprintf("%s:%d", p, def.NameRange.Start.Line)}
				}
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
		inlined, err = jobs.InlineFiles(p, src, b.readFile)
		if err != nil {
			err = Errorf(KindInput, "%w", err)
		}
	}
	if err != nil {
		return nil, err
	}
	js.HCL = string(inlined)
	return js, nil
}
