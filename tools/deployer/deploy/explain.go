package deploy

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
)

// ExplainPlacement describes in words why the scheduler could not place the
// allocations of each task group in failed, using job (may be nil) to say what the
// group asked for. One line per group, in group name order.
func ExplainPlacement(job *nomadapi.Job, failed map[string]*nomadapi.AllocationMetric) []string {
	groups := make([]string, 0, len(failed))
	for g := range failed {
		groups = append(groups, g)
	}
	sort.Strings(groups)
	var lines []string
	for _, g := range groups {
		lines = append(lines, explainGroup(g, findGroup(job, g), failed[g]))
	}
	return lines
}

func findGroup(job *nomadapi.Job, name string) *nomadapi.TaskGroup {
	if job == nil {
		return nil
	}
	for _, tg := range job.TaskGroups {
		if tg.Name != nil && *tg.Name == name {
			return tg
		}
	}
	return nil
}

func explainGroup(name string, tg *nomadapi.TaskGroup, m *nomadapi.AllocationMetric) string {
	if m == nil {
		return fmt.Sprintf("group %q: cannot be placed", name)
	}
	var why []string
	for _, reason := range slices.Sorted(maps.Keys(m.ConstraintFiltered)) {
		why = append(why, constraintReason(reason, tg))
	}
	for _, reason := range slices.Sorted(maps.Keys(m.ClassFiltered)) {
		why = append(why, fmt.Sprintf("node class %s filtered", reason))
	}
	for _, dim := range slices.Sorted(maps.Keys(m.DimensionExhausted)) {
		why = append(why, dimensionReason(dim, tg))
	}
	for _, q := range m.QuotaExhausted {
		why = append(why, "quota exhausted: "+q)
	}
	if len(why) == 0 && m.NodesEvaluated == 0 {
		why = append(why, noNodesReason(m))
	}
	if len(why) == 0 {
		why = append(why, "no node fits")
	}

	var counts []string
	counts = append(counts, plural(m.NodesEvaluated, "node")+" evaluated")
	if m.NodesFiltered > 0 {
		counts = append(counts, fmt.Sprintf("%d filtered by %s", m.NodesFiltered, filterKinds(m)))
	}
	if m.NodesExhausted > 0 {
		counts = append(counts, fmt.Sprintf("%d out of resources", m.NodesExhausted))
	}
	line := fmt.Sprintf("group %q: %s (%s)", name, strings.Join(why, "; "), strings.Join(counts, ", "))
	if m.CoalescedFailures > 0 {
		line += fmt.Sprintf(" — %d more allocations failed the same way", m.CoalescedFailures)
	}
	return line
}

func noNodesReason(m *nomadapi.AllocationMetric) string {
	pool := m.NodePool
	if pool == "" {
		pool = "default"
	}
	if len(m.NodesAvailable) == 0 {
		return fmt.Sprintf("no ready client node in node pool %q of the job's datacenters", pool)
	}
	var dcs []string
	for _, dc := range slices.Sorted(maps.Keys(m.NodesAvailable)) {
		dcs = append(dcs, fmt.Sprintf("%s: %d", dc, m.NodesAvailable[dc]))
	}
	return fmt.Sprintf("no ready client node in node pool %q (available per datacenter: %s)", pool, strings.Join(dcs, ", "))
}

func filterKinds(m *nomadapi.AllocationMetric) string {
	var kinds []string
	for _, reason := range slices.Sorted(maps.Keys(m.ConstraintFiltered)) {
		switch reason {
		case "missing devices":
			kinds = append(kinds, "device")
		case "missing drivers":
			kinds = append(kinds, "driver")
		case "missing compatible host volumes":
			kinds = append(kinds, "host volume")
		default:
			kinds = append(kinds, "constraint")
		}
	}
	if len(m.ClassFiltered) > 0 {
		kinds = append(kinds, "class")
	}
	kinds = dedupe(kinds)
	if len(kinds) == 0 {
		return "constraints"
	}
	return strings.Join(kinds, " and ")
}

func constraintReason(reason string, tg *nomadapi.TaskGroup) string {
	switch reason {
	case "missing devices":
		devs := groupDevices(tg)
		if len(devs) == 0 {
			return "no node has the requested devices"
		}
		return "no node has " + strings.Join(devs, " and ")
	case "missing drivers":
		drivers := groupDrivers(tg)
		if len(drivers) == 0 {
			return "no node has the task driver enabled"
		}
		return "no node has the task driver " + strings.Join(drivers, ", ") + " enabled (check the client's plugin configuration)"
	case "missing compatible host volumes":
		var vols []string
		if tg != nil {
			for _, name := range slices.Sorted(maps.Keys(tg.Volumes)) {
				if v := tg.Volumes[name]; v != nil && v.Type == "host" {
					vols = append(vols, fmt.Sprintf("%q", v.Source))
				}
			}
		}
		if len(vols) == 0 {
			return "no node has the requested host volume"
		}
		return "no node has the host volume " + strings.Join(vols, ", ") + " (declare it in the client's host_volume configuration)"
	}
	return "constraint not met: " + reason
}

func dimensionReason(dim string, tg *nomadapi.TaskGroup) string {
	switch {
	case dim == "memory":
		if mb := groupSum(tg, func(r *nomadapi.Resources) *int { return r.MemoryMB }); mb > 0 {
			return fmt.Sprintf("not enough free memory (the group asks for %d MiB)", mb)
		}
		return "not enough free memory"
	case dim == "cpu":
		if mhz := groupSum(tg, func(r *nomadapi.Resources) *int { return r.CPU }); mhz > 0 {
			return fmt.Sprintf("not enough free CPU (the group asks for %d MHz)", mhz)
		}
		return "not enough free CPU"
	case dim == "disk":
		return "not enough free disk"
	case strings.HasPrefix(dim, "devices: "):
		devs := groupDevices(tg)
		msg := "not enough free devices (" + strings.TrimPrefix(dim, "devices: ") + ")"
		if len(devs) > 0 {
			msg += "; the group asks for " + strings.Join(devs, " and ")
		}
		return msg
	case strings.HasPrefix(dim, "network: "):
		return "network: " + strings.TrimPrefix(dim, "network: ") + " (a static port is already taken?)"
	}
	return "exhausted " + dim
}

// groupDevices describes each device request of the group's tasks, e.g.
// "1 device nvidia/gpu with ${device.attr.memory} >= 16 GiB".
func groupDevices(tg *nomadapi.TaskGroup) []string {
	if tg == nil {
		return nil
	}
	var out []string
	for _, t := range tg.Tasks {
		if t.Resources == nil {
			continue
		}
		for _, dev := range t.Resources.Devices {
			count := uint64(1)
			if dev.Count != nil {
				count = *dev.Count
			}
			s := fmt.Sprintf("%d %s %s", count, pluralWord(int(count), "device"), dev.Name)
			var cons []string
			for _, c := range dev.Constraints {
				cons = append(cons, describeConstraint(c))
			}
			if len(cons) > 0 {
				s += " with " + strings.Join(cons, " and ")
			}
			out = append(out, s)
		}
	}
	return out
}

func describeConstraint(c *nomadapi.Constraint) string {
	l := strings.TrimSuffix(strings.TrimPrefix(c.LTarget, "${"), "}")
	l = strings.TrimPrefix(l, "device.attr.")
	return strings.TrimSpace(fmt.Sprintf("%s %s %s", l, c.Operand, c.RTarget))
}

func groupDrivers(tg *nomadapi.TaskGroup) []string {
	if tg == nil {
		return nil
	}
	var out []string
	for _, t := range tg.Tasks {
		out = append(out, fmt.Sprintf("%q", t.Driver))
	}
	return dedupe(out)
}

func groupSum(tg *nomadapi.TaskGroup, f func(*nomadapi.Resources) *int) int {
	if tg == nil {
		return 0
	}
	sum := 0
	for _, t := range tg.Tasks {
		if t.Resources != nil {
			if v := f(t.Resources); v != nil {
				sum += *v
			}
		}
	}
	return sum
}

// ExplainTaskStates summarises the task states of a failed or unhealthy allocation:
// the last events of each task that failed or restarted.
func ExplainTaskStates(states map[string]*nomadapi.TaskState, maxEvents int) []string {
	var lines []string
	for _, name := range slices.Sorted(maps.Keys(states)) {
		st := states[name]
		if st == nil {
			continue
		}
		if !st.Failed && st.Restarts == 0 && st.State == "running" {
			continue
		}
		head := fmt.Sprintf("task %q is %s", name, st.State)
		if st.Failed {
			head += " (failed)"
		}
		if st.Restarts > 0 {
			head += fmt.Sprintf(", restarted %s", plural(int(st.Restarts), "time"))
		}
		lines = append(lines, head)
		events := st.Events
		if len(events) > maxEvents {
			events = events[len(events)-maxEvents:]
		}
		for _, ev := range events {
			lines = append(lines, "  "+describeEvent(ev))
		}
	}
	return lines
}

func describeEvent(ev *nomadapi.TaskEvent) string {
	msg := ev.DisplayMessage
	if msg == "" {
		msg = ev.Message
	}
	if msg == "" && ev.DriverError != "" {
		msg = ev.DriverError
	}
	if ev.Type == "Terminated" && msg == "" {
		msg = fmt.Sprintf("exit code %d", ev.ExitCode)
	}
	ts := ""
	if ev.Time > 0 {
		ts = time.Unix(0, ev.Time).UTC().Format("15:04:05") + " "
	}
	return fmt.Sprintf("%s%s: %s", ts, ev.Type, msg)
}

func dedupe(in []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, s := range in {
		if !seen[s] {
			seen[s] = true
			out = append(out, s)
		}
	}
	return out
}

func plural(n int, word string) string { return fmt.Sprintf("%d %s", n, pluralWord(n, word)) }

func pluralWord(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}
