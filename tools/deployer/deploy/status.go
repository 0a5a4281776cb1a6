package deploy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	consulapi "github.com/hashicorp/consul/api"
	nomadapi "github.com/hashicorp/nomad/api"
)

// StatusReport is what `deployer status` shows.
type StatusReport struct {
	Jobs              []JobStatus        `json:"jobs"`
	Consul            string             `json:"consul"` // "reachable at …" or why not
	PrometheusTargets []PrometheusTarget `json:"prometheus_targets"`
	Notes             []string           `json:"notes,omitempty"`
}

// JobStatus is the state of one bundle job.
type JobStatus struct {
	Name string `json:"name"`
	ID   string `json:"id"`
	// ParentID is, for a running dispatched job (a load test), the parameterized
	// bundle job it was dispatched from.
	ParentID    string             `json:"parent_id,omitempty"`
	Registered  bool               `json:"registered"`
	Type        string             `json:"type,omitempty"`
	Status      string             `json:"status,omitempty"`
	Version     uint64             `json:"version"`
	Stable      bool               `json:"stable"`
	Deployment  *DeploymentStatus  `json:"deployment,omitempty"`
	Allocations []AllocationStatus `json:"allocations"`
	Services    []ServiceInstance  `json:"services"`
}

// DeploymentStatus is a job's latest deployment.
type DeploymentStatus struct {
	ID          string `json:"id"`
	JobVersion  uint64 `json:"job_version"`
	Status      string `json:"status"`
	Description string `json:"description"`
}

// AllocationStatus is one allocation of a job.
type AllocationStatus struct {
	ID            string `json:"id"`
	Group         string `json:"group"`
	Node          string `json:"node"`
	Version       uint64 `json:"job_version"`
	DesiredStatus string `json:"desired_status"`
	ClientStatus  string `json:"client_status"`
	Healthy       *bool  `json:"deployment_healthy,omitempty"`
}

// ServiceInstance is one registered service instance and its health.
type ServiceInstance struct {
	Service  string `json:"service"`
	Registry string `json:"registry"` // "nomad" or "consul"
	ID       string `json:"id"`
	URL      string `json:"url"`
	Health   string `json:"health"` // passing, warning, critical, failing, pending, unknown
	Detail   string `json:"detail,omitempty"`
}

// PrometheusTarget is one scrape target as Prometheus reports it.
type PrometheusTarget struct {
	Job       string `json:"job"`
	Instance  string `json:"instance"`
	Health    string `json:"health"`
	LastError string `json:"last_error,omitempty"`
}

// Status gathers the state of the bundle's jobs, their service instances (Nomad and
// Consul) and Prometheus's targets.
func (d *Deployer) Status(ctx context.Context) (*StatusReport, error) {
	names, err := d.Bundle.Names()
	if err != nil {
		return nil, err
	}
	rep := &StatusReport{Jobs: []JobStatus{}, PrometheusTargets: []PrometheusTarget{}}
	var promURL string
	for _, n := range names {
		src, err := d.Bundle.Load(n)
		if err != nil {
			return nil, err
		}
		js, err := d.jobStatus(ctx, src)
		if err != nil {
			return nil, err
		}
		for _, s := range js.Services {
			if s.Service == "prometheus" && promURL == "" {
				promURL = s.URL
			}
		}
		rep.Jobs = append(rep.Jobs, *js)
		if js.Registered && src.Parameterized {
			children, err := d.runningChildren(ctx, src)
			if err != nil {
				return nil, err
			}
			rep.Jobs = append(rep.Jobs, children...)
		}
	}

	rep.Consul = d.consulInstances(ctx, rep)
	if promURL != "" {
		targets, err := prometheusTargets(ctx, promURL)
		if err != nil {
			rep.Notes = append(rep.Notes, fmt.Sprintf("Prometheus targets: %v", err))
		} else {
			rep.PrometheusTargets = targets
		}
	} else {
		rep.Notes = append(rep.Notes, "no prometheus service registered: targets unknown")
	}
	return rep, nil
}

// runningChildren returns the status of the running (or pending) jobs dispatched from
// the parameterized job src, oldest first.
func (d *Deployer) runningChildren(ctx context.Context, src *JobSource) ([]JobStatus, error) {
	list, _, err := d.Nomad.Jobs().List(qo(ctx, 0, 0))
	if err != nil {
		return nil, d.apiErr(ctx, "list jobs", err)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].CreateIndex < list[j].CreateIndex })
	var out []JobStatus
	for _, j := range list {
		if j.ParentID != src.ID || (j.Status != "running" && j.Status != "pending") {
			continue
		}
		child := *src
		child.ID = j.ID
		js, err := d.jobStatus(ctx, &child)
		if err != nil {
			return nil, err
		}
		if !js.Registered { // purged meanwhile
			continue
		}
		js.ParentID = src.ID
		out = append(out, *js)
	}
	return out, nil
}

func (d *Deployer) jobStatus(ctx context.Context, src *JobSource) (*JobStatus, error) {
	js := &JobStatus{Name: src.Name, ID: src.ID, Allocations: []AllocationStatus{}, Services: []ServiceInstance{}}
	job, _, err := d.Nomad.Jobs().Info(src.ID, qo(ctx, 0, 0))
	if err != nil {
		if isNotFound(err) {
			return js, nil
		}
		return nil, d.apiErr(ctx, "job "+src.ID, err)
	}
	js.Registered = true
	js.Type = deref(job.Type)
	js.Status = deref(job.Status)
	if job.Version != nil {
		js.Version = *job.Version
	}
	if job.Stable != nil {
		js.Stable = *job.Stable
	}
	if js.Type == nomadapi.JobTypeService {
		dep, _, err := d.Nomad.Jobs().LatestDeployment(src.ID, qo(ctx, 0, 0))
		if err != nil {
			return nil, d.apiErr(ctx, "deployment of job "+src.ID, err)
		}
		if dep != nil {
			js.Deployment = &DeploymentStatus{ID: dep.ID, JobVersion: dep.JobVersion, Status: dep.Status, Description: dep.StatusDescription}
		}
	}
	allocs, _, err := d.Nomad.Jobs().Allocations(src.ID, false, qo(ctx, 0, 0))
	if err != nil {
		return nil, d.apiErr(ctx, "allocations of job "+src.ID, err)
	}
	sort.Slice(allocs, func(i, j int) bool { return allocs[i].CreateIndex > allocs[j].CreateIndex })
	for _, a := range allocs {
		as := AllocationStatus{ID: a.ID, Group: a.TaskGroup, Node: a.NodeName, Version: a.JobVersion, DesiredStatus: a.DesiredStatus, ClientStatus: a.ClientStatus}
		if a.DeploymentStatus != nil {
			as.Healthy = a.DeploymentStatus.Healthy
		}
		js.Allocations = append(js.Allocations, as)
	}
	regs, _, err := d.Nomad.Jobs().Services(src.ID, qo(ctx, 0, 0))
	if err != nil {
		return nil, d.apiErr(ctx, "services of job "+src.ID, err)
	}
	checksByAlloc := map[string]nomadapi.AllocCheckStatuses{}
	for _, r := range regs {
		si := ServiceInstance{Service: r.ServiceName, Registry: "nomad", ID: r.ID, URL: fmt.Sprintf("http://%s:%d", r.Address, r.Port), Health: "unknown"}
		checks, ok := checksByAlloc[r.AllocID]
		if !ok {
			checks, err = d.Nomad.Allocations().Checks(r.AllocID, qo(ctx, 0, 0))
			if err != nil {
				checks = nil
			}
			checksByAlloc[r.AllocID] = checks
		}
		seen, failing := 0, []string{}
		for _, c := range checks {
			if c.Service != r.ServiceName {
				continue
			}
			seen++
			if c.Status != "success" {
				failing = append(failing, fmt.Sprintf("check %q %s", c.Check, c.Status))
			}
		}
		switch {
		case seen == 0:
			si.Health = "no checks"
		case len(failing) == 0:
			si.Health = "passing"
		default:
			si.Health = "failing"
			sort.Strings(failing)
			si.Detail = strings.Join(failing, ", ")
		}
		js.Services = append(js.Services, si)
	}
	sort.Slice(js.Services, func(i, j int) bool { return js.Services[i].ID < js.Services[j].ID })
	return js, nil
}

// consulStatusTimeout bounds the Consul queries of Status: Consul is optional.
const consulStatusTimeout = 5 * time.Second

// consulInstances adds the Consul health of the bundle's services to rep and says
// whether Consul answered.
func (d *Deployer) consulInstances(ctx context.Context, rep *StatusReport) string {
	if d.Consul == nil {
		return "not configured"
	}
	ctx, cancel := context.WithTimeout(ctx, consulStatusTimeout)
	defer cancel()
	q := (&consulapi.QueryOptions{}).WithContext(ctx)
	services, _, err := d.Consul.Catalog().Services(q)
	if err != nil {
		return fmt.Sprintf("does not answer at %s: %v", d.ConsulAddress, err)
	}
	for i := range rep.Jobs {
		for _, name := range slices.Sorted(maps.Keys(services)) {
			if name != rep.Jobs[i].ID && name != d.HealthService {
				continue
			}
			if name == d.HealthService && rep.Jobs[i].ID != d.HealthService {
				continue
			}
			entries, _, err := d.Consul.Health().Service(name, "", false, q)
			if err != nil {
				rep.Notes = append(rep.Notes, fmt.Sprintf("Consul health of %s: %v", name, err))
				continue
			}
			for _, e := range entries {
				addr := e.Service.Address
				if addr == "" {
					addr = e.Node.Address
				}
				si := ServiceInstance{Service: name, Registry: "consul", ID: e.Service.ID,
					URL: fmt.Sprintf("http://%s:%d", addr, e.Service.Port), Health: e.Checks.AggregatedStatus()}
				var bad []string
				for _, c := range e.Checks {
					if c.Status != consulapi.HealthPassing {
						bad = append(bad, fmt.Sprintf("check %q %s: %s", c.Name, c.Status, strings.TrimSpace(c.Output)))
					}
				}
				si.Detail = strings.Join(bad, "; ")
				rep.Jobs[i].Services = append(rep.Jobs[i].Services, si)
			}
		}
	}
	return "reachable at " + d.ConsulAddress
}

// prometheusTargets reads Prometheus's /api/v1/targets.
func prometheusTargets(ctx context.Context, base string) ([]PrometheusTarget, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(base, "/")+"/api/v1/targets?state=active", nil)
	if err != nil {
		return nil, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("GET %s: %s: %s", req.URL, resp.Status, strings.TrimSpace(string(body)))
	}
	var body struct {
		Data struct {
			ActiveTargets []struct {
				Labels     map[string]string `json:"labels"`
				ScrapePool string            `json:"scrapePool"`
				Health     string            `json:"health"`
				LastError  string            `json:"lastError"`
			} `json:"activeTargets"`
		} `json:"data"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return nil, fmt.Errorf("decode Prometheus targets: %w", err)
	}
	out := []PrometheusTarget{}
	for _, t := range body.Data.ActiveTargets {
		job := t.Labels["job"]
		if job == "" {
			job = t.ScrapePool
		}
		out = append(out, PrometheusTarget{Job: job, Instance: t.Labels["instance"], Health: t.Health, LastError: t.LastError})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Job != out[j].Job {
			return out[i].Job < out[j].Job
		}
		return out[i].Instance < out[j].Instance
	})
	return out, nil
}

// WriteStatus prints rep as tables.
func WriteStatus(w io.Writer, rep *StatusReport) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "JOB\tTYPE\tSTATUS\tVERSION\tDEPLOYMENT")
	for _, j := range rep.Jobs {
		if !j.Registered {
			fmt.Fprintf(tw, "%s\t-\tnot registered\t-\t-\n", j.ID)
			continue
		}
		dep := "-"
		if j.Deployment != nil {
			dep = fmt.Sprintf("%s %s (v%d): %s", shortID(j.Deployment.ID), j.Deployment.Status, j.Deployment.JobVersion, j.Deployment.Description)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\n", j.ID, j.Type, j.Status, j.Version, dep)
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "ALLOCATION\tJOB\tGROUP\tNODE\tVERSION\tDESIRED\tSTATUS\tHEALTHY")
	for _, j := range rep.Jobs {
		for _, a := range j.Allocations {
			h := "-"
			if a.Healthy != nil {
				h = fmt.Sprint(*a.Healthy)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", shortID(a.ID), j.ID, a.Group, a.Node, a.Version, a.DesiredStatus, a.ClientStatus, h)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "SERVICE\tREGISTRY\tADDRESS\tHEALTH\tDETAIL")
	for _, j := range rep.Jobs {
		for _, s := range j.Services {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Service, s.Registry, s.URL, s.Health, s.Detail)
		}
	}
	fmt.Fprintln(tw)
	fmt.Fprintln(tw, "PROMETHEUS TARGET\tINSTANCE\tHEALTH\tLAST ERROR")
	for _, t := range rep.PrometheusTargets {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.Job, t.Instance, t.Health, t.LastError)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(w, "\nConsul: %s\n", rep.Consul)
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
	return nil
}

func isNotFound(err error) bool {
	var ure nomadapi.UnexpectedResponseError
	if errors.As(err, &ure) && ure.HasStatusCode() {
		return ure.StatusCode() == http.StatusNotFound
	}
	// Only Nomad's own wording: a bare "404" also matches addresses such as
	// 127.0.0.1:40412 in a transport error, which would read as "not registered".
	return strings.Contains(err.Error(), "Unexpected response code: 404")
}

func deref[T any](p *T) T {
	var zero T
	if p == nil {
		return zero
	}
	return *p
}
