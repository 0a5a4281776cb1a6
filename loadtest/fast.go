package loadtest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"
)

// The fast path: plain-HTTP, non-streaming requests bypass net/http and go over a
// keep-alive connection each worker owns, with the request serialised into a reused
// buffer and the response parsed in place (status line, Content-Length or chunked
// body). It does no per-request allocation and no goroutine hand-off, which is most of
// what net/http's client costs at tens of thousands of requests per second. HTTPS,
// streaming and a caller-supplied http.Client use net/http.

// errMalformed is a response the fast path cannot parse as HTTP/1.x.
var errMalformed = errors.New("malformed HTTP response")

// connSet lets the runner cut every fast-path connection at once when the stop's
// grace period ends.
type connSet struct {
	mu      sync.Mutex
	conns   map[net.Conn]struct{}
	aborted bool
}

func newConnSet() *connSet { return &connSet{conns: map[net.Conn]struct{}{}} }

func (s *connSet) add(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.aborted {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *connSet) remove(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// abort makes every pending read or write on the connections fail now.
func (s *connSet) abort() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.aborted = true
	for c := range s.conns {
		_ = c.SetDeadline(time.Unix(1, 0))
	}
}

// fastConn is one keep-alive connection to one host.
type fastConn struct {
	host string
	c    net.Conn
	br   *bufio.Reader
}

// fastTransport is shared by the workers of a run.
type fastTransport struct {
	dialer  net.Dialer
	timeout time.Duration
	conns   *connSet
}

func (w *worker) closeFast() {
	if w.fc != nil {
		w.ft.conns.remove(w.fc.c)
		_ = w.fc.c.Close()
		w.fc = nil
	}
}

// doFast sends one request over the worker's connection to t and reads the response.
func (w *worker) doFast(ctx context.Context, t Target, s *spec, start, intended time.Time) *result {
	res := &w.res
	*res = result{scenario: s.scenario, gaps: res.gaps[:0]}
	w.wbuf = appendRequest(w.wbuf[:0], s, t.Host, w.auth)
	sent := time.Now()
	deadline := sent.Add(w.ft.timeout)
	var err error
	for attempt := 0; ; attempt++ {
		reused := w.fc != nil && w.fc.host == t.Host
		if !reused {
			w.closeFast()
			if err = w.dial(ctx, t.Host, deadline); err != nil {
				break
			}
		}
		var got bool
		got, err = w.exchange(s, deadline)
		if err == nil {
			break
		}
		w.closeFast()
		// A kept-alive connection the server closed while idle fails before any byte
		// of the response arrives; retry that once on a fresh connection.
		if !reused || got || attempt > 0 || ctx.Err() != nil || !isStale(err) {
			break
		}
	}
	w.finish(ctx, start, intended, sent, err)
	return res
}

func isStale(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || classify(err) == errConnReset
}

func (w *worker) dial(ctx context.Context, host string, deadline time.Time) error {
	dctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	c, err := w.ft.dialer.DialContext(dctx, "tcp", host)
	if err != nil {
		return err
	}
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	if !w.ft.conns.add(c) {
		_ = c.Close()
		return context.Canceled
	}
	if w.fbr == nil {
		w.fbr = bufio.NewReaderSize(c, 8<<10)
	} else {
		w.fbr.Reset(c)
	}
	w.fc = &fastConn{host: host, c: c, br: w.fbr}
	return nil
}

// appendRequest serialises the request line and headers (no body: the fast path is
// only used for body-less requests); auth, when set, is the Authorization header.
func appendRequest(b []byte, s *spec, host, auth string) []byte {
	b = append(b, s.method...)
	b = append(b, ' ')
	b = append(b, s.pathQuery...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUser-Agent: inferstack-loadtest\r\n"...)
	if auth != "" {
		b = append(b, "Authorization: "...)
		b = append(b, auth...)
		b = append(b, "\r\n"...)
	}
	if s.method == "POST" {
		b = append(b, "Content-Length: 0\r\n"...)
	}
	return append(b, "\r\n"...)
}

// exchange writes the request and reads one response; got reports whether any byte of
// the response arrived (after which a retry would not be safe).
func (w *worker) exchange(s *spec, deadline time.Time) (got bool, err error) {
	fc := w.fc
	if err := fc.c.SetDeadline(deadline); err != nil {
		return false, err
	}
	if _, err := fc.c.Write(w.wbuf); err != nil {
		return false, err
	}
	res := &w.res
	var keepAlive bool
	for {
		line, err := fc.br.ReadSlice('\n')
		if err != nil {
			return len(line) > 0, err
		}
		code, ka, err := parseStatusLine(line)
		if err != nil {
			return true, err
		}
		keepAlive = ka
		res.code = code
		if code >= 200 || code == 101 {
			break
		}
		// 1xx interim response: skip its headers and read the real one.
		if _, _, _, err := readHeaders(fc.br); err != nil {
			return true, err
		}
	}
	length, chunked, closeConn, err := readHeaders(fc.br)
	if err != nil {
		return true, err
	}
	if closeConn {
		keepAlive = false
	}
	scan := s.scenario != ScenarioMetrics && res.code == 200
	switch {
	case res.code == 204 || res.code == 304 || s.method == "HEAD":
	case chunked:
		err = w.readChunked(fc.br, scan)
	case length >= 0:
		err = w.readLength(fc.br, length, scan)
	default: // no length: the body runs to the end of the connection
		keepAlive = false
		err = w.readToEOF(fc.br, scan)
	}
	if err != nil {
		return true, err
	}
	if res.code < 200 || res.code > 299 {
		res.kind = errStatus
	}
	if !keepAlive {
		w.closeFast()
	}
	return true, nil
}

// parseStatusLine reads "HTTP/1.1 200 OK"; keepAlive is HTTP/1.1's default.
func parseStatusLine(line []byte) (code int, keepAlive bool, err error) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' {
		return 0, false, fmt.Errorf("%w: status line %q", errMalformed, trimForError(line))
	}
	for _, c := range line[9:12] {
		if c < '0' || c > '9' {
			return 0, false, fmt.Errorf("%w: status line %q", errMalformed, trimForError(line))
		}
		code = code*10 + int(c-'0')
	}
	return code, line[7] == '1', nil
}

func trimForError(b []byte) string {
	if len(b) > 64 {
		b = b[:64]
	}
	return string(bytes.TrimRight(b, "\r\n"))
}

// readHeaders consumes the header block and returns what framing needs.
func readHeaders(br *bufio.Reader) (length int64, chunked, closeConn bool, err error) {
	length = -1
	for {
		line, err := br.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			for errors.Is(err, bufio.ErrBufferFull) { // an over-long header: skip it
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				return 0, false, false, err
			}
			continue
		}
		if err != nil {
			return 0, false, false, err
		}
		if len(line) <= 2 { // "\r\n" ends the headers
			return length, chunked, closeConn, nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			continue
		}
		value = bytes.TrimSpace(value)
		switch {
		case asciiEqualFold(name, "content-length"):
			n, perr := strconv.ParseInt(string(value), 10, 64)
			if perr != nil || n < 0 {
				return 0, false, false, fmt.Errorf("%w: Content-Length %q", errMalformed, value)
			}
			length = n
		case asciiEqualFold(name, "transfer-encoding"):
			chunked = bytes.Contains(bytes.ToLower(value), []byte("chunked"))
		case asciiEqualFold(name, "connection"):
			closeConn = asciiEqualFold(value, "close")
		}
	}
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// readLength reads an n-byte body, scanning it for generated_tokens when scan is set.
func (w *worker) readLength(br *bufio.Reader, n int64, scan bool) error {
	if !scan || n > 1<<20 {
		_, err := br.Discard(int(n))
		return err
	}
	if int64(cap(w.buf)) < n {
		w.buf = make([]byte, n)
	}
	b := w.buf[:n]
	if _, err := io.ReadFull(br, b); err != nil {
		return err
	}
	w.res.tokens = scanInt(b, generatedTokensKey)
	return nil
}

// readChunked reads a chunked body (RFC 9112 §7.1), trailers included.
func (w *worker) readChunked(br *bufio.Reader, scan bool) error {
	body := w.buf[:0]
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size := int64(0)
		digits := 0
		for _, c := range line {
			var v byte
			switch {
			case '0' <= c && c <= '9':
				v = c - '0'
			case 'a' <= c && c <= 'f':
				v = c - 'a' + 10
			case 'A' <= c && c <= 'F':
				v = c - 'A' + 10
			default:
				goto done
			}
			size = size<<4 | int64(v)
			digits++
			if digits > 15 {
				return fmt.Errorf("%w: chunk size", errMalformed)
			}
		}
	done:
		if digits == 0 {
			return fmt.Errorf("%w: chunk size line %q", errMalformed, trimForError(line))
		}
		if size == 0 {
			_, _, _, err := readHeaders(br) // trailers, up to the blank line
			if scan {
				w.res.tokens = scanInt(body, generatedTokensKey)
			}
			return err
		}
		if scan && len(body)+int(size) <= 1<<20 {
			n := len(body)
			body = append(body, make([]byte, size)...)
			if _, err := io.ReadFull(br, body[n:]); err != nil {
				return err
			}
		} else if _, err := br.Discard(int(size)); err != nil {
			return err
		}
		if _, err := br.Discard(2); err != nil { // the chunk's CRLF
			return err
		}
	}
}

func (w *worker) readToEOF(br *bufio.Reader, scan bool) error {
	if !scan {
		_, err := io.CopyBuffer(io.Discard, br, w.buf[:cap(w.buf)])
		return err
	}
	var b bytes.Buffer
	_, err := io.Copy(&b, io.LimitReader(br, 1<<20))
	w.res.tokens = scanInt(b.Bytes(), generatedTokensKey)
	if err == nil {
		_, err = io.Copy(io.Discard, br)
	}
	return err
}
