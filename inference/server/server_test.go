package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inferstack/inferstack/inference/engine"
	"github.com/inferstack/inferstack/inference/telemetry"
)

type errResp struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
		Param   string `json:"param"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

func decode[T any](t *testing.T, body []byte) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("response is not the expected JSON: %v\n%s", err, body)
	}
	return v
}

func TestSeedCurl(t *testing.T) {
	f := newFake()
	s, m := newTestServer(t, Config{}, f)
	w := do(s.Handler(), http.MethodPost, "/infer?prompt=What%20are%20the%20symptoms%20of", "", "")
	if w.Code != http.StatusOK {
		t.Fatalf("status %d, body %s", w.Code, w.Body)
	}
	var got inferResponse
	if err := json.Unmarshal(w.Body.Bytes(), &got); err != nil {
		t.Fatal(err)
	}
	if got.Prompt != "What are the symptoms of" || got.GeneratedText != " fever and cough" || got.PromptTokens != 5 ||
		got.GeneratedTokens != 3 || got.FinishReason != "length" || got.Model != "fake-model" || got.RequestID == "" {
		t.Errorf("unexpected response %+v", got)
	}
	if got.RequestID != w.Header().Get("X-Request-ID") {
		t.Errorf("request id %q differs from header %q", got.RequestID, w.Header().Get("X-Request-ID"))
	}
	req := f.lastRequest()
	if req.MaxNewTokens != 50 || req.Temperature != InferDefaults.Temperature || req.TopK != InferDefaults.TopK || req.TopP != InferDefaults.TopP || req.HasSeed {
		t.Errorf("engine got %+v, want the documented defaults", req)
	}
	if v := testutil.ToFloat64(m.Requests.WithLabelValues("/infer", "200")); v != 1 {
		t.Errorf("inference_requests_total{endpoint=/infer,code=200} = %v, want 1", v)
	}
	if n := testutil.CollectAndCount(m.InferenceLatency); n != 1 {
		t.Errorf("model_inference_latency_seconds has %d series, want 1", n)
	}
	for _, check := range []string{CheckPromptPresent, CheckPromptEncoding, CheckPromptLength} {
		if v := testutil.ToFloat64(m.DataChecks.WithLabelValues(check, "pass")); v != 1 {
			t.Errorf("data_validation_checks_total{check=%s,result=pass} = %v, want 1", check, v)
		}
	}
}

func TestInferParameters(t *testing.T) {
	tests := []struct {
		name, target, ctype, body string
		want                      engine.Request
	}{
		{
			name:   "json body with everything",
			target: "/infer", ctype: "application/json; charset=utf-8",
			body: `{"prompt":"a b c","max_new_tokens":7,"temperature":0,"top_k":5,"top_p":0.5,"seed":18446744073709551615,"stop":["\n","END"],"ignore_eos":true}`,
			want: engine.Request{Prompt: "a b c", MaxNewTokens: 7, Temperature: 0, TopK: 5, TopP: 0.5, Seed: 18446744073709551615, HasSeed: true, Stop: []string{"\n", "END"}, IgnoreEOS: true},
		},
		{
			name:   "max_length counts the prompt",
			target: "/infer?prompt=one+two+three+four+five&max_length=20",
			want:   engine.Request{Prompt: "one two three four five", MaxNewTokens: 64, Temperature: 0.7, TopK: 50, TopP: 0.95, MaxLength: 20},
		},
		{
			name:   "max_length not above the prompt generates one token, as Hugging Face does",
			target: "/infer?prompt=a+b+c&max_length=3",
			want:   engine.Request{Prompt: "a b c", MaxNewTokens: 64, Temperature: 0.7, TopK: 50, TopP: 0.95, MaxLength: 3},
		},
		{
			name:   "max_new_tokens wins over max_length",
			target: "/infer?prompt=a+b&max_length=20&max_new_tokens=3",
			want:   engine.Request{Prompt: "a b", MaxNewTokens: 3, Temperature: 0.7, TopK: 50, TopP: 0.95},
		},
		{
			name:   "query and body combine",
			target: "/infer?temperature=1.5&stop=x&stop=y", ctype: "application/json", body: `{"prompt":"hi","seed":3}`,
			want: engine.Request{Prompt: "hi", MaxNewTokens: 50, Temperature: 1.5, TopK: 50, TopP: 0.95, Seed: 3, HasSeed: true, Stop: []string{"x", "y"}},
		},
		{
			name:   "integral decimals and null are accepted",
			target: "/infer", ctype: "application/json", body: `{"prompt":"hi","max_new_tokens":4.0,"stop":"END","seed":null}`,
			want: engine.Request{Prompt: "hi", MaxNewTokens: 4, Temperature: 0.7, TopK: 50, TopP: 0.95, Stop: []string{"END"}},
		},
		{
			name:   "integral decimal seed, and -0 temperature is 0",
			target: "/infer", ctype: "application/json", body: `{"prompt":"hi","seed":5.0,"temperature":-0}`,
			want: engine.Request{Prompt: "hi", MaxNewTokens: 50, Temperature: 0, TopK: 50, TopP: 0.95, Seed: 5, HasSeed: true},
		},
		{
			name:   "empty body with a content type is fine",
			target: "/infer?prompt=hi&ignore_eos=1", ctype: "application/x-www-form-urlencoded",
			want: engine.Request{Prompt: "hi", MaxNewTokens: 50, Temperature: 0.7, TopK: 50, TopP: 0.95, IgnoreEOS: true},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFake()
			s, _ := newTestServer(t, Config{}, f)
			w := do(s.Handler(), http.MethodPost, tc.target, tc.ctype, tc.body)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d: %s", w.Code, w.Body)
			}
			got := f.lastRequest()
			if fmt.Sprintf("%+v", got) != fmt.Sprintf("%+v", tc.want) {
				t.Errorf("engine request\n got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestInferValidation(t *testing.T) {
	long := strings.Repeat("word ", 70)
	tests := []struct {
		name, target, ctype, body string
		status                    int
		param, check              string
	}{
		{"missing prompt", "/infer", "", "", 400, "prompt", CheckPromptPresent},
		{"empty prompt", "/infer?prompt=", "", "", 400, "prompt", CheckPromptPresent},
		{"blank prompt", "/infer?prompt=%20%09%0A", "", "", 400, "prompt", CheckPromptPresent},
		{"null prompt", "/infer", "application/json", `{"prompt":null}`, 400, "prompt", CheckPromptPresent},
		{"prompt not a string", "/infer", "application/json", `{"prompt":5}`, 400, "prompt", CheckPromptPresent},
		{"invalid utf-8 in query", "/infer?prompt=abc%FF", "", "", 400, "prompt", CheckPromptEncoding},
		{"nul byte", "/infer?prompt=a%00b", "", "", 400, "prompt", CheckPromptEncoding},
		{"escape control char in json", "/infer", "application/json", `{"prompt":"a\u001bb"}`, 400, "prompt", CheckPromptEncoding},
		{"C1 control char", "/infer?prompt=a%C2%85b", "", "", 400, "prompt", CheckPromptEncoding},
		{"prompt over the context window", "/infer?prompt=" + strings.ReplaceAll(long, " ", "+"), "", "", 422, "prompt", CheckPromptLength},
		{"max_length not numeric", "/infer?prompt=hi&max_length=abc", "", "", 400, "max_length", "max_length"},
		{"max_length zero", "/infer?prompt=hi&max_length=0", "", "", 400, "max_length", "max_length"},
		{"max_length over context", "/infer?prompt=hi&max_length=65", "", "", 400, "max_length", "max_length"},
		{"max_new_tokens negative", "/infer?prompt=hi&max_new_tokens=-1", "", "", 400, "max_new_tokens", "max_new_tokens"},
		{"max_new_tokens fraction", "/infer?prompt=hi&max_new_tokens=1.5", "", "", 400, "max_new_tokens", "max_new_tokens"},
		{"max_new_tokens over limit", "/infer?prompt=hi&max_new_tokens=65", "", "", 400, "max_new_tokens", "max_new_tokens"},
		{"max_new_tokens huge", "/infer?prompt=hi&max_new_tokens=99999999999999999999999", "", "", 400, "max_new_tokens", "max_new_tokens"},
		{"max_new_tokens string in json", "/infer", "application/json", `{"prompt":"hi","max_new_tokens":"5"}`, 400, "max_new_tokens", "max_new_tokens"},
		{"temperature NaN", "/infer?prompt=hi&temperature=NaN", "", "", 400, "temperature", "temperature"},
		{"temperature Inf", "/infer?prompt=hi&temperature=Inf", "", "", 400, "temperature", "temperature"},
		{"temperature too high", "/infer?prompt=hi&temperature=2.01", "", "", 400, "temperature", "temperature"},
		{"temperature negative", "/infer?prompt=hi&temperature=-0.1", "", "", 400, "temperature", "temperature"},
		{"temperature overflow", "/infer?prompt=hi&temperature=1e400", "", "", 400, "temperature", "temperature"},
		{"temperature bool", "/infer", "application/json", `{"prompt":"hi","temperature":true}`, 400, "temperature", "temperature"},
		{"top_k negative", "/infer?prompt=hi&top_k=-1", "", "", 400, "top_k", "top_k"},
		{"top_p zero", "/infer?prompt=hi&top_p=0", "", "", 400, "top_p", "top_p"},
		{"top_p above one", "/infer?prompt=hi&top_p=1.01", "", "", 400, "top_p", "top_p"},
		{"seed negative", "/infer?prompt=hi&seed=-1", "", "", 400, "seed", "seed"},
		{"seed too big", "/infer?prompt=hi&seed=18446744073709551616", "", "", 400, "seed", "seed"},
		{"seed text", "/infer?prompt=hi&seed=abc", "", "", 400, "seed", "seed"},
		{"stop empty", "/infer?prompt=hi&stop=", "", "", 400, "stop", "stop"},
		{"too many stops", "/infer?prompt=hi&stop=a&stop=b&stop=c&stop=d&stop=e", "", "", 400, "stop", "stop"},
		{"stop wrong type", "/infer", "application/json", `{"prompt":"hi","stop":[1]}`, 400, "stop", "stop"},
		{"stop control", "/infer", "application/json", `{"prompt":"hi","stop":"\u0000"}`, 400, "stop", "stop"},
		{"ignore_eos not bool", "/infer?prompt=hi&ignore_eos=maybe", "", "", 400, "ignore_eos", "ignore_eos"},
		{"unknown query parameter", "/infer?prompt=hi&temprature=1", "", "", 400, "temprature", CheckUnknownParam},
		{"unknown json member", "/infer", "application/json", `{"promt":"hi"}`, 400, "promt", CheckUnknownParam},
		{"given in query and body", "/infer?prompt=hi", "application/json", `{"prompt":"ho"}`, 400, "prompt", CheckDuplicateParam},
		{"repeated query parameter", "/infer?prompt=hi&prompt=ho", "", "", 400, "prompt", CheckDuplicateParam},
		{"repeated json member", "/infer", "application/json", `{"prompt":"hi","max_new_tokens":3,"prompt":"there"}`, 400, "prompt", CheckDuplicateParam},
		{"seed fraction", "/infer?prompt=hi&seed=1.5", "", "", 400, "seed", "seed"},
		{"malformed query", "/infer?prompt=%zz", "", "", 400, "", CheckQuery},
		{"malformed json", "/infer", "application/json", `{"prompt":`, 400, "", CheckJSON},
		{"trailing data", "/infer", "application/json", `{"prompt":"hi"} {}`, 400, "", CheckJSON},
		{"array body", "/infer", "application/json", `["hi"]`, 400, "", CheckJSON},
		{"null body", "/infer", "application/json", `null`, 400, "", CheckJSON},
		{"invalid utf-8 body", "/infer", "application/json", "{\"prompt\":\"\xff\"}", 400, "", CheckJSON},
		{"lone surrogate escape", "/infer", "application/json", `{"prompt":"a\ud800b"}`, 400, "", CheckJSON},
		{"form body", "/infer", "application/x-www-form-urlencoded", "prompt=hi", 415, "", CheckContentType},
		{"text body", "/infer", "text/plain", "hi", 415, "", CheckContentType},
		{"latin-1 json", "/infer", "application/json; charset=latin1", `{"prompt":"hi"}`, 415, "", CheckContentType},
		{"body too large", "/infer", "application/json", `{"prompt":"` + strings.Repeat("a", 2000) + `"}`, 413, "", CheckBodySize},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s, m := newTestServer(t, Config{MaxBodyBytes: 1024}, newFake())
			w := do(s.Handler(), http.MethodPost, tc.target, tc.ctype, tc.body)
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if ct := w.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
				t.Errorf("Content-Type %q, want JSON", ct)
			}
			got := decode[errResp](t, w.Body.Bytes())
			if got.Error.Param != tc.param || got.Error.Code == "" || got.Error.Message == "" || got.RequestID == "" {
				t.Errorf("error body %+v, want param %q with code, message and request id", got, tc.param)
			}
			if v := testutil.ToFloat64(m.DataChecks.WithLabelValues(tc.check, "fail")); v != 1 {
				t.Errorf("data_validation_checks_total{check=%q,result=fail} = %v, want 1", tc.check, v)
			}
			if v := testutil.ToFloat64(m.ValidationChecks.WithLabelValues(tc.check)); v != 0 {
				t.Errorf("validation_checks{check=%q} = %v, want 0", tc.check, v)
			}
			reason := telemetry.ReasonValidation
			if tc.status == 413 {
				reason = telemetry.ReasonTooLarge
			}
			if v := testutil.ToFloat64(m.Failures.WithLabelValues(reason)); v != 1 {
				t.Errorf("inference_request_failures_total{reason=%q} = %v, want 1", reason, v)
			}
		})
	}
}

func TestEngineErrors(t *testing.T) {
	tests := []struct {
		err        error
		status     int
		code       string
		retryAfter string
	}{
		{engine.ErrQueueFull, 429, CodeQueueFull, "1"},
		{engine.ErrQueueTimeout, 503, CodeQueueTimeout, "2"},
		{engine.ErrDraining, 503, CodeDraining, "5"},
		{fmt.Errorf("wrapped: %w", engine.ErrClosed), 503, CodeDraining, "5"},
		{errors.New("onnxruntime exploded"), 500, CodeInternal, ""},
	}
	for _, tc := range tests {
		for _, path := range []string{"/infer", "/v1/completions"} {
			t.Run(tc.code+path, func(t *testing.T) {
				f := newFake()
				f.err = tc.err
				s, _ := newTestServer(t, Config{}, f)
				w := do(s.Handler(), http.MethodPost, path, "application/json", `{"prompt":"hi"}`)
				if w.Code != tc.status || w.Header().Get("Retry-After") != tc.retryAfter {
					t.Fatalf("status %d Retry-After %q, want %d %q: %s", w.Code, w.Header().Get("Retry-After"), tc.status, tc.retryAfter, w.Body)
				}
				if path == "/infer" {
					if got := decode[errResp](t, w.Body.Bytes()); got.Error.Code != tc.code {
						t.Errorf("code %q, want %q", got.Error.Code, tc.code)
					}
				} else if got := decode[openAIErrorBody](t, w.Body.Bytes()); got.Error.Code == nil || *got.Error.Code != tc.code || got.Error.Type == "" {
					t.Errorf("OpenAI error %+v, want code %q", got.Error, tc.code)
				}
			})
		}
	}
}

func TestRequestTimeout(t *testing.T) {
	f := newFake()
	f.block = make(chan struct{})
	s, m := newTestServer(t, Config{RequestTimeout: 20 * time.Millisecond}, f)
	w := do(s.Handler(), http.MethodPost, "/infer?prompt=hi", "", "")
	if w.Code != 503 || w.Header().Get("Retry-After") == "" {
		t.Fatalf("status %d, Retry-After %q: %s", w.Code, w.Header().Get("Retry-After"), w.Body)
	}
	if got := decode[errResp](t, w.Body.Bytes()); got.Error.Code != CodeRequestTimeout {
		t.Errorf("code %q, want %q", got.Error.Code, CodeRequestTimeout)
	}
	if v := testutil.ToFloat64(m.Failures.WithLabelValues(telemetry.ReasonTimeout)); v != 1 {
		t.Errorf("failures{reason=timeout} = %v", v)
	}
}

func TestClientGoneWritesNothing(t *testing.T) {
	f := newFake()
	f.block = make(chan struct{})
	s, m := newTestServer(t, Config{}, f)
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, "/infer?prompt=hi", nil)
	w := &recorder{header: http.Header{}}
	done := make(chan struct{})
	go func() {
		s.Handler().ServeHTTP(w, req)
		close(done)
	}()
	<-f.started
	if v := testutil.ToFloat64(m.InFlight); v != 1 {
		t.Errorf("in flight %v while generating, want 1", v)
	}
	cancel()
	<-done
	if len(w.body) != 0 {
		t.Errorf("wrote %q to a gone client", w.body)
	}
	if v := testutil.ToFloat64(m.InFlight); v != 0 {
		t.Errorf("in flight %v after the client left, want 0", v)
	}
	if v := testutil.ToFloat64(m.Failures.WithLabelValues(telemetry.ReasonCancelled)); v != 1 {
		t.Errorf("failures{reason=cancelled} = %v, want 1", v)
	}
	if v := testutil.ToFloat64(m.Requests.WithLabelValues("/infer", "499")); v != 1 {
		t.Errorf("requests{code=499} = %v, want 1", v)
	}
}

// recorder is a minimal ResponseWriter that records the body.
type recorder struct {
	header http.Header
	code   int
	body   []byte
}

func (r *recorder) Header() http.Header         { return r.header }
func (r *recorder) WriteHeader(code int)        { r.code = code }
func (r *recorder) Write(b []byte) (int, error) { r.body = append(r.body, b...); return len(b), nil }

func TestRoutes(t *testing.T) {
	f := newFake()
	s, _ := newTestServer(t, Config{Version: "1.2.3"}, f)
	tests := []struct {
		method, target string
		status         int
		contains       string
	}{
		{"GET", "/", 200, `"status":"ok"`},
		{"GET", "/healthz", 200, `"alive"`},
		{"GET", "/readyz", 200, `"ready"`},
		{"GET", "/info", 200, `"context_length":64`},
		{"GET", "/info", 200, `"version":"1.2.3"`},
		{"GET", "/metrics", 200, "inference_ready 1"},
		{"GET", "/v1/models", 200, `"id":"fake-model"`},
		{"GET", "/v1/models/fake-model", 200, `"object":"model"`},
		{"GET", "/v1/models/other", 404, `"model_not_found"`},
		{"GET", "/nope", 404, `"code":"not_found"`},
		{"GET", "/v1/nope", 404, `"type":"not_found_error"`},
		{"GET", "/infer", 405, `"method_not_allowed"`},
		{"DELETE", "/v1/completions", 405, `"type":"invalid_request_error"`},
		{"GET", "/infer/", 404, `"not_found"`},
		{"HEAD", "/healthz", 200, ""},
		{"HEAD", "/", 200, ""},
		{"HEAD", "/metrics", 200, ""},
		{"HEAD", "/infer", 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+tc.target, func(t *testing.T) {
			w := do(s.Handler(), tc.method, tc.target, "", "")
			if w.Code != tc.status || !strings.Contains(w.Body.String(), tc.contains) {
				t.Fatalf("status %d body %s, want %d containing %s", w.Code, w.Body, tc.status, tc.contains)
			}
		})
	}
	if w := do(s.Handler(), "GET", "/infer", "", ""); w.Header().Get("Allow") != "POST" {
		t.Errorf("405 Allow = %q, want POST", w.Header().Get("Allow"))
	}
}

func TestMetricsLabelsNeverTakeThePath(t *testing.T) {
	s, m := newTestServer(t, Config{}, newFake())
	for _, p := range []string{"/a", "/b/c", "/%0Aevil"} {
		do(s.Handler(), "GET", p, "", "")
	}
	if v := testutil.ToFloat64(m.Requests.WithLabelValues(telemetry.EndpointUnmatched, "404")); v != 3 {
		t.Errorf("unmatched 404s = %v, want 3", v)
	}
	if n := testutil.CollectAndCount(m.Requests); n != 1 {
		t.Errorf("inference_requests_total has %d series, want 1", n)
	}
}

func TestReadiness(t *testing.T) {
	m := telemetry.New(telemetry.Options{DisableGPU: true})
	s := New(Config{}, newFake(), m, testLogger(t))
	check := func(status int, reason string, ready float64) {
		t.Helper()
		w := do(s.Handler(), "GET", "/readyz", "", "")
		if w.Code != status || !strings.Contains(w.Body.String(), reason) {
			t.Errorf("readyz %d %s, want %d %s", w.Code, w.Body, status, reason)
		}
		if v := testutil.ToFloat64(m.Ready); v != ready {
			t.Errorf("inference_ready = %v, want %v", v, ready)
		}
	}
	check(503, "starting", 0)
	s.SetReady(true)
	check(200, "ready", 1)
	s.BeginDrain()
	check(503, "draining", 0)
	s.SetReady(true)
	check(503, "draining", 0)
	if w := do(s.Handler(), "GET", "/healthz", "", ""); w.Code != 200 {
		t.Errorf("healthz while draining: %d", w.Code)
	}
}

func TestAuth(t *testing.T) {
	for _, metricsAuth := range []bool{false, true} {
		t.Run(fmt.Sprint("metrics_auth=", metricsAuth), func(t *testing.T) {
			s, m := newTestServer(t, Config{AuthToken: "s3cret", MetricsAuth: metricsAuth}, newFake())
			h := s.Handler()
			open := map[string]bool{"/": true, "/healthz": true, "/readyz": true, "/metrics": !metricsAuth}
			for _, target := range []string{"/", "/healthz", "/readyz", "/metrics", "/info", "/v1/models"} {
				w := do(h, "GET", target, "", "")
				if open[target] != (w.Code == 200) {
					t.Errorf("GET %s without token: %d", target, w.Code)
				}
				if !open[target] && (w.Code != 401 || w.Header().Get("WWW-Authenticate") == "") {
					t.Errorf("GET %s without token: %d, WWW-Authenticate %q", target, w.Code, w.Header().Get("WWW-Authenticate"))
				}
				if w := do(h, "GET", target, "", "", "Authorization", "Bearer s3cret"); w.Code != 200 {
					t.Errorf("GET %s with token: %d", target, w.Code)
				}
			}
			for _, hdr := range []string{"", "Bearer wrong", "Basic czNjcmV0", "Bearer s3cret2"} {
				if w := do(h, "POST", "/infer?prompt=hi", "", "", "Authorization", hdr); w.Code != 401 {
					t.Errorf("POST /infer with %q: %d", hdr, w.Code)
				}
			}
			if w := do(h, "POST", "/v1/completions", "application/json", `{"prompt":"hi"}`); w.Code != 401 ||
				!strings.Contains(w.Body.String(), `"type":"authentication_error"`) {
				t.Errorf("completions without token: %d %s", w.Code, w.Body)
			}
			if w := do(h, "POST", "/infer?prompt=hi", "", "", "Authorization", "Bearer s3cret"); w.Code != 200 {
				t.Errorf("POST /infer with token: %d", w.Code)
			}
			if v := testutil.ToFloat64(m.Failures.WithLabelValues(telemetry.ReasonUnauthorized)); v < 5 {
				t.Errorf("unauthorized failures = %v, want at least 5", v)
			}
		})
	}
}

func TestRecovery(t *testing.T) {
	f := newFake()
	f.panicV = "boom"
	s, m := newTestServer(t, Config{}, f)
	w := do(s.Handler(), "POST", "/infer?prompt=hi", "", "")
	if w.Code != 500 || !strings.Contains(w.Body.String(), `"internal_error"`) {
		t.Fatalf("status %d body %s", w.Code, w.Body)
	}
	if v := testutil.ToFloat64(m.Failures.WithLabelValues(telemetry.ReasonInternal)); v != 1 {
		t.Errorf("internal failures = %v", v)
	}
	if v := testutil.ToFloat64(m.Requests.WithLabelValues("/infer", "500")); v != 1 {
		t.Errorf("requests{code=500} = %v", v)
	}
	if v := testutil.ToFloat64(m.InFlight); v != 0 {
		t.Errorf("in flight after a panic = %v", v)
	}
}

func TestRequestID(t *testing.T) {
	s, _ := newTestServer(t, Config{}, newFake())
	if w := do(s.Handler(), "GET", "/healthz", "", "", "X-Request-ID", "abc-123"); w.Header().Get("X-Request-ID") != "abc-123" {
		t.Errorf("valid id not echoed: %q", w.Header().Get("X-Request-ID"))
	}
	for _, bad := range []string{"has space", strings.Repeat("a", 129), "new\nline", "ünï"} {
		w := do(s.Handler(), "GET", "/healthz", "", "", "X-Request-ID", bad)
		if got := w.Header().Get("X-Request-ID"); got == bad || len(got) != 32 {
			t.Errorf("id %q replaced by %q, want a fresh 32-hex id", bad, got)
		}
	}
}

func TestUnpairedSurrogate(t *testing.T) {
	for body, want := range map[string]bool{
		`{"prompt":"\ud83d\ude00 hi"}`: false, // a pair: an emoji
		`{"prompt":"\\ud800"}`:         false, // an escaped backslash, then text
		`{"prompt":"\u00e9\n\"x\""}`:   false,
		`{"prompt":"\ud800"}`:          true,
		`{"prompt":"\udc00x"}`:         true,
		`{"prompt":"\ud800\u0041"}`:    true,
		`{"prompt":"\ud800\ud800"}`:    true,
		`{"prompt":"end\ud83d"}`:       true,
	} {
		if got := unpairedSurrogate([]byte(body)); got != want {
			t.Errorf("unpairedSurrogate(%s) = %v, want %v", body, got, want)
		}
	}
}

// Every check that runs is counted, passes included: a check only ever counted as
// failing would read as a 100% failure ratio after one bad request.
func TestChecksCountPasses(t *testing.T) {
	s, m := newTestServer(t, Config{}, newFake())
	if w := do(s.Handler(), http.MethodPost, "/infer?prompt=hi", "", ""); w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if w := do(s.Handler(), http.MethodPost, "/infer", "application/json", `{"prompt":"hi"}`); w.Code != 200 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	for _, check := range []string{CheckQuery, CheckDuplicateParam, CheckUnknownParam} {
		if v := testutil.ToFloat64(m.DataChecks.WithLabelValues(check, "pass")); v != 2 {
			t.Errorf("data_validation_checks_total{check=%q,result=pass} = %v, want 2", check, v)
		}
	}
	// A model that is a valid string but not this server's fails its check, and only fails.
	if w := do(s.Handler(), http.MethodPost, "/v1/completions", "application/json", `{"model":"gpt-4","prompt":"hi"}`); w.Code != 404 {
		t.Fatalf("status %d: %s", w.Code, w.Body)
	}
	if p, f := testutil.ToFloat64(m.DataChecks.WithLabelValues("model", "pass")), testutil.ToFloat64(m.DataChecks.WithLabelValues("model", "fail")); p != 0 || f != 1 {
		t.Errorf("model check pass %v fail %v, want 0 and 1", p, f)
	}
}

// decodeObject's answers, one walk over the body: the kind of a non-object, malformed
// and trailing input, and the first member given twice.
func TestDecodeObject(t *testing.T) {
	for body, want := range map[string]string{
		`[1]`:                       "must be a JSON object, got array",
		`"x"`:                       "must be a JSON object, got string",
		`5`:                         "must be a JSON object, got number",
		`true`:                      "must be a JSON object, got bool",
		`null`:                      "must be a JSON object, got null",
		`{"prompt":"hi",}`:          "malformed JSON body",
		`{"prompt" 1}`:              "malformed JSON body",
		`{"prompt":"hi"`:            "malformed JSON body",
		`{"prompt":"hi"} {}`:        "unexpected data after the JSON object",
		`{"a":1,"b":{"a":2},"a":3}`: "repeated a",
		`{"a":1,"b":2}`:             "ok",
	} {
		obj, repeated, e := decodeObject([]byte(body))
		got := "ok"
		switch {
		case e != nil:
			got = e.Message
		case repeated != "":
			got = "repeated " + repeated
		}
		if !strings.Contains(got, want) || (e == nil && len(obj) != 2) {
			t.Errorf("decodeObject(%s) = %q (%d members), want %q", body, got, len(obj), want)
		}
	}
}
