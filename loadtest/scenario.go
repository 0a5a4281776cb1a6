package loadtest

import (
	"bufio"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/url"
	"strconv"
	"strings"
)

// Scenario identifies one kind of request in the mix.
type Scenario int

// The scenarios, in report order. The first four are the seed's Locust tasks.
const (
	ScenarioBasic        Scenario = iota // POST /infer?prompt=<random prompt>
	ScenarioCustomLength                 // POST /infer?prompt=…&max_length=<uniform in the length range>
	ScenarioRapid                        // POST /infer with a short max_length; closed-loop users skip think time after it
	ScenarioMetrics                      // GET /metrics
	ScenarioStream                       // POST /v1/completions with "stream": true (SSE), for TTFT and ITL
	numScenarios
)

var scenarioNames = [numScenarios]string{"basic", "custom_length", "rapid", "metrics", "stream"}

// String returns the scenario's name as used in flags, labels and reports.
func (s Scenario) String() string {
	if s < 0 || s >= numScenarios {
		return "scenario(" + strconv.Itoa(int(s)) + ")"
	}
	return scenarioNames[s]
}

// Scenarios lists every scenario in report order.
func Scenarios() []Scenario {
	out := make([]Scenario, numScenarios)
	for i := range out {
		out[i] = Scenario(i)
	}
	return out
}

// ParseScenario returns the scenario with the given name.
func ParseScenario(name string) (Scenario, error) {
	for i, n := range scenarioNames {
		if n == name {
			return Scenario(i), nil
		}
	}
	return 0, fmt.Errorf("unknown scenario %q (want one of %s)", name, strings.Join(scenarioNames[:], ", "))
}

// Weights gives each scenario's relative share of requests (closed loop: of each
// user's tasks; open loop: of arrivals). Zero leaves a scenario out.
type Weights [numScenarios]int

// DefaultWeights are the seed's Locust weights; streaming is off.
var DefaultWeights = Weights{ScenarioBasic: 3, ScenarioCustomLength: 2, ScenarioRapid: 1, ScenarioMetrics: 1, ScenarioStream: 0}

// String formats the weights as ParseWeights reads them.
func (w Weights) String() string {
	parts := make([]string, 0, numScenarios)
	for i, v := range w {
		parts = append(parts, scenarioNames[i]+"="+strconv.Itoa(v))
	}
	return strings.Join(parts, ",")
}

// ParseWeights reads "basic=3,custom_length=2,rapid=1,metrics=1,stream=0". Scenarios
// not named keep their default weight.
func ParseWeights(s string) (Weights, error) {
	w := DefaultWeights
	if strings.TrimSpace(s) == "" {
		return w, nil
	}
	for _, part := range strings.Split(s, ",") {
		name, val, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return w, fmt.Errorf("weights: %q is not name=weight", part)
		}
		sc, err := ParseScenario(strings.TrimSpace(name))
		if err != nil {
			return w, fmt.Errorf("weights: %w", err)
		}
		n, err := strconv.Atoi(strings.TrimSpace(val))
		if err != nil || n < 0 {
			return w, fmt.Errorf("weights: %s=%q is not a non-negative integer", name, val)
		}
		w[sc] = n
	}
	return w, nil
}

func (w Weights) total() int {
	t := 0
	for _, v := range w {
		t += v
	}
	return t
}

//go:embed prompts.txt
var defaultPrompts string

// DefaultPrompts returns the embedded prompt set (medical and definition questions).
func DefaultPrompts() []string {
	p, _ := ReadPrompts(strings.NewReader(defaultPrompts))
	return p
}

// ReadPrompts reads one prompt per line; blank lines and lines starting with '#' are
// skipped. It fails when no prompt remains.
func ReadPrompts(r io.Reader) ([]string, error) {
	var out []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, line)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read prompts: %w", err)
	}
	if len(out) == 0 {
		return nil, errors.New("read prompts: no prompt (one per line; '#' starts a comment)")
	}
	return out, nil
}

// spec is one request to send, built by a mix.
type spec struct {
	scenario  Scenario
	method    string
	pathQuery string // path and query, starting with '/'
	body      []byte // JSON body, or nil
	maxTokens int    // requested output length, 0 when the server decides
}

// mix draws scenarios and their parameters. It is immutable after newMix; each
// goroutine passes its own *rand.Rand.
type mix struct {
	cum         [numScenarios]int // cumulative weights
	total       int
	basic       []string // "/infer?prompt=<escaped>" per prompt
	prompts     []string
	escaped     []string
	minLen      int
	maxLen      int
	rapidLen    int
	streamLen   int
	streamModel string
	ignoreEOS   bool
}

func newMix(o *Options) (*mix, error) {
	m := &mix{
		total:       o.Weights.total(),
		prompts:     o.Prompts,
		minLen:      o.MinLength,
		maxLen:      o.MaxLength,
		rapidLen:    o.RapidLength,
		streamLen:   o.StreamLength,
		streamModel: o.StreamModel,
		ignoreEOS:   o.IgnoreEOS,
	}
	if m.total <= 0 {
		return nil, errors.New("weights: at least one scenario needs a weight > 0")
	}
	c := 0
	for i, w := range o.Weights {
		c += w
		m.cum[i] = c
	}
	if len(m.prompts) == 0 {
		return nil, errors.New("prompts: the prompt set is empty")
	}
	m.escaped = make([]string, len(m.prompts))
	m.basic = make([]string, len(m.prompts))
	for i, p := range m.prompts {
		m.escaped[i] = url.QueryEscape(p)
		m.basic[i] = "/infer?prompt=" + m.escaped[i]
	}
	return m, nil
}

// pickScenario draws a scenario by weight.
func (m *mix) pickScenario(r *rand.Rand) Scenario {
	x := r.IntN(m.total)
	for i, c := range m.cum {
		if x < c {
			return Scenario(i)
		}
	}
	return numScenarios - 1 // unreachable: x < total = cum[last]
}

// build draws the parameters of one request of scenario s.
func (m *mix) build(s Scenario, r *rand.Rand) spec {
	switch s {
	case ScenarioBasic:
		return spec{scenario: s, method: "POST", pathQuery: m.basic[r.IntN(len(m.basic))]}
	case ScenarioCustomLength:
		n := m.minLen
		if m.maxLen > m.minLen {
			n += r.IntN(m.maxLen - m.minLen + 1)
		}
		return spec{scenario: s, method: "POST", maxTokens: n,
			pathQuery: m.basic[r.IntN(len(m.basic))] + "&max_length=" + strconv.Itoa(n)}
	case ScenarioRapid:
		return spec{scenario: s, method: "POST", maxTokens: m.rapidLen,
			pathQuery: m.basic[r.IntN(len(m.basic))] + "&max_length=" + strconv.Itoa(m.rapidLen)}
	case ScenarioMetrics:
		return spec{scenario: s, method: "GET", pathQuery: "/metrics"}
	default: // ScenarioStream
		body, _ := json.Marshal(completionRequest{
			Model:         m.streamModel,
			Prompt:        m.prompts[r.IntN(len(m.prompts))],
			MaxTokens:     m.streamLen,
			Stream:        true,
			StreamOptions: &streamOptions{IncludeUsage: true},
			IgnoreEOS:     m.ignoreEOS,
		})
		return spec{scenario: ScenarioStream, method: "POST", pathQuery: "/v1/completions", body: body, maxTokens: m.streamLen}
	}
}

// completionRequest is the OpenAI-compatible body of the streaming scenario. It asks
// for the usage chunk so output tokens are counted exactly (one event may carry
// several tokens).
type completionRequest struct {
	Model         string         `json:"model,omitempty"`
	Prompt        string         `json:"prompt"`
	MaxTokens     int            `json:"max_tokens"`
	Stream        bool           `json:"stream"`
	StreamOptions *streamOptions `json:"stream_options,omitempty"`
	IgnoreEOS     bool           `json:"ignore_eos,omitempty"`
}

type streamOptions struct {
	IncludeUsage bool `json:"include_usage"`
}

// newRand returns the generator used for a seed.
func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0)) }
