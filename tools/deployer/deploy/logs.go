package deploy

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"sync"

	nomadapi "github.com/hashicorp/nomad/api"
)

// LogsOptions select the logs to show.
type LogsOptions struct {
	Job    string // bundle job name or Nomad job ID
	Task   string // "" if the group has one task
	Follow bool
	// Types are the streams to show: "stdout", "stderr" or both (default).
	Types []string
	// All shows every allocation of the job, not only the running ones (or the
	// latest one when none runs).
	All bool
}

// resolveJobID maps a bundle job name to its job ID; any other name is taken as a
// Nomad job ID.
func (d *Deployer) resolveJobID(name string) string {
	if d.Bundle != nil {
		if names, err := d.Bundle.Names(); err == nil {
			for _, n := range names {
				if n == name {
					if src, err := d.Bundle.Load(n); err == nil {
						return src.ID
					}
				}
			}
		}
	}
	return name
}

// Logs writes the logs of a job's task to Out, stdout and stderr, line by line,
// prefixed with the allocation when there are several; with Follow it streams
// until ctx ends (which is then not an error).
func (d *Deployer) Logs(ctx context.Context, opts LogsOptions) error {
	jobID := d.resolveJobID(opts.Job)
	stubs, _, err := d.Nomad.Jobs().Allocations(jobID, false, qo(ctx, 0, 0))
	if err != nil {
		if isNotFound(err) {
			return Errorf(KindInput, "job %q is not registered (`deployer up` submits it)", jobID)
		}
		return d.apiErr(ctx, "allocations of job "+jobID, err)
	}
	if len(stubs) == 0 {
		// Nomad answers an unknown job's allocations with an empty list.
		if jobID, stubs, err = d.logsTarget(ctx, jobID); err != nil {
			return err
		}
	}
	picked := pickAllocs(stubs, opts.All)
	if len(picked) == 0 {
		return Errorf(KindInput, "job %q has no allocations (yet): `deployer status` shows why", jobID)
	}
	types := opts.Types
	if len(types) == 0 {
		types = []string{"stdout", "stderr"}
	}
	for _, t := range types {
		if t != "stdout" && t != "stderr" {
			return Errorf(KindInput, "log type %q: want stdout or stderr", t)
		}
	}

	type stream struct {
		alloc *nomadapi.Allocation
		task  string
		typ   string
	}
	var streams []stream
	for _, stub := range picked {
		alloc, _, err := d.Nomad.Allocations().Info(stub.ID, qo(ctx, 0, 0))
		if err != nil {
			return d.apiErr(ctx, "allocation "+shortID(stub.ID), err)
		}
		task, err := pickTask(alloc, opts.Task)
		if err != nil {
			return err
		}
		for _, t := range types {
			streams = append(streams, stream{alloc: alloc, task: task, typ: t})
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errs := make([]error, len(streams))
	for i, s := range streams {
		prefix := ""
		if len(picked) > 1 {
			prefix = fmt.Sprintf("%s %s| ", shortID(s.alloc.ID), s.task)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = d.streamLog(ctx, s.alloc, s.task, s.typ, opts.Follow, prefix, d.Out)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return nil
}

// logsTarget is called when jobID has no allocations: it tells a job that does not
// exist apart from one that has none yet, and for a parameterized job (which never
// has allocations itself) returns its newest dispatched job and that one's
// allocations.
func (d *Deployer) logsTarget(ctx context.Context, jobID string) (string, []*nomadapi.AllocationListStub, error) {
	job, _, err := d.Nomad.Jobs().Info(jobID, qo(ctx, 0, 0))
	if err != nil {
		if isNotFound(err) {
			return "", nil, Errorf(KindInput, "no job %q in Nomad (`deployer status` lists the bundle's jobs)", jobID)
		}
		return "", nil, d.apiErr(ctx, "job "+jobID, err)
	}
	if job.ParameterizedJob == nil {
		return jobID, nil, nil
	}
	list, _, err := d.Nomad.Jobs().List(qo(ctx, 0, 0))
	if err != nil {
		return "", nil, d.apiErr(ctx, "list jobs", err)
	}
	var newest *nomadapi.JobListStub
	for _, j := range list {
		if j.ParentID == jobID && (newest == nil || j.CreateIndex > newest.CreateIndex) {
			newest = j
		}
	}
	if newest == nil {
		return "", nil, Errorf(KindInput, "job %q is parameterized and has no dispatched job: `deployer loadtest` dispatches one", jobID)
	}
	d.progressf("    job %q is parameterized: logs of its newest dispatched job %q (pass another dispatched job's ID to choose)", jobID, newest.ID)
	stubs, _, err := d.Nomad.Jobs().Allocations(newest.ID, false, qo(ctx, 0, 0))
	if err != nil {
		return "", nil, d.apiErr(ctx, "allocations of job "+newest.ID, err)
	}
	return newest.ID, stubs, nil
}

// pickAllocs returns the running allocations (all of them with all), newest first;
// when none runs, the newest one.
func pickAllocs(stubs []*nomadapi.AllocationListStub, all bool) []*nomadapi.AllocationListStub {
	sort.Slice(stubs, func(i, j int) bool { return stubs[i].CreateIndex > stubs[j].CreateIndex })
	if all {
		return stubs
	}
	var running []*nomadapi.AllocationListStub
	for _, s := range stubs {
		if s.ClientStatus == "running" || s.ClientStatus == "pending" {
			running = append(running, s)
		}
	}
	if len(running) == 0 && len(stubs) > 0 {
		return stubs[:1]
	}
	return running
}

// pickTask returns want if the allocation's group has it, or the group's only main
// task when want is "".
func pickTask(alloc *nomadapi.Allocation, want string) (string, error) {
	var tasks []string
	if alloc.Job != nil {
		for _, tg := range alloc.Job.TaskGroups {
			if tg.Name == nil || *tg.Name != alloc.TaskGroup {
				continue
			}
			for _, t := range tg.Tasks {
				if t.Lifecycle == nil {
					tasks = append(tasks, t.Name)
				}
			}
			for _, t := range tg.Tasks {
				if t.Name == want {
					return want, nil
				}
			}
		}
	}
	if want == "" && len(tasks) == 1 {
		return tasks[0], nil
	}
	if want == "" && len(tasks) == 0 {
		for name := range alloc.TaskStates {
			tasks = append(tasks, name)
		}
		sort.Strings(tasks)
		if len(tasks) == 1 {
			return tasks[0], nil
		}
	}
	if want != "" {
		return "", Errorf(KindInput, "group %q has no task %q (tasks: %s)", alloc.TaskGroup, want, strings.Join(tasks, ", "))
	}
	return "", Errorf(KindInput, "group %q has several tasks; name one: %s", alloc.TaskGroup, strings.Join(tasks, ", "))
}

// streamLog copies one log stream of a task to w, whole lines at a time.
func (d *Deployer) streamLog(ctx context.Context, alloc *nomadapi.Allocation, task, typ string, follow bool, prefix string, w io.Writer) error {
	cancel := make(chan struct{})
	stop := context.AfterFunc(ctx, func() { close(cancel) })
	defer stop()
	frames, errCh := d.Nomad.AllocFS().Logs(alloc, follow, task, typ, "start", 0, cancel, qo(ctx, 0, 0))
	var pending []byte
	flush := func(all bool) {
		for {
			i := bytes.IndexByte(pending, '\n')
			if i < 0 {
				break
			}
			d.linef(w, "%s%s", prefix, pending[:i])
			pending = pending[i+1:]
		}
		if all && len(pending) > 0 {
			d.linef(w, "%s%s", prefix, pending)
			pending = nil
		}
	}
	for {
		select {
		case <-ctx.Done():
			flush(true)
			return ctx.Err()
		case err := <-errCh:
			flush(true)
			if err == nil {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return d.apiErr(ctx, fmt.Sprintf("%s logs of task %s in allocation %s", typ, task, shortID(alloc.ID)), err)
		case f, ok := <-frames:
			if !ok {
				flush(true)
				return nil
			}
			if f.FileEvent != "" {
				d.Logger.Debug("log file event", "event", f.FileEvent, "file", f.File)
			}
			pending = append(pending, f.Data...)
			flush(false)
		}
	}
}
