package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/inferstack/inferstack/jobs"
	"github.com/inferstack/inferstack/loadtest"

	"github.com/inferstack/inferstack/internal/syncbuf"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/inferstack/inferstack/tools/deployer/internal/nomadfake"
)

func TestQuoteHCLRoundTrip(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		"", "plain", `quote " and backslash \ `, "lines\nand\ttabs\r\n",
		"${template} and %{directive} stay literal", "$${already escaped} %%{too}", "$ alone, % alone, {braces}",
		"unicode: é, 日本, \u2028", "control \x01 \x7f", "ends with $", "ends with %",
	} {
		expr, diags := hclsyntax.ParseExpression([]byte(jobs.QuoteHCL(s)), "q", hcl.InitialPos)
		if diags.HasErrors() {
			t.Fatalf("jobs.QuoteHCL(%q) = %s does not parse: %v", s, jobs.QuoteHCL(s), diags)
		}
		v, diags := expr.Value(nil)
		if diags.HasErrors() {
			t.Fatalf("jobs.QuoteHCL(%q) does not evaluate: %v", s, diags)
		}
		if got := v.AsString(); got != s {
			t.Errorf("QuoteHCL round trip: got %q, want %q", got, s)
		}
	}
}

func TestBundleLoadInlinesFiles(t *testing.T) {
	t.Parallel()
	b := &Bundle{FS: os.DirFS("testdata/bundle")}
	src, err := b.Load("prometheus")
	if err != nil {
		t.Fatal(err)
	}
	// The inlined job must still parse, and the template data must be the file.
	f, diags := hclsyntax.ParseConfig([]byte(src.HCL), "p", hcl.InitialPos)
	if diags.HasErrors() {
		t.Fatalf("inlined job does not parse: %v\n%s", diags, src.HCL)
	}
	want, _ := os.ReadFile("testdata/bundle/prometheus/prometheus.yml")
	var got string
	_ = hclsyntax.VisitAll(f.Body.(*hclsyntax.Body), func(n hclsyntax.Node) hcl.Diagnostics {
		if a, ok := n.(*hclsyntax.Attribute); ok && a.Name == "data" {
			v, _ := a.Expr.Value(nil)
			got = v.AsString()
		}
		return nil
	})
	if got != string(want) {
		t.Errorf("inlined data = %q, want the file %q", got, want)
	}
	if src.ID != "prometheus" || !src.Variables["count"] || src.Parameterized {
		t.Errorf("job source = %+v", src)
	}
}

func TestBundleLoadErrors(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, hcl, want string
	}{
		{"syntax", "job \"x\" {\n  group {\n", "parse x.nomad.hcl: x.nomad.hcl:"},
		{"two jobs", `job "a" {}` + "\n" + `job "b" {}`, "want exactly one labelled job block, found 2"},
		{"no job", `variable "a" {}`, "found 0"},
		{"missing file", "job \"x\" {\n  meta {\n    a = file(\"nope.txt\")\n  }\n}", `file("nope.txt")`},
		{"variable path", "job \"x\" {\n  meta {\n    a = file(var.p)\n  }\n}", "file() needs a literal path"},
		{"fileset", "job \"x\" {\n  meta {\n    a = fileset(\".\", \"*\")\n  }\n}", "fileset() is not supported"},
		{"outside", "job \"x\" {\n  meta {\n    a = file(\"../secret\")\n  }\n}", "outside the job bundle"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			b := &Bundle{FS: fstest.MapFS{"x.nomad.hcl": {Data: []byte(c.hcl)}}}
			_, err := b.Load("x")
			wantKind(t, err, KindInput, c.want)
		})
	}
}

func TestBundleNamesOrder(t *testing.T) {
	t.Parallel()
	b := &Bundle{FS: fstest.MapFS{
		"zeta.nomad.hcl": {}, "loadtest.nomad.hcl": {}, "grafana.nomad.hcl": {}, "inference.nomad.hcl": {},
		"alpha.nomad.hcl": {}, "prometheus.nomad.hcl": {}, "notes.md": {}, "dev/x.nomad.hcl": {},
	}}
	names, err := b.Names()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"inference", "prometheus", "grafana", "loadtest", "alpha", "zeta"}
	if !slices.Equal(names, want) {
		t.Errorf("Names = %v, want %v", names, want)
	}
	_, err = (&Bundle{FS: fstest.MapFS{"README": {}}}).Names()
	wantKind(t, err, KindInput, "no *.nomad.hcl file")
}

func TestVariables(t *testing.T) {
	t.Parallel()
	v := NewVariables()
	if err := v.AddSource("", "all.hcl", []byte("count = 3\nimage = \"a:1\"\ntags = [\"x\", \"y\"]\n")); err != nil {
		t.Fatal(err)
	}
	if err := v.AddSource("inference", "inf.hcl", []byte("count = 1\n")); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"image=b:2", `tags=["z"]`, "prometheus.count=5", "empty="} {
		if err := v.Set(s); err != nil {
			t.Fatal(err)
		}
	}
	decl := map[string]bool{"count": true, "image": true, "tags": true, "empty": true}
	if got, want := v.For("inference", decl), "count = 1\nempty = \"\"\nimage = \"b:2\"\ntags = [\"z\"]\n"; got != want {
		t.Errorf("inference vars:\n%s\nwant:\n%s", got, want)
	}
	if got, want := v.For("prometheus", map[string]bool{"count": true}), "count = \"5\"\n"; got != want {
		t.Errorf("prometheus vars = %q, want %q", got, want)
	}
	if got, want := v.For("grafana", map[string]bool{"count": true}), "count = 3\n"; got != want {
		t.Errorf("grafana vars = %q, want %q", got, want)
	}

	for _, bad := range []string{"novalue", "=x", "bad name=1", "x=[1,", "a.b.c=1"} {
		if err := NewVariables().Set(bad); KindOf(err) != KindInput {
			t.Errorf("Set(%q) = %v, want an input error", bad, err)
		}
	}
	err := NewVariables().AddSource("", "bad.hcl", []byte("count = \n"))
	wantKind(t, err, KindInput, "parse var file bad.hcl: bad.hcl:1")
	err = NewVariables().AddFile("", "testdata/does-not-exist.hcl")
	wantKind(t, err, KindInput, "read var file")
}

func TestLogsSplitsLinesAcrossFrames(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.JobAllocs["inference"] = nomadfake.Script([]*nomadapi.AllocationListStub{
		{ID: "alloc-old-0000", ClientStatus: "failed", CreateIndex: 5},
		{ID: "alloc-inf-1", ClientStatus: "running", CreateIndex: 9, TaskGroup: "api"},
	})
	h.fake.Allocs["alloc-inf-1"] = nomadfake.Script(nomadapi.Allocation{ID: "alloc-inf-1", TaskGroup: "api", Job: h.fake.Parsed["inference"],
		ClientStatus: "running"})
	h.fake.Logs["alloc-inf-1/server/stdout"] = "listening on 127.0.0.1:8000\nready\n"
	h.fake.Logs["alloc-inf-1/server/stderr"] = "level=INFO msg=\"model loaded\"\npartial"
	h.fake.LogFrameSize = 5 // lines arrive cut in pieces

	if err := h.d.Logs(testCtx(t, 5*time.Second), LogsOptions{Job: "inference"}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(h.stdout.String()), "\n")
	slices.Sort(lines)
	want := []string{"level=INFO msg=\"model loaded\"", "listening on 127.0.0.1:8000", "partial", "ready"}
	if !slices.Equal(lines, want) {
		t.Errorf("lines = %q, want %q", lines, want)
	}

	// Follow streams until the context ends, which is not an error.
	h.stdout = &syncbuf.Buffer{}
	h.d.Out = h.stdout
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if err := h.d.Logs(ctx, LogsOptions{Job: "inference", Follow: true, Types: []string{"stdout"}}); err != nil && !isCtxErr(err) {
		t.Fatalf("follow: %v", err)
	}
	contains(t, "followed stdout", h.stdout.String(), "listening on 127.0.0.1:8000\nready\n")
}

func TestLogsErrors(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.Registered["inference"] = h.fake.Parsed["inference"]
	err := h.d.Logs(testCtx(t, 5*time.Second), LogsOptions{Job: "inference"})
	wantKind(t, err, KindInput, `job "inference" has no allocations`)

	twoTasks := serviceJob("inference", "api", 1)
	twoTasks.TaskGroups[0].Tasks = append(twoTasks.TaskGroups[0].Tasks, &nomadapi.Task{Name: "sidecar"})
	h.fake.JobAllocs["inference"] = nomadfake.Script([]*nomadapi.AllocationListStub{{ID: "a1", ClientStatus: "running"}})
	h.fake.Allocs["a1"] = nomadfake.Script(nomadapi.Allocation{ID: "a1", TaskGroup: "api", Job: twoTasks})
	err = h.d.Logs(testCtx(t, 5*time.Second), LogsOptions{Job: "inference"})
	wantKind(t, err, KindInput, `group "api" has several tasks; name one: server, sidecar`)
	err = h.d.Logs(testCtx(t, 5*time.Second), LogsOptions{Job: "inference", Task: "web"})
	wantKind(t, err, KindInput, `group "api" has no task "web"`)
	err = h.d.Logs(testCtx(t, 5*time.Second), LogsOptions{Job: "inference", Task: "server", Types: []string{"stdin"}})
	wantKind(t, err, KindInput, `log type "stdin"`)
}

func TestDownStopsJobsAndDispatchedChildren(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.fake.JobList = []*nomadapi.JobListStub{
		{ID: "inference"}, {ID: "loadtest"}, {ID: "loadtest/dispatch-1700000000-abcd1234", ParentID: "loadtest"}, {ID: "unrelated"},
	}
	h.fake.JobAllocs["inference"] = nomadfake.Script(
		[]*nomadapi.AllocationListStub{{ID: "a1", ClientStatus: "running"}},
		[]*nomadapi.AllocationListStub{{ID: "a1", ClientStatus: "complete"}},
	)
	if err := h.d.Down(testCtx(t, 10*time.Second), DownOptions{Purge: true}); err != nil {
		t.Fatalf("Down: %v\n%s", err, h.stderr)
	}
	want := []string{"loadtest/dispatch-1700000000-abcd1234", "loadtest", "inference",
		"loadtest/dispatch-1700000000-abcd1234?purge", "loadtest?purge", "inference?purge"}
	if !slices.Equal(h.fake.Deregistered, want) {
		t.Errorf("deregistered %v, want %v", h.fake.Deregistered, want)
	}
	contains(t, "stderr", h.stderr.String(), `job "prometheus" is not registered`, `job "inference": 1 allocations still stopping`)
	contains(t, "stdout", h.stdout.String(), "stopped: loadtest/dispatch-1700000000-abcd1234, loadtest, inference")
}

func TestDownTimeout(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	h.fake.JobList = []*nomadapi.JobListStub{{ID: "inference"}}
	h.fake.JobAllocs["inference"] = nomadfake.Script([]*nomadapi.AllocationListStub{{ID: "a1", ClientStatus: "running"}})
	err := h.d.Down(testCtx(t, time.Second), DownOptions{Jobs: []string{"inference"}})
	wantKind(t, err, KindTimeout, "waiting for job inference to stop")
}

// summaryJSON is the load generator's JSON summary of a run that stopped by stoppedBy,
// with thresholds given as "raw=actual" (failed when actual does not meet raw).
func summaryJSON(t *testing.T, stoppedBy string, thresholds ...string) string {
	t.Helper()
	var rs []loadtest.ThresholdResult
	for _, th := range thresholds {
		raw, actual, _ := strings.Cut(th, "=")
		parsed, err := loadtest.ParseThreshold(raw)
		if err != nil {
			t.Fatal(err)
		}
		v, _ := strconv.ParseFloat(actual, 64)
		r := loadtest.ThresholdResult{Threshold: parsed, Actual: v}
		switch parsed.Op {
		case "<":
			r.Pass = v < parsed.Value
		case ">":
			r.Pass = v > parsed.Value
		}
		rs = append(rs, r)
	}
	var b bytes.Buffer
	if err := loadtest.WriteJSON(&b, &loadtest.Summary{Mode: "closed", StoppedBy: stoppedBy, Elapsed: 6, Total: loadtest.Stats{Requests: 120}}, rs); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func loadtestHarness(t *testing.T, exitCode int, summary string) *harness {
	h := newHarness(t)
	h.fake.Registered["loadtest"] = batchJob("loadtest", &nomadapi.ParameterizedJobConfig{MetaOptional: []string{"users", "duration", "thresholds"}})
	child := "loadtest/dispatch-1700000000-abcd1234"
	h.fake.Dispatch = &nomadapi.JobDispatchResponse{DispatchedJobID: child, EvalID: "eval-lt-00000"}
	h.fake.Evals["eval-lt-00000"] = nomadfake.Script(nomadapi.Evaluation{ID: "eval-lt-00000", Status: "complete"})
	h.fake.JobAllocs[child] = nomadfake.Script([]*nomadapi.AllocationListStub{}, []*nomadapi.AllocationListStub{{ID: "alloc-lt-0000", ClientStatus: "pending"}})
	job := batchJob("loadtest", nil)
	final := "complete"
	if exitCode != 0 {
		final = "failed"
	}
	h.fake.Allocs["alloc-lt-0000"] = nomadfake.Script(
		nomadapi.Allocation{ID: "alloc-lt-0000", TaskGroup: "loadtest", Job: job, ClientStatus: "running"},
		nomadapi.Allocation{ID: "alloc-lt-0000", TaskGroup: "loadtest", Job: job, ClientStatus: final,
			TaskStates: map[string]*nomadapi.TaskState{"loadtest": {State: "dead", Failed: exitCode != 0, Events: []*nomadapi.TaskEvent{
				{Type: "Started"}, {Type: nomadapi.TaskTerminated, ExitCode: exitCode, DisplayMessage: "Exit Code: " + string(rune('0'+exitCode))}}}}},
	)
	h.fake.Logs["alloc-lt-0000/loadtest/stdout"] = "scenario  requests  p99\ntotal     120       0.8s\n"
	h.fake.Logs["alloc-lt-0000/loadtest/stderr"] = "level=INFO msg=\"run started\"\n"
	if summary != "" {
		h.fake.Files["alloc-lt-0000/"+DefaultSummaryPath] = summary
	}
	return h
}

func TestLoadtestPasses(t *testing.T) {
	t.Parallel()
	h := loadtestHarness(t, 0, summaryJSON(t, "duration", "p99<2s=0.8"))
	res, err := h.d.Loadtest(testCtx(t, 10*time.Second), LoadtestOptions{Meta: map[string]string{"users": "5", "thresholds": "p99<2s"}})
	if err != nil {
		t.Fatalf("Loadtest: %v\n%s", err, h.stderr)
	}
	if len(h.fake.Dispatched) != 1 || h.fake.Dispatched[0].Meta["users"] != "5" {
		t.Errorf("dispatched %+v", h.fake.Dispatched)
	}
	contains(t, "stdout", h.stdout.String(), "total     120       0.8s")
	contains(t, "stderr", h.stderr.String(), `run started`, `==> Load test "loadtest/dispatch-1700000000-abcd1234" passed`)
	if res.ExitCode != 0 || !json.Valid(res.Summary) || len(h.fake.Deregistered) != 0 {
		t.Errorf("result %+v, deregistered %v", res, h.fake.Deregistered)
	}
}

func TestLoadtestThresholdFails(t *testing.T) {
	t.Parallel()
	h := loadtestHarness(t, 2, summaryJSON(t, "duration", "p99<100ms=0.8", "error_rate<1%=0.25", "ttft_p95<1s=0.2", "requests>5000=1371"))
	_, err := h.d.Loadtest(testCtx(t, 10*time.Second), LoadtestOptions{JSON: true})
	wantKind(t, err, KindThreshold, "thresholds failed: p99<100ms (p99 was 800.0ms); error_rate<1% (error_rate was 25.000%); requests>5000 (requests was 1371)")
	if ExitCode(err) != 6 {
		t.Errorf("exit code %d, want 6", ExitCode(err))
	}
	// --json: the JSON summary is the result; the text summary goes to stderr.
	if !json.Valid([]byte(h.stdout.String())) {
		t.Errorf("stdout is not the JSON summary: %q", h.stdout.String())
	}
	contains(t, "stderr", h.stderr.String(), "total     120       0.8s")
}

// A load test someone stopped part-way exits 0 with its report, but did not pass.
func TestLoadtestStoppedIsNotAPass(t *testing.T) {
	t.Parallel()
	h := loadtestHarness(t, 0, summaryJSON(t, "signal", "p99<2s=0.8"))
	_, err := h.d.Loadtest(testCtx(t, 10*time.Second), LoadtestOptions{})
	wantKind(t, err, KindDeployment, "was stopped after 6s, before its duration or request count")
}

func TestLoadtestTaskFailure(t *testing.T) {
	t.Parallel()
	h := loadtestHarness(t, 1, "")
	_, err := h.d.Loadtest(testCtx(t, 10*time.Second), LoadtestOptions{})
	wantKind(t, err, KindDeployment, "failed (allocation alloc-lt failed, exit code 1)", `task "loadtest" is dead (failed)`)
	contains(t, "stderr", h.stderr.String(), "no JSON summary at alloc/report/summary.json")
}

func TestLoadtestInputErrors(t *testing.T) {
	t.Parallel()
	h := loadtestHarness(t, 0, "")
	_, err := h.d.Loadtest(testCtx(t, 5*time.Second), LoadtestOptions{Meta: map[string]string{"spawn_rate": "1"}})
	wantKind(t, err, KindInput, "does not accept spawn_rate (it accepts: users, duration, thresholds)")

	h2 := newHarness(t)
	_, err = h2.d.Loadtest(testCtx(t, 5*time.Second), LoadtestOptions{})
	wantKind(t, err, KindInput, `job "loadtest" is not registered: run `+"`deployer up`")
	if len(h.fake.Dispatched)+len(h2.fake.Dispatched) != 0 {
		t.Error("dispatched despite invalid input")
	}
}

func TestLoadtestInterruptStopsDispatchedJob(t *testing.T) {
	t.Parallel()
	h := loadtestHarness(t, 0, "")
	// The allocation never finishes.
	h.fake.Allocs["alloc-lt-0000"] = nomadfake.Script(nomadapi.Allocation{ID: "alloc-lt-0000", TaskGroup: "loadtest", Job: batchJob("loadtest", nil), ClientStatus: "running"})
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(800*time.Millisecond, cancel)
	_, err := h.d.Loadtest(ctx, LoadtestOptions{})
	if k := KindOf(err); k != KindInterrupted {
		t.Fatalf("kind %d (%v), want interrupted", k, err)
	}
	if !slices.Equal(h.fake.Deregistered, []string{"loadtest/dispatch-1700000000-abcd1234"}) {
		t.Errorf("deregistered %v, want the dispatched job", h.fake.Deregistered)
	}
	contains(t, "stderr", h.stderr.String(), `==> Stopped "loadtest/dispatch-1700000000-abcd1234"`)
}

func TestStatus(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.Registered["inference"] = &nomadapi.Job{ID: ptr("inference"), Type: ptr("service"), Status: ptr("running"), Version: ptr(uint64(3)), Stable: ptr(true)}
	h.fake.LatestDeployment["inference"] = "dep-inf-00000"
	h.fake.JobAllocs["inference"] = nomadfake.Script([]*nomadapi.AllocationListStub{{ID: "alloc-inf-1", TaskGroup: "api", NodeName: "dev",
		JobVersion: 3, DesiredStatus: "run", ClientStatus: "running", DeploymentStatus: &nomadapi.AllocDeploymentStatus{Healthy: ptr(true)}}})
	h.fake.Checks["alloc-inf-1"] = nomadapi.AllocCheckStatuses{"c1": {Check: "ready", Service: "inference", Status: "failure"}}

	rep, err := h.d.Status(testCtx(t, 5*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Jobs) != 3 || !rep.Jobs[0].Registered || rep.Jobs[1].Registered {
		t.Fatalf("jobs = %+v", rep.Jobs)
	}
	inf := rep.Jobs[0]
	if inf.Deployment == nil || inf.Deployment.Status != "successful" || len(inf.Allocations) != 1 || inf.Services[0].Health != "failing" {
		t.Errorf("inference status = %+v", inf)
	}
	if err := WriteStatus(h.stdout, rep); err != nil {
		t.Fatal(err)
	}
	contains(t, "status table", h.stdout.String(),
		"inference   service  running         3", "prometheus  -        not registered",
		"alloc-in    inference  api    dev   3        run      running  true",
		`inference  nomad     http://127.0.0.1:8000  failing  check "ready" failure`,
		"no prometheus service registered")
}

func TestRestartWaitsForChecks(t *testing.T) {
	t.Parallel()
	h := newHarness(t)
	scriptHealthyInference(h.fake)
	h.fake.JobAllocs["inference"] = nomadfake.Script([]*nomadapi.AllocationListStub{
		{ID: "alloc-inf-1", ClientStatus: "running", DesiredStatus: "run"},
		{ID: "alloc-gone", ClientStatus: "complete", DesiredStatus: "stop"},
	})
	h.fake.Allocs["alloc-inf-1"] = nomadfake.Script(nomadapi.Allocation{ID: "alloc-inf-1", TaskGroup: "api", ClientStatus: "running"})
	if err := h.d.Restart(testCtx(t, 10*time.Second), []string{"inference"}); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if n := h.fake.Count("PUT /v1/client/allocation/alloc-inf-1/restart") + h.fake.Count("POST /v1/client/allocation/alloc-inf-1/restart"); n != 1 {
		t.Errorf("%d restarts of the running allocation, want 1", n)
	}
	if n := h.fake.Count("GET /v1/client/allocation/alloc-inf-1/checks"); n < 1 {
		t.Error("restart did not wait for the checks")
	}
	contains(t, "stdout", h.stdout.String(), "restarted: inference/alloc-in")
}
