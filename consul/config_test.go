package consul

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
)

func envFunc(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestFillFromNomadEnv(t *testing.T) {
	t.Parallel()
	nomad := map[string]string{
		"NOMAD_ALLOC_ID":        "5b3a1e7c-0000-4000-8000-000000000001",
		"NOMAD_TASK_NAME":       "server",
		"NOMAD_IP_http":         "10.0.0.7",
		"NOMAD_HOST_PORT_http":  "24567",
		"NOMAD_IP_api":          "10.0.0.8",
		"NOMAD_HOST_PORT_api":   "31000",
		"NOMAD_NODE_NAME":       "gpu-node-3",
		"NOMAD_NODE_ID":         "node-uuid",
		"NOMAD_JOB_NAME":        "inference",
		"NOMAD_GROUP_NAME":      "serve",
		"NOMAD_UNRELATED_THING": "x",
	}
	tests := []struct {
		name  string
		in    Config
		env   map[string]string
		check func(t *testing.T, c Config)
	}{
		{"nomad defaults", Config{ServiceName: "inference"}, nomad, func(t *testing.T, c Config) {
			if c.ServiceID != "inference-5b3a1e7c-0000-4000-8000-000000000001-server" || c.AdvertiseAddr != "10.0.0.7" || c.Port != 24567 {
				t.Fatalf("%+v", c)
			}
			want := map[string]string{"nomad_alloc_id": nomad["NOMAD_ALLOC_ID"], "nomad_node": "gpu-node-3",
				"nomad_job": "inference", "nomad_group": "serve", "nomad_task": "server"}
			for k, v := range want {
				if c.Meta[k] != v {
					t.Errorf("meta %s = %q, want %q", k, c.Meta[k], v)
				}
			}
		}},
		{"port label", Config{NomadPortLabel: "api"}, nomad, func(t *testing.T, c Config) {
			if c.AdvertiseAddr != "10.0.0.8" || c.Port != 31000 || !strings.HasPrefix(c.ServiceID, "inference-5b3a") {
				t.Fatalf("%+v", c)
			}
		}},
		{"explicit values win", Config{ServiceID: "mine", AdvertiseAddr: "192.0.2.1", Port: 9000, Meta: map[string]string{"nomad_node": "set"}}, nomad,
			func(t *testing.T, c Config) {
				if c.ServiceID != "mine" || c.AdvertiseAddr != "192.0.2.1" || c.Port != 9000 || c.Meta["nomad_node"] != "set" {
					t.Fatalf("%+v", c)
				}
			}},
		{"node id fallback", Config{}, map[string]string{"NOMAD_ALLOC_ID": "a1", "NOMAD_NODE_ID": "nid"}, func(t *testing.T, c Config) {
			if c.Meta["nomad_node"] != "nid" || c.ServiceID != "inference-a1" {
				t.Fatalf("%+v", c)
			}
		}},
		{"not under nomad", Config{ServiceName: "x"}, map[string]string{}, func(t *testing.T, c Config) {
			if c.ServiceID != "" || c.AdvertiseAddr != "" || c.Port != 0 || len(c.Meta) != 0 {
				t.Fatalf("%+v", c)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.in
			c.FillFromNomadEnv(envFunc(tt.env))
			tt.check(t, c)
		})
	}
}

func TestConfigDefaultsAndErrors(t *testing.T) {
	t.Parallel()
	ok := Config{Address: "127.0.0.1:8500", AdvertiseAddr: "10.0.0.1", Port: 8000}
	c, err := ok.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	host, _ := os.Hostname()
	if c.ServiceName != "inference" || c.CheckPath != "/readyz" || c.Meta["metrics_path"] != "/metrics" ||
		c.CheckInterval != DefaultCheckInterval || c.DeregisterCriticalAfter != time.Minute ||
		c.ServiceID != sanitizeID("inference-"+host+"-8000") {
		t.Fatalf("defaults: %+v", c)
	}
	if ok.Meta != nil {
		t.Fatal("withDefaults modified the caller's Meta")
	}
	bad := []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no address", func(c *Config) { c.Address = " " }, "consul address is empty"},
		{"no advertise", func(c *Config) { c.AdvertiseAddr = "" }, "advertise address is empty"},
		{"wildcard", func(c *Config) { c.AdvertiseAddr = "0.0.0.0" }, "wildcard"},
		{"wildcard v6", func(c *Config) { c.AdvertiseAddr = "::" }, "wildcard"},
		{"advertise with port", func(c *Config) { c.AdvertiseAddr = "127.0.0.1:8080" }, "includes a port"},
		{"advertise v6 with port", func(c *Config) { c.AdvertiseAddr = "[::1]:8080" }, "includes a port"},
		{"advertise not a host", func(c *Config) { c.AdvertiseAddr = "http://x" }, "not an IP address or host name"},
		{"meta value too long", func(c *Config) { c.Meta = map[string]string{"model": strings.Repeat("m", 513)} }, "Consul allows 512"},
		{"too many meta pairs", func(c *Config) {
			c.Meta = map[string]string{}
			for i := range 64 {
				c.Meta[fmt.Sprintf("k%d", i)] = "v"
			}
		}, "65 meta pairs; Consul allows 64"},
		{"port", func(c *Config) { c.Port = 70000 }, "out of range"},
		{"path", func(c *Config) { c.CheckPath = "readyz" }, "must start with /"},
		{"backoff", func(c *Config) { c.BackoffMin, c.BackoffMax = time.Second, time.Millisecond }, "below backoff min"},
		{"negative", func(c *Config) { c.ResyncInterval = -time.Second }, "negative"},
		{"meta key", func(c *Config) { c.Meta = map[string]string{"model name": "x"} }, `meta key "model name"`},
		{"meta prefix", func(c *Config) { c.Meta = map[string]string{"consul-x": "x"} }, "reserved"},
	}
	for _, tt := range bad {
		c := ok
		tt.mod(&c)
		if _, err := c.withDefaults(); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: got %v, want error containing %q", tt.name, err, tt.want)
		}
	}
	for in, want := range map[string]string{"[::1]": "::1", "::1": "::1", "10.0.0.1": "10.0.0.1", "node-1.example": "node-1.example"} {
		c := ok
		c.AdvertiseAddr = in
		if got, err := c.withDefaults(); err != nil || got.AdvertiseAddr != want {
			t.Errorf("advertise %q: got %q, %v; want %q", in, got.AdvertiseAddr, err, want)
		}
	}
	if (&Config{}).Enabled() || !(&Config{Address: "x:1"}).Enabled() {
		t.Fatal("Enabled")
	}
	if got := sanitizeID("inference-fe80::1%eth0-8000"); got != "inference-fe80--1-eth0-8000" {
		t.Fatalf("sanitizeID: %q", got)
	}
}

func TestBackoffBounds(t *testing.T) {
	t.Parallel()
	r := &Registrar{cfg: Config{BackoffMin: 10 * time.Millisecond, BackoffMax: time.Second}}
	for attempt := 0; attempt < 80; attempt++ {
		ceiling := time.Second
		if attempt < 7 {
			ceiling = min(ceiling, 10*time.Millisecond<<attempt)
		}
		var maxSeen time.Duration
		for i := 0; i < 200; i++ {
			d := r.backoff(attempt)
			if d < 0 || d >= ceiling {
				t.Fatalf("attempt %d: delay %v outside [0, %v)", attempt, d, ceiling)
			}
			maxSeen = max(maxSeen, d)
		}
		// Full jitter spreads over the whole range, not only near zero.
		if maxSeen < ceiling/2 {
			t.Fatalf("attempt %d: largest of 200 delays %v, want some above %v", attempt, maxSeen, ceiling/2)
		}
	}
}
