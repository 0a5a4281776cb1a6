package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/inferstack/inferstack/inference/telemetry"
)

// Validation check names (label values of data_validation_checks_total and
// validation_checks). Besides these, each request parameter is a check of its own name
// (temperature, top_p, ...), run when the parameter is given.
const (
	CheckQuery          = "query_string"
	CheckContentType    = "content_type"
	CheckBodySize       = "body_size"
	CheckJSON           = "json"
	CheckUnknownParam   = "unknown_parameter"
	CheckDuplicateParam = "duplicate_parameter"
	CheckPromptPresent  = "prompt_present"
	CheckPromptEncoding = "prompt_encoding"
	CheckPromptLength   = "prompt_length"
)

// Parameter limits that do not depend on the model.
const (
	MaxStopSequences = 4   // stop strings per request (OpenAI's limit)
	MaxStopBytes     = 256 // bytes per stop string
	MaxTemperature   = 2.0
)

// Limits bounds the request parameters that depend on the model and the server's
// configuration.
type Limits struct {
	MaxNewTokens        int // upper bound of max_new_tokens and max_tokens
	MaxLength           int // upper bound of max_length (the model's context length)
	DefaultMaxNewTokens int // max_new_tokens of /infer when neither it nor max_length is given
}

// validator records the checks that passed, to count them once the request is known
// to be valid (a failed check is counted by writeError).
type validator struct{ passed []string }

func (v *validator) pass(check string) { v.passed = append(v.passed, check) }

// value is one request parameter as given: query values, or a JSON body member.
type value struct {
	name  string
	query []string        // set when given in the query string
	raw   json.RawMessage // set when given in the JSON body (null counts as absent)
}

func (p value) present() bool { return p.query != nil || p.raw != nil }

// params holds the parameters of one request, merged from the query string and the
// JSON body. A parameter given in both is an error: there is no precedence to guess.
type params map[string]value

// repeatableParams may be given more than once in a query string (a list).
var repeatableParams = map[string]bool{"stop": true}

// collectParams parses the query string and the body into params, checking the
// content type, JSON syntax, unknown and duplicated parameters. bodyRequired says
// whether an empty body is an error (it is for /v1/completions).
func collectParams(v *validator, rawQuery, contentType string, body []byte, known map[string]bool, bodyRequired bool) (params, *APIError) {
	ps := params{}
	q, err := url.ParseQuery(rawQuery)
	if err != nil {
		return nil, &APIError{Status: http.StatusBadRequest, Code: CodeInvalidParameter, Message: "malformed query string: " + err.Error(), Check: CheckQuery, Reason: telemetry.ReasonValidation}
	}
	v.pass(CheckQuery)
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if !known[name] {
			return nil, unknownParam(name)
		}
		if len(q[name]) > 1 && !repeatableParams[name] {
			return nil, duplicateParam(name, "given more than once in the query string")
		}
		ps[name] = value{name: name, query: q[name]}
	}
	if len(bytes.TrimSpace(body)) == 0 {
		if bodyRequired {
			return nil, &APIError{Status: http.StatusBadRequest, Code: CodeInvalidJSON, Message: "request body is required: a JSON object", Check: CheckJSON, Reason: telemetry.ReasonValidation}
		}
		v.pass(CheckUnknownParam)
		v.pass(CheckDuplicateParam)
		return ps, nil
	}
	if e := checkContentType(contentType); e != nil {
		return nil, e
	}
	v.pass(CheckContentType)
	obj, repeated, e := decodeObject(body)
	if e != nil {
		return nil, e
	}
	v.pass(CheckJSON)
	for _, name := range slices.Sorted(maps.Keys(obj)) {
		if !known[name] {
			return nil, unknownParam(name)
		}
		raw := obj[name]
		if string(raw) == "null" {
			continue
		}
		if _, dup := ps[name]; dup {
			return nil, duplicateParam(name, "given both in the query string and in the JSON body; give it once")
		}
		ps[name] = value{name: name, raw: raw}
	}
	v.pass(CheckUnknownParam)
	if repeated != "" {
		return nil, duplicateParam(repeated, "given more than once in the JSON body")
	}
	v.pass(CheckDuplicateParam)
	return ps, nil
}

func duplicateParam(name, msg string) *APIError {
	return &APIError{Status: http.StatusBadRequest, Code: CodeInvalidParameter, Param: name, Message: msg,
		Check: CheckDuplicateParam, Reason: telemetry.ReasonValidation}
}

func unknownParam(name string) *APIError {
	shown := name
	if len(shown) > 64 || !utf8.ValidString(shown) {
		shown = strconv.QuoteToASCII(truncate(shown, 64))
	}
	return &APIError{Status: http.StatusBadRequest, Code: CodeUnknownParameter, Param: shown,
		Message: "unknown parameter " + strconv.Quote(shown), Check: CheckUnknownParam, Reason: telemetry.ReasonValidation}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n]
}

// checkContentType accepts application/json (optionally with charset=utf-8) and an
// absent Content-Type; anything else is 415.
func checkContentType(ct string) *APIError {
	if strings.TrimSpace(ct) == "" {
		return nil
	}
	mt, p, err := mime.ParseMediaType(ct)
	if err == nil && mt == "application/json" {
		if cs, ok := p["charset"]; !ok || strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	return &APIError{Status: http.StatusUnsupportedMediaType, Code: CodeUnsupportedMediaType,
		Message: "the request body must be JSON, with Content-Type: application/json (charset utf-8 if given); parameters may instead go in the query string",
		Check:   CheckContentType, Reason: telemetry.ReasonValidation}
}

// decodeObject decodes body as exactly one JSON object, member by member, so that a
// member given twice is seen (a map alone keeps the last); repeated names the first
// such member ("" when none).
func decodeObject(body []byte) (obj map[string]json.RawMessage, repeated string, e *APIError) {
	fail := func(msg string) (map[string]json.RawMessage, string, *APIError) {
		return nil, "", &APIError{Status: http.StatusBadRequest, Code: CodeInvalidJSON, Message: msg, Check: CheckJSON, Reason: telemetry.ReasonValidation}
	}
	if !utf8.Valid(body) {
		return fail("request body is not valid UTF-8")
	}
	if unpairedSurrogate(body) {
		// encoding/json would silently decode it as U+FFFD.
		return fail(`request body has an unpaired UTF-16 surrogate escape (\ud800-\udfff), which is not a character`)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	tok, err := dec.Token()
	if err != nil {
		return fail("malformed JSON body: " + err.Error())
	}
	if d, ok := tok.(json.Delim); !ok || d != '{' {
		return fail("request body must be a JSON object, got " + jsonTokenKind(tok))
	}
	obj = map[string]json.RawMessage{}
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			return fail("malformed JSON body: " + err.Error())
		}
		name, _ := key.(string) // the decoder accepts only strings as member names
		var raw json.RawMessage
		if err := dec.Decode(&raw); err != nil {
			return fail("malformed JSON body: " + err.Error())
		}
		if _, dup := obj[name]; dup && repeated == "" {
			repeated = name
		}
		obj[name] = raw
	}
	if _, err := dec.Token(); err != nil { // the closing brace
		return fail("malformed JSON body: " + err.Error())
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return fail("unexpected data after the JSON object")
	}
	return obj, repeated, nil
}

// jsonTokenKind names the JSON value a first token starts.
func jsonTokenKind(tok json.Token) string {
	switch tok.(type) {
	case json.Delim:
		return "array"
	case string:
		return "string"
	case float64, json.Number:
		return "number"
	case bool:
		return "bool"
	}
	return "null"
}

// unpairedSurrogate reports whether JSON text has a \u escape of a UTF-16 surrogate
// that is not a high surrogate immediately followed by an escaped low one.
func unpairedSurrogate(b []byte) bool {
	hex4 := func(i int) (rune, bool) { // the escape \uXXXX starting at b[i]
		if i+6 > len(b) || b[i] != '\\' || b[i+1] != 'u' {
			return 0, false
		}
		v, err := strconv.ParseUint(string(b[i+2:i+6]), 16, 32)
		return rune(v), err == nil
	}
	for i := 0; i < len(b); i++ {
		if b[i] != '\\' {
			continue
		}
		r, ok := hex4(i)
		if !ok {
			i++ // some other escape: skip its second character (it may be a backslash)
			continue
		}
		switch {
		case r >= 0xDC00 && r <= 0xDFFF:
			return true // a low surrogate with no high one before it
		case r >= 0xD800 && r <= 0xDBFF:
			lo, ok := hex4(i + 6)
			if !ok || lo < 0xDC00 || lo > 0xDFFF {
				return true
			}
			i += 11 // past the pair
		default:
			i += 5
		}
	}
	return false
}

// single returns the one query value, or an error when the parameter is repeated.
func (p value) single() (string, *APIError) {
	if len(p.query) != 1 {
		return "", duplicateParam(p.name, "given more than once in the query string")
	}
	return p.query[0], nil
}

// str returns a string parameter.
func (p value) str() (string, *APIError) {
	if p.query != nil {
		return p.single()
	}
	var s string
	if err := json.Unmarshal(p.raw, &s); err != nil {
		return "", badParam(p.name, p.name, "must be a string")
	}
	return s, nil
}

// number returns the parameter's text as a number: a query value, or a JSON number
// (a JSON string holding a number is a type error).
func (p value) number(what string) (string, *APIError) {
	if p.query != nil {
		return p.single()
	}
	d := json.NewDecoder(bytes.NewReader(p.raw))
	d.UseNumber()
	var x any
	if err := d.Decode(&x); err != nil {
		return "", badParam(p.name, p.name, "must be "+what)
	}
	n, ok := x.(json.Number)
	if !ok {
		return "", badParam(p.name, p.name, "must be "+what+", not a JSON "+jsonKind(x))
	}
	return n.String(), nil
}

func jsonKind(x any) string {
	switch x.(type) {
	case string:
		return "string"
	case bool:
		return "boolean"
	case []any:
		return "array"
	case map[string]any:
		return "object"
	default:
		return "value"
	}
}

// integer returns an integer parameter in [lo, hi]. Integral decimals such as 50.0
// are accepted; fractions, non-finite values and out-of-range values are not.
func (p value) integer(lo, hi int64) (int64, *APIError) {
	what := fmt.Sprintf("an integer between %d and %d", lo, hi)
	s, e := p.number(what)
	if e != nil {
		return 0, e
	}
	s = strings.TrimSpace(s)
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || math.IsNaN(f) || math.IsInf(f, 0) || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
			return 0, badParam(p.name, p.name, "must be "+what)
		}
		n = int64(f)
	}
	if n < lo || n > hi {
		return 0, badParam(p.name, p.name, "must be "+what)
	}
	return n, nil
}

// uinteger returns a non-negative 64-bit integer parameter (seeds).
func (p value) uinteger() (uint64, *APIError) {
	const what = "an integer between 0 and 18446744073709551615"
	s, e := p.number(what)
	if e != nil {
		return 0, e
	}
	s = strings.TrimSpace(s)
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		// Integral decimals (5.0, 1e3) as for the other integers, exact up to 2^53.
		f, ferr := strconv.ParseFloat(s, 64)
		if ferr != nil || f < 0 || f > 1<<53 || f != math.Trunc(f) {
			return 0, badParam(p.name, p.name, "must be "+what)
		}
		n = uint64(f)
	}
	return n, nil
}

// float returns a finite number parameter in [lo, hi], or (lo, hi] when loOpen.
func (p value) float(lo, hi float64, loOpen bool, what string) (float64, *APIError) {
	s, e := p.number(what)
	if e != nil {
		return 0, e
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || math.IsNaN(f) || math.IsInf(f, 0) || f < lo || f > hi || (loOpen && f == lo) {
		return 0, badParam(p.name, p.name, "must be "+what)
	}
	return f, nil
}

// boolean returns a boolean parameter (query: true/false/1/0).
func (p value) boolean() (bool, *APIError) {
	if p.query != nil {
		s, e := p.single()
		if e != nil {
			return false, e
		}
		b, err := strconv.ParseBool(strings.TrimSpace(s))
		if err != nil {
			return false, badParam(p.name, p.name, "must be true or false")
		}
		return b, nil
	}
	var b bool
	if err := json.Unmarshal(p.raw, &b); err != nil {
		return false, badParam(p.name, p.name, "must be true or false")
	}
	return b, nil
}

// stops returns the stop parameter: a string or a list of strings (query: repeated).
func (p value) stops() ([]string, *APIError) {
	var list []string
	if p.query != nil {
		list = p.query
	} else {
		var one string
		if err := json.Unmarshal(p.raw, &one); err == nil {
			list = []string{one}
		} else if err := json.Unmarshal(p.raw, &list); err != nil {
			return nil, badParam(p.name, p.name, "must be a string or a list of strings")
		}
	}
	if len(list) > MaxStopSequences {
		return nil, badParam(p.name, p.name, fmt.Sprintf("at most %d stop strings are allowed", MaxStopSequences))
	}
	for _, s := range list {
		if s == "" {
			return nil, badParam(p.name, p.name, "stop strings must not be empty")
		}
		if len(s) > MaxStopBytes {
			return nil, badParam(p.name, p.name, fmt.Sprintf("stop strings must be at most %d bytes", MaxStopBytes))
		}
		if msg := textProblem(s); msg != "" {
			return nil, badParam(p.name, p.name, msg)
		}
	}
	return list, nil
}

// textProblem describes why s is not acceptable text, or returns "".
func textProblem(s string) string {
	if !utf8.ValidString(s) {
		return "must be valid UTF-8"
	}
	for _, r := range s {
		if r != '\n' && r != '\t' && r != '\r' && unicode.IsControl(r) {
			return fmt.Sprintf("must not contain control characters (found U+%04X; only \\n, \\t and \\r are allowed)", r)
		}
	}
	return ""
}

// prompt validates the prompt parameter.
func (ps params) prompt(v *validator, name string) (string, *APIError) {
	p, ok := ps[name]
	if !ok {
		return "", &APIError{Status: http.StatusBadRequest, Code: CodeMissingParameter, Param: name,
			Message: "is required (query parameter or JSON body member)", Check: CheckPromptPresent, Reason: telemetry.ReasonValidation}
	}
	s, e := p.str()
	if e != nil {
		if e.Check == name {
			e.Check = CheckPromptPresent
		}
		return "", e
	}
	if s == "" {
		return "", &APIError{Status: http.StatusBadRequest, Code: CodeInvalidParameter, Param: name, Message: "must not be empty", Check: CheckPromptPresent, Reason: telemetry.ReasonValidation}
	}
	if strings.TrimFunc(s, unicode.IsSpace) == "" && utf8.ValidString(s) {
		return "", &APIError{Status: http.StatusBadRequest, Code: CodeInvalidParameter, Param: name, Message: "must not be blank (only whitespace)", Check: CheckPromptPresent, Reason: telemetry.ReasonValidation}
	}
	v.pass(CheckPromptPresent)
	if msg := textProblem(s); msg != "" {
		return "", &APIError{Status: http.StatusBadRequest, Code: CodeInvalidParameter, Param: name, Message: msg, Check: CheckPromptEncoding, Reason: telemetry.ReasonValidation}
	}
	v.pass(CheckPromptEncoding)
	return s, nil
}

// Sampling holds the sampling parameters shared by /infer and /v1/completions.
type Sampling struct {
	Temperature float64
	TopK        int
	TopP        float64
	Seed        uint64
	HasSeed     bool
	Stop        []string
	IgnoreEOS   bool
}

// sampling parses the shared sampling parameters, starting from defaults.
func (ps params) sampling(v *validator, def Sampling) (Sampling, *APIError) {
	out := def
	var e *APIError
	if p, ok := ps["temperature"]; ok {
		if out.Temperature, e = p.float(0, MaxTemperature, false, "a number between 0 and 2 (0 means greedy decoding)"); e != nil {
			return out, e
		}
		if out.Temperature == 0 {
			out.Temperature = 0 // not -0
		}
		v.pass(p.name)
	}
	if p, ok := ps["top_k"]; ok {
		var k int64
		if k, e = p.integer(0, math.MaxInt32); e != nil {
			return out, e
		}
		out.TopK = int(k)
		v.pass(p.name)
	}
	if p, ok := ps["top_p"]; ok {
		if out.TopP, e = p.float(0, 1, true, "a number greater than 0 and at most 1"); e != nil {
			return out, e
		}
		v.pass(p.name)
	}
	if p, ok := ps["seed"]; ok {
		if out.Seed, e = p.uinteger(); e != nil {
			return out, e
		}
		out.HasSeed = true
		v.pass(p.name)
	}
	if p, ok := ps["stop"]; ok {
		if out.Stop, e = p.stops(); e != nil {
			return out, e
		}
		v.pass(p.name)
	}
	if p, ok := ps["ignore_eos"]; ok {
		if out.IgnoreEOS, e = p.boolean(); e != nil {
			return out, e
		}
		v.pass(p.name)
	}
	return out, nil
}
