package loadtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"
)

// fakeServer stands in for the inference server: /infer answers JSON with
// generated_tokens = max_length (or 16), /metrics answers text, and /v1/completions
// streams `chunks` events `gap` apart after `firstDelay`.
type fakeServer struct {
	firstDelay time.Duration
	gap        time.Duration
	chunks     int
	usage      bool // send a usage chunk with completion_tokens = 2·chunks before [DONE], when asked

	mu   sync.Mutex
	seen []string // method + path + query of every request
}

func (f *fakeServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.seen = append(f.seen, r.Method+" "+r.URL.RequestURI())
	f.mu.Unlock()
	switch r.URL.Path {
	case "/infer":
		n := 16
		if v := r.URL.Query().Get("max_length"); v != "" {
			n, _ = strconv.Atoi(v)
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"text":"some text","prompt_tokens":5,"generated_tokens":%d,"finish_reason":"length"}`, n)
	case "/metrics":
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, "model_inference_latency_seconds_count 1")
	case "/v1/completions":
		var body completionRequest
		if err := json.NewDecoder(r.Body).Decode(&body); err != nil || !body.Stream {
			http.Error(w, `{"error":"bad body"}`, http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		fl := w.(http.Flusher)
		fl.Flush()
		time.Sleep(f.firstDelay)
		for i := range f.chunks {
			if i > 0 {
				time.Sleep(f.gap)
			}
			fmt.Fprintf(w, "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"text\":\"tok%d \",\"index\":0,\"finish_reason\":null}]}\n\n", i)
			fl.Flush()
		}
		if f.usage && body.StreamOptions != nil && body.StreamOptions.IncludeUsage {
			fmt.Fprintf(w, "data: {\"id\":\"cmpl-1\",\"object\":\"text_completion\",\"choices\":[{\"text\":\"\",\"index\":0,\"finish_reason\":\"length\"}],\"usage\":{\"completion_tokens\":%d}}\n\n", 2*f.chunks)
		}
		fmt.Fprint(w, "data: [DONE]\n\n")
	default:
		http.NotFound(w, r)
	}
}

func (f *fakeServer) requests() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.seen...)
}

func newTargets(t *testing.T, srv *httptest.Server) Targeter {
	t.Helper()
	ts, err := NewStaticTargets(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	return ts
}

func only(s Scenario) Weights {
	var w Weights
	w[s] = 1
	return w
}

func within(got, want, tol float64) bool { return got >= want-tol && got <= want+tol }

func findStats(t *testing.T, s *Summary, sc Scenario) Stats {
	t.Helper()
	for _, st := range s.Scenarios {
		if st.Scenario == sc.String() {
			return st
		}
	}
	t.Fatalf("no stats for scenario %s in %+v", sc, s.Scenarios)
	return Stats{}
}
