package loadtest

import (
	"bytes"
	"context"
	"flag"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// fixedSummary records a known set of results into a recorder, so the reports are
// byte-for-byte reproducible.
func fixedSummary() *Summary {
	start := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	r := newRecorder(start, time.Second, 100, nil)
	ms := time.Millisecond
	for i := range 200 {
		res := result{scenario: Scenario(i % 4), code: 200, end: time.Duration(i) * 15 * ms,
			latency: time.Duration(10+i%50) * ms, service: time.Duration(8+i%50) * ms, tokens: 16}
		if i%40 == 0 {
			res.code, res.kind, res.tokens = 503, errStatus, 0
		}
		if i%4 == 3 {
			res.tokens = 0
		}
		r.record(&res)
	}
	for i := range 10 {
		res := result{scenario: ScenarioStream, code: 200, end: time.Duration(i) * 300 * ms,
			latency: time.Duration(300+i) * ms, service: time.Duration(290+i) * ms, tokens: 8, chunks: 8,
			ttft: time.Duration(100+i) * ms, tpot: 25 * ms,
			gaps: []time.Duration{20 * ms, 25 * ms, 30 * ms, 25 * ms, 25 * ms, 25 * ms, 25 * ms}}
		r.record(&res)
	}
	r.record(&result{scenario: ScenarioBasic, kind: errTimeout, end: 2 * time.Second, latency: time.Second, service: time.Second})
	r.missed.Add(2)
	s := r.summary("open", 3*time.Second, "duration")
	s.Seed = 1
	s.Weights = Weights{3, 2, 1, 1, 1}
	return s
}

func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./loadtest -run %s -update to create it)", err, t.Name())
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; rerun with -update if the change is intended.\ngot:\n%s\nwant:\n%s", name, got, want)
	}
}

func TestWriteTextGolden(t *testing.T) {
	var b bytes.Buffer
	if err := WriteText(&b, fixedSummary()); err != nil {
		t.Fatal(err)
	}
	golden(t, "summary.txt", b.Bytes())
}

func TestWriteCSVGolden(t *testing.T) {
	var b bytes.Buffer
	if err := WriteCSV(&b, fixedSummary()); err != nil {
		t.Fatal(err)
	}
	golden(t, "summary.csv", b.Bytes())
	b.Reset()
	if err := WriteSeriesCSV(&b, fixedSummary()); err != nil {
		t.Fatal(err)
	}
	golden(t, "timeseries.csv", b.Bytes())
}

func TestWriteJSONGolden(t *testing.T) {
	var b bytes.Buffer
	th, _ := ParseThresholds([]string{"p99<50ms", "error_rate<5%"})
	s := fixedSummary()
	if err := WriteJSON(&b, s, Evaluate(s, th)); err != nil {
		t.Fatal(err)
	}
	golden(t, "summary.json", b.Bytes())
}

// ReadJSON gives back what WriteJSON wrote, and the thresholds print as the run did.
func TestReadJSONRoundTrip(t *testing.T) {
	var b bytes.Buffer
	th, _ := ParseThresholds([]string{"p99<50ms", "error_rate<5%", "requests>5000", "basic:rps>=1"})
	s := fixedSummary()
	want := Evaluate(s, th)
	if err := WriteJSON(&b, s, want); err != nil {
		t.Fatal(err)
	}
	gotSum, got, err := ReadJSON(&b)
	if err != nil {
		t.Fatal(err)
	}
	if gotSum.Total.Requests != s.Total.Requests || gotSum.Mode != s.Mode || len(gotSum.Scenarios) != len(s.Scenarios) {
		t.Errorf("summary %+v, want %+v", gotSum.Total, s.Total)
	}
	if len(got) != len(want) {
		t.Fatalf("%d thresholds, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].String() != want[i].String() {
			t.Errorf("threshold %d reads back as %q, want %q", i, got[i].String(), want[i].String())
		}
	}
	if _, _, err := ReadJSON(strings.NewReader("{")); err == nil {
		t.Error("ReadJSON of truncated JSON: no error")
	}
}

// The HTML report must be self-contained and its script must run without errors in
// a real browser: headless Chromium dumps the DOM after scripts ran, and only the
// script sets data-rendered="ok" and draws the <svg> charts.
func TestHTMLReportInChromium(t *testing.T) {
	chromium, err := exec.LookPath("chromium")
	if err != nil {
		t.Skip("chromium not installed (apt-get install chromium)")
	}
	fs := &fakeServer{chunks: 4, gap: 5 * time.Millisecond}
	srv := httptest.NewServer(fs)
	defer srv.Close()
	sum, err := Run(context.Background(), Options{
		Targets: newTargets(t, srv), Weights: Weights{3, 2, 1, 1, 1}, Pacer: ConstantPacer{Freq: 200},
		Duration: 1500 * time.Millisecond, BucketWidth: 250 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	th, _ := ParseThresholds([]string{"p99<1s", "ttft_p95<1ms"})
	var b bytes.Buffer
	if err := WriteHTML(&b, sum, Evaluate(sum, th)); err != nil {
		t.Fatal(err)
	}
	html := b.String()
	if m := regexp.MustCompile(`(?i)(src|href)\s*=\s*"(https?:)?//`).FindString(html); m != "" {
		t.Errorf("report references an external resource: %s", m)
	}
	dir := t.TempDir()
	page := filepath.Join(dir, "report.html")
	if err := os.WriteFile(page, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu",
		"--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
		"--disable-dev-shm-usage", "--enable-logging=stderr", "--v=0",
		"--user-data-dir="+filepath.Join(dir, "profile"), "--dump-dom", "file://"+page)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	dom := stdout.String()
	for _, line := range strings.Split(stderr.String(), "\n") {
		if strings.Contains(line, "Uncaught") || strings.Contains(line, "CONSOLE") && strings.Contains(line, "Error") {
			t.Errorf("console: %s", line)
		}
	}
	if !strings.Contains(dom, `data-rendered="ok"`) {
		t.Fatalf("the script did not finish (no data-rendered=\"ok\"); status: %s",
			regexp.MustCompile(`id="render-status"[^>]*>[^<]*`).FindString(dom))
	}
	if n := strings.Count(dom, "<svg"); n < 4 {
		t.Errorf("%d charts drawn, want at least 4 (latency, throughput, errors, tokens)", n)
	}
	if n := strings.Count(dom, "<polyline"); n < 6 {
		t.Errorf("%d chart lines drawn, want at least 6", n)
	}
	for _, want := range []string{"Streaming (stream)", "ttft_p95&lt;1ms", "FAIL", "custom_length"} {
		if !strings.Contains(dom, want) {
			t.Errorf("report lacks %q", want)
		}
	}
}
