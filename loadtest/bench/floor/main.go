//go:build linux

// Command floor measures the per-core ceiling of any HTTP/1.1 load generator that sends
// one request at a time per connection (no pipelining) on this machine: one OS thread,
// one edge-triggered epoll set, non-blocking sockets, raw read/write system calls, a
// fixed pre-built request, and nothing else — no latency recording, no scenario choice,
// no scheduler. What it costs per request is, almost entirely, the kernel's loopback
// TCP work (on loopback the sender's write also runs the receiver's softirq), which any
// generator pays. loadtest/bench/compare.sh runs it beside loadtest, wrk and Locust.
//
//	floor -addr 127.0.0.1:18080 -conns 50 -duration 10s -path /metrics
//
// It prints "requests <n> errors <n> wall <seconds>"; compare.sh measures its CPU time
// with /usr/bin/time the same way as for the other tools. Every response must be
// "HTTP/1.x 200" with a Content-Length body (what okserver sends); anything else ends
// the run with an error.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"syscall"
	"time"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "floor:", err)
		os.Exit(1)
	}
}

type conn struct {
	fd  int
	buf []byte // bytes of the current response received so far
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:18080", "server address (IPv4 literal:port)")
	conns := flag.Int("conns", 50, "concurrent connections, one request in flight on each")
	duration := flag.Duration("duration", 10*time.Second, "how long to run")
	path := flag.String("path", "/metrics", "request path")
	flag.Parse()
	ap, err := netip.ParseAddrPort(*addr)
	if err != nil || !ap.Addr().Is4() {
		return fmt.Errorf("-addr %q: want an IPv4 address and port, such as 127.0.0.1:18080", *addr)
	}
	if *conns < 1 || *duration <= 0 {
		return errors.New("-conns and -duration must be positive")
	}
	runtime.LockOSThread()
	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: " + *addr + "\r\n\r\n")

	ep, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	cs := make([]*conn, *conns)
	for i := range cs {
		c, err := dial(ap)
		if err != nil {
			return err
		}
		cs[i] = c
		// syscall.EPOLLET is declared negative (1<<31 as an int); negated, it fits Events.
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | -syscall.EPOLLET, Fd: int32(i)}
		if err := syscall.EpollCtl(ep, syscall.EPOLL_CTL_ADD, c.fd, &ev); err != nil {
			return fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	for _, c := range cs {
		if err := send(c.fd, req); err != nil {
			return err
		}
	}

	start := time.Now()
	end := start.Add(*duration)
	events := make([]syscall.EpollEvent, 256)
	rbuf := make([]byte, 16<<10)
	var requests, errs int
	for time.Now().Before(end) {
		n, err := syscall.EpollWait(ep, events, 100)
		if errors.Is(err, syscall.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		for _, ev := range events[:n] {
			c := cs[ev.Fd]
			for { // edge-triggered: read until EAGAIN
				m, err := syscall.Read(c.fd, rbuf)
				if errors.Is(err, syscall.EAGAIN) {
					break
				}
				if err != nil {
					return fmt.Errorf("read: %w", err)
				}
				if m == 0 {
					return errors.New("server closed a connection")
				}
				c.buf = append(c.buf, rbuf[:m]...)
				done, ok, err := complete(c.buf)
				if err != nil {
					return err
				}
				if done == 0 {
					continue
				}
				if done != len(c.buf) {
					return errors.New("server sent bytes after the response")
				}
				c.buf = c.buf[:0]
				requests++
				if !ok {
					errs++
				}
				if err := send(c.fd, req); err != nil {
					return err
				}
				break // one request in flight: nothing more can arrive before the next response
			}
		}
	}
	wall := time.Since(start)
	fmt.Printf("requests %d errors %d wall %.3f\n", requests, errs, wall.Seconds())
	return nil
}

func dial(ap netip.AddrPort) (*conn, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("socket: %w", err)
	}
	if err := syscall.Connect(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		return nil, fmt.Errorf("connect %s: %w", ap, err)
	}
	if err := syscall.SetsockoptInt(fd, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		return nil, fmt.Errorf("TCP_NODELAY: %w", err)
	}
	if err := syscall.SetNonblock(fd, true); err != nil {
		return nil, fmt.Errorf("O_NONBLOCK: %w", err)
	}
	return &conn{fd: fd, buf: make([]byte, 0, 1024)}, nil
}

// send writes the whole request; a loopback socket's send buffer always has room for it.
func send(fd int, req []byte) error {
	n, err := syscall.Write(fd, req)
	if err != nil {
		return fmt.Errorf("write: %w", err)
	}
	if n != len(req) {
		return fmt.Errorf("short write (%d of %d bytes)", n, len(req))
	}
	return nil
}

// complete returns the length of the response at the start of b once all of it has
// arrived (0 before that) and whether its status was 200.
func complete(b []byte) (n int, ok bool, err error) {
	head, _, found := bytes.Cut(b, []byte("\r\n\r\n"))
	if !found {
		return 0, false, nil
	}
	if !bytes.HasPrefix(head, []byte("HTTP/1.")) || len(head) < 12 {
		return 0, false, fmt.Errorf("not an HTTP/1.x response: %q", head[:min(len(head), 40)])
	}
	ok = string(head[9:12]) == "200"
	length := -1
	for line := range bytes.SplitSeq(head, []byte("\r\n")) {
		name, value, _ := bytes.Cut(line, []byte(":"))
		if bytes.EqualFold(name, []byte("Content-Length")) {
			length, err = strconv.Atoi(string(bytes.TrimSpace(value)))
			if err != nil || length < 0 {
				return 0, false, fmt.Errorf("bad Content-Length %q", value)
			}
		}
	}
	if length < 0 {
		return 0, false, errors.New("response without Content-Length (floor only reads those)")
	}
	total := len(head) + 4 + length
	if len(b) < total {
		return 0, false, nil
	}
	return total, ok, nil
}
