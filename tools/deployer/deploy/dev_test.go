package deploy

import (
	"strings"
	"testing"
	"testing/fstest"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/inferstack/inferstack/tools/deployer/internal/nomadfake"
)

// TestUpSkipsConsulWhenTheServerDoesNotRegister: with a Consul agent answering but
// consul_http_addr = "" (the dev var file's setting), the server never registers in
// Consul, so Up says so once and does not wait for it there.
func TestUpSkipsConsulWhenTheServerDoesNotRegister(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	withConsulDouble(t, h)
	if err := h.d.Vars.AddSource("inference", "dev/inference.vars.hcl", []byte("consul_http_addr = \"\"\n")); err != nil {
		t.Fatal(err)
	}

	if err := h.d.Up(testCtx(t, 8*time.Second), UpOptions{Jobs: []string{"inference"}}); err != nil {
		t.Fatalf("Up: %v\n%s", err, h.stderr)
	}
	stderr := h.stderr.String()
	want := `Consul: job "inference" does not register service "inference" in Consul (consul_http_addr is empty, dev/inference.vars.hcl:1): not waiting for it there`
	if n := strings.Count(stderr, want); n != 1 {
		t.Errorf("said %d times, want once: %q\n%s", n, want, stderr)
	}
	if strings.Contains(stderr, "registered (") {
		t.Errorf("waited for the service in Consul:\n%s", stderr)
	}
}

func TestStringValue(t *testing.T) {
	t.Parallel()
	b := &Bundle{FS: fstest.MapFS{"web.nomad.hcl": {Data: []byte(`variable "addr" {
  default = "127.0.0.1:8500"
}
variable "ip" {
  default = "$${attr.unique.network.ip-address}:8500"
}
variable "port" {
  type    = number
  default = 8500
}
variable "calc" {
  default = upper("x")
}
variable "none" {
  type = string
}
job "web" {}
`)}}}
	src, err := b.Load("web")
	if err != nil {
		t.Fatal(err)
	}
	v := NewVariables()
	check := func(name, wantValue, wantOrigin string, wantOK bool) {
		t.Helper()
		value, origin, ok := v.StringValue(src, name)
		if value != wantValue || origin != wantOrigin || ok != wantOK {
			t.Errorf("StringValue(%s) = %q, %q, %v; want %q, %q, %v", name, value, origin, ok, wantValue, wantOrigin, wantOK)
		}
	}
	check("addr", "127.0.0.1:8500", "web.nomad.hcl:2", true)
	check("ip", "${attr.unique.network.ip-address}:8500", "web.nomad.hcl:5", true)
	check("port", "8500", "web.nomad.hcl:9", true)
	check("calc", "", "", false) // a function call: only the server evaluates it
	check("none", "", "", false)
	check("undeclared", "", "", false)

	if err := v.AddSource("", "my.vars.hcl", []byte("addr = \"\"\n")); err != nil {
		t.Fatal(err)
	}
	check("addr", "", "my.vars.hcl:1", true)
	if err := v.Set("web.addr=10.0.0.1:8500"); err != nil {
		t.Fatal(err)
	}
	check("addr", "10.0.0.1:8500", "--var web.addr", true)
	if err := v.Set("other.addr="); err != nil { // another job's: does not apply
		t.Fatal(err)
	}
	check("addr", "10.0.0.1:8500", "--var web.addr", true)
}

// grafanaHarness is a harness whose bundle is one grafana job whose template reads
// the admin password from the Nomad variable nomad/jobs/grafana, in namespace ns
// ("": the job names none).
func grafanaHarness(t *testing.T, ns string) *harness {
	t.Helper()
	h := newHarness(t)
	h.d.Bundle = &Bundle{FS: fstest.MapFS{"grafana.nomad.hcl": {Data: []byte("job \"grafana\" {}\n")}}}
	job := serviceJob("grafana", "grafana", 1)
	if ns != "" {
		job.Namespace = ptr(ns)
	}
	job.TaskGroups[0].Tasks[0].Templates = []*nomadapi.Template{
		{EmbeddedTmpl: ptr("{{ with nomadVar \"nomad/jobs/grafana\" }}GF_SECURITY_ADMIN_PASSWORD={{ .admin_password | toJSON }}{{ end }}\n"), ErrMissingKey: ptr(true)},
		{EmbeddedTmpl: ptr("{{ with nomadVar \"nomad/jobs/grafana\" }}{{ .Keys }}{{ end }}{{ if nomadVarExists \"other/var\" }}x{{ end }}"), ErrMissingKey: ptr(true)},
		{EmbeddedTmpl: ptr(`{{ range nomadService "prometheus" }}{{ .Address }}{{ end }}`)},
	}
	h.fake.Parsed["grafana"] = job
	h.fake.RegisterEval["grafana"] = "eval-graf-000"
	h.fake.Evals["eval-graf-000"] = nomadfake.Script(nomadapi.Evaluation{ID: "eval-graf-000", Status: "complete", DeploymentID: "dep-graf-0000"})
	h.fake.Deployments["dep-graf-0000"] = nomadfake.Script(deployment("dep-graf-0000", "grafana", "successful", "Deployment completed successfully", 1, 1, 0))
	return h
}

// TestUpRefusesMissingNomadVariable: a Nomad variable a template waits for, or a
// key a strict template needs, is missing: exit 2 with the command that creates it,
// and nothing is registered.
func TestUpRefusesMissingNomadVariable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, ns string
		vars     map[string]*nomadapi.Variable
		want     string
	}{
		{"missing", "", nil,
			"job \"grafana\" reads the Nomad variable nomad/jobs/grafana (namespace default), which does not exist: its task would wait for it forever; create it with\n" +
				`    nomad var put nomad/jobs/grafana admin_password="$(openssl rand -base64 24)"`},
		{"missing in its namespace", "staging",
			map[string]*nomadapi.Variable{"default/nomad/jobs/grafana": {Items: nomadapi.VariableItems{"admin_password": "x"}}},
			`nomad var put -namespace staging nomad/jobs/grafana admin_password="$(openssl rand -base64 24)"`},
		{"without the key", "",
			map[string]*nomadapi.Variable{"default/nomad/jobs/grafana": {Items: nomadapi.VariableItems{"other": "x"}}},
			"job \"grafana\" needs the key admin_password in the Nomad variable nomad/jobs/grafana (namespace default), which lacks it: its template would fail to render; add it with\n" +
				`    nomad var get nomad/jobs/grafana | nomad var put -in=json - admin_password="$(openssl rand -base64 24)"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			h := grafanaHarness(t, c.ns)
			for k, v := range c.vars {
				h.fake.Variables[k] = v
			}
			err := h.d.Up(testCtx(t, 10*time.Second), UpOptions{})
			wantKind(t, err, KindInput, c.want, "nothing was registered")
			if ExitCode(err) != ExitInput {
				t.Errorf("exit %d, want 2", ExitCode(err))
			}
			if n := len(h.fake.Registrations); n != 0 {
				t.Errorf("%d registrations, want none", n)
			}
			if strings.Contains(err.Error(), "other/var") || strings.Contains(err.Error(), "Keys") {
				t.Errorf("nomadVarExists or a method taken for a need: %v", err)
			}
		})
	}
}

func TestUpWithTheNomadVariable(t *testing.T) {
	t.Parallel()
	h := grafanaHarness(t, "staging")
	h.fake.Variables["staging/nomad/jobs/grafana"] = &nomadapi.Variable{Namespace: "staging", Path: "nomad/jobs/grafana", Items: nomadapi.VariableItems{"admin_password": "s3cret"}}
	if err := h.d.Up(testCtx(t, 10*time.Second), UpOptions{SkipHealth: true}); err != nil {
		t.Fatalf("Up: %v\n%s", err, h.stderr)
	}
	if h.fake.Count("GET /v1/var/nomad/jobs/grafana?namespace=staging") == 0 {
		t.Errorf("the variable was not read in the job's namespace: %q", h.fake.Requests)
	}

	// A token that may not read variables: noted, not fatal.
	h = grafanaHarness(t, "")
	h.fake.VariableError = &nomadfake.HTTPError{Status: 403, Body: "Permission denied"}
	if err := h.d.Up(testCtx(t, 10*time.Second), UpOptions{SkipHealth: true}); err != nil {
		t.Fatalf("Up: %v\n%s", err, h.stderr)
	}
	contains(t, "stderr", h.stderr.String(), `cannot check the Nomad variable nomad/jobs/grafana (namespace default) that job "grafana" reads: permission denied`)
}

func TestNeededVars(t *testing.T) {
	t.Parallel()
	job := serviceJob("web", "web", 1)
	job.TaskGroups[0].Tasks[0].Templates = []*nomadapi.Template{
		{EmbeddedTmpl: ptr(`{{ with nomadVar "a/b@prod.global" }}{{ .user }}{{ range .Tuples }}{{ .K }}{{ end }}{{ end }}`), ErrMissingKey: ptr(true)},
		{EmbeddedTmpl: ptr(`{{ with nomadVar "nomad/jobs/web" }}{{ .token }}{{ end }}`)}, // not strict: no key needed
		{EmbeddedTmpl: ptr(`{{ (nomadVar "nomad/jobs/web").pass }}`), ErrMissingKey: ptr(true)},
		{EmbeddedTmpl: ptr(`[[ nomadVar "delims/other" ]]`), LeftDelim: ptr("[["), RightDelim: ptr("]]")},
	}
	got := neededVars(job, "")
	want := []neededVar{{namespace: "prod", path: "a/b"}, {namespace: "default", path: "nomad/jobs/web"}}
	if len(got) != len(want) {
		t.Fatalf("neededVars = %+v, want %+v", got, want)
	}
	for i := range want {
		if got[i].namespace != want[i].namespace || got[i].path != want[i].path || len(got[i].keys) != 0 {
			t.Errorf("neededVars[%d] = %+v, want %+v (a block that changes the dot names no sure key)", i, got[i], want[i])
		}
	}
}

func driverFailure(restartReason string) map[string]*nomadapi.TaskState {
	return map[string]*nomadapi.TaskState{"grafana": {State: "dead", Failed: true, Events: []*nomadapi.TaskEvent{
		{Type: "Received", DisplayMessage: "Task received by client"},
		{Type: "Driver Failure", DisplayMessage: `failed to launch command with executor: rpc error: code = Unknown desc = binary "/usr/share/grafana/bin/grafana" could not be found`},
		{Type: "Not Restarting", DisplayMessage: restartReason, RestartReason: restartReason, FailsTask: true},
	}}}
}

// TestUpFailsWhenNomadGivesUpOnTheNewestAllocation: a task event Nomad marks
// unrecoverable on the newest allocation fails the deployment at once (exit 4)
// instead of waiting for the timeout.
func TestUpFailsWhenNomadGivesUpOnTheNewestAllocation(t *testing.T) {
	t.Parallel()
	h := grafanaHarness(t, "")
	h.fake.Variables["default/nomad/jobs/grafana"] = &nomadapi.Variable{Items: nomadapi.VariableItems{"admin_password": "x"}}
	h.fake.Deployments["dep-graf-0000"] = nomadfake.Script(deployment("dep-graf-0000", "grafana", "running", "Deployment is running", 1, 0, 1))
	h.fake.DeploymentAllocs["dep-graf-0000"] = []*nomadapi.AllocationListStub{
		{ID: "alloc-old-0000", TaskGroup: "grafana", NodeName: "dev", ClientStatus: "failed", CreateIndex: 10, TaskStates: driverFailure("Error was unrecoverable")},
		{ID: "alloc-new-0000", TaskGroup: "grafana", NodeName: "dev", ClientStatus: "failed", CreateIndex: 20, TaskStates: driverFailure("Error was unrecoverable")},
	}
	start := time.Now()
	err := h.d.Up(testCtx(t, 20*time.Second), UpOptions{})
	wantKind(t, err, KindDeployment, `deployment dep-graf of job "grafana" cannot succeed: allocation alloc-ne (group grafana, node dev) failed: task "grafana": Driver Failure: `,
		`Driver Failure: failed to launch command with executor: rpc error: code = Unknown desc = binary "/usr/share/grafana/bin/grafana" could not be found; Not Restarting: Error was unrecoverable`,
		"`deployer down grafana` stops it")
	if ExitCode(err) != ExitDeployment {
		t.Errorf("exit %d, want 4", ExitCode(err))
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Errorf("Up took %v: it waited instead of failing", waited)
	}
}

// TestUpKeepsWaitingUnlessNomadGaveUp: no failure when the failed allocation has a
// newer replacement, nor when a task only ran out of restart attempts (Nomad
// reschedules it): the wait goes on, here until the test's deadline.
func TestUpKeepsWaitingUnlessNomadGaveUp(t *testing.T) {
	t.Parallel()
	cases := map[string][]*nomadapi.AllocationListStub{
		"replaced": {
			{ID: "alloc-old-0000", TaskGroup: "grafana", ClientStatus: "failed", CreateIndex: 10, TaskStates: driverFailure("Error was unrecoverable")},
			{ID: "alloc-new-0000", TaskGroup: "grafana", ClientStatus: "running", CreateIndex: 20,
				TaskStates: map[string]*nomadapi.TaskState{"grafana": {State: "running"}}},
		},
		"restarts exhausted": {
			{ID: "alloc-new-0000", TaskGroup: "grafana", ClientStatus: "failed", CreateIndex: 20, TaskStates: driverFailure("Exceeded allowed attempts 2 in interval 30m0s and mode is \"fail\"")},
		},
	}
	for name, allocs := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			h := grafanaHarness(t, "")
			h.fake.Variables["default/nomad/jobs/grafana"] = &nomadapi.Variable{Items: nomadapi.VariableItems{"admin_password": "x"}}
			h.fake.Deployments["dep-graf-0000"] = nomadfake.Script(deployment("dep-graf-0000", "grafana", "running", "Deployment is running", 1, 0, 0))
			h.fake.DeploymentAllocs["dep-graf-0000"] = allocs
			err := h.d.Up(testCtx(t, 1500*time.Millisecond), UpOptions{})
			wantKind(t, err, KindTimeout, "timed out")
		})
	}
}
