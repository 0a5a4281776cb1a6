package jobs

import (
	"fmt"
	"os"

	"github.com/hashicorp/hcl/v2"
	"github.com/hashicorp/hcl/v2/hclsyntax"
	"github.com/zclconf/go-cty/cty"
)

// evalStringAttr evaluates the attribute v of an HCL file.
func evalStringAttr(src []byte) (string, error) {
	f, diags := hclsyntax.ParseConfig(src, "t.hcl", hcl.InitialPos)
	if diags.HasErrors() {
		return "", diags
	}
	attrs, diags := f.Body.JustAttributes()
	if diags.HasErrors() {
		return "", diags
	}
	v, diags := attrs["v"].Expr.Value(nil)
	if diags.HasErrors() {
		return "", diags
	}
	if v.Type() != cty.String {
		return "", fmt.Errorf("v is %s", v.Type().FriendlyName())
	}
	return v.AsString(), nil
}

// policyRules are Consul's ACL rule types (developer.hashicorp.com/consul/docs/security/acl/acl-rules).
var policyRules = map[string]bool{
	"acl": false, "agent": true, "agent_prefix": true, "event": true, "event_prefix": true,
	"key": true, "key_prefix": true, "keyring": false, "mesh": false, "node": true,
	"node_prefix": true, "operator": false, "peering": false, "query": true,
	"query_prefix": true, "service": true, "service_prefix": true, "session": true,
	"session_prefix": true,
}

// parsePolicy reads a Consul ACL policy into `type "label" policy` strings, rejecting
// unknown rule types and policies.
func parsePolicy(path string) ([]string, error) {
	src, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	f, diags := hclsyntax.ParseConfig(src, path, hcl.InitialPos)
	if diags.HasErrors() {
		return nil, diags
	}
	body := f.Body.(*hclsyntax.Body)
	if len(body.Attributes) > 0 {
		return nil, fmt.Errorf("unexpected top-level attributes")
	}
	var out []string
	for _, b := range body.Blocks {
		labelled, ok := policyRules[b.Type]
		if !ok || !labelled || len(b.Labels) != 1 {
			return nil, fmt.Errorf("%s: unknown or malformed rule %s %v", b.DefRange(), b.Type, b.Labels)
		}
		attrs, diags := b.Body.JustAttributes()
		if diags.HasErrors() || len(attrs) != 1 || attrs["policy"] == nil {
			return nil, fmt.Errorf("%s: want exactly a policy attribute", b.DefRange())
		}
		v, diags := attrs["policy"].Expr.Value(nil)
		if diags.HasErrors() {
			return nil, diags
		}
		p := v.AsString()
		if p != "read" && p != "write" && p != "deny" && p != "list" {
			return nil, fmt.Errorf("%s: unknown policy %q", b.DefRange(), p)
		}
		out = append(out, fmt.Sprintf("%s %q %s", b.Type, b.Labels[0], p))
	}
	return out, nil
}
