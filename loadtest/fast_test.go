package loadtest

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawServer answers every request on a connection with respond(n), n counting
// requests across connections, and closes the connection when respond says so.
type rawServer struct {
	ln      net.Listener
	accepts atomic.Int64
	served  atomic.Int64
}

func newRawServer(t *testing.T, respond func(n int64) (resp string, closeAfter bool)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.accepts.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					resp, closeAfter := respond(s.served.Add(1))
					if _, err := io.WriteString(c, resp); err != nil || closeAfter {
						return
					}
				}
			}()
		}
	}()
	return s
}

func (s *rawServer) url() string { return "http://" + s.ln.Addr().String() }

func TestFastPathFraming(t *testing.T) {
	const body = `{"text":"x","generated_tokens":7}`
	n := strconv.Itoa(len(body))
	rest := strconv.FormatInt(int64(len(body)-16), 16)
	for _, tc := range []struct {
		name       string
		resp       string
		closeAfter bool
		wantConns  int64 // connections for 20 requests
		code       string
	}{
		{"content-length keep-alive", "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + n + "\r\n\r\n" + body, false, 1, "200"},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n" + body[:16] + "\r\n" + rest + "\r\n" + body[16:] + "\r\n0\r\nX-Trailer: 1\r\n\r\n", false, 1, "200"},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: " + n + "\r\n\r\n" + body, true, 20, "200"},
		{"body to EOF", "HTTP/1.0 200 OK\r\n\r\n" + body, true, 20, "200"},
		{"interim 100", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: " + n + "\r\n\r\n" + body, false, 1, "200"},
		// The server drops the kept-alive connection without saying so: each next
		// request fails before any response byte and is retried once on a new connection.
		{"silent close", "HTTP/1.1 200 OK\r\nContent-Length: " + n + "\r\n\r\n" + body, true, 20, "200"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, func(int64) (string, bool) { return tc.resp, tc.closeAfter })
			targets, _ := NewStaticTargets(srv.url())
			sum, err := Run(context.Background(), Options{Targets: targets, Weights: only(ScenarioBasic), Users: 1, Requests: 20})
			if err != nil {
				t.Fatal(err)
			}
			st := sum.Total
			if st.Requests != 20 || st.Errors != 0 || st.Codes[tc.code] != 20 {
				t.Fatalf("requests %d errors %v codes %v; want 20 answered %s", st.Requests, st.ErrorKinds, st.Codes, tc.code)
			}
			if st.OutputTokens != 20*7 {
				t.Errorf("output tokens %d, want 140 (generated_tokens 7 each)", st.OutputTokens)
			}
			if got := srv.accepts.Load(); got != tc.wantConns {
				t.Errorf("%d connections for 20 requests, want %d", got, tc.wantConns)
			}
		})
	}
}

func TestFastPathBadResponses(t *testing.T) {
	for _, tc := range []struct {
		name, resp, kind, code string
	}{
		{"not http", "SSH-2.0-OpenSSH\r\n\r\n", "other", "none"},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", "other", "200"},
		{"short body", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort", "connection_reset", "200"},
		{"status", "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 1\r\nContent-Length: 2\r\n\r\n{}", "status", "503"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, func(int64) (string, bool) { return tc.resp, true })
			targets, _ := NewStaticTargets(srv.url())
			sum, err := Run(context.Background(), Options{Targets: targets, Weights: only(ScenarioRapid), Users: 1, Requests: 3, Timeout: time.Second})
			if err != nil {
				t.Fatal(err)
			}
			st := sum.Total
			if st.Errors != 3 || st.ErrorKinds[tc.kind] != 3 || st.Codes[tc.code] != 3 {
				t.Errorf("errors %d kinds %v codes %v; want 3 %s with code %s", st.Errors, st.ErrorKinds, st.Codes, tc.kind, tc.code)
			}
		})
	}
}

// Both clients must agree on the request they send.
func TestFastPathRequestBytes(t *testing.T) {
	got := string(appendRequest(nil, &spec{method: "POST", pathQuery: "/infer?prompt=a+b&max_length=8"}, "h:1", "Bearer t0k"))
	want := "POST /infer?prompt=a+b&max_length=8 HTTP/1.1\r\nHost: h:1\r\nUser-Agent: inferstack-loadtest\r\nAuthorization: Bearer t0k\r\nContent-Length: 0\r\n\r\n"
	if got != want {
		t.Errorf("request\n%q\nwant\n%q", got, want)
	}
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(got)))
	if err != nil || req.URL.Query().Get("prompt") != "a b" || req.URL.Query().Get("max_length") != "8" || req.Header.Get("Authorization") != "Bearer t0k" {
		t.Errorf("net/http reads it as %+v, %v", req, err)
	}
}
