// Command okserver answers every request with 200 "ok": the trivial loopback endpoint
// that loadtest/bench/compare.sh drives with loadtest, wrk and Locust.
package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"runtime"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "okserver:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:18080", "listen address")
	procs := flag.Int("procs", 0, "GOMAXPROCS (0: leave as is)")
	flag.Parse()
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	body := []byte("ok")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain"}
		_, _ = w.Write(body)
	})
	err = http.Serve(ln, h)
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
