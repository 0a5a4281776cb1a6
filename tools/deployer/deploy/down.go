package deploy

import (
	"context"
	"fmt"
	"slices"
	"strings"

	nomadapi "github.com/hashicorp/nomad/api"
)

// DownOptions select what Down stops.
type DownOptions struct {
	Jobs  []string // bundle job names; empty: all
	Purge bool     // also remove the jobs from Nomad's state
}

// Down stops the selected bundle jobs (and the jobs dispatched from parameterized
// ones), then waits until none of their allocations runs.
func (d *Deployer) Down(ctx context.Context, opts DownOptions) error {
	names, err := d.Bundle.Select(opts.Jobs)
	if err != nil {
		return err
	}
	// Stop in reverse submission order: load test and dashboards before the server.
	var ids []string
	for i := len(names) - 1; i >= 0; i-- {
		src, err := d.Bundle.Load(names[i])
		if err != nil {
			return err
		}
		ids = append(ids, src.ID)
	}
	all, _, err := d.Nomad.Jobs().List(qo(ctx, 0, 0))
	if err != nil {
		return d.apiErr(ctx, "list jobs", err)
	}
	var stopped, already []string
	for _, id := range ids {
		var targets []*nomadapi.JobListStub
		for _, j := range all {
			if j.ParentID == id {
				targets = append(targets, j)
			}
		}
		for _, j := range all {
			if j.ID == id {
				targets = append(targets, j)
			}
		}
		if len(targets) == 0 {
			d.progressf("    job %q is not registered", id)
			continue
		}
		for _, t := range targets {
			if t.Stop {
				d.progressf("    job %q is already stopped", t.ID)
				already = append(already, t.ID)
				continue
			}
			if t.Status == "dead" {
				d.progressf("    job %q has already finished (status dead)", t.ID)
				already = append(already, t.ID)
				continue
			}
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
			_, _, err := d.Nomad.Jobs().Deregister(t.ID, false, (&nomadapi.WriteOptions{}).WithContext(wctx))
			cancel()
			if err != nil && !isNotFound(err) {
				return d.apiErr(ctx, "stop job "+t.ID, err)
			}
			d.progressf("==> Stopped job %q", t.ID)
			stopped = append(stopped, t.ID)
		}
	}
	for _, id := range slices.Concat(stopped, already) { // an earlier stop may still be draining
		if err := d.waitStopped(ctx, id); err != nil {
			return err
		}
	}
	if opts.Purge {
		// Purge only once the allocations are stopped, so that they stay visible
		// while they drain.
		for _, id := range slices.Concat(stopped, already) {
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
			_, _, err := d.Nomad.Jobs().Deregister(id, true, (&nomadapi.WriteOptions{}).WithContext(wctx))
			cancel()
			if err != nil && !isNotFound(err) {
				return d.apiErr(ctx, "purge job "+id, err)
			}
			d.progressf("==> Purged job %q", id)
		}
	}
	switch {
	case len(stopped) > 0 && len(already) > 0:
		d.outf("stopped: %s (already stopped: %s)", strings.Join(stopped, ", "), strings.Join(already, ", "))
	case len(stopped) > 0:
		d.outf("stopped: %s", strings.Join(stopped, ", "))
	case len(already) > 0:
		d.outf("nothing was running (already stopped: %s)", strings.Join(already, ", "))
	default:
		d.outf("nothing was running")
	}
	return nil
}

// waitStopped blocks until no allocation of the job runs or is pending on a client.
func (d *Deployer) waitStopped(ctx context.Context, jobID string) error {
	var index uint64
	for {
		allocs, meta, err := d.Nomad.Jobs().Allocations(jobID, true, qo(ctx, index, blockingWait))
		if err != nil {
			if isNotFound(err) {
				return nil
			}
			if ctx.Err() != nil {
				return d.apiErr(ctx, fmt.Sprintf("waiting for job %s to stop", jobID), err)
			}
			return d.apiErr(ctx, "allocations of job "+jobID, err)
		}
		index = meta.LastIndex
		live := 0
		for _, a := range allocs {
			if a.ClientStatus == "running" || a.ClientStatus == "pending" {
				live++
			}
		}
		if live == 0 {
			return nil
		}
		d.progressf("    job %q: %d allocations still stopping", jobID, live)
	}
}
