package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/inferstack/inferstack/internal/syncbuf"
)

func okServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write([]byte(`{"text":"x","generated_tokens":4}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func noEnv(string) string { return "" }

// runCLI runs the command as main would and returns the exit code and output.
func runCLI(ctx context.Context, args []string, env map[string]string) (int, string, string) {
	var stdout, stderr bytes.Buffer
	getenv := func(k string) string { return env[k] }
	err := run(ctx, args, getenv, &stdout, &stderr)
	code := exitCode(err, &stderr)
	return code, stdout.String(), stderr.String()
}

func TestExitCodes(t *testing.T) {
	srv := okServer(t)
	base := []string{"--target", srv.URL, "--requests", "40", "--users", "2", "--spawn-rate", "100", "--status", "off", "--log-level", "warn"}
	for _, tc := range []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"pass", append(base, "--threshold", "p99<5s", "--threshold", "error_rate<1%"), 0, "ok   p99<5s", ""},
		{"threshold fails", append(base, "--threshold", "p50<1ns", "--threshold", "basic:p99<5s"), 2, "FAIL p50<1ns", "1 threshold(s) failed:\n  FAIL p50<1ns"},
		{"no data fails", append(base, "--threshold", "ttft_p95<1s"), 2, "", "FAIL ttft_p95<1s: no data"},
		{"bad threshold", append(base, "--threshold", "p98<1s"), 1, "", "unknown metric"},
		{"bad flag", []string{"--nope"}, 1, "", "flag provided but not defined"},
		{"no target", []string{"--requests", "1"}, 1, "", "no target"},
		{"bad weights", append(base, "--weights", "basic=x"), 1, "", "not a non-negative integer"},
		{"ramp without rate", append(base, "--ramp", "5s"), 1, "", "need an open-loop --rate"},
		{"target and consul", append(base, "--consul-service", "inference"), 1, "", "not both"},
		{"help", []string{"-h"}, 0, "", "LOADTEST_MAX_IN_FLIGHT"},
		// A zero on the command line is what the user asked for, never a silent default.
		{"zero weights", append(base, "--weights", "basic=0,custom_length=0,rapid=0,metrics=0"), 1, "", "every scenario weight is 0"},
		{"zero lengths", append(base, "--min-length", "0", "--rapid-length", "0"), 1, "", "--min-length 0: must be >= 1"},
		{"zero in-flight", append(base, "--max-in-flight", "0"), 1, "", "--max-in-flight 0: must be >= 1"},
		{"zero timeout", append(base, "--timeout", "0"), 1, "", "--timeout 0s: must be positive"},
		{"zero seed", append(base, "--seed", "0"), 1, "", "--seed 0"},
		{"infinite rate", append(base, "--rate", "inf"), 1, "", "--rate +Inf: must be a finite number"},
		{"NaN ramp-from", append(base, "--rate", "10", "--ramp", "1s", "--ramp-from", "NaN"), 1, "", "--ramp-from NaN: must be a finite number"},
		{"NaN spawn rate", append(base, "--spawn-rate", "NaN"), 1, "", "--spawn-rate NaN"},
		{"negative ramp", append(base, "--rate", "10", "--ramp", "-1s"), 1, "", "must not be negative"},
		{"consul scheme", []string{"--consul-service", "inference", "--consul-scheme", "ftp"}, 1, "", `--consul-scheme "ftp": want http or https`},
		{"two tokens", append(base, "--auth-token", "a", "--auth-token-file", "/nonexistent"), 1, "", "not both"},
		{"missing token file", append(base, "--auth-token-file", "/nonexistent/token"), 1, "", "--auth-token-file"},
		{"unusable out dir", append(base, "--out", "/proc/loadtest-out"), 1, "", "--out"},
		{"target down", []string{"--target", "http://127.0.0.1:1", "--duration", "300ms", "--users", "1", "--status", "off", "--log-level", "warn"}, 1, "connection_refused", "no request reached a server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, stdout, stderr := runCLI(context.Background(), tc.args, nil)
			if code != tc.code || !strings.Contains(stdout, tc.stdout) || !strings.Contains(stderr, tc.stderr) {
				t.Errorf("exit %d, want %d\nstdout (want %q):\n%s\nstderr (want %q):\n%s", code, tc.code, tc.stdout, stdout, tc.stderr, stderr)
			}
		})
	}
}

// A report that cannot be written after the run is reported, and a failed threshold
// still exits 2.
func TestReportErrorKeepsThresholdExit(t *testing.T) {
	srv := okServer(t)
	dir := t.TempDir()
	// The directory passes the check before the run; report.html cannot be created.
	if err := os.Mkdir(filepath.Join(dir, "report.html"), 0o755); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"--target", srv.URL, "--duration", "300ms", "--users", "1", "--status", "off",
		"--log-level", "warn", "--out", dir, "--threshold", "p50<1ns"}, noEnv, &stdout, &stderr)
	code := exitCode(err, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "reports:") || !strings.Contains(stderr.String(), "FAIL p50<1ns") {
		t.Errorf("exit %d, want 2 with the report error and the threshold; stderr:\n%s", code, stderr.String())
	}
}

// On a terminal line, a log record clears the status line first instead of running on
// from it.
func TestStatusTermClearsLineForLogs(t *testing.T) {
	var b bytes.Buffer
	term := &statusTerm{w: &b}
	term.status("1s  10 req")
	_, _ = term.Write([]byte("level=INFO msg=x\n"))
	term.status("2s  20 req")
	term.clear()
	want := "\r\033[K1s  10 req" + "\r\033[K" + "level=INFO msg=x\n" + "\r\033[K2s  20 req" + "\r\033[K"
	if b.String() != want {
		t.Errorf("terminal got %q\nwant %q", b.String(), want)
	}
}

// Every flag reads LOADTEST_<FLAG>; the command line wins over the environment.
func TestEnvironment(t *testing.T) {
	srv := okServer(t)
	dir := t.TempDir()
	env := map[string]string{
		"LOADTEST_TARGET":    srv.URL + "," + srv.URL,
		"LOADTEST_REQUESTS":  "30",
		"LOADTEST_RATE":      "300",
		"LOADTEST_WEIGHTS":   "basic=1,custom_length=0,rapid=0,metrics=0",
		"LOADTEST_THRESHOLD": "p99<10s,error_rate<1%",
		"LOADTEST_OUT":       dir,
		"LOADTEST_STATUS":    "off",
		"LOADTEST_LOG_LEVEL": "warn",
	}
	code, stdout, stderr := runCLI(context.Background(), []string{"--requests", "20"}, env)
	if code != 0 {
		t.Fatalf("exit %d\n%s\n%s", code, stdout, stderr)
	}
	var sum struct {
		Mode  string `json:"mode"`
		Total struct {
			Requests int `json:"requests"`
		} `json:"total"`
		Thresholds []struct {
			Raw  string `json:"threshold"`
			Pass bool   `json:"pass"`
		} `json:"thresholds"`
	}
	b, err := os.ReadFile(filepath.Join(dir, "summary.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}
	if sum.Mode != "open" || sum.Total.Requests != 20 || len(sum.Thresholds) != 2 {
		t.Errorf("summary %+v; want open loop, 20 requests (flag over env), 2 thresholds", sum)
	}
	for _, f := range []string{"summary.csv", "timeseries.csv", "report.html"} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Size() == 0 {
			t.Errorf("%s: %v", f, err)
		}
	}
	bad := map[string]string{"LOADTEST_USERS": "many", "LOADTEST_TARGET": srv.URL}
	if code, _, stderr := runCLI(context.Background(), nil, bad); code != 1 || !strings.Contains(stderr, "LOADTEST_USERS") {
		t.Errorf("bad env: exit %d, stderr %q", code, stderr)
	}
}

// SIGTERM (here: the context main derives from it) stops the run cleanly: the summary
// is still printed and the exit code reflects the thresholds.
func TestSignalStopsWithReport(t *testing.T) {
	srv := okServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(400*time.Millisecond, cancel)
	start := time.Now()
	code, stdout, stderr := runCLI(ctx, []string{"--target", srv.URL, "--duration", "1m", "--rate", "100",
		"--status", "off", "--log-level", "warn", "--threshold", "p99<10s"}, nil)
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("stop took %v", took)
	}
	if code != 0 || !strings.Contains(stdout, "stopped by signal") || !strings.Contains(stdout, "total") {
		t.Errorf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
}

func TestMetricsEndpointWhileRunning(t *testing.T) {
	srv := okServer(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stderr syncbuf.Buffer
	done := make(chan error, 1)
	go func() {
		var stdout bytes.Buffer
		done <- run(ctx, []string{"--target", srv.URL, "--duration", "1m", "--rate", "50", "--status", "off",
			"--metrics-addr", "127.0.0.1:0"}, noEnv, &stdout, &stderr)
	}()
	var addr string
	for deadline := time.Now().Add(5 * time.Second); addr == "" && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, rest, ok := strings.Cut(stderr.String(), `msg="serving metrics" addr=`); ok {
			addr = strings.Fields(rest)[0]
		}
	}
	if addr == "" {
		t.Fatalf("no metrics address logged:\n%s", stderr.String())
	}
	time.Sleep(300 * time.Millisecond)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	var body bytes.Buffer
	_, _ = body.ReadFrom(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`loadtest_requests_total{code="200",scenario="basic"}`, "loadtest_target_rate 50", "loadtest_in_flight", "loadtest_users 0"} {
		if !strings.Contains(body.String(), want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("run: %v", err)
	}
}
