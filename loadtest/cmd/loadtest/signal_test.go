package main

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMain lets a test re-run this binary as the real command (LOADTEST_AS_MAIN=1), so
// signal handling is tested on a real process.
func TestMain(m *testing.M) {
	if os.Getenv("LOADTEST_AS_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

// Nomad stops a batch job with SIGTERM: the process must stop issuing, print the
// summary, write the reports and exit by its thresholds (0 here).
func TestSIGTERMWritesReport(t *testing.T) {
	srv := okServer(t)
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0]) // no arguments: main reads os.Args
	cmd.Env = append(os.Environ(), "LOADTEST_AS_MAIN=1", "LOADTEST_TARGET="+srv.URL, "LOADTEST_RATE=100",
		"LOADTEST_DURATION=1m", "LOADTEST_OUT="+dir, "LOADTEST_STATUS=off", "LOADTEST_THRESHOLD=error_rate<1%")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(700 * time.Millisecond)
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
		}
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("no exit 10s after SIGTERM\nstderr:\n%s", stderr.String())
	}
	if !strings.Contains(stdout.String(), "stopped by signal") || !strings.Contains(stdout.String(), "ok   error_rate<1%") {
		t.Errorf("stdout:\n%s", stdout.String())
	}
	if _, err := os.Stat(dir + "/report.html"); err != nil {
		t.Errorf("report not written: %v", err)
	}
}
