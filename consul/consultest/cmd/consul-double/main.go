// Command consul-double runs the consultest Consul agent double on its own, for
// trying the server's registration and Prometheus's consul_sd by hand where no
// Consul agent is installed. It is a test double, not a Consul agent: see the
// consultest package documentation for what it imitates and what it leaves out.
//
//	go run ./consul/consultest/cmd/consul-double -addr 127.0.0.1:8500
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/inferstack/inferstack/consul/consultest"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "consul-double:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:8500", "listen address (loopback only is wise: there is no TLS)")
	dc := flag.String("datacenter", "dc1", "datacenter name reported by /v1/agent/self")
	node := flag.String("node", "consul-double", "node name")
	reapMin := flag.Duration("reap-min", consultest.DefaultMinDeregisterAfter, "floor for DeregisterCriticalServiceAfter")
	reapEvery := flag.Duration("reap-interval", consultest.DefaultReapInterval, "how often critical services are reaped")
	flag.Parse()

	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	s, err := consultest.NewServer(
		consultest.WithAddress(*addr),
		consultest.WithDatacenter(*dc),
		consultest.WithNode(*node, "127.0.0.1"),
		consultest.WithReaper(*reapMin, *reapEvery),
		consultest.WithLogger(logger),
	)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer s.Close()
	logger.Info("consul double listening", "url", s.URL())

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	logger.Info("stopping")
	done := make(chan struct{})
	go func() { s.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		return fmt.Errorf("stop: timed out")
	}
	return nil
}
