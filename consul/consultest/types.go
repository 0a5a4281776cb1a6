package consultest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// Health states, as Consul spells them.
const (
	StatusPassing  = "passing"
	StatusWarning  = "warning"
	StatusCritical = "critical"
)

func validStatus(s string) bool {
	return s == StatusPassing || s == StatusWarning || s == StatusCritical
}

// duration decodes what Consul accepts for a duration in a request body: a Go
// duration string ("10s", "1m30s"), an empty string (zero), or a number of
// nanoseconds.
type duration time.Duration

func (d *duration) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		*d = 0
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		if s == "" {
			*d = 0
			return nil
		}
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = duration(v)
		return nil
	}
	var n int64
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("invalid duration %s", b)
	}
	*d = duration(n)
	return nil
}

// weights are a service's DNS weights.
type weights struct {
	Passing int
	Warning int
}

// serviceAddress is one entry of a service's TaggedAddresses.
type serviceAddress struct {
	Address string
	Port    int
}

// serviceDefinition is the body of PUT /v1/agent/service/register.
type serviceDefinition struct {
	Kind              string
	ID                string
	Name              string
	Tags              []string
	Address           string
	TaggedAddresses   map[string]serviceAddress
	Meta              map[string]string
	Port              int
	Weights           *weights
	EnableTagOverride bool
	Check             *checkDefinition
	Checks            []*checkDefinition
	Proxy             json.RawMessage
	Connect           json.RawMessage
}

// checkDefinition is a check inside a service registration, or the body of
// PUT /v1/agent/check/register (which names the ID "ID" rather than "CheckID").
type checkDefinition struct {
	ID                             string
	CheckID                        string
	Name                           string
	Status                         string
	Notes                          string
	ServiceID                      string
	HTTP                           string
	Header                         map[string][]string
	Method                         string
	Body                           string
	TLSServerName                  string
	TLSSkipVerify                  bool
	TCP                            string
	UDP                            string
	GRPC                           string
	H2PING                         string
	OSService                      string
	AliasNode                      string
	AliasService                   string
	DockerContainerID              string
	Args                           []string
	ScriptArgs                     []string
	Interval                       duration
	Timeout                        duration
	TTL                            duration
	DeregisterCriticalServiceAfter duration
}

// validate mirrors Consul's CheckType.Validate, then refuses the check kinds this
// double does not run.
func (c *checkDefinition) validate() error {
	intervalCheck := len(c.Args) > 0 || len(c.ScriptArgs) > 0 || c.HTTP != "" || c.TCP != "" ||
		c.UDP != "" || c.GRPC != "" || c.H2PING != "" || c.OSService != ""
	alias := c.AliasNode != "" || c.AliasService != ""
	if c.Interval > 0 && c.TTL > 0 {
		return fmt.Errorf("Interval and TTL cannot both be specified")
	}
	if intervalCheck && c.Interval <= 0 {
		return fmt.Errorf("Interval must be > 0 for Script, HTTP, H2PING, TCP, UDP or GRPC checks")
	}
	if !intervalCheck && !alias && c.TTL <= 0 {
		return fmt.Errorf("TTL must be > 0 for TTL checks")
	}
	if c.Status != "" && !validStatus(c.Status) {
		return errBadCheckStatus
	}
	switch {
	case len(c.Args) > 0 || len(c.ScriptArgs) > 0 || c.DockerContainerID != "":
		return fmt.Errorf("script and Docker checks are not run by this test double (consultest)")
	case c.UDP != "" || c.GRPC != "" || c.H2PING != "" || c.OSService != "" || alias:
		return fmt.Errorf("UDP, gRPC, H2PING, OS-service and alias checks are not run by this test double (consultest)")
	}
	return nil
}

var errBadCheckStatus = fmt.Errorf("Status for checks must 'passing', 'warning', 'critical'")

func (c *checkDefinition) kind() string {
	switch {
	case c.HTTP != "":
		return "http"
	case c.TCP != "":
		return "tcp"
	default:
		return "ttl"
	}
}

// normalizeKeys rewrites a decoded JSON document so that snake_case keys match the
// CamelCase field names (Consul accepts both): keys lose their underscores, and
// encoding/json then matches them case-insensitively. The keys of user maps (Meta,
// Header, TaggedAddresses) are left as they are.
func normalizeKeys(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, val := range t {
			nk := strings.ReplaceAll(k, "_", "")
			switch strings.ToLower(nk) {
			case "meta", "header", "nodemeta":
				out[nk] = val
			case "taggedaddresses":
				if m, ok := val.(map[string]any); ok {
					inner := make(map[string]any, len(m))
					for mk, mv := range m {
						inner[mk] = normalizeKeys(mv)
					}
					out[nk] = inner
				} else {
					out[nk] = val
				}
			default:
				out[nk] = normalizeKeys(val)
			}
		}
		return out
	case []any:
		for i := range t {
			t[i] = normalizeKeys(t[i])
		}
		return t
	default:
		return v
	}
}

// decodeBody decodes a Consul request body, accepting snake_case keys.
func decodeBody(body []byte, out any) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return fmt.Errorf("EOF")
	}
	var raw any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return err
	}
	norm, err := json.Marshal(normalizeKeys(raw))
	if err != nil {
		return err
	}
	return json.Unmarshal(norm, out)
}

// validateMeta mirrors Consul's metadata rules for services.
func validateMeta(meta map[string]string) error {
	const maxPairs, maxKey, maxValue = 64, 128, 512
	if len(meta) > maxPairs {
		return fmt.Errorf("Node metadata cannot contain more than %d key/value pairs", maxPairs)
	}
	for k, v := range meta {
		if k == "" {
			return fmt.Errorf("Key cannot be blank")
		}
		var reason string
		switch {
		case len(k) > maxKey:
			reason = fmt.Sprintf("Key is too long (limit: %d characters)", maxKey)
		case !validMetaKey(k):
			reason = "Key contains invalid characters"
		case strings.HasPrefix(k, "consul-"):
			reason = "Key prefix 'consul-' is reserved for internal use"
		case len(v) > maxValue:
			reason = fmt.Sprintf("Value is too long (limit: %d characters)", maxValue)
		}
		if reason != "" {
			return fmt.Errorf("Couldn't load metadata pair ('%s', '%s'): %s", k, v, reason)
		}
	}
	return nil
}

func validMetaKey(k string) bool {
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_' || r == '-') {
			return false
		}
	}
	return true
}

// ---- response shapes (the JSON Consul returns) ----

type agentServiceJSON struct {
	Kind              string `json:",omitempty"`
	ID                string
	Service           string
	Tags              []string
	Meta              map[string]string
	Port              int
	Address           string
	TaggedAddresses   map[string]serviceAddress `json:",omitempty"`
	Weights           weights
	EnableTagOverride bool
	CreateIndex       uint64 `json:",omitempty"`
	ModifyIndex       uint64 `json:",omitempty"`
	ContentHash       string `json:",omitempty"`
	Datacenter        string
}

type checkDefinitionJSON struct {
	HTTP                           string              `json:",omitempty"`
	Header                         map[string][]string `json:",omitempty"`
	Method                         string              `json:",omitempty"`
	Body                           string              `json:",omitempty"`
	TLSServerName                  string              `json:",omitempty"`
	TLSSkipVerify                  bool                `json:",omitempty"`
	TCP                            string              `json:",omitempty"`
	Interval                       string
	Timeout                        string
	DeregisterCriticalServiceAfter string
}

type healthCheckJSON struct {
	Node        string
	CheckID     string
	Name        string
	Status      string
	Notes       string
	Output      string
	ServiceID   string
	ServiceName string
	ServiceTags []string
	Type        string
	Interval    string `json:",omitempty"`
	Timeout     string `json:",omitempty"`
	ExposedPort int
	Definition  checkDefinitionJSON
	CreateIndex uint64
	ModifyIndex uint64
}

type nodeJSON struct {
	ID              string
	Node            string
	Address         string
	Datacenter      string
	TaggedAddresses map[string]string
	Meta            map[string]string
	CreateIndex     uint64
	ModifyIndex     uint64
}

type serviceEntryJSON struct {
	Node    nodeJSON
	Service agentServiceJSON
	Checks  []healthCheckJSON
}

type catalogServiceJSON struct {
	ID                       string
	Node                     string
	Address                  string
	Datacenter               string
	TaggedAddresses          map[string]string
	NodeMeta                 map[string]string
	ServiceKind              string
	ServiceID                string
	ServiceName              string
	ServiceTags              []string
	ServiceAddress           string
	ServiceTaggedAddresses   map[string]serviceAddress `json:",omitempty"`
	ServiceWeights           weights
	ServiceMeta              map[string]string
	ServicePort              int
	ServiceEnableTagOverride bool
	CreateIndex              uint64
	ModifyIndex              uint64
}
