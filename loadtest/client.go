package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"syscall"
	"time"
)

// NewHTTPClient returns a client tuned for load generation: keep-alive connections
// kept idle up to maxConns per host (so every worker reuses its own), no transparent
// gzip, HTTP/1.1, and the given per-request timeout.
func NewHTTPClient(maxConns int, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		Proxy: nil, // a load generator must not silently go through a proxy
		DialContext: (&net.Dialer{
			Timeout:   10 * time.Second,
			KeepAlive: 30 * time.Second,
		}).DialContext,
		MaxIdleConns:          maxConns,
		MaxIdleConnsPerHost:   maxConns,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		DisableCompression:    true,
		ForceAttemptHTTP2:     false,
		WriteBufferSize:       4 << 10,
		ReadBufferSize:        8 << 10,
	}
	return &http.Client{Transport: tr, Timeout: timeout}
}

// worker holds the buffers (and, on the fast path, the connection) one goroutine
// reuses across requests.
type worker struct {
	client *http.Client
	ft     *fastTransport // nil: always net/http
	fc     *fastConn
	fbr    *bufio.Reader
	wbuf   []byte
	buf    []byte
	br     *bufio.Reader
	res    result
	header http.Header
	jsonCT http.Header
	auth   string // Authorization header value ("" = none)
}

// newWorker returns a worker; auth, when not empty, is sent as the Authorization
// header of every request.
func newWorker(c *http.Client, ft *fastTransport, auth string) *worker {
	w := &worker{
		client: c,
		ft:     ft,
		auth:   auth,
		wbuf:   make([]byte, 0, 1024),
		buf:    make([]byte, 8<<10),
		header: http.Header{"User-Agent": {"inferstack-loadtest"}},
		jsonCT: http.Header{"User-Agent": {"inferstack-loadtest"}, "Content-Type": {"application/json"}, "Accept": {"text/event-stream"}},
	}
	if auth != "" {
		w.header["Authorization"] = []string{auth}
		w.jsonCT["Authorization"] = []string{auth}
	}
	return w
}

// close releases the worker's fast-path connection.
func (w *worker) close() {
	if w.ft != nil {
		w.closeFast()
	}
}

// do sends one request and fills w.res. intended is when it was due (equal to the
// send time in closed loop); start is the run's start, for the time-series offset.
func (w *worker) do(ctx context.Context, t Target, s *spec, start, intended time.Time) *result {
	if w.ft != nil && s.body == nil && t.Scheme == "http" {
		return w.doFast(ctx, t, s, start, intended)
	}
	res := &w.res
	*res = result{scenario: s.scenario, gaps: res.gaps[:0]}

	path, query, _ := strings.Cut(s.pathQuery, "?")
	req := &http.Request{
		Method:     s.method,
		URL:        &url.URL{Scheme: t.Scheme, Host: t.Host, Path: path, RawQuery: query},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     w.header,
		Host:       t.Host,
	}
	if s.body != nil {
		req.Header = w.jsonCT
		req.Body = io.NopCloser(bytes.NewReader(s.body))
		req.ContentLength = int64(len(s.body))
		body := s.body
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
	}
	req = req.WithContext(ctx)

	sent := time.Now()
	resp, err := w.client.Do(req)
	if err != nil {
		w.finish(ctx, start, intended, sent, err)
		return res
	}
	res.code = resp.StatusCode
	switch {
	case s.scenario == ScenarioStream && resp.StatusCode == http.StatusOK:
		err = w.readStream(resp, intended)
	case s.scenario != ScenarioMetrics && resp.StatusCode == http.StatusOK:
		err = w.readInfer(resp.Body)
	default:
		_, err = io.CopyBuffer(io.Discard, resp.Body, w.buf)
	}
	resp.Body.Close()
	if err == nil && (resp.StatusCode < 200 || resp.StatusCode > 299) {
		res.kind = errStatus
	}
	w.finish(ctx, start, intended, sent, err)
	return res
}

// finish sets the times and classifies err.
func (w *worker) finish(ctx context.Context, start, intended, sent time.Time, err error) {
	res := &w.res
	end := time.Now()
	res.end = end.Sub(start)
	res.latency = end.Sub(intended)
	res.service = end.Sub(sent)
	if err == nil {
		return
	}
	if ctx.Err() != nil && !errors.Is(ctx.Err(), context.DeadlineExceeded) {
		res.aborted = true
		return
	}
	res.kind = classify(err)
	res.detail = err.Error()
}

// classify maps a transport or body error to its kind.
func classify(err error) errorKind {
	var se *sseError
	var ne net.Error
	switch {
	case errors.As(err, &se):
		return errSSE
	case errors.Is(err, ErrNoTarget):
		return errNoTarget
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, os.ErrDeadlineExceeded),
		errors.As(err, &ne) && ne.Timeout():
		return errTimeout
	case errors.Is(err, syscall.ECONNREFUSED):
		return errConnRefused
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE),
		errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, io.EOF):
		return errConnReset
	}
	var oe *net.OpError
	var de *net.DNSError
	if errors.As(err, &oe) || errors.As(err, &de) {
		return errConnection
	}
	return errOther
}

var generatedTokensKey = []byte(`"generated_tokens":`)

// readInfer reads an /infer body and takes generated_tokens from it without a full
// JSON decode (the only field the recorder needs).
func (w *worker) readInfer(body io.Reader) error {
	n := 0
	for {
		if n == len(w.buf) {
			if len(w.buf) >= 4<<20 { // a larger answer is drained, not scanned
				_, err := io.CopyBuffer(io.Discard, body, make([]byte, 32<<10))
				return err
			}
			w.buf = append(w.buf, make([]byte, len(w.buf))...)
		}
		m, err := body.Read(w.buf[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	w.res.tokens = scanInt(w.buf[:n], generatedTokensKey)
	return nil
}

// scanInt returns the non-negative integer after key in b, or 0.
func scanInt(b, key []byte) int {
	i := bytes.Index(b, key)
	if i < 0 {
		return 0
	}
	b = bytes.TrimLeft(b[i+len(key):], " \t\r\n")
	v := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			break
		}
		v = v*10 + int(c-'0')
	}
	return v
}

// sseError is a violation of the streaming protocol, or an error event.
type sseError struct{ msg string }

func (e *sseError) Error() string { return "sse: " + e.msg }

// streamChunk is the part of an OpenAI text_completion chunk the recorder reads.
type streamChunk struct {
	Choices []struct {
		Text string `json:"text"`
	} `json:"choices"`
	Usage *struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// readStream consumes a server-sent event stream of completion chunks and records
// the timing of every event that carries non-empty text.
func (w *worker) readStream(resp *http.Response, intended time.Time) error {
	res := &w.res
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		_, _ = io.CopyBuffer(io.Discard, resp.Body, w.buf)
		return &sseError{"content type " + ct + ", want text/event-stream"}
	}
	if w.br == nil {
		w.br = bufio.NewReaderSize(resp.Body, 16<<10)
	} else {
		w.br.Reset(resp.Body)
	}
	defer w.br.Reset(nil)
	var first, last time.Time
	usage := 0
	var data []byte
	hasData := false
events:
	for {
		line, err := w.br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = w.br.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil {
			if err == io.EOF {
				// A final "data: [DONE]" without the blank line that ends an event.
				l := bytes.TrimSpace(line)
				if string(l) == "data: [DONE]" || string(l) == "data:[DONE]" || (len(l) == 0 && hasData && string(data) == "[DONE]") {
					break events
				}
				return &sseError{"stream ended without data: [DONE]"}
			}
			return err
		}
		now := time.Now()
		line = bytes.TrimRight(line, "\r\n")
		if len(line) == 0 { // end of an event: dispatch its data
			if !hasData {
				continue
			}
			hasData = false
			payload := data
			data = data[:0]
			if string(payload) == "[DONE]" {
				break events
			}
			var c streamChunk
			if err := json.Unmarshal(payload, &c); err != nil {
				return &sseError{"chunk is not JSON: " + err.Error()}
			}
			if len(c.Error) > 0 && string(c.Error) != "null" {
				return &sseError{"error event: " + string(c.Error)}
			}
			if c.Usage != nil {
				usage = c.Usage.CompletionTokens
			}
			text := ""
			if len(c.Choices) > 0 {
				text = c.Choices[0].Text
			}
			if text == "" {
				continue
			}
			if res.chunks == 0 {
				first = now
				res.ttft = now.Sub(intended)
			} else {
				res.gaps = append(res.gaps, now.Sub(last))
			}
			last = now
			res.chunks++
			continue
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		if string(field) == "data" {
			value = bytes.TrimPrefix(value, []byte(" "))
			if hasData {
				data = append(data, '\n')
			}
			data = append(data, value...)
			hasData = true
		}
		// comments (":…"), event:, id: and retry: lines are ignored
	}
	// Drain anything after [DONE] so the connection can be reused.
	_, _ = io.CopyBuffer(io.Discard, w.br, w.buf)
	res.tokens = res.chunks
	if usage > 0 {
		res.tokens = usage
	}
	if res.tokens > 1 && res.chunks > 0 {
		res.tpot = last.Sub(first) / time.Duration(res.tokens-1)
	}
	return nil
}
