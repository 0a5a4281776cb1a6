package server

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inferstack/inferstack/inference/telemetry"
)

func TestCompletion(t *testing.T) {
	f := newFake()
	s, m := newTestServer(t, Config{}, f)
	w := do(s.Handler(), "POST", "/v1/completions", "application/json",
		`{"model":"fake-model","prompt":["What are the symptoms of"],"max_tokens":2,"temperature":0,"seed":7,"n":1,"logprobs":null,"echo":false,"user":"u1"}`)
	if w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	got := decode[completion](t, w.Body.Bytes())
	if !strings.HasPrefix(got.ID, "cmpl-") || got.Object != "text_completion" || got.Model != "fake-model" || got.Created == 0 ||
		len(got.Choices) != 1 || got.Choices[0].Text != " fever and" || got.Choices[0].FinishReason == nil || *got.Choices[0].FinishReason != "length" ||
		got.Usage == nil || *got.Usage != (usage{PromptTokens: 5, CompletionTokens: 2, TotalTokens: 7}) {
		t.Errorf("unexpected completion %s", w.Body)
	}
	if !strings.Contains(w.Body.String(), `"logprobs":null`) {
		t.Errorf("logprobs must be null: %s", w.Body)
	}
	if req := f.lastRequest(); req.MaxNewTokens != 2 || req.Temperature != 0 || !req.HasSeed || req.Seed != 7 {
		t.Errorf("engine got %+v", req)
	}
	// Defaults: OpenAI's max_tokens 16, temperature 1, top_p 1.
	do(s.Handler(), "POST", "/v1/completions", "application/json", `{"prompt":"hi"}`)
	if req := f.lastRequest(); req.MaxNewTokens != 16 || req.Temperature != 1 || req.TopP != 1 || req.TopK != 0 {
		t.Errorf("defaults: engine got %+v", req)
	}
	if n := testutil.CollectAndCount(m.InferenceLatency, "model_inference_latency_seconds"); n != 1 {
		t.Errorf("model_inference_latency_seconds has %d series, want 1 (endpoint=/v1/completions)", n)
	}
}

func TestCompletionValidation(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		param      string
		query      string
	}{
		{"no body", "", 400, "", ""},
		// OpenAI's API has no query parameters: one is an error, not silently ignored.
		{"query parameter", `{"prompt":"hi"}`, 400, "max_tokens", "max_tokens=2"},
		{"duplicate member", `{"prompt":"hi","max_tokens":2,"max_tokens":3}`, 400, "max_tokens", ""},
		{"unknown model", `{"model":"gpt-4","prompt":"hi"}`, 404, "model", ""},
		{"token prompt", `{"prompt":[1,2,3]}`, 400, "prompt", ""},
		{"batched prompt", `{"prompt":["a","b"]}`, 400, "prompt", ""},
		{"missing prompt", `{"model":"fake-model"}`, 400, "prompt", ""},
		{"max_tokens zero", `{"prompt":"hi","max_tokens":0}`, 400, "max_tokens", ""},
		{"n two", `{"prompt":"hi","n":2}`, 400, "n", ""},
		{"best_of", `{"prompt":"hi","best_of":3}`, 400, "best_of", ""},
		{"echo", `{"prompt":"hi","echo":true}`, 400, "echo", ""},
		{"logprobs", `{"prompt":"hi","logprobs":5}`, 400, "logprobs", ""},
		{"penalty", `{"prompt":"hi","presence_penalty":0.5}`, 400, "presence_penalty", ""},
		{"logit_bias", `{"prompt":"hi","logit_bias":{"50256":-100}}`, 400, "logit_bias", ""},
		{"stream not bool", `{"prompt":"hi","stream":"yes"}`, 400, "stream", ""},
		{"stream_options without stream", `{"prompt":"hi","stream_options":{"include_usage":true}}`, 400, "stream_options", ""},
		{"stream_options unknown", `{"prompt":"hi","stream":true,"stream_options":{"x":1}}`, 400, "stream_options", ""},
		{"unknown field", `{"prompt":"hi","temprature":1}`, 400, "temprature", ""},
		{"prompt too long", `{"prompt":"` + strings.Repeat("w ", 70) + `"}`, 422, "prompt", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, _ := newTestServer(t, Config{}, newFake())
			target := "/v1/completions"
			if tc.query != "" {
				target += "?" + tc.query
			}
			w := do(s.Handler(), "POST", target, "application/json", tc.body)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			got := decode[openAIErrorBody](t, w.Body.Bytes())
			param := ""
			if got.Error.Param != nil {
				param = *got.Error.Param
			}
			if param != tc.param || got.Error.Message == "" || got.Error.Type == "" || got.Error.Code == nil {
				t.Errorf("error %s, want param %q", w.Body, tc.param)
			}
		})
	}
}

// readEvents reads SSE "data:" payloads until EOF.
func readEvents(t *testing.T, r io.Reader) []string {
	t.Helper()
	var events []string
	sc := bufio.NewScanner(r)
	var blank int
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			blank++
			continue
		}
		data, ok := strings.CutPrefix(line, "data: ")
		if !ok {
			t.Fatalf("not an SSE data line: %q", line)
		}
		events = append(events, data)
	}
	if blank != len(events) {
		t.Errorf("%d events but %d blank separators", len(events), blank)
	}
	return events
}

func TestCompletionStream(t *testing.T) {
	for _, includeUsage := range []bool{false, true} {
		f := newFake()
		s, _ := newTestServer(t, Config{}, f)
		srv := httptest.NewServer(s.Handler())
		body := `{"prompt":"hi","stream":true,"max_tokens":5}`
		if includeUsage {
			body = `{"prompt":"hi","stream":true,"max_tokens":5,"stream_options":{"include_usage":true}}`
		}
		resp, err := http.Post(srv.URL+"/v1/completions", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream; charset=utf-8" {
			t.Fatalf("status %d content type %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		events := readEvents(t, resp.Body)
		resp.Body.Close()
		srv.Close()
		want := 3 + 1 + 1 // deltas, final, [DONE]
		if includeUsage {
			want++
		}
		if len(events) != want || events[len(events)-1] != "[DONE]" {
			t.Fatalf("events %q", events)
		}
		var text strings.Builder
		var ids = map[string]bool{}
		for i, e := range events[:3] {
			var c completion
			if err := json.Unmarshal([]byte(e), &c); err != nil {
				t.Fatalf("event %d: %v", i, err)
			}
			if c.Object != "text_completion" || len(c.Choices) != 1 || c.Choices[0].FinishReason != nil || c.Usage != nil {
				t.Errorf("delta chunk %d: %s", i, e)
			}
			ids[c.ID] = true
			text.WriteString(c.Choices[0].Text)
		}
		if text.String() != " fever and cough" {
			t.Errorf("streamed text %q", text.String())
		}
		var final completion
		_ = json.Unmarshal([]byte(events[3]), &final)
		ids[final.ID] = true
		if len(ids) != 1 || final.Choices[0].FinishReason == nil || *final.Choices[0].FinishReason != "length" {
			t.Errorf("final chunk %s (ids %v)", events[3], ids)
		}
		if includeUsage {
			var u completion
			_ = json.Unmarshal([]byte(events[4]), &u)
			if u.Usage == nil || u.Usage.CompletionTokens != 3 || u.Usage.PromptTokens != 1 || len(u.Choices) != 0 {
				t.Errorf("usage chunk %s", events[4])
			}
		}
	}
}

func TestCompletionStreamErrorBeforeFirstDelta(t *testing.T) {
	s, _ := newTestServer(t, Config{}, newFake())
	w := do(s.Handler(), "POST", "/v1/completions", "application/json", `{"prompt":"`+strings.Repeat("w ", 70)+`","stream":true}`)
	if w.Code != 422 || !strings.HasPrefix(w.Header().Get("Content-Type"), "application/json") {
		t.Fatalf("status %d type %q: %s", w.Code, w.Header().Get("Content-Type"), w.Body)
	}
}

func TestCompletionStreamDisconnectCancels(t *testing.T) {
	f := newFake()
	f.block = make(chan struct{})
	s, m := newTestServer(t, Config{}, f)
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", srv.URL+"/v1/completions", strings.NewReader(`{"prompt":"hi","stream":true}`))
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// The first delta arrives before the fake blocks: proof that events are flushed.
	line, err := bufio.NewReader(resp.Body).ReadString('\n')
	if err != nil || !strings.Contains(line, "fever") {
		t.Fatalf("first event %q, %v", line, err)
	}
	cancel()
	resp.Body.Close()
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(m.InFlight) != 0 || testutil.ToFloat64(m.Failures.WithLabelValues(telemetry.ReasonCancelled)) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("after hang-up: in flight %v, cancelled %v", testutil.ToFloat64(m.InFlight), testutil.ToFloat64(m.Failures.WithLabelValues(telemetry.ReasonCancelled)))
		}
		time.Sleep(5 * time.Millisecond)
	}
}
