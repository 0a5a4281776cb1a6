package server

import (
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/inferstack/inferstack/inference/telemetry"
	"github.com/inferstack/inferstack/internal/syncbuf"
)

// failingWriter accepts the headers, then fails every body write, as a connection
// whose client stopped reading (write deadline) or went away (broken pipe) does.
type failingWriter struct {
	*httptest.ResponseRecorder
}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("i/o timeout") }
func (failingWriter) Flush()                    {}

// A stream whose client stops reading is the client's doing: it must not be logged
// as a server error nor counted as an internal failure.
func TestStreamWriteFailureIsNotAServerError(t *testing.T) {
	var logs syncbuf.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f := newFake()
	m := telemetry.New(telemetry.Options{DisableGPU: true, Logger: log})
	f.obs = m
	s := New(Config{}, f, m, log)
	s.SetReady(true)

	req := httptest.NewRequest(http.MethodPost, "/v1/completions", strings.NewReader(`{"prompt":"hello there","max_tokens":4,"stream":true}`))
	req.Header.Set("Content-Type", "application/json")
	s.Handler().ServeHTTP(failingWriter{httptest.NewRecorder()}, req)

	if out := logs.String(); strings.Contains(out, "level=ERROR") {
		t.Errorf("a client that stopped reading was logged as an error:\n%s", out)
	}
	if n := testutil.ToFloat64(m.Failures.WithLabelValues(telemetry.ReasonInternal)); n != 0 {
		t.Errorf("inference_request_failures_total{reason=internal} = %v, want 0", n)
	}
}
