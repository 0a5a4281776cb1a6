// Package nomadfake is an httptest stand-in for the parts of the Nomad HTTP API the
// deployer uses, written from Nomad's API documentation (jobs, job, evaluations,
// deployments, allocations, services, client fs): the same paths, methods, JSON
// shapes, X-Nomad-Index headers and blocking-query behaviour (?index=N&wait=D holds
// the request until the object's index passes N or the wait ends).
//
// Tests script it: each evaluation, deployment or allocation is a sequence of
// versions that a blocking query walks through one step at a time, so a watcher that
// does not pass the last index back sees no progress.
package nomadfake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	nomadapi "github.com/hashicorp/nomad/api"
)

// Server is a fake Nomad agent. Set its fields before the first request; read
// Requests and the recorded fields under Lock/Unlock or after the test.
type Server struct {
	*httptest.Server

	mu sync.Mutex

	// Jobs returned by /v1/jobs/parse, keyed by the job block's label.
	Parsed map[string]*nomadapi.Job
	// ParseErrors makes /v1/jobs/parse fail with 400 and this text for a label.
	ParseErrors map[string]string
	// Plans are the /v1/job/:id/plan responses (default: an added job, no failures).
	Plans map[string]*nomadapi.JobPlanResponse
	// RegisterError makes POST /v1/jobs fail with this status and body.
	RegisterError *HTTPError
	// Evals are scripted evaluations, by ID; RegisterEval names the evaluation a
	// registration of a job creates.
	Evals        map[string]*Versions[nomadapi.Evaluation]
	RegisterEval map[string]string
	Deployments  map[string]*Versions[nomadapi.Deployment]
	// LatestDeployment is the job's latest deployment ID.
	LatestDeployment map[string]string
	DeploymentAllocs map[string][]*nomadapi.AllocationListStub
	// Registered are the jobs /v1/job/:id knows; others are 404.
	Registered map[string]*nomadapi.Job
	JobList    []*nomadapi.JobListStub
	// JobAllocs are a job's allocations, scripted: down tests walk them to stopped.
	JobAllocs map[string]*Versions[[]*nomadapi.AllocationListStub]
	Allocs    map[string]*Versions[nomadapi.Allocation]
	Checks    map[string]nomadapi.AllocCheckStatuses
	// Services are the registrations of a service name (/v1/service/:name) and of
	// a job (/v1/job/:id/services).
	Services    map[string][]*nomadapi.ServiceRegistration
	JobServices map[string][]*nomadapi.ServiceRegistration
	// Logs are the log contents by "allocID/task/type", sent in frames of
	// LogFrameSize bytes.
	Logs         map[string]string
	LogFrameSize int
	Files        map[string]string // "allocID/path" → content for /v1/client/fs/cat
	// Variables are the Nomad variables, by "namespace/path" (/v1/var/:path); others
	// are 404. VariableError makes every variable read fail with it.
	Variables     map[string]*nomadapi.Variable
	VariableError *HTTPError
	Dispatch      *nomadapi.JobDispatchResponse
	Validate      map[string]*nomadapi.JobValidateResponse

	// Recorded requests.
	Requests      []string // "METHOD /path?query"
	ParseRequests []nomadapi.JobsParseRequest
	Registrations []nomadapi.JobRegisterRequest
	Deregistered  []string // "id" or "id?purge"
	Dispatched    []nomadapi.JobDispatchRequest
}

// HTTPError is a scripted error response.
type HTTPError struct {
	Status int
	Body   string
}

// Versions is a scripted object: the successive states a blocking query reports.
// Version i has index Base+i.
type Versions[T any] struct {
	Base  uint64
	Steps []T
}

// Script returns versions starting at index 100.
func Script[T any](steps ...T) *Versions[T] { return &Versions[T]{Base: 100, Steps: steps} }

// at returns the state for a query that already saw index seen: the next version
// after seen (one step at a time), and whether there is a newer one than seen.
func (v *Versions[T]) at(seen uint64) (T, uint64, bool) {
	last := v.Base + uint64(len(v.Steps)) - 1
	if seen < v.Base {
		return v.Steps[0], v.Base, true
	}
	if seen >= last {
		return v.Steps[len(v.Steps)-1], last, false
	}
	next := seen + 1
	return v.Steps[next-v.Base], next, true
}

// New starts a fake Nomad with empty scripts.
func New() *Server {
	s := &Server{
		Parsed: map[string]*nomadapi.Job{}, ParseErrors: map[string]string{}, Plans: map[string]*nomadapi.JobPlanResponse{},
		Evals: map[string]*Versions[nomadapi.Evaluation]{}, RegisterEval: map[string]string{},
		Deployments: map[string]*Versions[nomadapi.Deployment]{}, LatestDeployment: map[string]string{},
		DeploymentAllocs: map[string][]*nomadapi.AllocationListStub{}, Registered: map[string]*nomadapi.Job{},
		JobAllocs: map[string]*Versions[[]*nomadapi.AllocationListStub]{}, Allocs: map[string]*Versions[nomadapi.Allocation]{},
		Checks: map[string]nomadapi.AllocCheckStatuses{}, Services: map[string][]*nomadapi.ServiceRegistration{},
		JobServices: map[string][]*nomadapi.ServiceRegistration{}, Logs: map[string]string{}, LogFrameSize: 7,
		Files: map[string]string{}, Validate: map[string]*nomadapi.JobValidateResponse{},
		Variables: map[string]*nomadapi.Variable{},
	}
	s.Server = httptest.NewServer(http.HandlerFunc(s.serve))
	return s
}

// Lock guards the scripts and records while the server runs.
func (s *Server) Lock() { s.mu.Lock() }

// Unlock releases Lock.
func (s *Server) Unlock() { s.mu.Unlock() }

// Count returns how many recorded requests start with prefix ("GET /v1/evaluation/").
func (s *Server) Count(prefix string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, r := range s.Requests {
		if strings.HasPrefix(r, prefix) {
			n++
		}
	}
	return n
}

var jobLabel = regexp.MustCompile(`(?m)^\s*job\s+"([^"]+)"`)

func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	s.Requests = append(s.Requests, r.Method+" "+r.URL.RequestURI())
	s.mu.Unlock()

	p := r.URL.Path
	seen, _ := strconv.ParseUint(r.URL.Query().Get("index"), 10, 64)
	switch {
	case isWrite(r) && p == "/v1/jobs/parse":
		var req nomadapi.JobsParseRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		s.mu.Lock()
		s.ParseRequests = append(s.ParseRequests, req)
		m := jobLabel.FindStringSubmatch(req.JobHCL)
		var job *nomadapi.Job
		var perr string
		if m != nil {
			job, perr = s.Parsed[m[1]], s.ParseErrors[m[1]]
		}
		s.mu.Unlock()
		switch {
		case perr != "":
			http.Error(w, "Failed to parse job: "+perr, 400)
		case job == nil:
			http.Error(w, "Failed to parse job: input.hcl:1,1-1: no job", 400)
		default:
			s.json(w, job, 0)
		}

	case isWrite(r) && p == "/v1/jobs":
		var req nomadapi.JobRegisterRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		s.mu.Lock()
		s.Registrations = append(s.Registrations, req)
		rerr := s.RegisterError
		id := ""
		if req.Job != nil && req.Job.ID != nil {
			id = *req.Job.ID
		}
		eval := s.RegisterEval[id]
		s.mu.Unlock()
		if rerr != nil {
			http.Error(w, rerr.Body, rerr.Status)
			return
		}
		s.json(w, nomadapi.JobRegisterResponse{EvalID: eval, EvalCreateIndex: 50, JobModifyIndex: 51}, 51)

	case r.Method == http.MethodGet && p == "/v1/jobs":
		s.mu.Lock()
		list := s.JobList
		s.mu.Unlock()
		if list == nil {
			list = []*nomadapi.JobListStub{}
		}
		s.json(w, list, 10)

	case strings.HasPrefix(p, "/v1/job/"):
		s.serveJob(w, r, strings.TrimPrefix(p, "/v1/job/"), seen)

	case isWrite(r) && p == "/v1/validate/job":
		var req nomadapi.JobValidateRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		s.mu.Lock()
		resp := s.Validate[deref(req.Job.ID)]
		s.mu.Unlock()
		if resp == nil {
			resp = &nomadapi.JobValidateResponse{DriverConfigValidated: true}
		}
		s.json(w, resp, 0)

	case strings.HasPrefix(p, "/v1/evaluation/"):
		id := strings.TrimPrefix(p, "/v1/evaluation/")
		s.mu.Lock()
		v := s.Evals[id]
		s.mu.Unlock()
		if v == nil {
			http.Error(w, "eval not found", 404)
			return
		}
		serveVersions(s, w, r, v, seen)

	case strings.HasPrefix(p, "/v1/deployment/allocations/"):
		id := strings.TrimPrefix(p, "/v1/deployment/allocations/")
		s.mu.Lock()
		allocs := s.DeploymentAllocs[id]
		s.mu.Unlock()
		if allocs == nil {
			allocs = []*nomadapi.AllocationListStub{}
		}
		s.json(w, allocs, 10)

	case strings.HasPrefix(p, "/v1/deployment/"):
		id := strings.TrimPrefix(p, "/v1/deployment/")
		s.mu.Lock()
		v := s.Deployments[id]
		s.mu.Unlock()
		if v == nil {
			http.Error(w, "deployment not found", 404)
			return
		}
		serveVersions(s, w, r, v, seen)

	case strings.HasPrefix(p, "/v1/client/allocation/") && strings.HasSuffix(p, "/checks"):
		id := strings.TrimSuffix(strings.TrimPrefix(p, "/v1/client/allocation/"), "/checks")
		s.mu.Lock()
		c := s.Checks[id]
		s.mu.Unlock()
		if c == nil {
			c = nomadapi.AllocCheckStatuses{}
		}
		s.json(w, c, 0)

	case strings.HasPrefix(p, "/v1/client/allocation/") && strings.HasSuffix(p, "/restart"):
		s.json(w, struct{}{}, 0)

	case strings.HasPrefix(p, "/v1/allocation/"):
		id := strings.TrimPrefix(p, "/v1/allocation/")
		s.mu.Lock()
		v := s.Allocs[id]
		s.mu.Unlock()
		if v == nil {
			http.Error(w, "alloc not found", 404)
			return
		}
		serveVersions(s, w, r, v, seen)

	case strings.HasPrefix(p, "/v1/service/"):
		name := strings.TrimPrefix(p, "/v1/service/")
		s.mu.Lock()
		regs := s.Services[name]
		s.mu.Unlock()
		if regs == nil {
			regs = []*nomadapi.ServiceRegistration{}
		}
		// Registrations do not change in these scripts: a blocking query waits.
		if seen >= 20 {
			wait(r)
		}
		s.json(w, regs, 20)

	case strings.HasPrefix(p, "/v1/client/fs/logs/"):
		s.serveLogs(w, r, strings.TrimPrefix(p, "/v1/client/fs/logs/"))

	case strings.HasPrefix(p, "/v1/client/fs/cat/"):
		id := strings.TrimPrefix(p, "/v1/client/fs/cat/")
		s.mu.Lock()
		body, ok := s.Files[id+"/"+r.URL.Query().Get("path")]
		s.mu.Unlock()
		if !ok {
			http.Error(w, "file not found", 404)
			return
		}
		_, _ = io.WriteString(w, body)

	case r.Method == http.MethodGet && strings.HasPrefix(p, "/v1/var/"):
		ns := r.URL.Query().Get("namespace")
		if ns == "" {
			ns = "default"
		}
		s.mu.Lock()
		v, verr := s.Variables[ns+"/"+strings.TrimPrefix(p, "/v1/var/")], s.VariableError
		s.mu.Unlock()
		switch {
		case verr != nil:
			http.Error(w, verr.Body, verr.Status)
		case v == nil:
			http.Error(w, "variable not found", 404)
		default:
			s.json(w, v, 80)
		}

	case strings.HasPrefix(p, "/v1/node/"):
		http.Error(w, "node not found", 404) // logs then go through the server

	default:
		http.Error(w, "nomadfake: no route for "+r.Method+" "+p, 404)
	}
}

func (s *Server) serveJob(w http.ResponseWriter, r *http.Request, rest string, seen uint64) {
	id, sub, _ := strings.Cut(rest, "/")
	// Dispatched job IDs contain a slash: "loadtest/dispatch-…[/sub]".
	if strings.HasPrefix(sub, "dispatch-") {
		child, more, _ := strings.Cut(sub, "/")
		id, sub = id+"/"+child, more
	}
	switch {
	case sub == "" && r.Method == http.MethodGet:
		s.mu.Lock()
		job := s.Registered[id]
		s.mu.Unlock()
		if job == nil {
			http.Error(w, "job not found", 404)
			return
		}
		s.json(w, job, 30)
	case sub == "" && r.Method == http.MethodDelete:
		rec := id
		if r.URL.Query().Get("purge") == "true" {
			rec += "?purge"
		}
		s.mu.Lock()
		s.Deregistered = append(s.Deregistered, rec)
		s.mu.Unlock()
		s.json(w, nomadapi.JobDeregisterResponse{EvalID: "stop-eval"}, 60)
	case sub == "plan":
		s.mu.Lock()
		plan := s.Plans[id]
		s.mu.Unlock()
		if plan == nil {
			plan = &nomadapi.JobPlanResponse{JobModifyIndex: 0, Diff: &nomadapi.JobDiff{Type: "Added", ID: id}}
		}
		s.json(w, plan, 0)
	case sub == "deployment":
		s.mu.Lock()
		v := s.Deployments[s.LatestDeployment[id]]
		s.mu.Unlock()
		if v == nil {
			_, _ = io.WriteString(w, "null")
			return
		}
		dep, idx, _ := v.at(^uint64(0))
		s.json(w, dep, idx)
	case sub == "allocations":
		s.mu.Lock()
		v := s.JobAllocs[id]
		s.mu.Unlock()
		if v == nil {
			s.json(w, []*nomadapi.AllocationListStub{}, 40)
			return
		}
		serveVersions(s, w, r, v, seen)
	case sub == "services":
		s.mu.Lock()
		regs := s.JobServices[id]
		s.mu.Unlock()
		if regs == nil {
			regs = []*nomadapi.ServiceRegistration{}
		}
		s.json(w, regs, 20)
	case sub == "dispatch":
		var req nomadapi.JobDispatchRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		s.mu.Lock()
		s.Dispatched = append(s.Dispatched, req)
		resp := s.Dispatch
		s.mu.Unlock()
		if resp == nil {
			http.Error(w, "not a parameterized job", 400)
			return
		}
		s.json(w, resp, 70)
	default:
		http.Error(w, "nomadfake: no route for job sub-resource "+sub, 404)
	}
}

func serveVersions[T any](s *Server, w http.ResponseWriter, r *http.Request, v *Versions[T], seen uint64) {
	s.mu.Lock()
	state, idx, newer := v.at(seen)
	s.mu.Unlock()
	if !newer && r.URL.Query().Has("index") {
		wait(r)
	}
	s.json(w, state, idx)
}

// wait holds a blocking query without news until its wait time or the client's
// cancellation.
func wait(r *http.Request) {
	d, err := time.ParseDuration(r.URL.Query().Get("wait"))
	if err != nil || d <= 0 {
		d = 5 * time.Minute
	}
	select {
	case <-r.Context().Done():
	case <-time.After(d):
	}
}

func (s *Server) serveLogs(w http.ResponseWriter, r *http.Request, allocID string) {
	q := r.URL.Query()
	key := allocID + "/" + q.Get("task") + "/" + q.Get("type")
	s.mu.Lock()
	content, ok := s.Logs[key]
	size := s.LogFrameSize
	s.mu.Unlock()
	if !ok {
		http.Error(w, fmt.Sprintf("unknown task %q", q.Get("task")), 404)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	var offset int64
	for len(content) > 0 {
		n := min(size, len(content))
		_ = enc.Encode(nomadapi.StreamFrame{Offset: offset, Data: []byte(content[:n]), File: "alloc/logs/" + q.Get("task") + "." + q.Get("type") + ".0"})
		offset += int64(n)
		content = content[n:]
		if f, ok := w.(http.Flusher); ok {
			f.Flush()
		}
	}
	if q.Get("follow") == "true" {
		<-r.Context().Done()
	}
}

func (s *Server) json(w http.ResponseWriter, v any, index uint64) {
	w.Header().Set("Content-Type", "application/json")
	if index > 0 {
		w.Header().Set("X-Nomad-Index", strconv.FormatUint(index, 10))
		w.Header().Set("X-Nomad-KnownLeader", "true")
		w.Header().Set("X-Nomad-LastContact", "0")
	}
	_ = json.NewEncoder(w).Encode(v)
}

// isWrite: Nomad takes writes as PUT or POST.
func isWrite(r *http.Request) bool { return r.Method == http.MethodPut || r.Method == http.MethodPost }

func deref(p *string) string {
	if p == nil {
		return ""
	}
	return *p
}
