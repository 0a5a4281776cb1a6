package deploy

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"

	nomadapi "github.com/hashicorp/nomad/api"
)

// Plan has the Nomad scheduler plan the selected jobs without changing anything and
// prints what registering them would do. Jobs that cannot be placed make a placement
// error.
func (d *Deployer) Plan(ctx context.Context, jobs []string) error {
	parsed, err := d.parse(ctx, jobs)
	if err != nil {
		return err
	}
	var placement []string
	for _, pj := range parsed {
		plan, _, err := d.Nomad.Jobs().Plan(pj.job, true, (&nomadapi.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return d.apiErr(ctx, "plan job "+pj.id(), err)
		}
		change := "unchanged"
		if plan.Diff != nil {
			switch plan.Diff.Type {
			case "Added":
				change = "new job"
			case "Edited":
				change = "changed"
			case "Deleted":
				change = "deleted"
			}
		}
		d.outf("job %q: %s (check-index %d)", pj.id(), change, plan.JobModifyIndex)
		if plan.Annotations != nil {
			for _, g := range slices.Sorted(maps.Keys(plan.Annotations.DesiredTGUpdates)) {
				d.outf("  group %q: %s", g, describeUpdates(plan.Annotations.DesiredTGUpdates[g]))
			}
		}
		if plan.Warnings != "" {
			d.outf("  warnings: %s", strings.TrimSpace(plan.Warnings))
		}
		for _, l := range ExplainPlacement(pj.job, plan.FailedTGAllocs) {
			d.outf("  cannot place: %s", l)
			placement = append(placement, fmt.Sprintf("job %q %s", pj.id(), l))
		}
	}
	if len(placement) > 0 {
		return Errorf(KindPlacement, "cannot place: %s", strings.Join(placement, "; "))
	}
	return nil
}

func describeUpdates(u *nomadapi.DesiredUpdates) string {
	if u == nil {
		return "no change"
	}
	var parts []string
	add := func(n uint64, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(u.Place, "to place")
	add(u.Canary, "canary")
	add(u.DestructiveUpdate, "to replace")
	add(u.InPlaceUpdate, "to update in place")
	add(u.Stop, "to stop")
	add(u.Migrate, "to migrate")
	add(u.Ignore, "unchanged")
	add(u.Preemptions, "preemptions")
	if len(parts) == 0 {
		return "no change"
	}
	return strings.Join(parts, ", ")
}

// ValidateOptions select the checks of Validate.
type ValidateOptions struct {
	Jobs    []string
	Offline bool // only the checks that need no Nomad server
}

// Validate checks the bundle offline (HCL syntax, one job block per file, file()
// targets, variables assigned but never declared), then, unless Offline, has the
// Nomad server parse and validate each selected job with its variables.
func (d *Deployer) Validate(ctx context.Context, opts ValidateOptions) error {
	all, err := d.Bundle.Names()
	if err != nil {
		return err
	}
	var srcs []*JobSource
	for _, n := range all {
		src, err := d.Bundle.Load(n)
		if err != nil {
			return err
		}
		srcs = append(srcs, src)
	}
	if err := d.Vars.CheckDeclared(srcs); err != nil {
		return err
	}
	if _, err := d.Bundle.Select(opts.Jobs); err != nil {
		return err
	}
	d.progressf("==> Offline checks passed (%d job files)", len(srcs))
	if opts.Offline {
		d.outf("valid (offline): %s", strings.Join(all, ", "))
		return nil
	}
	parsed, err := d.parse(ctx, opts.Jobs)
	if err != nil {
		return err
	}
	var problems []string
	for _, pj := range parsed {
		resp, _, err := d.Nomad.Jobs().Validate(pj.job, (&nomadapi.WriteOptions{}).WithContext(ctx))
		if err != nil {
			return d.apiErr(ctx, "validate job "+pj.id(), err)
		}
		if resp.Warnings != "" {
			d.progressf("    job %q warnings: %s", pj.id(), strings.TrimSpace(resp.Warnings))
		}
		if len(resp.ValidationErrors) > 0 || resp.Error != "" {
			errs := resp.ValidationErrors
			if len(errs) == 0 {
				errs = []string{resp.Error}
			}
			problems = append(problems, fmt.Sprintf("%s: %s", pj.src.Path, strings.Join(errs, "; ")))
			continue
		}
		d.outf("valid: %s (job %q)", pj.src.Path, pj.id())
	}
	if len(problems) > 0 {
		return Errorf(KindInput, "invalid: %s", strings.Join(problems, "; "))
	}
	return nil
}
