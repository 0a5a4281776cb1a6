// Command deployer takes the inferstack bundle from nothing to a healthy, monitored,
// load-tested model service on Nomad: it submits the bundled job specifications
// (parsed by the Nomad server), waits for healthy deployments and explains failures,
// shows status and logs, restarts, stops, validates and runs load tests.
//
// Usage: deployer COMMAND [flags] [args]; `deployer help` lists the commands. The
// standard NOMAD_* and CONSUL_HTTP_* environment variables configure the clients;
// flags override them only when given. Progress goes to stderr, results to stdout.
//
// Exit codes: 0 success; 1 Nomad/Consul API or connection error; 2 invalid input or
// usage; 3 placement failure; 4 failed or reverted deployment (or failed task); 5
// timeout; 6 load test threshold failed; 130 interrupted.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/inferstack/inferstack/tools/deployer/deploy"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // a second Ctrl-C kills at once
	}()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(exitCode(err, os.Stderr))
}

// exitCode prints err (if any) and maps it to the process exit code.
func exitCode(err error, stderr io.Writer) int {
	if err == nil || errors.Is(err, errHelp) {
		return deploy.ExitOK
	}
	fmt.Fprintf(stderr, "deployer: %v\n", err)
	return deploy.ExitCode(err)
}
