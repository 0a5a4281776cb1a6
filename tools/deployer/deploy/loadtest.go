package deploy

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"

	"github.com/inferstack/inferstack/loadtest"
)

// Exit codes of the loadtest binary that the deployer interprets.
const loadtestExitThreshold = 2

// DefaultSummaryPath is where, in the allocation directory, the load test job writes
// its JSON summary (LOADTEST_OUT=${NOMAD_ALLOC_DIR}/report).
const DefaultSummaryPath = "alloc/report/summary.json"

// LoadtestOptions describe one load test run.
type LoadtestOptions struct {
	Job  string            // bundle name of the parameterized job (default "loadtest")
	Meta map[string]string // dispatch meta: users, spawn_rate, duration, rate, weights, target_service, thresholds
	// SummaryPath is the JSON summary's path in the allocation directory.
	SummaryPath string
	// JSON prints the JSON summary on Out instead of the text summary.
	JSON bool
}

// LoadtestResult is the outcome of a load test run.
type LoadtestResult struct {
	DispatchedJobID  string
	AllocID          string
	ExitCode         int
	Summary          json.RawMessage // nil when the summary file could not be read
	FailedThresholds []string
}

// Loadtest dispatches the parameterized load test job with opts.Meta, streams its
// stderr to Progress and its stdout (the text summary) to Out, waits for it to
// finish and reads its JSON summary. A failed threshold is a threshold error; a
// task that fails otherwise is a deployment error. On interrupt or timeout the
// dispatched job is stopped, so that no load keeps running.
func (d *Deployer) Loadtest(ctx context.Context, opts LoadtestOptions) (*LoadtestResult, error) {
	if opts.Job == "" {
		opts.Job = "loadtest"
	}
	if opts.SummaryPath == "" {
		opts.SummaryPath = DefaultSummaryPath
	}
	names, err := d.Bundle.Select([]string{opts.Job})
	if err != nil {
		return nil, err
	}
	src, err := d.Bundle.Load(names[0])
	if err != nil {
		return nil, err
	}
	parent, _, err := d.Nomad.Jobs().Info(src.ID, qo(ctx, 0, 0))
	if err != nil {
		if isNotFound(err) {
			return nil, Errorf(KindInput, "job %q is not registered: run `deployer up` first", src.ID)
		}
		return nil, d.apiErr(ctx, "job "+src.ID, err)
	}
	if parent.ParameterizedJob == nil {
		return nil, Errorf(KindInput, "job %q is not a parameterized job", src.ID)
	}
	if err := checkMeta(parent.ParameterizedJob, opts.Meta); err != nil {
		return nil, err
	}

	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	resp, _, err := d.Nomad.Jobs().Dispatch(src.ID, opts.Meta, nil, "", (&nomadapi.WriteOptions{}).WithContext(wctx))
	cancel()
	if err != nil {
		return nil, d.apiErr(ctx, "dispatch job "+src.ID, err)
	}
	res := &LoadtestResult{DispatchedJobID: resp.DispatchedJobID}
	d.progressf("==> Dispatched %q (evaluation %s)", resp.DispatchedJobID, shortID(resp.EvalID))

	runErr := d.runDispatched(ctx, src, resp, opts, res)
	if runErr != nil && (errors.Is(runErr, context.Canceled) || errors.Is(runErr, context.DeadlineExceeded) ||
		KindOf(runErr) == KindInterrupted || KindOf(runErr) == KindTimeout || KindOf(runErr) == KindPlacement) {
		d.stopDispatched(ctx, resp.DispatchedJobID)
	}
	return res, runErr
}

func (d *Deployer) runDispatched(ctx context.Context, src *JobSource, resp *nomadapi.JobDispatchResponse, opts LoadtestOptions, res *LoadtestResult) error {
	child := &parsedJob{src: src, job: &nomadapi.Job{ID: &resp.DispatchedJobID}}
	if resp.EvalID != "" {
		if _, err := d.waitEval(ctx, child, resp.EvalID); err != nil {
			return err
		}
	}
	alloc, err := d.waitFirstAlloc(ctx, resp.DispatchedJobID)
	if err != nil {
		return err
	}
	res.AllocID = alloc.ID
	task, err := pickTask(alloc, "")
	if err != nil {
		return err
	}
	d.progressf("    allocation %s, task %q", shortID(alloc.ID), task)

	// Follow stderr (the generator's progress) while the task runs; once it is
	// done, print its whole stdout (the text summary, written at the end).
	started, err := d.waitAlloc(ctx, alloc.ID, allocStarted)
	if err != nil {
		return err
	}
	var final *nomadapi.Allocation
	if allocDone(started) {
		final = started
		if err := d.streamLog(ctx, final, task, "stderr", false, "", d.Progress); err != nil {
			d.progressf("    stderr of the load test: %v", err)
		}
	} else {
		sctx, stopStream := context.WithCancel(ctx)
		streamDone := make(chan error, 1)
		go func() { streamDone <- d.streamLog(sctx, started, task, "stderr", true, "", d.Progress) }()
		final, err = d.waitAlloc(ctx, alloc.ID, allocDone)
		if err != nil {
			stopStream()
			<-streamDone
			return err
		}
		select { // the stream ends with the task; give it a moment to drain
		case err := <-streamDone:
			if err != nil && !isCtxErr(err) {
				d.progressf("    stderr of the load test: %v", err)
			}
		case <-time.After(2 * time.Second):
		}
		stopStream()
	}
	stdoutW := d.Out
	if opts.JSON {
		stdoutW = d.Progress
	}
	if err := d.streamLog(ctx, final, task, "stdout", false, "", stdoutW); err != nil {
		d.progressf("    stdout of the load test: %v", err)
	}

	st := final.TaskStates[task]
	exit := -1
	if st != nil {
		for _, ev := range st.Events {
			if ev.Type == nomadapi.TaskTerminated {
				exit = ev.ExitCode
			}
		}
	}
	res.ExitCode = exit
	var sum *loadtest.Summary
	if rc, err := d.Nomad.AllocFS().Cat(final, opts.SummaryPath, qo(ctx, 0, 0)); err == nil {
		body, rerr := io.ReadAll(io.LimitReader(rc, 16<<20))
		rc.Close()
		if rerr == nil && json.Valid(body) {
			res.Summary = body
			if s, ths, err := loadtest.ReadJSON(bytes.NewReader(body)); err == nil {
				sum = s
				res.FailedThresholds = failedThresholds(ths)
			} else {
				d.progressf("    the summary at %s is not a load test summary (%v)", opts.SummaryPath, err)
			}
		}
	} else {
		d.progressf("    no JSON summary at %s in the allocation (%v)", opts.SummaryPath, err)
	}
	if opts.JSON && res.Summary != nil {
		d.outf("%s", strings.TrimSpace(string(res.Summary)))
	}

	switch {
	case final.ClientStatus == "complete" && exit <= 0 && len(res.FailedThresholds) == 0 && sum != nil && sum.StoppedBy == "signal":
		// The generator exits 0 with its report when stopped, but the run was cut short.
		return Errorf(KindDeployment, "load test %q was stopped after %.0fs, before its duration or request count (the job was stopped or its node drained): its numbers cover only that part",
			resp.DispatchedJobID, float64(sum.Elapsed))
	case final.ClientStatus == "complete" && exit <= 0 && len(res.FailedThresholds) == 0:
		d.progressf("==> Load test %q passed", resp.DispatchedJobID)
		return nil
	case exit == loadtestExitThreshold || len(res.FailedThresholds) > 0:
		msg := "a threshold failed"
		if len(res.FailedThresholds) > 0 {
			msg = "thresholds failed: " + strings.Join(res.FailedThresholds, "; ")
		}
		return Errorf(KindThreshold, "load test %q: %s", resp.DispatchedJobID, msg)
	default:
		why := ExplainTaskStates(final.TaskStates, 4)
		return Errorf(KindDeployment, "load test %q failed (allocation %s %s, exit code %d): %s",
			resp.DispatchedJobID, shortID(final.ID), final.ClientStatus, exit, strings.Join(why, " | "))
	}
}

// checkMeta refuses dispatch meta keys the job does not accept and reports missing
// required ones, before the server does.
func checkMeta(p *nomadapi.ParameterizedJobConfig, meta map[string]string) error {
	allowed := append(slices.Clone(p.MetaRequired), p.MetaOptional...)
	var unknown []string
	for k := range meta {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	sort.Strings(unknown)
	if len(unknown) > 0 {
		return Errorf(KindInput, "the load test job does not accept %s (it accepts: %s)", strings.Join(unknown, ", "), strings.Join(allowed, ", "))
	}
	var missing []string
	for _, k := range p.MetaRequired {
		if _, ok := meta[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		return Errorf(KindInput, "the load test job requires %s", strings.Join(missing, ", "))
	}
	return nil
}

// failedThresholds describes the thresholds that failed, with their values in the
// load generator's units.
func failedThresholds(rs []loadtest.ThresholdResult) []string {
	var out []string
	for _, r := range loadtest.Failed(rs) {
		if r.NoData {
			out = append(out, r.Raw+" (no data)")
		} else {
			out = append(out, fmt.Sprintf("%s (%s was %s)", r.Raw, r.Metric, r.Format(r.Actual)))
		}
	}
	return out
}

// waitFirstAlloc blocks until the job has an allocation and returns it.
func (d *Deployer) waitFirstAlloc(ctx context.Context, jobID string) (*nomadapi.Allocation, error) {
	var index uint64
	for {
		stubs, meta, err := d.Nomad.Jobs().Allocations(jobID, true, qo(ctx, index, blockingWait))
		if err != nil {
			return nil, d.apiErr(ctx, "allocations of job "+jobID, err)
		}
		index = meta.LastIndex
		if len(stubs) > 0 {
			sort.Slice(stubs, func(i, j int) bool { return stubs[i].CreateIndex < stubs[j].CreateIndex })
			a, _, err := d.Nomad.Allocations().Info(stubs[0].ID, qo(ctx, 0, 0))
			if err != nil {
				return nil, d.apiErr(ctx, "allocation "+shortID(stubs[0].ID), err)
			}
			return a, nil
		}
	}
}

// waitAlloc blocks (blocking queries) until the allocation satisfies until.
func (d *Deployer) waitAlloc(ctx context.Context, allocID string, until func(*nomadapi.Allocation) bool) (*nomadapi.Allocation, error) {
	var index uint64
	for {
		a, meta, err := d.Nomad.Allocations().Info(allocID, qo(ctx, index, blockingWait))
		if err != nil {
			return nil, d.apiErr(ctx, "allocation "+shortID(allocID), err)
		}
		index = meta.LastIndex
		if until(a) {
			return a, nil
		}
	}
}

func allocStarted(a *nomadapi.Allocation) bool { return a.ClientStatus != "pending" }

func allocDone(a *nomadapi.Allocation) bool {
	switch a.ClientStatus {
	case "complete", "failed", "lost":
		return true
	}
	return false
}

func isCtxErr(err error) bool {
	return errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded)
}

// stopDispatched stops a dispatched job after an interrupt, so that no load keeps
// running; the write is not cut by the interrupt.
func (d *Deployer) stopDispatched(ctx context.Context, id string) {
	wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
	defer cancel()
	if _, _, err := d.Nomad.Jobs().Deregister(id, false, (&nomadapi.WriteOptions{}).WithContext(wctx)); err != nil {
		d.progressf("    could not stop %q: %v (stop it with `nomad job stop %s`)", id, err, id)
		return
	}
	d.progressf("==> Stopped %q", id)
}
