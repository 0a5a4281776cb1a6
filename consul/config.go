// Package consul registers the inference server in a Consul agent and keeps it
// registered: a unique service ID per instance, tags and meta that Prometheus
// relabels, an HTTP check on the readiness endpoint run by the agent, retries with
// capped exponential backoff and full jitter while the agent is unreachable, and a
// periodic comparison with the agent's services that registers again after an agent
// restart. Deregister takes the instance out before the server drains.
package consul

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Defaults for the zero fields of Config.
const (
	DefaultServiceName             = "inference"
	DefaultCheckPath               = "/readyz"
	DefaultMetricsPath             = "/metrics"
	DefaultCheckInterval           = 10 * time.Second
	DefaultCheckTimeout            = 5 * time.Second
	DefaultDeregisterCriticalAfter = time.Minute // Consul's own floor
	DefaultResyncInterval          = 30 * time.Second
	DefaultBackoffMin              = 500 * time.Millisecond
	DefaultBackoffMax              = 30 * time.Second
	DefaultRequestTimeout          = 10 * time.Second
	DefaultNomadPortLabel          = "http"
)

// Meta keys the registrar sets. Prometheus sees them as
// __meta_consul_service_metadata_<key>.
const (
	MetaMetricsPath  = "metrics_path"
	MetaNomadAllocID = "nomad_alloc_id"
	MetaNomadNode    = "nomad_node"
	MetaNomadJob     = "nomad_job"
	MetaNomadGroup   = "nomad_group"
	MetaNomadTask    = "nomad_task"
)

// Config says where and how to register. Zero durations and strings take the
// Default* values above.
type Config struct {
	// Address of the Consul agent's HTTP API ("127.0.0.1:8500" or a URL).
	// Empty turns registration off: check Enabled before NewRegistrar.
	// Callers usually default it to $CONSUL_HTTP_ADDR.
	Address string
	// Token is the ACL token. TokenFile is read instead when set. When both are
	// empty, CONSUL_HTTP_TOKEN_FILE and CONSUL_HTTP_TOKEN apply. Never logged.
	Token, TokenFile string

	// ServiceName is the Consul service name (default "inference").
	ServiceName string
	// ServiceID must be unique per instance. Default: FillFromNomadEnv's
	// "<service>-<alloc id>-<task>" under Nomad, else "<service>-<hostname>-<port>".
	ServiceID string
	// AdvertiseAddr and Port are where Prometheus and the health check reach this
	// instance. Required (FillFromNomadEnv takes them from Nomad).
	AdvertiseAddr string
	Port          int
	// Tags and Meta are registered as given; Meta gets metrics_path=/metrics
	// unless it sets one.
	Tags []string
	Meta map[string]string

	// CheckPath is the readiness path the agent checks (default "/readyz").
	CheckPath string
	// CheckInterval, CheckTimeout and DeregisterCriticalAfter configure the
	// agent's HTTP check. Consul raises DeregisterCriticalAfter to at least 1m.
	CheckInterval, CheckTimeout, DeregisterCriticalAfter time.Duration
	// ResyncInterval is how often the agent's services are compared with ours.
	ResyncInterval time.Duration
	// BackoffMin and BackoffMax bound the retry delay: attempt n waits a random
	// time in [0, min(BackoffMax, BackoffMin*2^n)) ("full jitter").
	BackoffMin, BackoffMax time.Duration
	// RequestTimeout bounds each call to the agent (default 10s).
	RequestTimeout time.Duration
	// NomadPortLabel is the Nomad port label FillFromNomadEnv reads (default "http").
	NomadPortLabel string
}

// Enabled reports whether registration is configured (Address is set).
func (c *Config) Enabled() bool { return strings.TrimSpace(c.Address) != "" }

// FillFromNomadEnv fills the fields left empty from Nomad's task environment:
// AdvertiseAddr from NOMAD_IP_<label>, Port from NOMAD_HOST_PORT_<label>, and,
// when NOMAD_ALLOC_ID is set, ServiceID "<service>-<alloc id>-<task>" and the meta
// nomad_alloc_id, nomad_node (NOMAD_NODE_NAME, else NOMAD_NODE_ID — Nomad does not
// export these by default; the job sets them from ${node.unique.name} and
// ${node.unique.id}), nomad_job, nomad_group and nomad_task. Explicit values win.
func (c *Config) FillFromNomadEnv(getenv func(string) string) {
	label := c.NomadPortLabel
	if label == "" {
		label = DefaultNomadPortLabel
	}
	if c.AdvertiseAddr == "" {
		c.AdvertiseAddr = getenv("NOMAD_IP_" + label)
	}
	if c.Port == 0 {
		if p, err := strconv.Atoi(getenv("NOMAD_HOST_PORT_" + label)); err == nil {
			c.Port = p
		}
	}
	alloc := getenv("NOMAD_ALLOC_ID")
	if alloc == "" {
		return
	}
	task := getenv("NOMAD_TASK_NAME")
	if c.ServiceID == "" {
		name := c.ServiceName
		if name == "" {
			name = DefaultServiceName
		}
		c.ServiceID = name + "-" + alloc
		if task != "" {
			c.ServiceID += "-" + task
		}
	}
	if c.Meta == nil {
		c.Meta = map[string]string{}
	}
	set := func(key string, values ...string) {
		if _, ok := c.Meta[key]; ok {
			return
		}
		for _, v := range values {
			if v != "" {
				c.Meta[key] = v
				return
			}
		}
	}
	set(MetaNomadAllocID, alloc)
	set(MetaNomadNode, getenv("NOMAD_NODE_NAME"), getenv("NOMAD_NODE_ID"))
	set(MetaNomadJob, getenv("NOMAD_JOB_NAME"), getenv("NOMAD_JOB_ID"))
	set(MetaNomadGroup, getenv("NOMAD_GROUP_NAME"))
	set(MetaNomadTask, task)
}

// withDefaults returns a copy with defaults applied, or an error naming the first
// invalid field.
func (c Config) withDefaults() (Config, error) {
	if !c.Enabled() {
		return c, errors.New("consul address is empty (registration is off)")
	}
	if c.ServiceName == "" {
		c.ServiceName = DefaultServiceName
	}
	if c.CheckPath == "" {
		c.CheckPath = DefaultCheckPath
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.CheckInterval, DefaultCheckInterval)
	def(&c.CheckTimeout, DefaultCheckTimeout)
	def(&c.DeregisterCriticalAfter, DefaultDeregisterCriticalAfter)
	def(&c.ResyncInterval, DefaultResyncInterval)
	def(&c.BackoffMin, DefaultBackoffMin)
	def(&c.BackoffMax, DefaultBackoffMax)
	def(&c.RequestTimeout, DefaultRequestTimeout)

	if a := c.AdvertiseAddr; len(a) > 2 && a[0] == '[' && a[len(a)-1] == ']' && isIP(a[1:len(a)-1]) {
		c.AdvertiseAddr = a[1 : len(a)-1] // "[::1]": the brackets belong in URLs, not in the address
	}
	switch {
	case c.AdvertiseAddr == "":
		return c, errors.New("advertise address is empty: set it, or run under Nomad with a port labelled " + labelOr(c.NomadPortLabel))
	case isUnspecified(c.AdvertiseAddr):
		return c, fmt.Errorf("advertise address %q is a wildcard: give an address others can reach", c.AdvertiseAddr)
	case hasPort(c.AdvertiseAddr) && !strings.Contains(c.AdvertiseAddr, "/"):
		return c, fmt.Errorf("advertise address %q includes a port: give the host or IP only (the port is %d)", c.AdvertiseAddr, c.Port)
	case strings.ContainsAny(c.AdvertiseAddr, "[]/ ") || (strings.Contains(c.AdvertiseAddr, ":") && !isIP(c.AdvertiseAddr)):
		return c, fmt.Errorf("advertise address %q is not an IP address or host name", c.AdvertiseAddr)
	case c.Port <= 0 || c.Port > 65535:
		return c, fmt.Errorf("port %d is out of range 1-65535", c.Port)
	case !strings.HasPrefix(c.CheckPath, "/"):
		return c, fmt.Errorf("check path %q must start with /", c.CheckPath)
	case c.CheckInterval < 0 || c.CheckTimeout < 0 || c.DeregisterCriticalAfter < 0 || c.ResyncInterval < 0 ||
		c.BackoffMin < 0 || c.BackoffMax < 0 || c.RequestTimeout < 0:
		return c, errors.New("durations must not be negative")
	case c.BackoffMax < c.BackoffMin:
		return c, fmt.Errorf("backoff max %v is below backoff min %v", c.BackoffMax, c.BackoffMin)
	}

	meta := make(map[string]string, len(c.Meta)+1)
	for k, v := range c.Meta {
		if err := validateMetaKey(k); err != nil {
			return c, err
		}
		if len(v) > maxMetaValue {
			return c, fmt.Errorf("meta %q: value is %d characters; Consul allows %d", k, len(v), maxMetaValue)
		}
		meta[k] = v
	}
	if _, ok := meta[MetaMetricsPath]; !ok {
		meta[MetaMetricsPath] = DefaultMetricsPath
	}
	if len(meta) > maxMetaPairs {
		return c, fmt.Errorf("%d meta pairs; Consul allows %d", len(meta), maxMetaPairs)
	}
	c.Meta = meta
	c.Tags = append([]string(nil), c.Tags...)

	if c.ServiceID == "" {
		host, err := os.Hostname()
		if err != nil || host == "" {
			host = c.AdvertiseAddr
		}
		c.ServiceID = fmt.Sprintf("%s-%s-%d", c.ServiceName, host, c.Port)
	}
	c.ServiceID = sanitizeID(c.ServiceID)
	return c, nil
}

func labelOr(l string) string {
	if l == "" {
		return DefaultNomadPortLabel
	}
	return l
}

// Consul's limits on service meta (structs.ValidateServiceMetadata).
const (
	maxMetaValue = 512
	maxMetaPairs = 64
)

// hasPort reports whether a is host:port or [v6]:port.
func hasPort(a string) bool {
	_, _, err := net.SplitHostPort(a)
	return err == nil
}

func isIP(a string) bool {
	_, err := netip.ParseAddr(a)
	return err == nil
}

func isUnspecified(a string) bool {
	ip, err := netip.ParseAddr(strings.Trim(a, "[]"))
	return err == nil && ip.IsUnspecified()
}

// validateMetaKey applies Consul's rules for meta keys, so that a bad key fails at
// start rather than on every registration attempt.
func validateMetaKey(k string) error {
	if k == "" || len(k) > 128 {
		return fmt.Errorf("meta key %q: must be 1-128 characters", k)
	}
	if strings.HasPrefix(k, "consul-") {
		return fmt.Errorf("meta key %q: the prefix consul- is reserved", k)
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return fmt.Errorf("meta key %q: only letters, digits, _ and - are allowed", k)
		}
	}
	return nil
}

// sanitizeID keeps service IDs safe in URL paths: characters other than letters,
// digits, '.', '_' and '-' become '-'.
func sanitizeID(id string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			return r
		}
		return '-'
	}, id)
}
