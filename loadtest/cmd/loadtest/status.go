package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
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

// statusPrinter returns the Progress callback for the --status mode.
func statusPrinter(mode string, stderr io.Writer, log *slog.Logger) (func(loadtest.Progress), error) {
	switch mode {
	case "auto":
		if isTerminal(stderr) {
			mode = "line"
		} else {
			mode = "log"
		}
	case "line", "log", "off":
	default:
		return nil, fmt.Errorf("--status %q: want auto, line, log or off", mode)
	}
	switch mode {
	case "line":
		return func(p loadtest.Progress) { fmt.Fprint(stderr, "\r\033[K"+statusLine(p)) }, nil
	case "log":
		var last time.Duration
		return func(p loadtest.Progress) {
			if p.Elapsed-last < logEvery {
				return
			}
			last = p.Elapsed
			log.Info("progress", "elapsed", p.Elapsed.Round(time.Second), "requests", p.Requests, "errors", p.Errors,
				"rps", fmt.Sprintf("%.1f", p.Rate), "p50", p.P50, "p99", p.P99, "in_flight", p.InFlight,
				"users", p.Users, "target_rate", p.TargetRate, "missed_schedule", p.Missed)
		}, nil
	}
	return nil, nil
}

func statusLine(p loadtest.Progress) string {
	load := fmt.Sprintf("users %d", p.Users)
	if p.TargetRate > 0 {
		load = fmt.Sprintf("target %.0f/s missed %d", p.TargetRate, p.Missed)
	}
	return fmt.Sprintf("%s  %d req  %.1f req/s  %d err  p50 %s  p99 %s  in-flight %d  %s",
		p.Elapsed.Round(time.Second), p.Requests, p.Rate, p.Errors, p.P50, p.P99, p.InFlight, load)
}
