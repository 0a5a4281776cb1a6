package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"sync/atomic"

	ort "github.com/yalue/onnxruntime_go"
)

// modelFileNames are the ONNX files looked for in a model directory, in order: our
// own export, then the names Hugging Face Optimum gives decoder exports.
var modelFileNames = []string{"model.onnx", "decoder_model_merged.onnx", "decoder_with_past_model.onnx"}

// modelConfig is what the engine reads from config.json (and generation_config.json).
type modelConfig struct {
	Name           string
	Version        string
	ContextLength  int
	VocabSize      int
	Layers         int
	Heads          int
	Embd           int
	EOS            int
	HasEOS         bool
	TrainingLoss   float64
	ValidationLoss float64
}

// rawConfig holds the config.json keys the engine understands; GPT-2 style names
// first, with the common aliases other architectures use.
type rawConfig struct {
	NLayer           *int            `json:"n_layer"`
	NumHiddenLayers  *int            `json:"num_hidden_layers"`
	NHead            *int            `json:"n_head"`
	NumAttnHeads     *int            `json:"num_attention_heads"`
	NEmbd            *int            `json:"n_embd"`
	HiddenSize       *int            `json:"hidden_size"`
	NPositions       *int            `json:"n_positions"`
	NCtx             *int            `json:"n_ctx"`
	MaxPositionEmbed *int            `json:"max_position_embeddings"`
	VocabSize        *int            `json:"vocab_size"`
	EOSTokenID       json.RawMessage `json:"eos_token_id"`
	TrainingLoss     *float64        `json:"training_loss"`
	ValidationLoss   *float64        `json:"validation_loss"`
	ModelName        string          `json:"model_name"`
	NameOrPath       string          `json:"_name_or_path"`
	ModelType        string          `json:"model_type"`
	ModelVersion     json.RawMessage `json:"model_version"`
}

func firstInt(vals ...*int) int {
	for _, v := range vals {
		if v != nil && *v > 0 {
			return *v
		}
	}
	return 0
}

// parseEOS accepts an integer or a list of integers (the first is used).
func parseEOS(raw json.RawMessage) (int, bool) {
	if len(raw) == 0 || string(raw) == "null" {
		return 0, false
	}
	var one int
	if err := json.Unmarshal(raw, &one); err == nil {
		return one, true
	}
	var many []int
	if err := json.Unmarshal(raw, &many); err == nil && len(many) > 0 {
		return many[0], true
	}
	return 0, false
}

// loadModelConfig reads dir/config.json (required) and dir/generation_config.json
// (optional, for eos_token_id).
func loadModelConfig(dir string) (modelConfig, error) {
	path := filepath.Join(dir, "config.json")
	data, err := os.ReadFile(path)
	if err != nil {
		return modelConfig{}, fmt.Errorf("model config: %w", err)
	}
	var rc rawConfig
	if err := json.Unmarshal(data, &rc); err != nil {
		return modelConfig{}, fmt.Errorf("model config %s: %w", path, err)
	}
	mc := modelConfig{
		Layers:         firstInt(rc.NLayer, rc.NumHiddenLayers),
		Heads:          firstInt(rc.NHead, rc.NumAttnHeads),
		Embd:           firstInt(rc.NEmbd, rc.HiddenSize),
		ContextLength:  firstInt(rc.NPositions, rc.NCtx, rc.MaxPositionEmbed),
		VocabSize:      firstInt(rc.VocabSize),
		TrainingLoss:   math.NaN(),
		ValidationLoss: math.NaN(),
	}
	mc.EOS, mc.HasEOS = parseEOS(rc.EOSTokenID)
	if rc.TrainingLoss != nil {
		mc.TrainingLoss = *rc.TrainingLoss
	}
	if rc.ValidationLoss != nil {
		mc.ValidationLoss = *rc.ValidationLoss
	}
	mc.Name = rc.ModelName
	if mc.Name == "" {
		mc.Name = rc.NameOrPath
	}
	if mc.Name == "" {
		mc.Name = rc.ModelType
	}
	if mc.Name == "" {
		mc.Name = filepath.Base(filepath.Clean(dir))
	}
	if len(rc.ModelVersion) > 0 && string(rc.ModelVersion) != "null" {
		var s string
		if json.Unmarshal(rc.ModelVersion, &s) == nil {
			mc.Version = s
		} else {
			mc.Version = string(rc.ModelVersion)
		}
	}
	if !mc.HasEOS {
		var gc struct {
			EOSTokenID json.RawMessage `json:"eos_token_id"`
		}
		if data, err := os.ReadFile(filepath.Join(dir, "generation_config.json")); err == nil {
			if json.Unmarshal(data, &gc) == nil {
				mc.EOS, mc.HasEOS = parseEOS(gc.EOSTokenID)
			}
		}
	}
	if mc.ContextLength <= 0 {
		return modelConfig{}, fmt.Errorf("model config %s: no context length (n_positions, n_ctx or max_position_embeddings)", path)
	}
	return mc, nil
}

// findModelFile returns the first ONNX file of modelFileNames present in dir.
func findModelFile(dir string) (string, error) {
	for _, name := range modelFileNames {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && !st.IsDir() {
			return p, nil
		}
	}
	return "", fmt.Errorf("model dir %s: no ONNX model (looked for %v)", dir, modelFileNames)
}

// modelSpec is the decoder's interface as read from the ONNX graph.
type modelSpec struct {
	Path           string
	Layers         int
	Heads          int
	HeadDim        int
	Vocab          int
	HasPositionIDs bool
	HasCacheBranch bool // Optimum's merged decoder: bool input use_cache_branch
	InputNames     []string
	OutputNames    []string
}

var pastRe = regexp.MustCompile(`^past_key_values\.(\d+)\.(key|value)$`)
var presentRe = regexp.MustCompile(`^present\.(\d+)\.(key|value)$`)

// inspectModel reads the model's inputs and outputs and checks that they are the
// Optimum decoder-with-KV-cache layout. Head count and head size come from the
// past_key_values shapes; cfg fills them in only where the graph leaves them symbolic.
func inspectModel(path string, mc modelConfig, opts *ort.SessionOptions) (modelSpec, error) {
	ins, outs, err := ort.GetInputOutputInfoWithOptions(path, opts)
	if err != nil {
		return modelSpec{}, fmt.Errorf("read model %s: %w", path, err)
	}
	spec := modelSpec{Path: path}
	var pastLayers = map[int]int{}
	var haveIDs, haveMask bool
	heads, headDim := int64(-1), int64(-1)
	for _, in := range ins {
		switch {
		case in.Name == "input_ids":
			haveIDs = true
			if in.DataType != ort.TensorElementDataTypeInt64 {
				return modelSpec{}, fmt.Errorf("model %s: input_ids is %s, want int64", path, in.DataType)
			}
		case in.Name == "attention_mask":
			haveMask = true
			if in.DataType != ort.TensorElementDataTypeInt64 {
				return modelSpec{}, fmt.Errorf("model %s: attention_mask is %s, want int64", path, in.DataType)
			}
		case in.Name == "position_ids":
			spec.HasPositionIDs = true
			if in.DataType != ort.TensorElementDataTypeInt64 {
				return modelSpec{}, fmt.Errorf("model %s: position_ids is %s, want int64", path, in.DataType)
			}
		case in.Name == "use_cache_branch":
			spec.HasCacheBranch = true
			if in.DataType != ort.TensorElementDataTypeBool {
				return modelSpec{}, fmt.Errorf("model %s: use_cache_branch is %s, want bool", path, in.DataType)
			}
		case pastRe.MatchString(in.Name):
			m := pastRe.FindStringSubmatch(in.Name)
			layer, _ := strconv.Atoi(m[1])
			pastLayers[layer]++
			if in.DataType != ort.TensorElementDataTypeFloat {
				return modelSpec{}, fmt.Errorf("model %s: %s is %s; only float32 KV caches are supported", path, in.Name, in.DataType)
			}
			if len(in.Dimensions) != 4 {
				return modelSpec{}, fmt.Errorf("model %s: %s has shape %v, want [batch, heads, past, head_dim]", path, in.Name, in.Dimensions)
			}
			h, d := in.Dimensions[1], in.Dimensions[3]
			if h > 0 {
				if heads > 0 && heads != h {
					return modelSpec{}, fmt.Errorf("model %s: past_key_values disagree on head count (%d vs %d)", path, heads, h)
				}
				heads = h
			}
			if d > 0 {
				if headDim > 0 && headDim != d {
					return modelSpec{}, fmt.Errorf("model %s: past_key_values disagree on head size (%d vs %d)", path, headDim, d)
				}
				headDim = d
			}
		default:
			return modelSpec{}, fmt.Errorf("model %s: unsupported input %q (want the Optimum decoder layout: input_ids, attention_mask, position_ids, past_key_values.N.key/value)", path, in.Name)
		}
	}
	if !haveIDs || !haveMask {
		return modelSpec{}, fmt.Errorf("model %s: inputs input_ids and attention_mask are required", path)
	}
	if len(pastLayers) == 0 {
		return modelSpec{}, fmt.Errorf("model %s: no past_key_values inputs; export the decoder with KV cache (Optimum's with-past or merged decoder)", path)
	}
	for i := 0; i < len(pastLayers); i++ {
		if pastLayers[i] != 2 {
			return modelSpec{}, fmt.Errorf("model %s: past_key_values.%d.key and .value must both be inputs", path, i)
		}
	}
	spec.Layers = len(pastLayers)

	var haveLogits bool
	presentLayers := map[int]int{}
	for _, out := range outs {
		switch {
		case out.Name == "logits":
			haveLogits = true
			if out.DataType != ort.TensorElementDataTypeFloat {
				return modelSpec{}, fmt.Errorf("model %s: logits are %s, want float32", path, out.DataType)
			}
			if len(out.Dimensions) != 3 {
				return modelSpec{}, fmt.Errorf("model %s: logits have shape %v, want [batch, seq, vocab]", path, out.Dimensions)
			}
			spec.Vocab = int(out.Dimensions[2])
		case presentRe.MatchString(out.Name):
			m := presentRe.FindStringSubmatch(out.Name)
			layer, _ := strconv.Atoi(m[1])
			presentLayers[layer]++
		}
	}
	if !haveLogits {
		return modelSpec{}, fmt.Errorf("model %s: no logits output", path)
	}
	for i := 0; i < spec.Layers; i++ {
		if presentLayers[i] != 2 {
			return modelSpec{}, fmt.Errorf("model %s: outputs present.%d.key and .value are required", path, i)
		}
	}
	if spec.Vocab <= 0 {
		spec.Vocab = mc.VocabSize
	}
	if spec.Vocab <= 0 {
		return modelSpec{}, fmt.Errorf("model %s: vocabulary size is symbolic in the graph and missing from config.json", path)
	}
	if heads <= 0 && mc.Heads > 0 {
		heads = int64(mc.Heads)
	}
	if headDim <= 0 && mc.Heads > 0 && mc.Embd > 0 && mc.Embd%mc.Heads == 0 {
		headDim = int64(mc.Embd / mc.Heads)
	}
	if heads <= 0 || headDim <= 0 {
		return modelSpec{}, fmt.Errorf("model %s: head count or head size is symbolic in the graph and missing from config.json (n_head, n_embd)", path)
	}
	spec.Heads, spec.HeadDim = int(heads), int(headDim)
	if mc.Layers > 0 && mc.Layers != spec.Layers {
		return modelSpec{}, fmt.Errorf("model %s: graph has %d layers but config.json says n_layer=%d", path, spec.Layers, mc.Layers)
	}
	if mc.Heads > 0 && mc.Heads != spec.Heads {
		return modelSpec{}, fmt.Errorf("model %s: graph has %d heads but config.json says n_head=%d", path, spec.Heads, mc.Heads)
	}
	if mc.VocabSize > 0 && mc.VocabSize != spec.Vocab {
		return modelSpec{}, fmt.Errorf("model %s: graph has vocabulary %d but config.json says vocab_size=%d", path, spec.Vocab, mc.VocabSize)
	}

	// The session's input and output order is ours, not the graph's.
	spec.InputNames = []string{"input_ids", "attention_mask"}
	if spec.HasPositionIDs {
		spec.InputNames = append(spec.InputNames, "position_ids")
	}
	if spec.HasCacheBranch {
		spec.InputNames = append(spec.InputNames, "use_cache_branch")
	}
	spec.OutputNames = []string{"logits"}
	for i := 0; i < spec.Layers; i++ {
		spec.InputNames = append(spec.InputNames, fmt.Sprintf("past_key_values.%d.key", i), fmt.Sprintf("past_key_values.%d.value", i))
		spec.OutputNames = append(spec.OutputNames, fmt.Sprintf("present.%d.key", i), fmt.Sprintf("present.%d.value", i))
	}
	return spec, nil
}

// runner executes forward passes of the decoder. Its buffers are the caller's: run
// wraps them in ONNX Runtime tensors for the duration of one call and destroys the
// tensors before returning, so no ONNX value outlives a call.
type runner struct {
	sess *ort.DynamicAdvancedSession
	spec modelSpec
}

// kvTensors is the number of past (or present) tensors: a key and a value per layer.
func (r *runner) kvTensors() int { return 2 * r.spec.Layers }

// kvLen is the number of float32s one of the KV tensors holds for batch b and
// sequence length p.
func (r *runner) kvLen(b, p int) int { return b * r.spec.Heads * p * r.spec.HeadDim }

// forward holds the arguments of one forward pass. ids, positions: [b,s]; mask:
// [b,past+s]; past[k]: [b,heads,past,head_dim]; present[k] receives
// [b,heads,past+s,head_dim]; logits receives [b,s,vocab].
type forward struct {
	b, s, past int
	ids        []int64
	mask       []int64
	positions  []int64
	pastKV     [][]float32
	presentKV  [][]float32
	logits     []float32
}

// liveValues counts the ONNX Runtime values the runner has created and not yet
// destroyed, process-wide; tests check that it returns to zero.
var liveValues atomic.Int64

var errShortBuffer = errors.New("engine: internal buffer too small")

// run executes one forward pass.
func (r *runner) run(f *forward) (err error) {
	sp := r.spec
	nIn, nOut := len(sp.InputNames), len(sp.OutputNames)
	values := make([]ort.Value, 0, nIn+nOut)
	defer func() {
		for _, v := range values {
			if v != nil {
				_ = v.Destroy()
				liveValues.Add(-1)
			}
		}
	}()
	add := func(v ort.Value, e error) error {
		if e != nil {
			return e
		}
		values = append(values, v)
		liveValues.Add(1)
		return nil
	}
	b, s, past := int64(f.b), int64(f.s), int64(f.past)
	if len(f.ids) < f.b*f.s || len(f.mask) < f.b*(f.past+f.s) || len(f.logits) < f.b*f.s*sp.Vocab {
		return errShortBuffer
	}
	if err := add(ort.NewTensor(ort.NewShape(b, s), f.ids)); err != nil {
		return fmt.Errorf("input_ids tensor: %w", err)
	}
	if err := add(ort.NewTensor(ort.NewShape(b, past+s), f.mask)); err != nil {
		return fmt.Errorf("attention_mask tensor: %w", err)
	}
	if sp.HasPositionIDs {
		if len(f.positions) < f.b*f.s {
			return errShortBuffer
		}
		if err := add(ort.NewTensor(ort.NewShape(b, s), f.positions)); err != nil {
			return fmt.Errorf("position_ids tensor: %w", err)
		}
	}
	if sp.HasCacheBranch {
		if err := add(ort.NewTensor(ort.NewShape(1), []bool{past > 0})); err != nil {
			return fmt.Errorf("use_cache_branch tensor: %w", err)
		}
	}
	h, d := int64(sp.Heads), int64(sp.HeadDim)
	pastN, presN := r.kvLen(f.b, f.past), r.kvLen(f.b, f.past+f.s)
	for k := 0; k < r.kvTensors(); k++ {
		if len(f.pastKV[k]) < pastN {
			return errShortBuffer
		}
		if err := add(ort.NewTensor(ort.NewShape(b, h, past, d), f.pastKV[k])); err != nil {
			return fmt.Errorf("past tensor: %w", err)
		}
	}
	inputs := values[:nIn:nIn]
	if err := add(ort.NewTensor(ort.NewShape(b, s, int64(sp.Vocab)), f.logits)); err != nil {
		return fmt.Errorf("logits tensor: %w", err)
	}
	for k := 0; k < r.kvTensors(); k++ {
		if len(f.presentKV[k]) < presN {
			return errShortBuffer
		}
		if err := add(ort.NewTensor(ort.NewShape(b, h, past+s, d), f.presentKV[k])); err != nil {
			return fmt.Errorf("present tensor: %w", err)
		}
	}
	outputs := values[nIn:]
	if err := r.sess.Run(inputs, outputs); err != nil {
		return fmt.Errorf("run model: %w", err)
	}
	return nil
}
