package engine

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestBadLibraryPath(t *testing.T) {
	model := modelDirForTest(t)
	dir := t.TempDir()
	notLib := filepath.Join(dir, "libonnxruntime.so")
	if err := os.WriteFile(notLib, []byte("this is not a shared library\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, path, want string
	}{
		{"missing", filepath.Join(dir, "nope", "libonnxruntime.so.1"), "file not found"},
		{"not a library", notLib, "not a shared library"},
		{"directory", dir, "is a directory"},
	} {
		t.Run(c.name, func(t *testing.T) {
			e, err := New(Config{ModelDir: model, ORTLib: c.path})
			if err == nil {
				e.Close()
				t.Fatal("New succeeded")
			}
			msg := err.Error()
			for _, want := range []string{c.want, "make ort", "ORT_LIB", c.path} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not mention %q", msg, want)
				}
			}
		})
	}
}

func TestORTVersionCheck(t *testing.T) {
	for v, ok := range map[string]bool{"1.24.1": true, "1.24.0": true, "1.25.3": true, "1.23.2": false, "1.16.0": false, "2.0.0": false, "garbage": false} {
		if err := checkORTVersion(v); (err == nil) != ok {
			t.Errorf("checkORTVersion(%q) = %v, want ok=%v", v, err, ok)
		}
	}
}

func TestModelDirErrors(t *testing.T) {
	lib := ortLibForTest(t)
	src := modelDirForTest(t)
	link := func(t *testing.T, dir string, names ...string) {
		for _, n := range names {
			if err := os.Symlink(filepath.Join(src, n), filepath.Join(dir, n)); err != nil {
				t.Fatal(err)
			}
		}
	}
	for _, c := range []struct {
		name  string
		files []string
		want  string
	}{
		{"empty dir", nil, "config.json"},
		{"no tokenizer", []string{"config.json", "model.onnx"}, "tokenizer.json"},
		{"no model", []string{"config.json", "tokenizer.json"}, "no ONNX model"},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			link(t, dir, c.files...)
			e, err := New(Config{ModelDir: dir, ORTLib: lib})
			if err == nil {
				e.Close()
				t.Fatal("New succeeded")
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not mention %q", err, c.want)
			}
		})
	}
	t.Run("not a directory", func(t *testing.T) {
		_, err := New(Config{ModelDir: filepath.Join(t.TempDir(), "missing"), ORTLib: lib})
		if err == nil || !strings.Contains(err.Error(), "--model-dir") {
			t.Errorf("error %v does not name --model-dir", err)
		}
	})
	t.Run("merged decoder file name", func(t *testing.T) {
		dir := t.TempDir()
		link(t, dir, "config.json", "tokenizer.json")
		if err := os.Symlink(filepath.Join(src, "model.onnx"), filepath.Join(dir, "decoder_model_merged.onnx")); err != nil {
			t.Fatal(err)
		}
		e, err := New(Config{ModelDir: dir, ORTLib: lib, IntraOpThreads: 1})
		if err != nil {
			t.Fatalf("New with decoder_model_merged.onnx: %v", err)
		}
		defer e.Close()
		if res := generate(t, e, Request{Prompt: "a", MaxNewTokens: 2, IgnoreEOS: true}); res.GeneratedTokens != 2 {
			t.Errorf("generated %d tokens", res.GeneratedTokens)
		}
	})
	t.Run("config disagrees with graph", func(t *testing.T) {
		dir := t.TempDir()
		link(t, dir, "tokenizer.json", "model.onnx")
		cfg := `{"n_layer": 7, "n_head": 4, "n_positions": 256, "vocab_size": 4096, "eos_token_id": 4095}`
		if err := os.WriteFile(filepath.Join(dir, "config.json"), []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := New(Config{ModelDir: dir, ORTLib: lib})
		if err == nil || !strings.Contains(err.Error(), "n_layer=7") {
			t.Errorf("error %v does not explain the layer mismatch", err)
		}
	})
}

func TestCUDAProviderUnavailable(t *testing.T) {
	lib := ortLibForTest(t)
	_, err := New(Config{ModelDir: modelDirForTest(t), ORTLib: lib, ExecutionProvider: "cuda"})
	if err == nil {
		t.Skip("this ONNX Runtime library has a working CUDA provider")
	}
	if !strings.Contains(err.Error(), "CUDA provider") {
		t.Errorf("error %q does not say the CUDA provider is missing", err)
	}
	_, err = New(Config{ModelDir: modelDirForTest(t), ORTLib: lib, ExecutionProvider: "tpu"})
	if err == nil || !strings.Contains(err.Error(), "unknown") {
		t.Errorf("provider tpu: %v", err)
	}
}

func TestConfigValidation(t *testing.T) {
	if _, err := New(Config{MaxBatchSize: -1}); err == nil || !strings.Contains(err.Error(), "MaxBatchSize") {
		t.Errorf("negative MaxBatchSize: %v", err)
	}
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxBatchSize != DefaultMaxBatchSize || c.MaxQueue != DefaultMaxQueue || c.MaxBatchTokens != DefaultMaxBatchTokens || c.QueueTimeout != DefaultQueueTimeout || c.ExecutionProvider != "cpu" || c.BatchWait != DefaultBatchWait {
		t.Errorf("defaults %+v", c)
	}
	if c, err := (Config{BatchWait: -time.Second}).withDefaults(); err != nil || c.BatchWait != 0 {
		t.Errorf("negative BatchWait: got %s, %v; want 0 (no wait)", c.BatchWait, err)
	}
}

// TestWrongLibraryInFreshProcess loads a real shared library that is not ONNX Runtime
// (libm) in a child process, where no ONNX Runtime is loaded yet, so dlopen succeeds
// and the binding's symbol lookup is what fails.
func TestWrongLibraryInFreshProcess(t *testing.T) {
	if os.Getenv("ENGINE_TEST_WRONG_LIB") != "" {
		_, err := New(Config{ModelDir: os.Getenv("ENGINE_TEST_MODEL"), ORTLib: os.Getenv("ENGINE_TEST_WRONG_LIB")})
		if err == nil {
			os.Exit(3)
		}
		os.Stdout.WriteString("ERR: " + err.Error() + "\n")
		os.Exit(0)
	}
	model := modelDirForTest(t)
	var libm string
	for _, p := range []string{"/lib/x86_64-linux-gnu/libm.so.6", "/usr/lib/x86_64-linux-gnu/libm.so.6", "/lib64/libm.so.6", "/usr/lib64/libm.so.6"} {
		if _, err := os.Stat(p); err == nil {
			libm = p
			break
		}
	}
	if libm == "" {
		t.Skip("no libm.so.6 at the usual paths to stand in for a wrong library")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestWrongLibraryInFreshProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ENGINE_TEST_WRONG_LIB="+libm, "ENGINE_TEST_MODEL="+model)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child process: %v (a crash or a successful load)\n%s", err, out)
	}
	for _, want := range []string{"ERR: ", libm, "make ort"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output does not mention %q:\n%s", want, out)
		}
	}
}
