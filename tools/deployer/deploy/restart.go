package deploy

import (
	"context"
	"strings"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
)

// Restart restarts the tasks of every running allocation of the selected jobs in
// place, one allocation at a time, waiting after each until its service checks pass
// again, so that a group of several instances keeps serving.
func (d *Deployer) Restart(ctx context.Context, jobs []string) error {
	names, err := d.Bundle.Select(jobs)
	if err != nil {
		return err
	}
	var restarted []string
	for _, n := range names {
		src, err := d.Bundle.Load(n)
		if err != nil {
			return err
		}
		stubs, _, err := d.Nomad.Jobs().Allocations(src.ID, false, qo(ctx, 0, 0))
		if err != nil {
			if isNotFound(err) {
				continue
			}
			return d.apiErr(ctx, "allocations of job "+src.ID, err)
		}
		for _, stub := range stubs {
			if stub.ClientStatus != "running" || stub.DesiredStatus != "run" {
				continue
			}
			alloc, _, err := d.Nomad.Allocations().Info(stub.ID, qo(ctx, 0, 0))
			if err != nil {
				return d.apiErr(ctx, "allocation "+shortID(stub.ID), err)
			}
			wctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), writeTimeout)
			err = d.Nomad.Allocations().RestartAllTasks(alloc, (&nomadapi.QueryOptions{}).WithContext(wctx))
			cancel()
			if err != nil {
				return d.apiErr(ctx, "restart allocation "+shortID(stub.ID), err)
			}
			d.progressf("==> Restarted allocation %s of job %q", shortID(stub.ID), src.ID)
			restarted = append(restarted, src.ID+"/"+shortID(stub.ID))
			if err := d.waitAllocChecks(ctx, alloc.ID); err != nil {
				return err
			}
		}
	}
	if len(restarted) == 0 {
		d.outf("nothing running to restart")
		return nil
	}
	d.outf("restarted: %s", strings.Join(restarted, ", "))
	return nil
}

// waitAllocChecks waits until every Nomad check of the allocation succeeds (an
// allocation without checks passes at once). Check results live on the client, so
// this polls them every checkPollWait.
func (d *Deployer) waitAllocChecks(ctx context.Context, allocID string) error {
	// A restarted task's old check results may still read success for a moment.
	t := time.NewTimer(checkPollWait)
	defer t.Stop()
	last := ""
	for {
		select {
		case <-ctx.Done():
			return d.healthTimeout(ctx, "of allocation "+shortID(allocID), last)
		case <-t.C:
		}
		checks, err := d.Nomad.Allocations().Checks(allocID, qo(ctx, 0, 0))
		if err != nil {
			return d.apiErr(ctx, "checks of allocation "+shortID(allocID), err)
		}
		failing := failingChecks(checks)
		if len(failing) == 0 {
			return nil
		}
		if s := strings.Join(failing, "; "); s != last {
			d.progressf("    allocation %s: %s", shortID(allocID), s)
			last = s
		}
		t.Reset(checkPollWait)
	}
}
