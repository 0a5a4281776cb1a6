package deploy

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
)

// blockingWait is how long one blocking query may wait on the server.
const blockingWait = 30 * time.Second

// deploymentPollWait is the wait of the deployment's blocking query: short enough
// to sample the allocations' checks (which change no deployment field) while they
// fail, before Nomad marks an allocation unhealthy and maybe reverts it in place.
const deploymentPollWait = 5 * time.Second

// writeTimeout bounds a write call; writes are not cancelled by Ctrl-C, so that a
// registration is either made or not, never left in doubt.
const writeTimeout = 30 * time.Second

// UpOptions select what Up submits.
type UpOptions struct {
	Jobs []string // bundle job names; empty: all
	// SkipHealth skips waiting for the service instances' checks after the
	// deployments succeed.
	SkipHealth bool
	// AutoTimeout bounds the run, once the jobs are parsed, by WaitTimeout of
	// them (the command line's default when --timeout is not given).
	AutoTimeout bool
}

// MinWaitTimeout is the least default bound of `up` and `restart`.
const MinWaitTimeout = 15 * time.Minute

// defaultProgressDeadline is Nomad's update.progress_deadline when a job sets none.
const defaultProgressDeadline = 10 * time.Minute

// WaitSlack is what WaitTimeout adds to the longest progress deadline: the wait for
// Nomad's rollback (rollbackWait) and a margin for the evaluation before the
// deployment, the health checks after it, and the deadline restarting each time an
// allocation becomes healthy.
const WaitSlack = rollbackWait + 5*time.Minute

// WaitTimeout returns how long `up` waits for jobs by default: longer than the
// longest update.progress_deadline among their groups (after which Nomad fails the
// deployment and maybe rolls back) plus WaitSlack, so that a failed deployment is reported as failed, not as a timeout; at
// least MinWaitTimeout.
func WaitTimeout(jobs []*nomadapi.Job) time.Duration {
	longest := time.Duration(0)
	for _, j := range jobs {
		if j == nil || (j.Type != nil && *j.Type != "" && *j.Type != nomadapi.JobTypeService) {
			continue
		}
		jobDeadline := defaultProgressDeadline
		if j.Update != nil && j.Update.ProgressDeadline != nil {
			jobDeadline = *j.Update.ProgressDeadline
		}
		for _, tg := range j.TaskGroups {
			dl := jobDeadline
			if tg != nil && tg.Update != nil && tg.Update.ProgressDeadline != nil {
				dl = *tg.Update.ProgressDeadline
			}
			longest = max(longest, dl)
		}
	}
	return max(MinWaitTimeout, longest+WaitSlack)
}

// parsedJob is a bundle job parsed by the server.
type parsedJob struct {
	src *JobSource
	job *nomadapi.Job
}

func (p *parsedJob) id() string { return *p.job.ID }

func (p *parsedJob) jobType() string {
	if p.job.Type == nil || *p.job.Type == "" {
		return nomadapi.JobTypeService
	}
	return *p.job.Type
}

// submitted is a job Up registered (or found unchanged), and what to watch.
type submitted struct {
	*parsedJob
	evalID         string
	jobModifyIndex uint64
	unchanged      bool
}

// parse loads the named bundle jobs, checks the variables and has the Nomad server
// parse each specification with its variables.
func (d *Deployer) parse(ctx context.Context, names []string) ([]*parsedJob, error) {
	all, err := d.Bundle.Names()
	if err != nil {
		return nil, err
	}
	var srcs []*JobSource
	for _, n := range all {
		src, err := d.Bundle.Load(n)
		if err != nil {
			return nil, err
		}
		srcs = append(srcs, src)
	}
	if err := d.Vars.CheckDeclared(srcs); err != nil {
		return nil, err
	}
	selected, err := d.Bundle.Select(names)
	if err != nil {
		return nil, err
	}
	var out []*parsedJob
	for _, n := range selected {
		var src *JobSource
		for _, s := range srcs {
			if s.Name == n {
				src = s
			}
		}
		vars, origins := d.Vars.render(src.Name, src.Variables)
		job, err := d.Nomad.Jobs().ParseHCLOpts(&nomadapi.JobsParseRequest{
			JobHCL:    src.HCL,
			Variables: vars,
		})
		if err != nil {
			err = d.apiErr(ctx, "parse "+src.Path, err)
			if KindOf(err) == KindInput {
				// The server names both the job and the variables "input.hcl".
				err = Errorf(KindInput, "%s", rewriteServerRefs(err.Error(), src.Path, origins))
			}
			return nil, err
		}
		if job.ID == nil || *job.ID == "" {
			return nil, Errorf(KindInput, "parse %s: the server returned a job without ID", src.Path)
		}
		d.setJobScope(job)
		out = append(out, &parsedJob{src: src, job: job})
	}
	return out, nil
}

// setJobScope applies the client's region and namespace to a job that sets neither,
// as the Nomad CLI does.
func (d *Deployer) setJobScope(job *nomadapi.Job) {
	if job.Namespace == nil && d.Namespace != "" {
		ns := d.Namespace
		job.Namespace = &ns
	}
	if job.Region == nil && d.Region != "" {
		r := d.Region
		job.Region = &r
	}
}

// Up brings the selected jobs up: server-side parse, a check of the Nomad variables
// their templates wait for, plan (nothing is registered if a variable is missing or
// any job cannot be placed), register with check-index, then watch evaluations and
// deployments until every job is healthy (failing at once when Nomad gives up on a
// task of a group's newest allocation), and wait for the health service's instances
// to pass their checks. It prints the service addresses on Out.
func (d *Deployer) Up(ctx context.Context, opts UpOptions) error {
	jobs, err := d.parse(ctx, opts.Jobs)
	if err != nil {
		return err
	}
	if opts.AutoTimeout {
		parsed := make([]*nomadapi.Job, len(jobs))
		for i, pj := range jobs {
			parsed[i] = pj.job
		}
		limit := WaitTimeout(parsed)
		d.Logger.Debug("wait limit", "timeout", limit)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, limit)
		defer cancel()
	}

	// A Nomad variable a task waits for must exist before anything is registered.
	if err := d.checkNomadVars(ctx, jobs); err != nil {
		return err
	}

	// Plan everything first: a placement failure leaves the cluster untouched.
	plans := make([]*nomadapi.JobPlanResponse, len(jobs))
	var placement []string
	for i, pj := range jobs {
		d.progressf("==> Planning job %q", pj.id())
		plan, _, err := d.Nomad.Jobs().Plan(pj.job, true, (&nomadapi.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return d.apiErr(ctx, "plan job "+pj.id(), err)
		}
		plans[i] = plan
		if plan.Warnings != "" {
			d.progressf("    warnings: %s", strings.TrimSpace(plan.Warnings))
		}
		if len(plan.FailedTGAllocs) > 0 {
			for _, line := range ExplainPlacement(pj.job, plan.FailedTGAllocs) {
				placement = append(placement, fmt.Sprintf("job %q %s", pj.id(), line))
			}
		}
	}
	if len(placement) > 0 {
		for _, l := range placement {
			d.progressf("    %s", l)
		}
		return Errorf(KindPlacement, "cannot place: %s; nothing was registered", strings.Join(placement, "; "))
	}

	// Register, one job at a time. A write is never cut by Ctrl-C; between writes an
	// interrupt stops the submission.
	var subs []*submitted
	for i, pj := range jobs {
		if err := ctx.Err(); err != nil {
			return d.interrupted(ctx, subs, jobs[i:])
		}
		plan := plans[i]
		if plan.Diff != nil && plan.Diff.Type == "None" {
			d.progressf("==> Job %q is unchanged", pj.id())
			subs = append(subs, &submitted{parsedJob: pj, jobModifyIndex: plan.JobModifyIndex, unchanged: true})
			continue
		}
		wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
		resp, _, err := d.Nomad.Jobs().RegisterOpts(pj.job, &nomadapi.RegisterOptions{
			EnforceIndex: true,
			ModifyIndex:  plan.JobModifyIndex,
		}, (&nomadapi.WriteOptions{}).WithContext(wctx))
		cancel()
		if err != nil {
			if strings.Contains(err.Error(), "EnforceIndex") || strings.Contains(err.Error(), "modify index") {
				return Errorf(KindAPI, "register job %q: it changed since it was planned (someone else submitted it); run again: %w", pj.id(), err)
			}
			return d.apiErr(ctx, "register job "+pj.id(), err)
		}
		if resp.Warnings != "" {
			d.progressf("    warnings: %s", strings.TrimSpace(resp.Warnings))
		}
		if resp.EvalID == "" {
			d.progressf("==> Registered job %q (parameterized or periodic: nothing runs until it is dispatched or launched)", pj.id())
		} else {
			d.progressf("==> Registered job %q (evaluation %s)", pj.id(), shortID(resp.EvalID))
		}
		subs = append(subs, &submitted{parsedJob: pj, evalID: resp.EvalID, jobModifyIndex: resp.JobModifyIndex})
	}

	// Watch.
	for _, s := range subs {
		if err := d.watch(ctx, s); err != nil {
			return d.watchFailed(ctx, err, s, subs)
		}
	}
	if !opts.SkipHealth {
		for _, s := range subs {
			if s.jobType() != nomadapi.JobTypeService {
				continue
			}
			if err := d.waitHealthy(ctx, s.parsedJob); err != nil {
				return d.watchFailed(ctx, err, s, subs)
			}
		}
	}
	return d.printAddresses(ctx, subs)
}

// interrupted reports what was registered before an interrupt and what was not.
func (d *Deployer) interrupted(ctx context.Context, subs []*submitted, rest []*parsedJob) error {
	var reg, not []string
	for _, s := range subs {
		reg = append(reg, s.id())
	}
	for _, p := range rest {
		not = append(not, p.id())
	}
	msg := "interrupted before anything was registered"
	if len(reg) > 0 {
		msg = fmt.Sprintf("interrupted: registered %s (Nomad keeps deploying them; `deployer status` shows them, `deployer down` stops them)", strings.Join(reg, ", "))
	}
	if len(not) > 0 {
		msg += "; not submitted: " + strings.Join(not, ", ")
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return Errorf(KindTimeout, "timed out: %s", strings.TrimPrefix(msg, "interrupted: "))
	}
	return Errorf(KindInterrupted, "%s", msg)
}

// watchFailed adds to a watch error what is left running on the cluster.
func (d *Deployer) watchFailed(ctx context.Context, err error, s *submitted, subs []*submitted) error {
	kind := KindOf(err)
	if kind == KindInterrupted || kind == KindTimeout {
		var ids []string
		for _, x := range subs {
			ids = append(ids, x.id())
		}
		return &Error{Kind: kind, Err: fmt.Errorf("%w; jobs %s stay registered and Nomad keeps deploying them (`deployer status` to follow, `deployer down` to stop)",
			err, strings.Join(ids, ", "))}
	}
	return err
}

// watch waits for one submitted job: its evaluation, then its deployment (service
// jobs) or the evaluation alone (batch, system, parameterized).
func (d *Deployer) watch(ctx context.Context, s *submitted) error {
	if s.job.ParameterizedJob != nil || s.job.Periodic != nil {
		return nil // nothing runs until dispatched or launched
	}
	var depID string
	if s.evalID != "" {
		ev, err := d.waitEval(ctx, s.parsedJob, s.evalID)
		if err != nil {
			return err
		}
		depID = ev.DeploymentID
	}
	if s.jobType() != nomadapi.JobTypeService {
		return nil
	}
	if depID == "" {
		dep, _, err := d.Nomad.Jobs().LatestDeployment(s.id(), qo(ctx, 0, 0))
		if err != nil {
			return d.apiErr(ctx, "deployment of job "+s.id(), err)
		}
		if dep == nil {
			d.progressf("    job %q has no deployment; not waiting for one", s.id())
			return nil
		}
		depID = dep.ID
	}
	return d.waitDeployment(ctx, s.parsedJob, depID)
}

// waitEval blocks until the evaluation (and any follow-up it chains to) completes and
// returns it; FailedTGAllocs make a placement error.
func (d *Deployer) waitEval(ctx context.Context, pj *parsedJob, evalID string) (*nomadapi.Evaluation, error) {
	var index uint64
	for {
		ev, meta, err := d.Nomad.Evaluations().Info(evalID, qo(ctx, index, blockingWait))
		if err != nil {
			return nil, d.apiErr(ctx, fmt.Sprintf("evaluation %s of job %s", shortID(evalID), pj.id()), err)
		}
		index = meta.LastIndex
		switch ev.Status {
		case "pending", "blocked":
			continue
		case "complete":
			if len(ev.FailedTGAllocs) > 0 {
				lines := ExplainPlacement(pj.job, ev.FailedTGAllocs)
				for _, l := range lines {
					d.progressf("    %s", l)
				}
				return nil, Errorf(KindPlacement, "job %q cannot be placed: %s; the job stays registered and Nomad places it when capacity appears (`deployer down %s` removes it)",
					pj.id(), strings.Join(lines, "; "), pj.src.Name)
			}
			return ev, nil
		case "failed":
			if ev.NextEval != "" {
				evalID, index = ev.NextEval, 0
				continue
			}
			return nil, Errorf(KindDeployment, "evaluation %s of job %q failed: %s", shortID(ev.ID), pj.id(), ev.StatusDescription)
		case "canceled":
			return nil, Errorf(KindDeployment, "evaluation %s of job %q was canceled: %s (another submission superseded it?)", shortID(ev.ID), pj.id(), ev.StatusDescription)
		default:
			return nil, Errorf(KindAPI, "evaluation %s of job %q has unknown status %q", shortID(ev.ID), pj.id(), ev.Status)
		}
	}
}

// waitDeployment blocks until the deployment is terminal, printing progress and the
// reasons of unhealthy allocations as they appear. A failed or cancelled deployment
// is a deployment error explaining why, and saying whether Nomad rolled back.
func (d *Deployer) waitDeployment(ctx context.Context, pj *parsedJob, depID string) error {
	var index uint64
	lastLine := ""
	explained := map[string]string{}
	for {
		dep, meta, err := d.Nomad.Deployments().Info(depID, qo(ctx, index, deploymentPollWait))
		if err != nil {
			if ctx.Err() != nil {
				// Say why it is not done before giving up.
				ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				d.explainAllocs(ectx, depID, explained, true)
				cancel()
			}
			err = d.apiErr(ctx, fmt.Sprintf("deployment %s of job %s", shortID(depID), pj.id()), err)
			if lastLine != "" {
				err = &Error{Kind: KindOf(err), Err: fmt.Errorf("%w (last state: %s)", err, strings.TrimSpace(lastLine))}
			}
			return err
		}
		index = meta.LastIndex
		line := fmt.Sprintf("    deployment %s of %q: %s — %s", shortID(dep.ID), pj.id(), dep.Status, groupProgress(dep))
		if line != lastLine {
			d.progressf("%s", line)
			lastLine = line
		}
		allocs := d.explainAllocs(ctx, depID, explained, false)
		switch dep.Status {
		case nomadapi.DeploymentStatusSuccessful:
			d.progressf("==> Job %q deployed (version %d)", pj.id(), dep.JobVersion)
			return nil
		case nomadapi.DeploymentStatusFailed, nomadapi.DeploymentStatusCancelled:
			msg := fmt.Sprintf("deployment %s of job %q %s: %s", shortID(dep.ID), pj.id(), dep.Status, dep.StatusDescription)
			if strings.Contains(dep.StatusDescription, "rolling back") {
				msg += "; " + d.followRollback(ctx, pj.id(), dep)
			}
			return Errorf(KindDeployment, "%s", msg)
		}
		if why := givenUp(allocs); why != "" {
			return Errorf(KindDeployment, "deployment %s of job %q cannot succeed: %s; Nomad does not retry such an error in place, and the job stays registered (`deployer status` follows it, `deployer down %s` stops it)",
				shortID(dep.ID), pj.id(), why, pj.src.Name)
		}
		if hint := promotionHint(dep); hint != "" && hint != lastLine {
			d.progressf("%s", hint)
			lastLine = hint
		}
	}
}

// rollbackWait bounds the wait for the deployment of an automatic revert.
const rollbackWait = 2 * time.Minute

// followRollback waits (briefly) for the deployment Nomad starts when it reverts a
// failed one, and says how it ended, so the user knows what is running.
func (d *Deployer) followRollback(ctx context.Context, jobID string, failed *nomadapi.Deployment) string {
	ctx, cancel := context.WithTimeout(ctx, rollbackWait)
	defer cancel()
	var index uint64
	for {
		dep, meta, err := d.Nomad.Jobs().LatestDeployment(jobID, qo(ctx, index, blockingWait))
		if err != nil {
			return "Nomad is reverting the job (`deployer status` shows the running version)"
		}
		index = meta.LastIndex
		if dep == nil || dep.ID == failed.ID {
			continue
		}
		switch dep.Status {
		case nomadapi.DeploymentStatusSuccessful:
			return fmt.Sprintf("Nomad reverted the job: job version %d, a copy of the last stable version, is deployed (deployment %s successful)", dep.JobVersion, shortID(dep.ID))
		case nomadapi.DeploymentStatusFailed, nomadapi.DeploymentStatusCancelled:
			return fmt.Sprintf("Nomad tried to revert the job, and that deployment %s %s too: %s", shortID(dep.ID), dep.Status, dep.StatusDescription)
		}
		d.progressf("    rollback deployment %s of %q: %s — %s", shortID(dep.ID), jobID, dep.Status, groupProgress(dep))
	}
}

func groupProgress(dep *nomadapi.Deployment) string {
	var parts []string
	for _, g := range slices.Sorted(maps.Keys(dep.TaskGroups)) {
		st := dep.TaskGroups[g]
		p := fmt.Sprintf("group %s: %d/%d placed, %d healthy, %d unhealthy", g, st.PlacedAllocs, st.DesiredTotal, st.HealthyAllocs, st.UnhealthyAllocs)
		if st.DesiredCanaries > 0 {
			p += fmt.Sprintf(", canaries %d/%d", len(st.PlacedCanaries), st.DesiredCanaries)
			if st.Promoted {
				p += " promoted"
			}
		}
		parts = append(parts, p)
	}
	if len(parts) == 0 {
		return dep.StatusDescription
	}
	return strings.Join(parts, "; ")
}

func promotionHint(dep *nomadapi.Deployment) string {
	if dep.Status != nomadapi.DeploymentStatusRunning {
		return ""
	}
	for g, st := range dep.TaskGroups {
		// With auto_promote Nomad promotes by itself ("Deployment is running pending
		// automatic promotion"): only manual promotion needs the user.
		if st.DesiredCanaries > 0 && !st.Promoted && st.HealthyAllocs >= st.DesiredCanaries &&
			strings.Contains(dep.StatusDescription, "promotion") && !strings.Contains(dep.StatusDescription, "automatic") {
			return fmt.Sprintf("    group %s: canaries healthy, waiting for promotion (nomad deployment promote %s)", g, dep.ID)
		}
	}
	return ""
}

// explainAllocs prints why allocations of the deployment are not healthy: those
// marked unhealthy or failed, and those whose tasks restarted or whose checks fail
// (with all, every allocation not yet healthy). Each allocation is explained again
// only when what is said about it changes.
// It returns the deployment's allocations (nil when they cannot be listed).
func (d *Deployer) explainAllocs(ctx context.Context, depID string, explained map[string]string, all bool) []*nomadapi.AllocationListStub {
	allocs, _, err := d.Nomad.Deployments().Allocations(depID, qo(ctx, 0, 0))
	if err != nil {
		d.Logger.Debug("list deployment allocations", "err", err)
		return nil
	}
	for _, a := range allocs {
		healthy := a.DeploymentStatus != nil && a.DeploymentStatus.Healthy != nil && *a.DeploymentStatus.Healthy
		unhealthy := a.DeploymentStatus != nil && a.DeploymentStatus.Healthy != nil && !*a.DeploymentStatus.Healthy
		restarts := uint64(0)
		for _, st := range a.TaskStates {
			if st != nil {
				restarts += st.Restarts
			}
		}
		if healthy {
			continue
		}
		flagged := unhealthy || a.ClientStatus == "failed" || restarts > 0
		lines, failing := d.allocReasons(ctx, a, flagged)
		if !(all || flagged || failing > 0) {
			continue
		}
		key := strings.Join(lines, "\n")
		if explained[a.ID] == key {
			continue
		}
		explained[a.ID] = key
		for _, l := range lines {
			d.progressf("    %s", l)
		}
	}
	return allocs
}

// givenUp says why the deployment cannot succeed when, in the newest allocation of
// one of its task groups, a task is dead after an event with which Nomad failed it
// for good: a driver error Nomad calls unrecoverable ("Not Restarting: Error was
// unrecoverable"), or another event marked FailsTask (a template that fails to
// render, a setup failure). Running out of restart attempts is not such an event:
// Nomad reschedules, and the deployment decides. "" when there is none.
func givenUp(allocs []*nomadapi.AllocationListStub) string {
	newest := map[string]*nomadapi.AllocationListStub{}
	for _, a := range allocs {
		if n := newest[a.TaskGroup]; n == nil || a.CreateIndex > n.CreateIndex {
			newest[a.TaskGroup] = a
		}
	}
	for _, g := range slices.Sorted(maps.Keys(newest)) {
		a := newest[g]
		for _, name := range slices.Sorted(maps.Keys(a.TaskStates)) {
			st := a.TaskStates[name]
			if st == nil || !st.Failed || st.State != "dead" {
				continue
			}
			for i, ev := range st.Events {
				if ev == nil || !failsForGood(ev) {
					continue
				}
				var what []string
				for _, e := range st.Events[max(0, i-1) : i+1] {
					if e != nil {
						what = append(what, describeEvent(e))
					}
				}
				return fmt.Sprintf("allocation %s (group %s, node %s) failed: task %q: %s",
					shortID(a.ID), a.TaskGroup, a.NodeName, name, strings.Join(what, "; "))
			}
		}
	}
	return ""
}

// failsForGood says whether Nomad gave up on a task with this event (see givenUp).
func failsForGood(ev *nomadapi.TaskEvent) bool {
	if !ev.FailsTask {
		return false
	}
	if ev.Type == nomadapi.TaskNotRestarting {
		return strings.Contains(strings.ToLower(ev.RestartReason+" "+ev.DisplayMessage+" "+ev.Message), "unrecoverable")
	}
	return true
}

// allocReasons describes an allocation that is not healthy: its tasks' last events
// and its failing checks (also counted). flagged says Nomad counts it as unhealthy
// or failed; otherwise it is described as not healthy yet.
func (d *Deployer) allocReasons(ctx context.Context, a *nomadapi.AllocationListStub, flagged bool) ([]string, int) {
	state := a.ClientStatus
	if !flagged && a.ClientStatus == "running" {
		state = "running, not healthy yet"
	}
	lines := []string{fmt.Sprintf("allocation %s (group %s, node %s) is %s:", shortID(a.ID), a.TaskGroup, a.NodeName, state)}
	failing := 0
	for _, l := range ExplainTaskStates(a.TaskStates, 4) {
		lines = append(lines, "  "+l)
	}
	checks, err := d.Nomad.Allocations().Checks(a.ID, qo(ctx, 0, 0))
	if err == nil {
		for id, c := range checks {
			if c.Status == "pending" { // not run yet: nothing to explain
				delete(checks, id)
			}
		}
		for _, l := range failingChecks(checks) {
			lines = append(lines, "  "+l)
			failing++
		}
	}
	return lines, failing
}

func failingChecks(checks nomadapi.AllocCheckStatuses) []string {
	var lines []string
	for _, id := range slices.Sorted(maps.Keys(checks)) {
		c := checks[id]
		if c.Status == "success" {
			continue
		}
		out := strings.Join(strings.Fields(c.Output), " ")
		if r := []rune(out); len(r) > 160 {
			out = string(r[:160]) + "…"
		}
		l := fmt.Sprintf("check %q of service %q: %s", c.Check, c.Service, c.Status)
		if c.StatusCode != 0 {
			l += fmt.Sprintf(" (HTTP %d)", c.StatusCode)
		}
		if out != "" {
			l += ": " + out
		}
		lines = append(lines, l)
	}
	return lines
}
