package server

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inferstack/inferstack/inference/telemetry"
)

// startServe runs s.Serve on a loopback port and returns its base URL, a function that
// ends Serve's context, and Serve's result.
func startServe(t *testing.T, s *Server) (string, context.CancelFunc, <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- s.Serve(ctx, ln) }()
	t.Cleanup(cancel)
	return "http://" + ln.Addr().String(), cancel, errc
}

type result struct {
	status int
	body   string
	err    error
}

func post(url string) <-chan result {
	ch := make(chan result, 1)
	go func() {
		resp, err := http.Post(url, "", nil)
		if err != nil {
			ch <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		ch <- result{status: resp.StatusCode, body: string(b)}
	}()
	return ch
}

func TestServeDrainsInFlight(t *testing.T) {
	f := newFake()
	f.block = make(chan struct{})
	s, _ := newTestServer(t, Config{DrainTimeout: 10 * time.Second}, f)
	base, stop, errc := startServe(t, s)
	var pending []<-chan result
	for range 3 {
		pending = append(pending, post(base+"/infer?prompt=hi"))
		<-f.started
	}
	stop()
	// Serve stops accepting but waits for the three generations.
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := net.DialTimeout("tcp", strings.TrimPrefix(base, "http://"), 100*time.Millisecond); err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("listener still accepting after shutdown began")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case err := <-errc:
		t.Fatalf("Serve returned %v before in-flight requests finished", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(f.block)
	for i, ch := range pending {
		if r := <-ch; r.err != nil || r.status != 200 {
			t.Errorf("request %d: %d %v %s", i, r.status, r.err, r.body)
		}
	}
	if err := <-errc; err != nil {
		t.Errorf("Serve: %v", err)
	}
}

func TestServeDrainTimeoutAnswers503(t *testing.T) {
	f := newFake()
	f.block = make(chan struct{})
	s, _ := newTestServer(t, Config{DrainTimeout: 100 * time.Millisecond}, f)
	base, stop, errc := startServe(t, s)
	ch := post(base + "/infer?prompt=hi")
	<-f.started
	stop()
	r := <-ch
	if r.err != nil || r.status != 503 || !strings.Contains(r.body, CodeDraining) {
		t.Errorf("request stopped at drain timeout: %d %v %s", r.status, r.err, r.body)
	}
	if err := <-errc; err == nil {
		t.Error("Serve returned nil although requests had to be stopped")
	}
}

// A long generation must not be cut by the body read deadline: the deadline is
// cleared once the body is read.
func TestLongGenerationOutlivesBodyReadTimeout(t *testing.T) {
	f := newFake()
	f.delay = 300 * time.Millisecond
	s, _ := newTestServer(t, Config{BodyReadTimeout: 50 * time.Millisecond, WriteTimeout: 100 * time.Millisecond}, f)
	base, _, _ := startServe(t, s)
	resp, err := http.Post(base+"/infer", "application/json", strings.NewReader(`{"prompt":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("status %d: %s", resp.StatusCode, b)
	}
}

func TestPromtoolCheckMetrics(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not found: apt-get install prometheus (Debian's package ships /usr/bin/promtool)")
	}
	s, _ := newTestServer(t, Config{}, newFake())
	h := s.Handler()
	do(h, "POST", "/infer?prompt=hi", "", "")
	do(h, "POST", "/infer?prompt=", "", "")
	do(h, "POST", "/v1/completions", "application/json", `{"prompt":"hi"}`)
	w := do(h, "GET", "/metrics", "", "")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(w.Body.Bytes())
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) || err != nil {
		t.Fatalf("promtool check metrics: %v\n%s", err, out)
	}
	for _, name := range []string{
		"model_inference_latency_seconds_bucket", "cpu_usage_percent", "ram_usage_bytes", "training_loss",
		"validation_loss", "data_validation_checks_total", "validation_checks", "inference_requests_total",
		"inference_request_failures_total", "inference_requests_in_flight", "inference_ready", "go_goroutines",
		"inference_generated_tokens_per_second", "inference_prompt_tokens_total", "inference_generated_tokens_total",
	} {
		if !strings.Contains(w.Body.String(), "\n"+name) {
			t.Errorf("/metrics lacks %s", name)
		}
	}
}

// A request whose line and headers are over MaxHeaderBytes gets a JSON 431 in the
// route family's shape and a closed connection; one under it is served.
func TestHeaderLimitAnswersJSON431(t *testing.T) {
	s, m := newTestServer(t, Config{MaxHeaderBytes: 8 << 10}, newFake())
	base, _, _ := startServe(t, s)
	get := func(path string, pad int) (*http.Response, string) {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, base+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("X-Pad", strings.Repeat("a", pad))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	if resp, body := get("/healthz", 6<<10); resp.StatusCode != http.StatusOK {
		t.Fatalf("6 KiB of headers under an 8 KiB limit: %d %s", resp.StatusCode, body)
	}
	resp, body := get("/healthz", 10<<10)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !resp.Close ||
		!strings.Contains(resp.Header.Get("Content-Type"), "application/json") ||
		!strings.Contains(body, `"code":"headers_too_large"`) || !strings.Contains(body, "the limit is 8192") {
		t.Fatalf("10 KiB of headers: %d close=%v %q %s", resp.StatusCode, resp.Close, resp.Header.Get("Content-Type"), body)
	}
	resp, body = get("/v1/models", 10<<10)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || !strings.Contains(body, `"type":"invalid_request_error"`) {
		t.Fatalf("OpenAI route: %d %s", resp.StatusCode, body)
	}
	if got := testutil.ToFloat64(m.Failures.WithLabelValues(telemetry.ReasonTooLarge)); got != 2 {
		t.Errorf("too_large failures = %v, want 2", got)
	}
	// Past net/http's own limit (4x, at least 1 MiB) the answer is its plain-text 431.
	if resp, _ := get("/healthz", 2<<20); resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("2 MiB of headers: %d, want 431", resp.StatusCode)
	}
}

func TestRequestHeadSize(t *testing.T) {
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(
		"GET /infer?prompt=hi HTTP/1.1\r\nHost: example\r\nX-A: 1\r\nX-A: 22\r\n\r\n")))
	if err != nil {
		t.Fatal(err)
	}
	const want = len("GET /infer?prompt=hi HTTP/1.1\r\nHost: example\r\nX-A: 1\r\nX-A: 22\r\n\r\n")
	if got := requestHeadSize(req); got != want {
		t.Errorf("requestHeadSize = %d, want %d", got, want)
	}
}

// stalledRequest sends a request whose body stops short of its Content-Length and
// returns the connection and a channel with everything the server then sends.
func stalledRequest(t *testing.T, base, path string) (net.Conn, <-chan string) {
	t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 44\r\n\r\n{\"prompt\":", path)
	out := make(chan string, 1)
	go func() {
		b, _ := io.ReadAll(c) // until the server closes the connection
		out <- string(b)
	}()
	return c, out
}

// A client whose body stalls gets its answer when BodyReadTimeout ends, and the
// connection is closed: net/http must not wait for the rest of the body first.
func TestStalledBodyIsAnsweredAndClosed(t *testing.T) {
	s, _ := newTestServer(t, Config{BodyReadTimeout: 300 * time.Millisecond}, newFake())
	base, _, _ := startServe(t, s)
	for path, want := range map[string]string{
		"/infer": "408 Request Timeout",    // the handler reads the body
		"/nope":  "404 Not Found",          // no handler reads it
		"/info":  "405 Method Not Allowed", // nor here
	} {
		_, out := stalledRequest(t, base, path)
		select {
		case got := <-out:
			if !strings.HasPrefix(got, "HTTP/1.1 "+want) || !strings.Contains(got, `"error"`) {
				t.Errorf("%s: got %q, want %s with a JSON error", path, got, want)
			}
		case <-time.After(5 * time.Second):
			t.Errorf("%s: no answer 5s after a body stalled with a 300ms body read timeout", path)
		}
	}
}

// A stalled client does not make a graceful shutdown fail: once no generation is in
// flight, the remaining connections are closed and Serve returns nil.
func TestShutdownWithStalledClient(t *testing.T) {
	s, _ := newTestServer(t, Config{BodyReadTimeout: time.Minute, DrainTimeout: 300 * time.Millisecond}, newFake())
	base, stop, errc := startServe(t, s)
	_, out := stalledRequest(t, base, "/infer")
	time.Sleep(100 * time.Millisecond) // let the server start reading the body
	stop()
	select {
	case err := <-errc:
		if err != nil {
			t.Errorf("Serve = %v, want nil (no generation was in flight)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve still running 5s after the stop with a 300ms drain timeout")
	}
	<-out
}
