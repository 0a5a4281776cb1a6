package jobs

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"text/template"
)

// Task returns the task block of a group, or nil.
func (j *Job) Task(group, task string) *Block {
	g := j.Root.Get("group", group)
	if g == nil {
		return nil
	}
	return g.Get("task", task)
}

var runtimeRef = regexp.MustCompile(`\$\{([^}]+)\}`)

// Interpolate performs Nomad's run-time interpolation of "${name}" references (for
// example ${NOMAD_ADDR_http} or ${attr.unique.network.ip-address}) with the values in rt.
// A reference missing from rt is an error, so tests notice one they did not provide.
func Interpolate(s string, rt map[string]string) (string, error) {
	var missing []string
	out := runtimeRef.ReplaceAllStringFunc(s, func(m string) string {
		name := m[2 : len(m)-1]
		v, ok := rt[name]
		if !ok {
			missing = append(missing, name)
			return m
		}
		return v
	})
	if len(missing) > 0 {
		return "", fmt.Errorf("interpolate %q: no value for %s", s, strings.Join(missing, ", "))
	}
	return out, nil
}

// TaskEnv returns the environment a task's templates see: the run-time values in rt plus
// the task's env block, interpolated with rt.
func TaskEnv(task *Block, rt map[string]string) (map[string]string, error) {
	env := map[string]string{}
	for k, v := range rt {
		env[k] = v
	}
	if e := task.Get("env"); e != nil {
		m, err := e.StringMap()
		if err != nil {
			return nil, err
		}
		for k, v := range m {
			iv, err := Interpolate(v, rt)
			if err != nil {
				return nil, fmt.Errorf("env %s: %w", k, err)
			}
			env[k] = iv
		}
	}
	return env, nil
}

// NomadService is an entry of Nomad's service catalog with exactly the fields of
// consul-template's dependency.NomadService, which its nomadService function returns
// (so a template using another field fails here as it fails under Nomad).
type NomadService struct {
	ID, Name, Node, Address, Datacenter, JobID, AllocID string
	Port                                                int
	Tags                                                []string
}

// RenderTemplate renders a template block the way Nomad's consul-template would, for
// templates that use only env and nomadService: Go's text/template with the block's
// delimiters, env reading the task environment ("" when unset) and nomadService reading
// services (the catalog). A template calling any other function fails to parse here,
// which tells that this emulation no longer covers it.
func RenderTemplate(tmpl *Block, env map[string]string, services map[string][]NomadService) (string, error) {
	data, ok := tmpl.String("data")
	if !ok {
		return "", fmt.Errorf("%s: template without inline data", tmpl.Range)
	}
	left, _ := tmpl.String("left_delimiter")
	right, _ := tmpl.String("right_delimiter")
	dest, _ := tmpl.String("destination")
	t, err := template.New(dest).Delims(left, right).Option("missingkey=zero").Funcs(template.FuncMap{
		"env":          func(k string) string { return env[k] },
		"nomadService": func(name string) []NomadService { return services[name] },
	}).Parse(data)
	if err != nil {
		return "", fmt.Errorf("parse template %s: %w", dest, err)
	}
	var b strings.Builder
	if err := t.Execute(&b, nil); err != nil {
		return "", fmt.Errorf("render template %s: %w", dest, err)
	}
	return b.String(), nil
}

// RenderTask renders every template of a task into a map from destination path relative
// to the task directory ("local/prometheus.yml" → "prometheus.yml"; secrets/ destinations
// keep their prefix) to contents. rt holds the run-time values (NOMAD_TASK_DIR,
// NOMAD_ADDR_http, …) the task's env block and templates refer to; services is Nomad's
// service catalog by service name.
func RenderTask(task *Block, rt map[string]string, services map[string][]NomadService) (map[string]string, error) {
	env, err := TaskEnv(task, rt)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, tb := range task.All("template") {
		dest, _ := tb.String("destination")
		dest, err = Interpolate(dest, rt)
		if err != nil {
			return nil, err
		}
		s, err := RenderTemplate(tb, env, services)
		if err != nil {
			return nil, err
		}
		rel := strings.TrimPrefix(path.Clean(dest), "local/")
		out[rel] = s
	}
	return out, nil
}
