// Command loadtest drives an inference server with the seed's weighted scenarios in
// closed loop (users, as Locust) or open loop (an arrival rate, coordinated-omission
// corrected), prints a summary, writes JSON, CSV and HTML reports, serves its own
// Prometheus metrics, and exits 2 when a threshold fails.
//
// Every flag can also be set with the environment variable LOADTEST_<FLAG> (upper
// case, dashes as underscores); a flag on the command line wins. Run with -h for the
// list.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes.
const (
	exitOK        = 0
	exitError     = 1 // usage or runtime error
	exitThreshold = 2 // the run finished but a threshold failed
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode maps run's error to the process exit code, printing it.
func exitCode(err error, stderr io.Writer) int {
	var te *thresholdError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &te):
		if err == error(te) {
			fmt.Fprintln(stderr, te.Error())
		} else { // thresholds and another error (reports not written)
			fmt.Fprintln(stderr, "loadtest:", err)
		}
		return exitThreshold
	}
	fmt.Fprintln(stderr, "loadtest:", err)
	return exitError
}
