package main

import (
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"sync"
	"time"

	"github.com/inferstack/inferstack/loadtest"
)

// logEvery is how often the status is logged when stderr is not a terminal.
const logEvery = 10 * time.Second

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// resolveStatus checks the --status mode and resolves auto: a line on a terminal, a
// log line otherwise.
func resolveStatus(mode string, stderr io.Writer) (string, error) {
	switch mode {
	case "auto":
		if isTerminal(stderr) {
			return "line", nil
		}
		return "log", nil
	case "line", "log", "off":
		return mode, nil
	}
	return "", fmt.Errorf("--status %q: want auto, line, log or off", mode)
}

// statusTerm shares a terminal between the live status line and log records: a
// record first clears the line (the next update draws it again), so the two never
// run together.
type statusTerm struct {
	mu   sync.Mutex
	w    io.Writer
	line bool // a status line is on screen
}

// Write writes one log record.
func (t *statusTerm) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clearLocked()
	return t.w.Write(p)
}

func (t *statusTerm) status(s string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	fmt.Fprint(t.w, "\r\033[K"+s)
	t.line = true
}

func (t *statusTerm) clear() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.clearLocked()
}

func (t *statusTerm) clearLocked() {
	if t.line {
		fmt.Fprint(t.w, "\r\033[K")
		t.line = false
	}
}

// statusPrinter returns the Progress callback for a resolved --status mode (term is
// used by "line").
func statusPrinter(mode string, term *statusTerm, log *slog.Logger) func(loadtest.Progress) {
	switch mode {
	case "line":
		return func(p loadtest.Progress) { term.status(statusLine(p)) }
	case "log":
		var last time.Duration
		return func(p loadtest.Progress) {
			if p.Elapsed-last < logEvery {
				return
			}
			last = p.Elapsed
			// Durations as strings ("1m0s", "12.3ms"): readable, and not bare
			// nanoseconds in JSON logs.
			log.Info("progress", "elapsed", p.Elapsed.Round(time.Second).String(), "requests", p.Requests, "errors", p.Errors,
				"rps", math.Round(p.Rate*10)/10, "p50", p.P50.String(), "p99", p.P99.String(), "in_flight", p.InFlight,
				"users", p.Users, "target_rate", p.TargetRate, "missed_schedule", p.Missed)
		}
	}
	return nil
}

func statusLine(p loadtest.Progress) string {
	load := fmt.Sprintf("users %d", p.Users)
	if p.TargetRate > 0 {
		load = fmt.Sprintf("target %.0f/s missed %d", p.TargetRate, p.Missed)
	}
	return fmt.Sprintf("%s  %d req  %.1f req/s  %d err  p50 %s  p99 %s  in-flight %d  %s",
		p.Elapsed.Round(time.Second), p.Requests, p.Rate, p.Errors, p.P50, p.P99, p.InFlight, load)
}
