package deploy

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sort"
	"strconv"
	"strings"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// checkPollWait paces the re-reading of Nomad check results: they live on the
// clients, so no blocking query reports their changes; the registrations' blocking
// query wakes up at the latest after this long.
const checkPollWait = 2 * time.Second

// declaredService is a service block of a job with checks.
type declaredService struct {
	name     string
	provider string
	checks   int
	count    int // instances expected: the count of its group
}

// declaredServices lists the job's services (group and task level) with their
// expected number of instances.
func declaredServices(job *nomadapi.Job) []declaredService {
	var out []declaredService
	for _, tg := range job.TaskGroups {
		count := 1
		if tg.Count != nil {
			count = *tg.Count
		}
		add := func(s *nomadapi.Service) {
			p := s.Provider
			if p == "" {
				p = nomadapi.ServiceProviderConsul
			}
			out = append(out, declaredService{name: s.Name, provider: p, checks: len(s.Checks), count: count})
		}
		for _, s := range tg.Services {
			add(s)
		}
		for _, t := range tg.Tasks {
			for _, s := range t.Services {
				add(s)
			}
		}
	}
	return out
}

// consulAddrVar is the job variable with which the bundle's inference job tells its
// server where to register itself in Consul; an empty value turns registration off.
const consulAddrVar = "consul_http_addr"

// waitHealthy waits until every Nomad-native service of the job that has checks has
// as many passing instances as its group's count, and, when Consul answers, until
// the health service (the inference server's self-registration) has that many
// passing instances in Consul, unless the job's consul_http_addr variable is empty
// (the server then does not register in Consul).
func (d *Deployer) waitHealthy(ctx context.Context, pj *parsedJob) error {
	for _, s := range declaredServices(pj.job) {
		if s.checks == 0 || s.name == "" || s.count == 0 {
			continue
		}
		switch s.provider {
		case providerNomad:
			if err := d.waitNomadService(ctx, pj.id(), s); err != nil {
				return err
			}
		default:
			if err := d.waitConsulService(ctx, s.name, s.count); err != nil {
				return err
			}
		}
	}
	if d.HealthService != "" && d.Consul != nil {
		for _, s := range declaredServices(pj.job) {
			if s.name != d.HealthService || s.provider != providerNomad || s.count == 0 {
				continue
			}
			if addr, origin, ok := d.Vars.StringValue(pj.src, consulAddrVar); ok && strings.TrimSpace(addr) == "" {
				d.progressf("    Consul: job %q does not register service %q in Consul (%s is empty, %s): not waiting for it there",
					pj.id(), s.name, consulAddrVar, origin)
				break
			}
			if err := d.waitConsulService(ctx, s.name, s.count); err != nil {
				return err
			}
		}
	}
	return nil
}

func (d *Deployer) waitNomadService(ctx context.Context, jobID string, s declaredService) error {
	var index uint64
	last := ""
	for {
		regs, meta, err := d.Nomad.Services().Get(s.name, qo(ctx, index, checkPollWait))
		if err != nil {
			if ctx.Err() != nil {
				return d.healthTimeout(ctx, s.name, last)
			}
			return d.apiErr(ctx, "service "+s.name, err)
		}
		index = meta.LastIndex
		passing, detail := d.nomadPassing(ctx, jobID, regs)
		state := fmt.Sprintf("    service %q: %d/%d instances passing their checks%s", s.name, passing, s.count, detail)
		if state != last {
			d.progressf("%s", state)
			last = state
		}
		if passing >= s.count {
			return nil
		}
	}
}

// nomadPassing counts the job's registrations of a service whose checks all succeed,
// and describes the first failing check.
func (d *Deployer) nomadPassing(ctx context.Context, jobID string, regs []*nomadapi.ServiceRegistration) (int, string) {
	passing := 0
	detail := ""
	for _, r := range regs {
		if r.JobID != jobID {
			continue
		}
		checks, err := d.Nomad.Allocations().Checks(r.AllocID, qo(ctx, 0, 0))
		if err != nil {
			continue
		}
		ok, seen := true, 0
		for _, c := range checks {
			if c.Service != r.ServiceName {
				continue
			}
			seen++
			if c.Status != "success" {
				ok = false
				if detail == "" {
					detail = fmt.Sprintf(" (allocation %s: check %q %s", shortID(r.AllocID), c.Check, c.Status)
					if c.StatusCode != 0 {
						detail += fmt.Sprintf(", HTTP %d", c.StatusCode)
					}
					detail += ")"
				}
			}
		}
		if ok && seen > 0 {
			passing++
		}
	}
	return passing, detail
}

// waitConsulService waits for want passing instances of name in Consul. When Consul
// does not answer at all it says so and returns nil: Consul is optional.
func (d *Deployer) waitConsulService(ctx context.Context, name string, want int) error {
	if d.Consul == nil {
		return nil
	}
	var index uint64
	last := ""
	for {
		q := (&consulapi.QueryOptions{WaitIndex: index, WaitTime: blockingWait}).WithContext(ctx)
		entries, meta, err := d.Consul.Health().Service(name, "", false, q)
		if err != nil {
			if ctx.Err() != nil {
				return d.healthTimeout(ctx, name+" (Consul)", last)
			}
			if index == 0 && isConnError(err) {
				d.progressf("    Consul does not answer at %s: skipping the Consul health check of %q (set CONSUL_HTTP_ADDR)", d.ConsulAddress, name)
				return nil
			}
			return Errorf(KindAPI, "consul health of %s: %w", name, err)
		}
		index = meta.LastIndex
		passing := 0
		for _, e := range entries {
			if e.Checks.AggregatedStatus() == consulapi.HealthPassing {
				passing++
			}
		}
		state := fmt.Sprintf("    Consul: service %q: %d registered (%d passing), want %d passing", name, len(entries), passing, want)
		if state != last {
			d.progressf("%s", state)
			last = state
		}
		if passing >= want {
			return nil
		}
	}
}

func (d *Deployer) healthTimeout(ctx context.Context, name, last string) error {
	kind := KindInterrupted
	if ctx.Err() == context.DeadlineExceeded {
		kind = KindTimeout
	}
	return Errorf(kind, "waiting for service %s to pass its checks: %v (last state: %s)", name, ctx.Err(), strings.TrimSpace(last))
}

func isConnError(err error) bool {
	var ne net.Error
	s := err.Error()
	return errors.As(err, &ne) || strings.Contains(s, "connection refused") || strings.Contains(s, "no such host") || strings.Contains(s, "dial tcp")
}

// ServiceAddress is one registered instance of a service.
type ServiceAddress struct {
	Service string `json:"service"`
	Job     string `json:"job"`
	AllocID string `json:"alloc_id,omitempty"`
	URL     string `json:"url"`
}

// jobAddresses returns the Nomad-native service registrations of a job.
func (d *Deployer) jobAddresses(ctx context.Context, jobID string) ([]ServiceAddress, error) {
	regs, _, err := d.Nomad.Jobs().Services(jobID, qo(ctx, 0, 0))
	if err != nil {
		return nil, d.apiErr(ctx, "services of job "+jobID, err)
	}
	var out []ServiceAddress
	for _, r := range regs {
		out = append(out, ServiceAddress{
			Service: r.ServiceName, Job: r.JobID, AllocID: r.AllocID,
			URL: "http://" + net.JoinHostPort(r.Address, strconv.Itoa(r.Port)),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Service != out[j].Service {
			return out[i].Service < out[j].Service
		}
		return out[i].URL < out[j].URL
	})
	return out, nil
}

var serviceTitles = map[string]string{
	"inference":  "API",
	"prometheus": "Prometheus",
	"grafana":    "Grafana",
}

// printAddresses prints the address of every service of the submitted jobs and
// the Consul UI.
func (d *Deployer) printAddresses(ctx context.Context, subs []*submitted) error {
	d.progressf("==> Bundle is up")
	for _, s := range subs {
		if s.jobType() != nomadapi.JobTypeService {
			continue
		}
		addrs, err := d.jobAddresses(ctx, s.id())
		if err != nil {
			return err
		}
		for _, a := range addrs {
			title := serviceTitles[a.Service]
			if title == "" {
				title = a.Service
			}
			d.outf("%-12s %s", title, a.URL)
		}
	}
	if d.Consul != nil {
		note := ""
		q := (&consulapi.QueryOptions{}).WithContext(ctx)
		if _, err := d.Consul.Status().LeaderWithQueryOptions(q); err != nil {
			note = "  (Consul does not answer there)"
		}
		d.outf("%-12s %s/ui/%s", "Consul UI", d.ConsulAddress, note)
	}
	return nil
}

// providerNomad is the provider value of Nomad-native services.
const providerNomad = "nomad"
