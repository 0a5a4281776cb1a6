package jobs

import (
	"bytes"
	"encoding/json"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2/hclwrite"
	"github.com/zclconf/go-cty/cty"
	ctyjson "github.com/zclconf/go-cty/cty/json"

	"github.com/inferstack/inferstack/grafana"
)

// devPaths are the -var values the dev instructions pass for checkout-dependent paths.
var devPaths = map[string]map[string]string{
	"inference.nomad.hcl": {
		"binary":    "/src/bin/inference",
		"model_dir": "/src/inference/model/default",
		"ort_lib":   "/src/.cache/onnxruntime-1.24.1/libonnxruntime.so.1",
	},
	"loadtest.nomad.hcl": {"binary": "/src/bin/loadtest"},
}

func evalDefault(t *testing.T, name string) *Job {
	t.Helper()
	j, err := Evaluate(name, Options{})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func evalDev(t *testing.T, name string) *Job {
	t.Helper()
	j, err := Evaluate(name, Options{VarFiles: []string{DevVarFile(name)}, Vars: devPaths[name]})
	if err != nil {
		t.Fatal(err)
	}
	return j
}

func str(t *testing.T, b *Block, attr string) string {
	t.Helper()
	if b == nil {
		t.Fatalf("no block to read %q from", attr)
	}
	s, ok := b.String(attr)
	if !ok {
		t.Fatalf("%s block at %s: no string attribute %q", b.Type, b.Range, attr)
	}
	return s
}

func boolAttr(t *testing.T, b *Block, attr string) bool {
	t.Helper()
	v, ok := b.Attrs[attr]
	if !ok || v.Type() != cty.Bool {
		t.Fatalf("%s block: no bool attribute %q", b.Type, attr)
	}
	return v.True()
}

func strList(t *testing.T, b *Block, attr string) []string {
	t.Helper()
	v, ok := b.Attrs[attr]
	if !ok || !(v.Type().IsListType() || v.Type().IsTupleType()) {
		t.Fatalf("%s block: no list attribute %q", b.Type, attr)
	}
	var out []string
	for it := v.ElementIterator(); it.Next(); {
		_, e := it.Element()
		if e.Type() != cty.String {
			t.Fatalf("%s.%s: element %#v is not a string", b.Type, attr, e)
		}
		out = append(out, e.AsString())
	}
	return out
}

func duration(t *testing.T, b *Block, attr string) time.Duration {
	t.Helper()
	d, err := time.ParseDuration(str(t, b, attr))
	if err != nil {
		t.Fatalf("%s.%s: %v", b.Type, attr, err)
	}
	return d
}

func TestFiles(t *testing.T) {
	want := []string{"grafana.nomad.hcl", "inference.nomad.hcl", "loadtest.nomad.hcl", "prometheus.nomad.hcl"}
	if got := Files(); !slices.Equal(got, want) {
		t.Fatalf("Files() = %v, want %v", got, want)
	}
	for _, f := range want {
		if _, err := fs.Stat(FS, DevVarFile(f)); err != nil {
			t.Errorf("%s has no dev var file: %v", f, err)
		}
	}
}

// Every group that restarts its tasks fails the allocation once the attempts are spent,
// so that the reschedule policy (Nomad's default one where the group has none) can move
// it; mode "delay" would restart a crash-looping task on the same node forever.
func TestRestartHandsOverToReschedule(t *testing.T) {
	for _, name := range Files() {
		j := evalDefault(t, name)
		for _, g := range j.Root.All("group") {
			if r := g.Get("restart"); r != nil {
				if mode := str(t, r, "mode"); mode != "fail" {
					t.Errorf("%s group %v: restart mode %q, want fail", name, g.Labels, mode)
				}
			}
		}
	}
}

// TestVariables: every variable has a description, a declared type and a default of
// that type, and every job evaluates with its defaults and with its dev var file.
func TestVariables(t *testing.T) {
	for _, name := range Files() {
		t.Run(name, func(t *testing.T) {
			j := evalDefault(t, name)
			if len(j.Variables) == 0 {
				t.Fatal("no variables")
			}
			for _, v := range j.Variables {
				if strings.TrimSpace(v.Description) == "" {
					t.Errorf("variable %q has no description", v.Name)
				}
				if v.Type == cty.DynamicPseudoType {
					t.Errorf("variable %q has no type", v.Name)
				}
				if v.Default.IsNull() {
					t.Errorf("variable %q has no default", v.Name)
				} else if !v.Default.Type().Equals(v.Type) {
					t.Errorf("variable %q: default is %s, type %s", v.Name, v.Default.Type().FriendlyName(), v.Type.FriendlyName())
				}
			}
			evalDev(t, name)
		})
	}
}

func TestEvaluateRejectsMistakes(t *testing.T) {
	src, err := fs.ReadFile(FS, "inference.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, old, new, want string
	}{
		{"unknown attribute", `min_healthy_time  = "20s"`, `min_healthy_tme = "20s"`, "min_healthy_tme"},
		{"unknown block", `check_restart {`, `check_restarts {`, "check_restarts"},
		{"missing required attribute", `type     = "http"`, ``, `"type"`},
		{"undefined variable", `var.max_queue`, `var.max_queues`, "max_queues"},
		{"default of wrong type", `default     = 8192`, `default     = "lots"`, "gpu_min_memory_mib"},
		{"duplicate single block", "    ephemeral_disk {\n      size = 2048\n    }", "    ephemeral_disk {\n      size = 2048\n    }\n    ephemeral_disk {\n      size = 1\n    }", "ephemeral_disk"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if !bytes.Contains(src, []byte(tc.old)) {
				t.Fatalf("fixture text %q not in the job", tc.old)
			}
			bad := bytes.Replace(src, []byte(tc.old), []byte(tc.new), 1)
			_, err := Evaluate("inference.nomad.hcl", Options{Source: bad})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Evaluate = %v, want an error naming %s", err, tc.want)
			}
		})
	}
	for _, tc := range []struct {
		name string
		opts Options
		want string
	}{
		{"validation", Options{Vars: map[string]string{"driver": "podman"}}, "driver must be"},
		{"undeclared -var", Options{Vars: map[string]string{"gpus": "2"}}, "gpus"},
		{"wrong -var type", Options{Vars: map[string]string{"gpu_count": "many"}}, "gpu_count"},
		{"var file of another job", Options{VarFiles: []string{"dev/prometheus.vars.hcl"}}, "undefined variable"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Evaluate("inference.nomad.hcl", tc.opts)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Evaluate = %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestInferenceJob(t *testing.T) {
	j := evalDefault(t, "inference.nomad.hcl")
	if got := str(t, j.Root, "type"); got != "service" {
		t.Errorf("type = %q", got)
	}

	u := j.Root.Get("update")
	if u == nil {
		t.Fatal("no update block")
	}
	if c, _ := u.Attrs["canary"].AsBigFloat().Int64(); c < 1 {
		t.Errorf("canary = %d, want ≥ 1", c)
	}
	if !boolAttr(t, u, "auto_promote") || !boolAttr(t, u, "auto_revert") {
		t.Error("want auto_promote and auto_revert")
	}
	if got := str(t, u, "health_check"); got != "checks" {
		t.Errorf("health_check = %q", got)
	}
	mh, hd, pd := duration(t, u, "min_healthy_time"), duration(t, u, "healthy_deadline"), duration(t, u, "progress_deadline")
	if !(mh > 0 && mh < hd && hd < pd) {
		t.Errorf("want 0 < min_healthy_time (%v) < healthy_deadline (%v) < progress_deadline (%v)", mh, hd, pd)
	}

	g := j.Root.Get("group", "server")
	if g == nil || g.Get("restart") == nil || g.Get("reschedule") == nil {
		t.Fatal("group server needs restart and reschedule blocks")
	}
	svc := g.Get("service")
	if str(t, svc, "provider") != "nomad" || str(t, svc, "port") != "http" {
		t.Errorf("service: want the Nomad-native provider on port http")
	}
	chk := svc.Get("check")
	if str(t, chk, "type") != "http" || str(t, chk, "path") != "/readyz" {
		t.Errorf("check: want an http check of /readyz")
	}
	if chk.Get("check_restart") == nil {
		t.Error("check has no check_restart")
	}
	if !slices.Contains(strList(t, svc, "tags"), "metrics_path=/metrics") {
		t.Error("service tags lack metrics_path=/metrics (nomad_sd relabeling reads it)")
	}

	task := j.Task("server", "server")
	if str(t, task, "driver") != "docker" {
		t.Errorf("default driver = %q", str(t, task, "driver"))
	}
	cfg := task.Get("config")
	if str(t, cfg, "image") == "" || str(t, cfg, "network_mode") != "host" {
		t.Error("docker config needs an image and host networking")
	}
	args := strList(t, cfg, "args")
	flag := func(name string) string {
		i := slices.Index(args, name)
		if i < 0 || i+1 >= len(args) {
			t.Fatalf("args lack %s: %q", name, args)
		}
		return args[i+1]
	}
	if got := flag("--addr"); got != "${NOMAD_ADDR_http}" {
		t.Errorf("--addr = %q", got)
	}
	if got := flag("--execution-provider"); got != "cuda" {
		t.Errorf("--execution-provider = %q with a GPU", got)
	}
	if got := flag("--consul-token-file"); got != "${NOMAD_SECRETS_DIR}/consul_token" {
		t.Errorf("--consul-token-file = %q", got)
	}

	// Shutdown arithmetic: group shutdown_delay, then SIGTERM; the server waits
	// --shutdown-delay and drains for --drain-timeout; kill_timeout must cover both with
	// margin, and stay within Nomad's default client max_kill_timeout (30s).
	sd, err := time.ParseDuration(flag("--shutdown-delay"))
	if err != nil {
		t.Fatal(err)
	}
	drain, err := time.ParseDuration(flag("--drain-timeout"))
	if err != nil {
		t.Fatal(err)
	}
	kill := duration(t, task, "kill_timeout")
	if kill < sd+drain+time.Second {
		t.Errorf("kill_timeout %v < shutdown delay %v + drain %v + margin", kill, sd, drain)
	}
	if kill > 30*time.Second {
		t.Errorf("kill_timeout %v exceeds Nomad's default max_kill_timeout of 30s", kill)
	}
	if got := duration(t, g, "shutdown_delay"); got != sd {
		t.Errorf("group shutdown_delay %v != server --shutdown-delay %v", got, sd)
	}
	if str(t, task, "kill_signal") != "SIGTERM" {
		t.Error("kill_signal must be SIGTERM (the server drains on it)")
	}

	id := task.Get("identity")
	if id == nil || str(t, id, "name") != "consul_default" || !slices.Contains(strList(t, id, "aud"), "consul.io") {
		t.Error("want a consul_default workload identity with audience consul.io")
	}

	dev := task.Get("resources").Get("device", "nvidia/gpu")
	if dev == nil {
		t.Fatal("no nvidia/gpu device with the default gpu_count")
	}
	if n, _ := dev.Attrs["count"].AsBigFloat().Int64(); n != 1 {
		t.Errorf("device count = %d", n)
	}
	c := dev.Get("constraint")
	if str(t, c, "attribute") != "${device.attr.memory}" || str(t, c, "operator") != ">=" || str(t, c, "value") != "8192 MiB" {
		t.Errorf("device constraint = %v", c.Attrs)
	}

	// The same job on one dev machine: raw_exec, no GPU block, no token.
	d := evalDev(t, "inference.nomad.hcl")
	dt := d.Task("server", "server")
	if str(t, dt, "driver") != "raw_exec" {
		t.Error("dev driver is not raw_exec")
	}
	dcfg := dt.Get("config")
	if str(t, dcfg, "command") != "/src/bin/inference" {
		t.Errorf("dev command = %q", str(t, dcfg, "command"))
	}
	if _, ok := dcfg.Attrs["image"]; ok {
		t.Error("raw_exec config has an image")
	}
	if dt.Get("resources").Get("device", "nvidia/gpu") != nil {
		t.Error("gpu_count = 0 still requests a GPU")
	}
	if dt.Get("identity") != nil {
		t.Error("consul_token_source = none still asks for a Consul identity")
	}
	dargs := strList(t, dcfg, "args")
	if slices.Contains(dargs, "--consul-token-file") {
		t.Error("consul_token_source = none still passes --consul-token-file")
	}
	if i := slices.Index(dargs, "--execution-provider"); i < 0 || dargs[i+1] != "cpu" {
		t.Errorf("dev args %q: want --execution-provider cpu", dargs)
	}

	// Nomad Variables as the token source renders the token into secrets/.
	nv, err := Evaluate("inference.nomad.hcl", Options{Vars: map[string]string{"consul_token_source": "nomad_variable"}})
	if err != nil {
		t.Fatal(err)
	}
	tmpl := nv.Task("server", "server").Get("template")
	if tmpl == nil || !strings.Contains(str(t, tmpl, "data"), `nomadVar "nomad/jobs/inference"`) {
		t.Error("consul_token_source = nomad_variable: no nomadVar template")
	}
}

func TestLoadtestJob(t *testing.T) {
	j := evalDefault(t, "loadtest.nomad.hcl")
	if str(t, j.Root, "type") != "batch" {
		t.Error("loadtest must be a batch job")
	}
	p := j.Root.Get("parameterized")
	if p == nil {
		t.Fatal("not parameterized")
	}
	optional := strList(t, p, "meta_optional")
	meta, err := j.Root.Get("meta").StringMap()
	if err != nil {
		t.Fatal(err)
	}
	env, err := j.Task("loadtest", "loadtest").Get("env").StringMap()
	if err != nil {
		t.Fatal(err)
	}
	used := strings.Join(mapValues(env), " ")
	for _, k := range optional {
		if _, ok := meta[k]; !ok {
			t.Errorf("optional meta %q has no default in the job's meta block", k)
		}
		if !strings.Contains(used, "${NOMAD_META_"+k+"}") {
			t.Errorf("optional meta %q reaches no LOADTEST_ variable", k)
		}
	}
	for _, want := range []string{"users", "spawn_rate", "duration", "rate", "weights", "target_service", "thresholds"} {
		if !slices.Contains(optional, want) {
			t.Errorf("dispatch meta lacks %q", want)
		}
	}
	if env["LOADTEST_METRICS_ADDR"] != "${NOMAD_ADDR_metrics}" {
		t.Errorf("LOADTEST_METRICS_ADDR = %q", env["LOADTEST_METRICS_ADDR"])
	}
	if svc := j.Root.Get("group", "loadtest").Get("service"); svc == nil || str(t, svc, "port") != "metrics" {
		t.Error("the generator's metrics port is not registered as a service for Prometheus")
	}

	d := evalDev(t, "loadtest.nomad.hcl")
	tmpl := d.Task("loadtest", "loadtest").Get("template")
	if tmpl == nil || !strings.Contains(str(t, tmpl, "data"), "nomadService") {
		t.Error("dev (discovery = nomad): no template rendering LOADTEST_TARGET from Nomad's catalog")
	}
}

func mapValues(m map[string]string) []string {
	var out []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[k])
	}
	return out
}

func TestGrafanaJob(t *testing.T) {
	for _, j := range []*Job{evalDefault(t, "grafana.nomad.hcl"), evalDev(t, "grafana.nomad.hcl")} {
		task := j.Task("grafana", "grafana")
		env, err := task.Get("env").StringMap()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := env["GF_SECURITY_ADMIN_PASSWORD"]; ok {
			t.Error("the admin password is set in the job's env")
		}
		var passwordTmpl *Block
		rendered := map[string]string{}
		for _, tb := range task.All("template") {
			data := str(t, tb, "data")
			if strings.Contains(data, "GF_SECURITY_ADMIN_PASSWORD") {
				passwordTmpl = tb
			}
			rendered[str(t, tb, "destination")] = data
		}
		if passwordTmpl == nil {
			t.Fatal("no template renders GF_SECURITY_ADMIN_PASSWORD")
		}
		if d := str(t, passwordTmpl, "data"); !strings.Contains(d, `nomadVar "nomad/jobs/grafana"`) || !boolAttr(t, passwordTmpl, "error_on_missing_key") {
			t.Errorf("the admin password must come from nomadVar with error_on_missing_key: %q", d)
		}
		// Dashboards and provisioning files are shipped verbatim.
		for dest, src := range map[string]string{
			"local/dashboards/model-serving.json":           "dashboards/model-serving.json",
			"local/dashboards/system.json":                  "dashboards/system.json",
			"local/dashboards/model-quality.json":           "dashboards/model-quality.json",
			"local/dashboards/load-test.json":               "dashboards/load-test.json",
			"local/provisioning/datasources/prometheus.yml": "provisioning/datasources/prometheus.yml",
			"local/provisioning/dashboards/inferstack.yml":  "provisioning/dashboards/inferstack.yml",
		} {
			want, err := fs.ReadFile(grafana.Files, src)
			if err != nil {
				t.Fatal(err)
			}
			if rendered[dest] != string(want) {
				t.Errorf("template %s is not grafana/%s", dest, src)
			}
		}
		if len(grafana.Dashboards()) != 4 {
			t.Errorf("the job ships 4 dashboards, the generator has %d", len(grafana.Dashboards()))
		}
	}
	// No admin/admin anywhere in the bundle.
	for _, name := range Files() {
		src, _ := fs.ReadFile(FS, name)
		if bytes.Contains(src, []byte("admin_password = \"admin\"")) || bytes.Contains(src, []byte("GF_SECURITY_ADMIN_PASSWORD = ")) {
			t.Errorf("%s sets a literal admin password", name)
		}
	}
}

// TestInline: a job whose file() calls were inlined evaluates, without file system
// access, to the same templates as the original.
func TestInline(t *testing.T) {
	for _, name := range Files() {
		t.Run(name, func(t *testing.T) {
			src, err := Inline(name)
			if err != nil {
				t.Fatal(err)
			}
			if bytes.Contains(src, []byte("= file(")) {
				t.Fatal("a file() call is left in the inlined source")
			}
			a := evalDefault(t, name)
			b, err := Evaluate(name, Options{Source: src, NoFS: true})
			if err != nil {
				t.Fatal(err)
			}
			if got, want := templates(t, b), templates(t, a); !slices.Equal(got, want) {
				t.Fatalf("inlined templates differ")
			}
		})
	}
	if _, err := Evaluate("prometheus.nomad.hcl", Options{NoFS: true}); err == nil {
		t.Error("NoFS evaluation of a job with file() succeeded")
	}
}

func templates(t *testing.T, j *Job) []string {
	var out []string
	for _, g := range j.Root.All("group") {
		for _, task := range g.All("task") {
			for _, tb := range task.All("template") {
				out = append(out, str(t, tb, "destination")+"\x00"+str(t, tb, "data"))
			}
		}
	}
	return out
}

func TestQuoteHCL(t *testing.T) {
	for _, s := range []string{"", "plain", "a \"quoted\" \\ path\n\ttab", "${x} %{if} $${y} %%{z}", "{{ $labels.instance }}", "ctl\x01\x7f", "ünïcode ✓"} {
		got, err := evalStringAttr([]byte("v = " + QuoteHCL(s) + "\n"))
		if err != nil {
			t.Fatalf("%q: %v", s, err)
		}
		if got != s {
			t.Errorf("QuoteHCL round trip: got %q, want %q", got, s)
		}
	}
}

// TestFormatted: every HCL file of the bundle is formatted the way `nomad fmt` (hclwrite)
// formats it.
func TestFormatted(t *testing.T) {
	var files []string
	_ = fs.WalkDir(FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".hcl") {
			files = append(files, p)
		}
		return nil
	})
	others, _ := filepath.Glob("../consul/acl/*.hcl")
	devs, _ := filepath.Glob("../consul/dev/*.hcl")
	for _, p := range append(files, append(others, devs...)...) {
		var src []byte
		var err error
		if strings.HasPrefix(p, "../") {
			src, err = os.ReadFile(p)
		} else {
			src, err = fs.ReadFile(FS, p)
		}
		if err != nil {
			t.Fatal(err)
		}
		if got := hclwrite.Format(src); !bytes.Equal(got, src) {
			t.Errorf("%s is not formatted (nomad fmt / hclwrite.Format)", p)
		}
	}
	if len(files) < 9 {
		t.Errorf("only %d HCL files found in FS", len(files))
	}
}

// TestConsulPolicies: the ACL policies use only Consul's rule types and policies, and
// grant what each workload needs.
func TestConsulPolicies(t *testing.T) {
	want := map[string][]string{
		"inference.hcl":  {`service "inference" write`},
		"prometheus.hcl": {`service_prefix "" read`, `node_prefix "" read`, `agent_prefix "" read`},
		"deployer.hcl":   {`service_prefix "" read`, `node_prefix "" read`},
		"grafana.hcl":    {`service "prometheus" read`},
	}
	for file, rules := range want {
		got, err := parsePolicy(filepath.Join("..", "consul", "acl", file))
		if err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		for _, r := range rules {
			if !slices.Contains(got, r) {
				t.Errorf("%s: lacks %s (has %v)", file, r, got)
			}
		}
		for _, r := range got {
			if strings.HasSuffix(r, " write") && file != "inference.hcl" {
				t.Errorf("%s grants write: %s", file, r)
			}
		}
	}
}

func TestNomadValidate(t *testing.T) {
	nomad, err := exec.LookPath("nomad")
	if err != nil {
		t.Skip("nomad not on PATH: build it from the hashicorp/nomad repository (see README, \"Running on one dev agent\") to validate the jobs with Nomad's own parser")
	}
	if out, err := exec.Command(nomad, "fmt", "-check", "-recursive", ".", "../consul/acl", "../consul/dev").CombinedOutput(); err != nil {
		t.Errorf("nomad fmt -check: %v\n%s", err, out)
	}
	for _, name := range Files() {
		for _, args := range [][]string{nil, {"-var-file", "jobs/" + DevVarFile(name)}} {
			cmd := append([]string{"job", "validate"}, args...)
			for k, v := range devPaths[name] {
				if args != nil {
					cmd = append(cmd, "-var", k+"="+v)
				}
			}
			cmd = append(cmd, "jobs/"+name)
			c := exec.Command(nomad, cmd...)
			// file() paths are relative to where nomad runs: the repository root.
			c.Dir = ".."
			// Never talk to an agent someone else runs on this machine.
			c.Env = append(os.Environ(), "NOMAD_ADDR=http://127.0.0.1:1")
			out, err := c.CombinedOutput()
			// Without a reachable agent Nomad parses and validates the job locally and
			// skips only the driver configuration check.
			if err != nil {
				t.Errorf("nomad %s: %v\n%s", strings.Join(cmd, " "), err, out)
				continue
			}
			compareWithNomad(t, nomad, name, args != nil)
		}
	}
}

// compareWithNomad checks this package's evaluation of a job against Nomad's own
// parser (`nomad job run -output`): the same task configs, environments and templates.
func compareWithNomad(t *testing.T, nomad, name string, dev bool) {
	t.Helper()
	args := []string{"job", "run", "-output"}
	var j *Job
	if dev {
		args = append(args, "-var-file", "jobs/"+DevVarFile(name))
		for k, v := range devPaths[name] {
			args = append(args, "-var", k+"="+v)
		}
		j = evalDev(t, name)
	} else {
		j = evalDefault(t, name)
	}
	c := exec.Command(nomad, append(args, "jobs/"+name)...)
	c.Dir = ".."
	out, err := c.Output()
	if err != nil {
		t.Fatalf("nomad job run -output %s: %v", name, err)
	}
	var parsed struct {
		Job struct {
			TaskGroups []struct {
				Name  string
				Tasks []struct {
					Name      string
					Driver    string
					Config    map[string]any
					Env       map[string]string
					Templates []struct {
						DestPath     string
						EmbeddedTmpl string
					}
				}
			}
		}
	}
	if err := json.Unmarshal(out, &parsed); err != nil {
		t.Fatal(err)
	}
	for _, g := range parsed.Job.TaskGroups {
		for _, nt := range g.Tasks {
			task := j.Task(g.Name, nt.Name)
			if task == nil {
				t.Errorf("%s: Nomad has task %s/%s, the evaluator not", name, g.Name, nt.Name)
				continue
			}
			if got := str(t, task, "driver"); got != nt.Driver {
				t.Errorf("%s: driver %q, Nomad %q", name, got, nt.Driver)
			}
			cfg := map[string]any{}
			if cb := task.Get("config"); cb != nil {
				b, err := ctyjson.Marshal(cty.ObjectVal(cb.Attrs), cty.ObjectVal(cb.Attrs).Type())
				if err != nil {
					t.Fatal(err)
				}
				if err := json.Unmarshal(b, &cfg); err != nil {
					t.Fatal(err)
				}
			}
			if !reflect.DeepEqual(cfg, nt.Config) {
				t.Errorf("%s (dev=%v): task config\n got %v\nNomad %v", name, dev, cfg, nt.Config)
			}
			env := map[string]string{}
			if e := task.Get("env"); e != nil {
				env, _ = e.StringMap()
			}
			if !maps.Equal(env, nt.Env) && !(len(env) == 0 && len(nt.Env) == 0) {
				t.Errorf("%s (dev=%v): env\n got %v\nNomad %v", name, dev, env, nt.Env)
			}
			var mine, theirs []string
			for _, tb := range task.All("template") {
				mine = append(mine, str(t, tb, "destination")+"\x00"+str(t, tb, "data"))
			}
			for _, tp := range nt.Templates {
				theirs = append(theirs, tp.DestPath+"\x00"+tp.EmbeddedTmpl)
			}
			if !slices.Equal(mine, theirs) {
				t.Errorf("%s (dev=%v): templates differ from Nomad's", name, dev)
			}
		}
	}
}

// TestReadmeVariables: jobs/README.md lists every variable of every job with its default.
func TestReadmeVariables(t *testing.T) {
	readme, err := os.ReadFile("README.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range Files() {
		j := evalDefault(t, name)
		section := string(readme)
		i := strings.Index(section, "#### `"+name+"`")
		if i < 0 {
			t.Errorf("README.md has no section for %s", name)
			continue
		}
		section = section[i:]
		if k := strings.Index(section[1:], "#### "); k >= 0 {
			section = section[:k+1]
		}
		for _, v := range j.Variables {
			def, err := ctyjson.Marshal(v.Default, v.Type)
			if err != nil {
				t.Fatal(err)
			}
			row := "| `" + v.Name + "` | `" + string(def) + "` |"
			if !strings.Contains(section, row) {
				t.Errorf("README.md, %s: no row starting %s", name, row)
			}
		}
	}
}
