// Command dashgen writes the bundle's Grafana dashboards (package grafana) as JSON into
// grafana/dashboards, where Grafana's file provisioning and the Nomad job read them.
//
//	go run ./grafana/cmd/dashgen            # from the repository root
//	go run ./grafana/cmd/dashgen -out DIR
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/inferstack/inferstack/grafana"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "dashgen:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("dashgen", flag.ContinueOnError)
	out := fs.String("out", "grafana/dashboards", "directory to write the dashboard JSON files into")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	return grafana.WriteAll(*out)
}
