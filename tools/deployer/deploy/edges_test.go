// Edge cases a user runs into: timeouts against deadlines, error origins, unknown
// jobs, unanswering servers, repeated commands.

package deploy

import (
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/inferstack/inferstack/tools/deployer/internal/nomadfake"
)

func TestWaitTimeoutOutlastsProgressDeadline(t *testing.T) {
	t.Parallel()
	withDeadline := func(job, group time.Duration) *nomadapi.Job {
		j := serviceJob("j", "g", 1)
		if job > 0 {
			j.Update = &nomadapi.UpdateStrategy{ProgressDeadline: ptr(job)}
		}
		if group > 0 {
			j.TaskGroups[0].Update = &nomadapi.UpdateStrategy{ProgressDeadline: ptr(group)}
		}
		return j
	}
	cases := []struct {
		name string
		jobs []*nomadapi.Job
		want time.Duration
	}{
		{"no jobs", nil, MinWaitTimeout},
		{"the bundle's 10m", []*nomadapi.Job{withDeadline(10*time.Minute, 0)}, 10*time.Minute + WaitSlack},
		{"Nomad's default", []*nomadapi.Job{withDeadline(0, 0)}, 10*time.Minute + WaitSlack},
		{"a group's own", []*nomadapi.Job{withDeadline(10*time.Minute, 30*time.Minute)}, 30*time.Minute + WaitSlack},
		{"the longest job", []*nomadapi.Job{withDeadline(time.Minute, 0), withDeadline(20*time.Minute, 0)}, 20*time.Minute + WaitSlack},
		{"short deadlines", []*nomadapi.Job{withDeadline(time.Minute, 0)}, MinWaitTimeout},
		{"batch jobs have none", []*nomadapi.Job{batchJob("b", nil)}, MinWaitTimeout},
	}
	for _, c := range cases {
		if got := WaitTimeout(c.jobs); got != c.want {
			t.Errorf("%s: WaitTimeout = %v, want %v", c.name, got, c.want)
		}
	}
	// The point: Nomad fails (and reverts) a deployment before the deployer gives up.
	if got := WaitTimeout([]*nomadapi.Job{withDeadline(10*time.Minute, 0)}); got <= 10*time.Minute+rollbackWait {
		t.Errorf("WaitTimeout %v does not outlast the progress deadline and the rollback wait", got)
	}
}

func TestPromotionHintOnlyForManualPromotion(t *testing.T) {
	t.Parallel()
	canaries := func(desc string) *nomadapi.Deployment {
		return &nomadapi.Deployment{ID: "dep-1", Status: "running", StatusDescription: desc,
			TaskGroups: map[string]*nomadapi.DeploymentState{"api": {DesiredCanaries: 1, HealthyAllocs: 1, PlacedCanaries: []string{"a"}}}}
	}
	if h := promotionHint(canaries("Deployment is running but requires manual promotion")); h == "" {
		t.Error("no hint for a deployment that requires manual promotion")
	}
	if h := promotionHint(canaries("Deployment is running pending automatic promotion")); h != "" {
		t.Errorf("hint for an auto-promoted deployment: %q", h)
	}
}

func TestParseErrorNamesTheVarFileLine(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	if err := h.d.Vars.AddSource("", "my.vars.hcl", []byte("# comment\n\n\n\ncount = \"lots\"\n")); err != nil {
		t.Fatal(err)
	}
	if err := h.d.Vars.Set("inference.binary=/x"); err != nil {
		t.Fatal(err)
	}
	// What Nomad 1.11 answers: both the variables text and the job are "input.hcl".
	// The rendered text is "binary = …" (line 1), "count = …" (line 2).
	h.fake.ParseErrors["inference"] = "input.hcl:2,9-15: Invalid value for variable; The value for count is not compatible with the variable's type constraint: a number is required.\n" +
		"input.hcl:1,10-14: Invalid value for varfile variable; The binary must be absolute.\n\nThis was checked by the validation rule at input.hcl:9,3-13."
	err := h.d.Up(testCtx(t, 5*time.Second), UpOptions{Jobs: []string{"inference"}})
	wantKind(t, err, KindInput,
		"my.vars.hcl:5: Invalid value for variable; The value for count",
		"--var inference.binary: Invalid value for varfile variable",
		"validation rule at inference.nomad.hcl:9,3-13")
	if strings.Contains(err.Error(), "input.hcl") {
		t.Errorf("error still names input.hcl: %v", err)
	}
}

func TestVariablesJSONFile(t *testing.T) {
	t.Parallel()
	v := NewVariables()
	src := "{\n  \"count\": 3,\n  \"image\": \"a:1\",\n  \"tags\": [\"x\", \"y\"],\n  \"env\": {\"K\": \"v\"}\n}\n"
	if err := v.AddSource("", "vars.json", []byte(src)); err != nil {
		t.Fatal(err)
	}
	decl := map[string]bool{"count": true, "image": true, "tags": true, "env": true}
	text, origins := v.render("inference", decl)
	want := "count = 3\nenv = {\n  K = \"v\"\n}\nimage = \"a:1\"\ntags = [\"x\", \"y\"]\n"
	if text != want {
		t.Errorf("rendered:\n%s\nwant:\n%s", text, want)
	}
	// The HCL Nomad receives must parse, and each line maps back to its JSON line.
	if _, diags := hclsyntax.ParseConfig([]byte(text), "t", hcl.InitialPos); diags.HasErrors() {
		t.Errorf("rendered variables do not parse: %v", diags)
	}
	wantOrigins := []string{"vars.json:2", "vars.json:5", "vars.json:5", "vars.json:5", "vars.json:3", "vars.json:4"}
	if !slices.Equal(origins, wantOrigins) {
		t.Errorf("origins = %q, want %q", origins, wantOrigins)
	}
	err := NewVariables().AddSource("", "bad.json", []byte(`{"count": }`))
	wantKind(t, err, KindInput, "parse JSON var file bad.json: bad.json:1")
}

func TestLogsUnknownAndParameterizedJobs(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	// Real Nomad answers /v1/job/nosuch/allocations with [] (200).
	err := h.d.Logs(testCtx(t, 5*time.Second), LogsOptions{Job: "nosuch"})
	wantKind(t, err, KindInput, `no job "nosuch" in Nomad`)

	h.fake.Registered["loadtest"] = batchJob("loadtest", &nomadapi.ParameterizedJobConfig{})
	err = h.d.Logs(testCtx(t, 5*time.Second), LogsOptions{Job: "loadtest"})
	wantKind(t, err, KindInput, `job "loadtest" is parameterized and has no dispatched job`)

	older, newer := "loadtest/dispatch-1700000000-aaaa1111", "loadtest/dispatch-1700000100-bbbb2222"
	h.fake.JobList = []*nomadapi.JobListStub{
		{ID: "loadtest"}, {ID: newer, ParentID: "loadtest", CreateIndex: 90}, {ID: older, ParentID: "loadtest", CreateIndex: 80},
	}
	h.fake.JobAllocs[newer] = nomadfake.Script([]*nomadapi.AllocationListStub{{ID: "alloc-lt-new", ClientStatus: "complete"}})
	h.fake.Allocs["alloc-lt-new"] = nomadfake.Script(nomadapi.Allocation{ID: "alloc-lt-new", TaskGroup: "loadtest", Job: batchJob("loadtest", nil)})
	h.fake.Logs["alloc-lt-new/loadtest/stdout"] = "total 120 requests\n"
	h.fake.Logs["alloc-lt-new/loadtest/stderr"] = ""
	if err := h.d.Logs(testCtx(t, 5*time.Second), LogsOptions{Job: "loadtest"}); err != nil {
		t.Fatalf("logs of the parameterized job: %v", err)
	}
	contains(t, "stdout", h.stdout.String(), "total 120 requests")
	contains(t, "stderr", h.stderr.String(), `its newest dispatched job "`+newer+`"`)
}

func TestUnansweringServerFailsWithItsAddress(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // accept, never answer
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
		}
	}()
	addr := "http://" + ln.Addr().String()
	h := newHarness(t)
	d, err := New(ClientOptions{Address: addr, ResponseTimeout: 300 * time.Millisecond}, h.d.Bundle, h.stderr, h.stdout, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.Consul = nil
	start := time.Now()
	_, err = d.Status(testCtx(t, 20*time.Second)) // the context would not end it in time
	wantKind(t, err, KindAPI, "Nomad at "+addr+" accepted the connection but did not answer within 300ms")
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("took %v", el)
	}
}

func TestUnknownNamespaceIsInputError(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.RegisterError = &nomadfake.HTTPError{Status: 500, Body: "1 error occurred:\n\t* job \"inference\" is in nonexistent namespace \"nosuch\"\n\n"}
	err := h.d.Up(testCtx(t, 5*time.Second), UpOptions{Jobs: []string{"inference"}})
	wantKind(t, err, KindInput, `register job inference: job "inference" is in nonexistent namespace "nosuch" (check --region, --namespace`)
	h.fake.RegisterError = &nomadfake.HTTPError{Status: 500, Body: "internal failure"}
	err = h.d.Up(testCtx(t, 5*time.Second), UpOptions{Jobs: []string{"inference"}})
	wantKind(t, err, KindAPI, "internal failure")
}

func TestDownSaysAlreadyStopped(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.fake.JobList = []*nomadapi.JobListStub{
		{ID: "inference", Stop: true, Status: "dead"}, {ID: "loadtest", Status: "running"},
		{ID: "loadtest/dispatch-1700000000-abcd1234", ParentID: "loadtest", Status: "dead"},
	}
	if err := h.d.Down(testCtx(t, 10*time.Second), DownOptions{}); err != nil {
		t.Fatalf("Down: %v\n%s", err, h.stderr)
	}
	if want := []string{"loadtest"}; !slices.Equal(h.fake.Deregistered, want) {
		t.Errorf("deregistered %v, want %v", h.fake.Deregistered, want)
	}
	contains(t, "stderr", h.stderr.String(), `job "inference" is already stopped`,
		`job "loadtest/dispatch-1700000000-abcd1234" has already finished`, `==> Stopped job "loadtest"`)
	if strings.Contains(h.stderr.String(), `Stopped job "inference"`) {
		t.Errorf("stderr says it stopped inference again:\n%s", h.stderr)
	}
	contains(t, "stdout", h.stdout.String(), "stopped: loadtest (already stopped: loadtest/dispatch-1700000000-abcd1234, inference)")

	// Purge still removes the stopped ones.
	h.fake.Deregistered = nil
	h.fake.JobList = []*nomadapi.JobListStub{{ID: "inference", Stop: true, Status: "dead"}}
	if err := h.d.Down(testCtx(t, 10*time.Second), DownOptions{Jobs: []string{"inference"}, Purge: true}); err != nil {
		t.Fatal(err)
	}
	if want := []string{"inference?purge"}; !slices.Equal(h.fake.Deregistered, want) {
		t.Errorf("deregistered %v, want %v", h.fake.Deregistered, want)
	}
}

func TestStatusShowsRunningLoadTests(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	running, done := "loadtest/dispatch-1700000100-bbbb2222", "loadtest/dispatch-1700000000-aaaa1111"
	h.fake.Registered["loadtest"] = &nomadapi.Job{ID: ptr("loadtest"), Type: ptr("batch"), Status: ptr("running"),
		ParameterizedJob: &nomadapi.ParameterizedJobConfig{}}
	h.fake.Registered[running] = &nomadapi.Job{ID: ptr(running), ParentID: ptr("loadtest"), Type: ptr("batch"), Status: ptr("running")}
	h.fake.JobList = []*nomadapi.JobListStub{
		{ID: "loadtest", Status: "running"},
		{ID: done, ParentID: "loadtest", Status: "dead", CreateIndex: 80},
		{ID: running, ParentID: "loadtest", Status: "running", CreateIndex: 90},
	}
	h.fake.JobAllocs[running] = nomadfake.Script([]*nomadapi.AllocationListStub{{ID: "alloc-lt-run0", TaskGroup: "loadtest", NodeName: "dev",
		DesiredStatus: "run", ClientStatus: "running"}})
	rep, err := h.d.Status(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, j := range rep.Jobs {
		ids = append(ids, j.ID)
	}
	if want := []string{"inference", "prometheus", "loadtest", running}; !slices.Equal(ids, want) {
		t.Fatalf("jobs %q, want %q", ids, want)
	}
	if child := rep.Jobs[3]; child.ParentID != "loadtest" || child.Status != "running" || len(child.Allocations) != 1 {
		t.Errorf("dispatched job status = %+v", child)
	}
	if err := WriteStatus(h.stdout, rep); err != nil {
		t.Fatal(err)
	}
	contains(t, "status table", h.stdout.String(), running+"  batch", "alloc-lt    "+running+"  loadtest")
}

func TestConsulDefaultAddress(t *testing.T) {
	t.Setenv("CONSUL_HTTP_ADDR", "")
	if got := (ClientOptions{}).ConsulConfig().Address; got != DefaultConsulAddress {
		t.Errorf("default Consul address %q, want %q", got, DefaultConsulAddress)
	}
	t.Setenv("CONSUL_HTTP_ADDR", "10.0.0.1:8500")
	if got := (ClientOptions{}).ConsulConfig().Address; got != "10.0.0.1:8500" {
		t.Errorf("Consul address %q, want CONSUL_HTTP_ADDR's", got)
	}
	if got := (ClientOptions{ConsulAddress: "127.0.0.2:8500"}).ConsulConfig().Address; got != "127.0.0.2:8500" {
		t.Errorf("Consul address %q, want the flag's", got)
	}
}

// A transport error whose address happens to hold "404" is not a Nomad 404.
func TestIsNotFoundIgnoresPortNumbers(t *testing.T) {
	t.Parallel()
	transport := errors.New(`Get "http://127.0.0.1:40412/v1/job/inference": net/http: timeout awaiting response headers`)
	if isNotFound(transport) {
		t.Error("a timeout to port 40412 read as 404")
	}
	if !isNotFound(errors.New("Unexpected response code: 404 (job not found)")) {
		t.Error("Nomad's 404 wording not recognised")
	}
}
