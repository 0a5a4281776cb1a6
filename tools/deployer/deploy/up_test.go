package deploy

import (
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/inferstack/inferstack/tools/deployer/internal/nomadfake"
)

func TestUpHealthy(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	if err := h.d.Vars.Set("count=2"); err != nil {
		t.Fatal(err)
	}
	if err := h.d.Vars.Set("inference.binary=/opt/bin/inference"); err != nil {
		t.Fatal(err)
	}

	err := h.d.Up(testCtx(t, 20*time.Second), UpOptions{})
	if err != nil {
		t.Fatalf("Up: %v\nstderr:\n%s", err, h.stderr)
	}
	if ExitCode(err) != ExitOK {
		t.Fatalf("exit code %d", ExitCode(err))
	}
	contains(t, "stdout", h.stdout.String(), "API          http://127.0.0.1:8000", "Prometheus   http://127.0.0.1:9090")
	contains(t, "stderr", h.stderr.String(),
		`==> Registered job "inference" (evaluation eval-inf)`,
		`deployment dep-inf- of "inference": running — group api: 1/1 placed, 0 healthy, 0 unhealthy`,
		`==> Job "inference" deployed (version 1)`,
		`service "inference": 1/1 instances passing their checks`)

	// Registration enforces the plan's index (check-index) and the loadtest job,
	// parameterized, is registered without a watch.
	if got := len(h.fake.Registrations); got != 3 {
		t.Fatalf("%d registrations, want 3", got)
	}
	for _, r := range h.fake.Registrations {
		if !r.EnforceIndex {
			t.Errorf("job %s registered without EnforceIndex", *r.Job.ID)
		}
	}
	// Variables: per-job rendering, scoped --var, file() inlined.
	var infVars, promHCL, promVars string
	for _, p := range h.fake.ParseRequests {
		switch {
		case strings.Contains(p.JobHCL, `job "inference"`):
			infVars = p.Variables
		case strings.Contains(p.JobHCL, `job "prometheus"`):
			promHCL, promVars = p.JobHCL, p.Variables
		}
	}
	if want := "binary = \"/opt/bin/inference\"\ncount = \"2\"\n"; infVars != want {
		t.Errorf("inference variables = %q, want %q", infVars, want)
	}
	if want := "count = \"2\"\n"; promVars != want {
		t.Errorf("prometheus variables = %q, want %q", promVars, want)
	}
	if strings.Contains(promHCL, "file(") || !strings.Contains(promHCL, `scrape_interval: 5s`) {
		t.Errorf("prometheus job sent without its file inlined:\n%s", promHCL)
	}
	// Watches use blocking queries: every evaluation/deployment query after the
	// first passes the index the previous answer carried.
	var depQueries []string
	for _, r := range h.fake.Requests {
		if strings.HasPrefix(r, "GET /v1/deployment/dep-inf-00000") {
			depQueries = append(depQueries, r)
		}
	}
	want := []string{"GET /v1/deployment/dep-inf-00000?wait=5000ms",
		"GET /v1/deployment/dep-inf-00000?index=100&wait=5000ms",
		"GET /v1/deployment/dep-inf-00000?index=101&wait=5000ms"}
	if !slices.Equal(depQueries, want) {
		t.Errorf("deployment queries:\n%s\nwant (blocking, one per version):\n%s", strings.Join(depQueries, "\n"), strings.Join(want, "\n"))
	}
}

func TestUpParseErrorIsInput(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.ParseErrors["inference"] = `input.hcl:3,5-9: Unsupported argument; An argument named "cout" is not expected here.`
	err := h.d.Up(testCtx(t, 10*time.Second), UpOptions{Jobs: []string{"inference"}})
	wantKind(t, err, KindInput, "parse inference.nomad.hcl", `An argument named "cout" is not expected here`)
	if ExitCode(err) != 2 {
		t.Errorf("exit code %d, want 2", ExitCode(err))
	}
	if len(h.fake.Registrations) != 0 {
		t.Error("registered despite the parse error")
	}
}

func TestUpPlanPlacementFailureRegistersNothing(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	job := h.fake.Parsed["inference"]
	job.TaskGroups[0].Tasks[0].Resources.Devices = []*nomadapi.RequestedDevice{{
		Name: "nvidia/gpu", Count: ptr(uint64(1)),
		Constraints: []*nomadapi.Constraint{{LTarget: "${device.attr.memory}", Operand: ">=", RTarget: "16 GiB"}},
	}}
	// As a dev agent without GPUs answered in a real run.
	h.fake.Plans["inference"] = &nomadapi.JobPlanResponse{
		Diff: &nomadapi.JobDiff{Type: "Added"},
		FailedTGAllocs: map[string]*nomadapi.AllocationMetric{"api": {
			NodesEvaluated: 1, NodesFiltered: 1, NodesInPool: 1, NodePool: "default",
			NodesAvailable:     map[string]int{"dc1": 1},
			ConstraintFiltered: map[string]int{"missing devices": 1},
		}},
	}
	err := h.d.Up(testCtx(t, 10*time.Second), UpOptions{})
	wantKind(t, err, KindPlacement,
		`job "inference" group "api": no node has 1 device nvidia/gpu with memory >= 16 GiB (1 node evaluated, 1 filtered by device)`,
		"nothing was registered")
	if ExitCode(err) != 3 {
		t.Errorf("exit code %d, want 3", ExitCode(err))
	}
	if len(h.fake.Registrations) != 0 {
		t.Errorf("%d registrations after a failed plan", len(h.fake.Registrations))
	}
}

func TestUpEvalPlacementFailure(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.Evals["eval-inf-0000"] = nomadfake.Script(
		nomadapi.Evaluation{ID: "eval-inf-0000", Status: "pending"},
		nomadapi.Evaluation{ID: "eval-inf-0000", Status: "complete", BlockedEval: "eval-blocked",
			FailedTGAllocs: map[string]*nomadapi.AllocationMetric{"api": {
				NodesEvaluated: 2, NodesExhausted: 2,
				DimensionExhausted: map[string]int{"memory": 2},
			}}},
	)
	err := h.d.Up(testCtx(t, 10*time.Second), UpOptions{Jobs: []string{"inference"}})
	wantKind(t, err, KindPlacement,
		`group "api": not enough free memory (the group asks for 512 MiB) (2 nodes evaluated, 2 out of resources)`,
		"the job stays registered", "deployer down inference")
}

func TestUpDeploymentRevertedExplainsWhy(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.Deployments["dep-inf-00000"] = nomadfake.Script(
		deployment("dep-inf-00000", "inference", "running", "Deployment is running", 1, 0, 0),
		deployment("dep-inf-00000", "inference", "running", "Deployment is running", 1, 0, 1),
		deployment("dep-inf-00000", "inference", "failed", "Failed due to unhealthy allocations - rolling back to job version 0", 1, 0, 1),
	)
	h.fake.DeploymentAllocs["dep-inf-00000"] = []*nomadapi.AllocationListStub{{
		ID: "alloc-bad-0000", TaskGroup: "api", NodeName: "dev", ClientStatus: "running",
		DeploymentStatus: &nomadapi.AllocDeploymentStatus{Healthy: ptr(false)},
		TaskStates: map[string]*nomadapi.TaskState{"server": {State: "running", Restarts: 2, Events: []*nomadapi.TaskEvent{
			{Type: "Restart Signaled", DisplayMessage: "healthcheck: check \"ready\" unhealthy", Time: time.Date(2026, 1, 1, 10, 0, 0, 0, time.UTC).UnixNano()},
			{Type: "Started", DisplayMessage: "Task started by client"},
		}}},
	}}
	h.fake.Checks["alloc-bad-0000"] = nomadapi.AllocCheckStatuses{"c": {Check: "ready", Service: "inference", Status: "failure", StatusCode: 503, Output: `{"status":"loading"}`}}
	rollback := deployment("dep-roll-0000", "inference", "successful", "Deployment completed successfully", 1, 1, 0)
	rollback.JobVersion = 2
	h.fake.Deployments["dep-roll-0000"] = nomadfake.Script(rollback)
	h.fake.LatestDeployment["inference"] = "dep-roll-0000"

	err := h.d.Up(testCtx(t, 10*time.Second), UpOptions{Jobs: []string{"inference"}})
	wantKind(t, err, KindDeployment, "deployment dep-inf- of job \"inference\" failed: Failed due to unhealthy allocations - rolling back to job version 0",
		"Nomad reverted the job: job version 2, a copy of the last stable version, is deployed (deployment dep-roll successful)")
	if ExitCode(err) != 4 {
		t.Errorf("exit code %d, want 4", ExitCode(err))
	}
	contains(t, "stderr", h.stderr.String(),
		"allocation alloc-ba (group api, node dev) is running:",
		`task "server" is running, restarted 2 times`,
		`10:00:00 Restart Signaled: healthcheck: check "ready" unhealthy`,
		`check "ready" of service "inference": failure (HTTP 503): {"status":"loading"}`)
	// The unhealthy allocation is explained once, not at every update.
	if n := strings.Count(h.stderr.String(), "allocation alloc-ba (group api"); n != 1 {
		t.Errorf("allocation explained %d times", n)
	}
}

func TestUpTimeoutSaysWhatStaysRunning(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.Deployments["dep-inf-00000"] = nomadfake.Script(
		deployment("dep-inf-00000", "inference", "running", "Deployment is running", 1, 0, 0),
	)
	h.fake.DeploymentAllocs["dep-inf-00000"] = []*nomadapi.AllocationListStub{{
		ID: "alloc-loop-000", TaskGroup: "api", NodeName: "dev", ClientStatus: "pending",
		TaskStates: map[string]*nomadapi.TaskState{"server": {State: "pending", Restarts: 3, Events: []*nomadapi.TaskEvent{
			{Type: "Terminated", ExitCode: 1, DisplayMessage: "Exit Code: 1"},
			{Type: "Restarting", DisplayMessage: "Task restarting in 16.5s"},
		}}},
	}}
	err := h.d.Up(testCtx(t, 1500*time.Millisecond), UpOptions{Jobs: []string{"inference"}})
	wantKind(t, err, KindTimeout, "timed out", "jobs inference stay registered", "deployer down",
		"(last state: deployment dep-inf- of \"inference\": running — group api: 1/1 placed, 0 healthy, 0 unhealthy)")
	contains(t, "stderr", h.stderr.String(), "allocation alloc-lo (group api, node dev) is pending:",
		`task "server" is pending, restarted 3 times`, "Terminated: Exit Code: 1", "Restarting: Task restarting in 16.5s")
	if n := strings.Count(h.stderr.String(), "allocation alloc-lo"); n != 1 {
		t.Errorf("the restarting allocation was explained %d times, want once", n)
	}
	if ExitCode(err) != 5 {
		t.Errorf("exit code %d, want 5", ExitCode(err))
	}
}

func TestUpInterruptedWhileWatching(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.Deployments["dep-inf-00000"] = nomadfake.Script(
		deployment("dep-inf-00000", "inference", "running", "Deployment is running", 1, 0, 0),
	)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(700*time.Millisecond, cancel)
	err := h.d.Up(ctx, UpOptions{Jobs: []string{"inference"}})
	wantKind(t, err, KindInterrupted, "interrupted", "jobs inference stay registered")
	if ExitCode(err) != 130 {
		t.Errorf("exit code %d, want 130", ExitCode(err))
	}
	if len(h.fake.Deregistered) != 0 {
		t.Errorf("an interrupt deregistered %v", h.fake.Deregistered)
	}
}

func TestUpCheckIndexConflict(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.RegisterError = &nomadfake.HTTPError{Status: 500, Body: `Enforcing job modify index 0: job already exists`}
	err := h.d.Up(testCtx(t, 10*time.Second), UpOptions{Jobs: []string{"inference"}})
	wantKind(t, err, KindAPI, `register job "inference": it changed since it was planned`)
}

func TestUpUnchangedJobIsNotRegistered(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.Plans["inference"] = &nomadapi.JobPlanResponse{JobModifyIndex: 42, Diff: &nomadapi.JobDiff{Type: "None"}}
	h.fake.LatestDeployment["inference"] = "dep-inf-00000"
	err := h.d.Up(testCtx(t, 10*time.Second), UpOptions{Jobs: []string{"inference"}})
	if err != nil {
		t.Fatalf("Up: %v\n%s", err, h.stderr)
	}
	if len(h.fake.Registrations) != 0 {
		t.Errorf("unchanged job registered again")
	}
	contains(t, "stderr", h.stderr.String(), `==> Job "inference" is unchanged`)
}

func TestUpFailingCheckAfterDeploymentTimesOut(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.Checks["alloc-inf-1"] = nomadapi.AllocCheckStatuses{"c1": {Check: "ready", Service: "inference", Status: "failure", StatusCode: 503}}
	err := h.d.Up(testCtx(t, 2*time.Second), UpOptions{Jobs: []string{"inference"}})
	wantKind(t, err, KindTimeout, "waiting for service inference to pass its checks",
		`0/1 instances passing their checks (allocation alloc-in: check "ready" failure, HTTP 503)`)
}

func TestUpNoServer(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close() // nothing listens there now
	h := newHarness(t)
	h.d.Nomad.SetRegion("") // keep the client; only the address matters
	d, err := New(ClientOptions{Address: addr}, h.d.Bundle, h.stderr, h.stdout, nil)
	if err != nil {
		t.Fatal(err)
	}
	d.Consul = nil
	err = d.Up(testCtx(t, 10*time.Second), UpOptions{})
	wantKind(t, err, KindAPI, "cannot reach Nomad at "+addr, "NOMAD_ADDR")
	if ExitCode(err) != 1 {
		t.Errorf("exit code %d, want 1", ExitCode(err))
	}
}

func TestUpUndeclaredVariable(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	for _, v := range []string{"cuont=2", "grafana.count=1", "loadtest.count=1"} {
		h.d.Vars = NewVariables()
		if err := h.d.Vars.Set(v); err != nil {
			t.Fatal(err)
		}
		err := h.d.Up(testCtx(t, 5*time.Second), UpOptions{})
		wantKind(t, err, KindInput, "undeclared variable")
	}
	if len(h.fake.ParseRequests) != 0 {
		t.Error("sent to the server despite an undeclared variable")
	}
}

func TestUpUnknownJob(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	err := h.d.Up(testCtx(t, 5*time.Second), UpOptions{Jobs: []string{"grafna"}})
	wantKind(t, err, KindInput, `unknown job "grafna" (the bundle has: inference, prometheus, loadtest)`)
}

func TestPlanReportsChangesAndPlacement(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.Plans["inference"] = &nomadapi.JobPlanResponse{JobModifyIndex: 7, Diff: &nomadapi.JobDiff{Type: "Edited"},
		Annotations: &nomadapi.PlanAnnotations{DesiredTGUpdates: map[string]*nomadapi.DesiredUpdates{"api": {Canary: 1, Ignore: 1}}}}
	h.fake.Plans["prometheus"] = &nomadapi.JobPlanResponse{Diff: &nomadapi.JobDiff{Type: "Added"},
		FailedTGAllocs: map[string]*nomadapi.AllocationMetric{"prometheus": {NodesEvaluated: 1, NodesFiltered: 1,
			ConstraintFiltered: map[string]int{"missing drivers": 1}}}}
	err := h.d.Plan(testCtx(t, 5*time.Second), nil)
	wantKind(t, err, KindPlacement, `no node has the task driver "raw_exec" enabled`)
	contains(t, "stdout", h.stdout.String(),
		`job "inference": changed (check-index 7)`, `group "api": 1 canary, 1 unchanged`, `job "prometheus": new job`)
	if len(h.fake.Registrations) != 0 {
		t.Error("plan registered a job")
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.Validate["prometheus"] = &nomadapi.JobValidateResponse{ValidationErrors: []string{"Task group prometheus validation failed: missing datacenters"}}
	err := h.d.Validate(testCtx(t, 5*time.Second), ValidateOptions{})
	wantKind(t, err, KindInput, "prometheus.nomad.hcl: Task group prometheus validation failed: missing datacenters")
	contains(t, "stdout", h.stdout.String(), `valid: inference.nomad.hcl (job "inference")`)

	h2 := newHarness(t) // offline needs no server at all
	h2.fake.Close()
	if err := h2.d.Validate(testCtx(t, 5*time.Second), ValidateOptions{Offline: true}); err != nil {
		t.Fatalf("offline validate: %v", err)
	}
	contains(t, "stdout", h2.stdout.String(), "valid (offline): inference, prometheus, loadtest")
}

func TestWatchEvalFollowsFailedEvalChain(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.Evals["eval-inf-0000"] = nomadfake.Script(
		nomadapi.Evaluation{ID: "eval-inf-0000", Status: "failed", StatusDescription: "maximum attempts reached (5)"},
	)
	err := h.d.Up(testCtx(t, 5*time.Second), UpOptions{Jobs: []string{"inference"}})
	wantKind(t, err, KindDeployment, `evaluation eval-inf of job "inference" failed: maximum attempts reached (5)`)
}

func TestExplainPlacement(t *testing.T) {
	t.Parallel()
	job := serviceJob("inference", "api", 1)
	job.TaskGroups[0].Volumes = map[string]*nomadapi.VolumeRequest{"data": {Type: "host", Source: "prometheus-data"}}
	cases := []struct {
		name string
		m    *nomadapi.AllocationMetric
		want string
	}{
		{"no nodes", &nomadapi.AllocationMetric{NodePool: "gpu"},
			`group "api": no ready client node in node pool "gpu" of the job's datacenters (0 nodes evaluated)`},
		{"cpu", &nomadapi.AllocationMetric{NodesEvaluated: 3, NodesExhausted: 3, DimensionExhausted: map[string]int{"cpu": 3}},
			`group "api": not enough free CPU (the group asks for 500 MHz) (3 nodes evaluated, 3 out of resources)`},
		{"constraint", &nomadapi.AllocationMetric{NodesEvaluated: 2, NodesFiltered: 2, ConstraintFiltered: map[string]int{"${attr.kernel.name} = windows": 2}},
			`group "api": constraint not met: ${attr.kernel.name} = windows (2 nodes evaluated, 2 filtered by constraint)`},
		{"device busy", &nomadapi.AllocationMetric{NodesEvaluated: 1, NodesExhausted: 1, DimensionExhausted: map[string]int{"devices: no devices match request": 1}, CoalescedFailures: 2},
			`group "api": not enough free devices (no devices match request) (1 node evaluated, 1 out of resources) — 2 more allocations failed the same way`},
		{"host volume", &nomadapi.AllocationMetric{NodesEvaluated: 1, NodesFiltered: 1, ConstraintFiltered: map[string]int{"missing compatible host volumes": 1}},
			`group "api": no node has the host volume "prometheus-data" (declare it in the client's host_volume configuration) (1 node evaluated, 1 filtered by host volume)`},
		{"port", &nomadapi.AllocationMetric{NodesEvaluated: 1, NodesExhausted: 1, DimensionExhausted: map[string]int{"network: port collision": 1}},
			`group "api": network: port collision (a static port is already taken?) (1 node evaluated, 1 out of resources)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := ExplainPlacement(job, map[string]*nomadapi.AllocationMetric{"api": c.m})
			if len(got) != 1 || got[0] != c.want {
				t.Errorf("got %q\nwant %q", got, c.want)
			}
		})
	}
}

func TestExitCodes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		err  error
		want int
	}{
		{nil, 0},
		{fmt.Errorf("x"), 1},
		{Errorf(KindInput, "x"), 2},
		{fmt.Errorf("wrapped: %w", Errorf(KindPlacement, "x")), 3},
		{Errorf(KindDeployment, "x"), 4},
		{context.DeadlineExceeded, 5},
		{Errorf(KindThreshold, "x"), 6},
		{context.Canceled, 130},
	}
	for _, c := range cases {
		if got := ExitCode(c.err); got != c.want {
			t.Errorf("ExitCode(%v) = %d, want %d", c.err, got, c.want)
		}
	}
	if !slices.Equal([]int{ExitAPI, ExitInput, ExitPlacement, ExitDeployment, ExitTimeout, ExitThreshold}, []int{1, 2, 3, 4, 5, 6}) {
		t.Error("documented exit codes changed")
	}
}

func TestUpReportsFailingChecksBeforeUnhealthy(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.DeploymentAllocs["dep-inf-00000"] = []*nomadapi.AllocationListStub{{
		ID: "alloc-slow-000", TaskGroup: "api", NodeName: "dev", ClientStatus: "running",
		TaskStates: map[string]*nomadapi.TaskState{"server": {State: "running"}},
	}}
	h.fake.Checks["alloc-slow-000"] = nomadapi.AllocCheckStatuses{
		"c": {Check: "ready", Service: "inference", Status: "failure", StatusCode: 503, Output: "loading\nmodel"},
		"p": {Check: "live", Service: "inference", Status: "pending"},
	}
	if err := h.d.Up(testCtx(t, 10*time.Second), UpOptions{Jobs: []string{"inference"}}); err != nil {
		t.Fatalf("Up: %v", err)
	}
	contains(t, "stderr", h.stderr.String(),
		"allocation alloc-sl (group api, node dev) is running, not healthy yet:\n",
		`check "ready" of service "inference": failure (HTTP 503): loading model`)
	if strings.Contains(h.stderr.String(), `"live"`) {
		t.Error("a pending check was reported as failing")
	}
	if n := strings.Count(h.stderr.String(), "allocation alloc-sl"); n != 1 {
		t.Errorf("described %d times, want once (nothing changed)", n)
	}
}
