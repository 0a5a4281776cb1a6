package deploy

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	nomadapi "github.com/hashicorp/nomad/api"
)

// neededVar is a Nomad variable a job's templates read with nomadVar: the task
// waits until it exists, and, for a template with error_on_missing_key, fails when
// it lacks one of the keys the template reads.
type neededVar struct {
	namespace, path string
	keys            []string
}

// nomadVarBlock matches `{{ with nomadVar "PATH" }}BODY{{ end }}`; nomadVarRef any
// `nomadVar "PATH"` (nomadVarExists and nomadVarList do not wait and do not match).
var (
	nomadVarBlock = regexp.MustCompile(`(?s)\{\{-?\s*with\s+nomadVar\s+"([^"]+)"\s*-?\}\}(.*?)\{\{-?\s*end\s*-?\}\}`)
	nomadVarRef   = regexp.MustCompile(`\bnomadVar\s+"([^"]+)"`)
	// templateKey is a field of the variable read in a with block: {{ .admin_password }}.
	templateKey = regexp.MustCompile(`\{\{-?\s*\.([A-Za-z_][A-Za-z0-9_]*)`)
	// dotChange is an action that changes what "." is, inside a with block.
	dotChange = regexp.MustCompile(`\{\{-?\s*(with|range|define|template|block)\b`)
)

// nomadVarMethods are the fields of a nomadVar value that are not items.
var nomadVarMethods = []string{"Keys", "Values", "Tuples", "Metadata", "Parent", "ItemsMap", "Path", "Items"}

// neededVars lists the Nomad variables the job's task templates read, in its
// namespace (ns when the job names none), in order of appearance.
func neededVars(job *nomadapi.Job, ns string) []neededVar {
	if job.Namespace != nil && *job.Namespace != "" {
		ns = *job.Namespace
	}
	if ns == "" {
		ns = "default"
	}
	var out []neededVar
	add := func(path string, keys []string) {
		varNS := ns
		if p, scope, ok := strings.Cut(path, "@"); ok { // "path@namespace.region"
			path = p
			if n, _, _ := strings.Cut(scope, "."); n != "" {
				varNS = n
			}
		}
		for i := range out {
			if out[i].path == path && out[i].namespace == varNS {
				for _, k := range keys {
					if !slices.Contains(out[i].keys, k) {
						out[i].keys = append(out[i].keys, k)
					}
				}
				return
			}
		}
		out = append(out, neededVar{namespace: varNS, path: path, keys: keys})
	}
	for _, tg := range job.TaskGroups {
		for _, t := range tg.Tasks {
			for _, tmpl := range t.Templates {
				if tmpl == nil || tmpl.EmbeddedTmpl == nil {
					continue
				}
				data := *tmpl.EmbeddedTmpl
				if tmpl.LeftDelim != nil && *tmpl.LeftDelim != "" && *tmpl.LeftDelim != "{{" {
					continue // other delimiters: the data is not read as {{ }} actions
				}
				strict := tmpl.ErrMissingKey != nil && *tmpl.ErrMissingKey
				for _, m := range nomadVarBlock.FindAllStringSubmatch(data, -1) {
					var keys []string
					// Only a plain block says for sure which items it reads.
					if strict && !dotChange.MatchString(m[2]) {
						for _, k := range templateKey.FindAllStringSubmatch(m[2], -1) {
							if !slices.Contains(nomadVarMethods, k[1]) && !slices.Contains(keys, k[1]) {
								keys = append(keys, k[1])
							}
						}
					}
					add(m[1], keys)
				}
				for _, m := range nomadVarRef.FindAllStringSubmatch(data, -1) {
					add(m[1], nil)
				}
			}
		}
	}
	return out
}

// keyValueHint is what `nomad var put` is told for a key: a generated password
// for the bundle's admin_password (as jobs/README.md documents it), else a
// placeholder.
func keyValueHint(key string) string {
	if strings.HasSuffix(key, "password") {
		return key + `="$(openssl rand -base64 24)"`
	}
	return key + "=VALUE"
}

// checkNomadVars checks, before anything is registered, that the Nomad variables the
// jobs' templates read exist and hold the keys their strict templates need: without
// them a task waits forever ("Template: Missing: nomad.var.block(…)") or fails to
// render. A missing one is an input error giving the `nomad var put` command. A
// variable the deployer may not read (ACLs) is only noted.
func (d *Deployer) checkNomadVars(ctx context.Context, jobs []*parsedJob) error {
	var problems []string
	for _, pj := range jobs {
		for _, nv := range neededVars(pj.job, d.Namespace) {
			q := (&nomadapi.QueryOptions{Namespace: nv.namespace}).WithContext(ctx)
			v, _, err := d.Nomad.Variables().Peek(nv.path, q)
			if err != nil {
				var ure nomadapi.UnexpectedResponseError
				if errors.As(err, &ure) && ure.HasStatusCode() && ure.StatusCode() == 403 && ctx.Err() == nil {
					d.progressf("    cannot check the Nomad variable %s (namespace %s) that job %q reads: permission denied; its task waits until the variable exists",
						nv.path, nv.namespace, pj.id())
					continue
				}
				return d.apiErr(ctx, fmt.Sprintf("read Nomad variable %s (namespace %s)", nv.path, nv.namespace), err)
			}
			nsFlag := ""
			if nv.namespace != "default" {
				nsFlag = "-namespace " + nv.namespace + " "
			}
			if v == nil {
				keys := nv.keys
				if len(keys) == 0 {
					keys = []string{"KEY"}
				}
				var kv []string
				for _, k := range keys {
					kv = append(kv, keyValueHint(k))
				}
				problems = append(problems, fmt.Sprintf("job %q reads the Nomad variable %s (namespace %s), which does not exist: its task would wait for it forever; create it with\n    nomad var put %s%s %s",
					pj.id(), nv.path, nv.namespace, nsFlag, nv.path, strings.Join(kv, " ")))
				continue
			}
			var missing []string
			for _, k := range nv.keys {
				if _, ok := v.Items[k]; !ok {
					missing = append(missing, k)
				}
			}
			if len(missing) > 0 {
				var kv []string
				for _, k := range missing {
					kv = append(kv, keyValueHint(k))
				}
				problems = append(problems, fmt.Sprintf("job %q needs the key %s in the Nomad variable %s (namespace %s), which lacks it: its template would fail to render; add it with\n    nomad var get %s%s | nomad var put %s-in=json - %s",
					pj.id(), strings.Join(missing, ", "), nv.path, nv.namespace, nsFlag, nv.path, nsFlag, strings.Join(kv, " ")))
			}
		}
	}
	if len(problems) > 0 {
		return Errorf(KindInput, "%s\nnothing was registered", strings.Join(problems, "\n"))
	}
	return nil
}
