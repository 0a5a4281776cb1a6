package main

import (
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func mapEnv(m map[string]string) envLookup {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestConfigDefaults(t *testing.T) {
	c, err := parseConfig(nil, mapEnv(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != ":8000" || c.ExecutionProvider != "cpu" || c.MaxBatchSize != 32 || c.MaxQueue != 64 || c.QueueTimeout != 30*time.Second ||
		c.RequestTimeout != 10*time.Minute || c.MaxBodyBytes != 1<<20 || c.ShutdownDelay != 5*time.Second || c.DrainTimeout != time.Minute ||
		c.ServiceName != "inference" || c.ConsulAddr != "" || c.LogFormat != "text" || c.DefaultMaxNewTokens != 50 {
		t.Errorf("defaults: %+v", c)
	}
	root := moduleRootT(t)
	if c.ModelDir != filepath.Join(root, "inference/model/default") {
		t.Errorf("model dir default %q, want the repository's bundled model", c.ModelDir)
	}
	if c.ORTLib != filepath.Join(root, ".cache/onnxruntime-1.24.1/libonnxruntime.so.1") {
		t.Errorf("ORT lib default %q", c.ORTLib)
	}
}

func TestConfigEnvAndFlags(t *testing.T) {
	env := mapEnv(map[string]string{
		"INFERENCE_ADDR": "127.0.0.1:9000", "INFERENCE_MAX_QUEUE": "7", "INFERENCE_DRAIN_TIMEOUT": "20s",
		"CONSUL_HTTP_ADDR": "127.0.0.1:8500", "INFERENCE_METRICS_AUTH": "true", "INFERENCE_AUTH_TOKEN": "x",
	})
	c, err := parseConfig([]string{"--max-queue", "9"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9000" || c.MaxQueue != 9 || c.DrainTimeout != 20*time.Second || c.ConsulAddr != "127.0.0.1:8500" || !c.MetricsAuth {
		t.Errorf("env then flags: %+v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		args []string
		env  map[string]string
		want string
	}{
		{nil, map[string]string{"INFERENCE_MAX_QUEUE": "many"}, "INFERENCE_MAX_QUEUE"},
		{nil, map[string]string{"INFERENCE_QUEUE_TIMEOUT": "5"}, "INFERENCE_QUEUE_TIMEOUT"},
		{[]string{"--max-batch-size", "0"}, nil, "--max-batch-size"},
		{[]string{"--execution-provider", "tpu"}, nil, "--execution-provider"},
		{[]string{"--auth-token", "a", "--auth-token-file", "f"}, nil, "not both"},
		{[]string{"--metrics-auth"}, nil, "--metrics-auth"},
		{[]string{"--log-level", "loud"}, nil, "--log-level"},
		{[]string{"--log-format", "xml"}, nil, "--log-format"},
		{[]string{"extra"}, nil, "unexpected arguments"},
		{[]string{"--no-such-flag"}, nil, "no-such-flag"},
	}
	for _, tc := range tests {
		_, err := parseConfig(tc.args, mapEnv(tc.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v %v: error %v, want one naming %q", tc.args, tc.env, err, tc.want)
		}
	}
}

func TestAuthTokenFile(t *testing.T) {
	f := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(f, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c := config{AuthTokenFile: f}
	if tok, err := c.authToken(); err != nil || tok != "s3cret" {
		t.Errorf("token %q, %v", tok, err)
	}
	_ = os.WriteFile(f, []byte("\n"), 0o600)
	if _, err := c.authToken(); err == nil {
		t.Error("empty token file accepted")
	}
}

func TestValidationLossCheck(t *testing.T) {
	nan := func() float64 { var z float64; return z / z }()
	tests := []struct {
		loss, config float64
		want         bool
	}{
		{2.8, 2.76, true},
		{4.2, 2.76, true},
		{4.3, 2.76, false}, // over 1.5× + 0.1
		{8.4, nan, false},  // no better than uniform over 4096 tokens (ln 4096 ≈ 8.32)
		{5, nan, true},
		{nan, 2.76, false},
	}
	for _, tc := range tests {
		if got := validationLossOK(tc.loss, tc.config, 4096); got != tc.want {
			t.Errorf("validationLossOK(%v, %v) = %v", tc.loss, tc.config, got)
		}
	}
}

func TestAdvertiseAddr(t *testing.T) {
	if got := advertiseAddr("10.1.2.3:8000"); got != "10.1.2.3" {
		t.Errorf("specific host: %q", got)
	}
	if got := advertiseAddr(":8000"); got == "" || got == "0.0.0.0" {
		t.Errorf("wildcard listen address advertised as %q", got)
	}
}
