package consultest

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"slices"
	"strings"
)

// ACL turns on token enforcement with a default-deny policy. Tokens are looked up
// by their secret; a request whose token is not in Tokens is answered 403
// "ACL not found", a request without a token uses Anonymous.
type ACL struct {
	Tokens    map[string]Policy
	Anonymous Policy
}

// Policy is a simplified Consul ACL policy. Service lists hold exact service
// names, or "*" for every service (Consul spells that service_prefix "").
// Write implies read, as in Consul.
type Policy struct {
	// AccessorID appears in "Permission denied" messages (never the secret).
	// When empty, one is derived from the secret by hashing.
	AccessorID   string
	ServiceWrite []string
	ServiceRead  []string
	NodeRead     bool
	NodeWrite    bool
	AgentRead    bool
}

// authorizer is the resolved policy of one request.
type authorizer struct {
	enabled   bool
	anonymous bool
	accessor  string
	policy    Policy
}

const anonymousTokenID = "00000000-0000-0000-0000-000000000002"

func (p Policy) matches(list []string, name string) bool {
	return slices.Contains(list, "*") || slices.Contains(list, name)
}

func (a authorizer) serviceWrite(name string) bool {
	return !a.enabled || a.policy.matches(a.policy.ServiceWrite, name)
}

func (a authorizer) serviceRead(name string) bool {
	return a.serviceWrite(name) || a.policy.matches(a.policy.ServiceRead, name)
}

func (a authorizer) nodeRead() bool  { return !a.enabled || a.policy.NodeRead || a.policy.NodeWrite }
func (a authorizer) nodeWrite() bool { return !a.enabled || a.policy.NodeWrite }
func (a authorizer) agentRead() bool { return !a.enabled || a.policy.AgentRead }

// denied builds Consul's permission-denied message.
func (a authorizer) denied(resource, level, name string) string {
	var b strings.Builder
	b.WriteString("Permission denied")
	if a.anonymous {
		b.WriteString(": anonymous token")
	} else {
		fmt.Fprintf(&b, ": token with AccessorID '%s'", a.accessor)
	}
	fmt.Fprintf(&b, " lacks permission '%s:%s'", resource, level)
	if name != "" {
		fmt.Fprintf(&b, " on %q", name)
	}
	if a.anonymous {
		b.WriteString(". The anonymous token is used implicitly when a request does not specify a token.")
	}
	return b.String()
}

// requestToken finds the token the way Consul's HTTP layer does: ?token=, then
// X-Consul-Token, then "Authorization: Bearer".
func requestToken(r *http.Request) string {
	if t := r.URL.Query().Get("token"); t != "" {
		return t
	}
	if t := r.Header.Get("X-Consul-Token"); t != "" {
		return t
	}
	if h := r.Header.Get("Authorization"); h != "" {
		if scheme, rest, ok := strings.Cut(h, " "); ok && strings.EqualFold(scheme, "bearer") {
			return strings.TrimSpace(rest)
		}
	}
	return ""
}

// resolve returns the request's authorizer, or ok=false when the token is unknown.
func (s *Server) resolve(r *http.Request) (authorizer, bool) {
	if s.opts.acl == nil {
		return authorizer{}, true
	}
	tok := requestToken(r)
	if tok == "" {
		return authorizer{enabled: true, anonymous: true, accessor: anonymousTokenID, policy: s.opts.acl.Anonymous}, true
	}
	p, ok := s.opts.acl.Tokens[tok]
	if !ok {
		return authorizer{}, false
	}
	acc := p.AccessorID
	if acc == "" {
		sum := sha256.Sum256([]byte("consultest-accessor:" + tok))
		h := hex.EncodeToString(sum[:16])
		acc = h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:32]
	}
	return authorizer{enabled: true, accessor: acc, policy: p}, true
}
