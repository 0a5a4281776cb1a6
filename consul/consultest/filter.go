package consultest

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// fields is one result item as the filter sees it: a selector maps to a string,
// a []string (tags) or a map[string]string (meta).
type fields map[string]any

type filterOp int

const (
	opEq filterOp = iota
	opNe
	opIn
	opNotIn
	opEmpty
	opNotEmpty
)

type filterTerm struct {
	sel   string
	op    filterOp
	value string
}

// filter is a parsed ?filter= expression: terms joined by "and". The zero filter
// matches everything.
type filter struct{ terms []filterTerm }

func filterErr(format string, args ...any) error {
	return fmt.Errorf("Failed to create boolean expression evaluator: "+format, args...)
}

// parseFilter parses the simple subset of Consul's filter language the double
// supports; anything else is an error the handler answers with 400.
func parseFilter(expr string) (filter, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return filter{}, nil
	}
	toks, err := tokenize(expr)
	if err != nil {
		return filter{}, err
	}
	var f filter
	for len(toks) > 0 {
		var t filterTerm
		var n int
		switch {
		case len(toks) >= 3 && !toks[0].quoted && (toks[1].text == "==" || toks[1].text == "!="):
			t = filterTerm{sel: toks[0].text, op: opEq, value: toks[2].text}
			if toks[1].text == "!=" {
				t.op = opNe
			}
			n = 3
		case len(toks) >= 3 && toks[1].text == "in" && !toks[1].quoted:
			t, n = filterTerm{sel: toks[2].text, op: opIn, value: toks[0].text}, 3
		case len(toks) >= 4 && toks[1].text == "not" && toks[2].text == "in":
			t, n = filterTerm{sel: toks[3].text, op: opNotIn, value: toks[0].text}, 4
		case len(toks) >= 3 && toks[1].text == "contains" && !toks[1].quoted:
			t, n = filterTerm{sel: toks[0].text, op: opIn, value: toks[2].text}, 3
		case len(toks) >= 4 && toks[1].text == "not" && toks[2].text == "contains":
			t, n = filterTerm{sel: toks[0].text, op: opNotIn, value: toks[3].text}, 4
		case len(toks) >= 3 && toks[1].text == "is" && toks[2].text == "empty":
			t, n = filterTerm{sel: toks[0].text, op: opEmpty}, 3
		case len(toks) >= 4 && toks[1].text == "is" && toks[2].text == "not" && toks[3].text == "empty":
			t, n = filterTerm{sel: toks[0].text, op: opNotEmpty}, 4
		default:
			return filter{}, filterErr("unsupported expression %q (the consultest double supports only simple terms joined by \"and\")", expr)
		}
		f.terms = append(f.terms, t)
		toks = toks[n:]
		if len(toks) > 0 {
			if toks[0].text != "and" || toks[0].quoted || len(toks) == 1 {
				return filter{}, filterErr("unsupported expression %q (the consultest double supports only simple terms joined by \"and\")", expr)
			}
			toks = toks[1:]
		}
	}
	return f, nil
}

type token struct {
	text   string
	quoted bool
}

func tokenize(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n':
			i++
		case c == '"':
			j := i + 1
			for j < len(s) && s[j] != '"' {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, filterErr("unterminated string in %q", s)
			}
			v, err := strconv.Unquote(s[i : j+1])
			if err != nil {
				return nil, filterErr("bad string in %q", s)
			}
			out = append(out, token{text: v, quoted: true})
			i = j + 1
		case c == '`':
			j := strings.IndexByte(s[i+1:], '`')
			if j < 0 {
				return nil, filterErr("unterminated string in %q", s)
			}
			out = append(out, token{text: s[i+1 : i+1+j], quoted: true})
			i += j + 2
		case strings.HasPrefix(s[i:], "=="), strings.HasPrefix(s[i:], "!="):
			out = append(out, token{text: s[i : i+2]})
			i += 2
		case c == '(' || c == ')' || c == '!':
			return nil, filterErr("unsupported expression %q (the consultest double supports only simple terms joined by \"and\")", s)
		default:
			j := i
			for j < len(s) && !strings.ContainsRune(" \t\n\"`()=!", rune(s[j])) {
				j++
			}
			out = append(out, token{text: s[i:j]})
			i = j
		}
	}
	return out, nil
}

// lookup resolves a selector like "Service.Meta.model" against an item.
func (fs fields) lookup(sel string) (any, bool) {
	if v, ok := fs[sel]; ok {
		return v, true
	}
	// A map selector followed by a key: "Meta.model", "Service.Meta.model".
	if i := strings.LastIndexByte(sel, '.'); i > 0 {
		if m, ok := fs[sel[:i]].(map[string]string); ok {
			return m[sel[i+1:]], true
		}
	}
	return nil, false
}

// validate reports selectors the item type does not have, as Consul does.
func (f filter) validate(sample fields) error {
	for _, t := range f.terms {
		if _, ok := sample.lookup(t.sel); !ok {
			return filterErr("Selector %q is not valid", t.sel)
		}
	}
	return nil
}

func (f filter) match(item fields) bool {
	for _, t := range f.terms {
		v, ok := item.lookup(t.sel)
		if !ok || !t.eval(v) {
			return false
		}
	}
	return true
}

func (t filterTerm) eval(v any) bool {
	switch x := v.(type) {
	case string:
		switch t.op {
		case opEq:
			return x == t.value
		case opNe:
			return x != t.value
		case opIn:
			return strings.Contains(x, t.value)
		case opNotIn:
			return !strings.Contains(x, t.value)
		case opEmpty:
			return x == ""
		case opNotEmpty:
			return x != ""
		}
	case []string:
		switch t.op {
		case opIn:
			return slices.Contains(x, t.value)
		case opNotIn:
			return !slices.Contains(x, t.value)
		case opEmpty:
			return len(x) == 0
		case opNotEmpty:
			return len(x) > 0
		}
	case map[string]string:
		_, has := x[t.value]
		switch t.op {
		case opIn:
			return has
		case opNotIn:
			return !has
		case opEmpty:
			return len(x) == 0
		case opNotEmpty:
			return len(x) > 0
		}
	}
	return false
}

func agentServiceFields(v *agentServiceJSON) fields {
	return fields{
		"ID": v.ID, "Service": v.Service, "Tags": v.Tags, "Meta": v.Meta,
		"Port": strconv.Itoa(v.Port), "Address": v.Address, "Kind": v.Kind,
		"EnableTagOverride": strconv.FormatBool(v.EnableTagOverride),
		"Weights.Passing":   strconv.Itoa(v.Weights.Passing), "Weights.Warning": strconv.Itoa(v.Weights.Warning),
	}
}

func checkFields(v *healthCheckJSON) fields {
	return fields{
		"Node": v.Node, "CheckID": v.CheckID, "Name": v.Name, "Status": v.Status, "Notes": v.Notes,
		"Output": v.Output, "ServiceID": v.ServiceID, "ServiceName": v.ServiceName,
		"ServiceTags": v.ServiceTags, "Type": v.Type,
	}
}

func catalogServiceFields(v *catalogServiceJSON) fields {
	return fields{
		"ID": v.ID, "Node": v.Node, "Address": v.Address, "Datacenter": v.Datacenter,
		"TaggedAddresses": v.TaggedAddresses, "NodeMeta": v.NodeMeta, "ServiceKind": v.ServiceKind,
		"ServiceID": v.ServiceID, "ServiceName": v.ServiceName, "ServiceTags": v.ServiceTags,
		"ServiceAddress": v.ServiceAddress, "ServiceMeta": v.ServiceMeta,
		"ServicePort":              strconv.Itoa(v.ServicePort),
		"ServiceEnableTagOverride": strconv.FormatBool(v.ServiceEnableTagOverride),
	}
}

func serviceEntryFields(v *serviceEntryJSON) fields {
	f := fields{
		"Node.ID": v.Node.ID, "Node.Node": v.Node.Node, "Node.Address": v.Node.Address,
		"Node.Datacenter": v.Node.Datacenter, "Node.Meta": v.Node.Meta,
		"Node.TaggedAddresses": v.Node.TaggedAddresses,
	}
	for k, val := range agentServiceFields(&v.Service) {
		f["Service."+k] = val
	}
	return f
}
