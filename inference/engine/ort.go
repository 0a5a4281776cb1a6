package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// DefaultORTLib is where `make ort` puts the pinned ONNX Runtime library, relative to
// the repository root.
const DefaultORTLib = ".cache/onnxruntime-1.24.1/libonnxruntime.so.1"

// minORTMinor is the oldest ONNX Runtime 1.x release that serves the C API version
// onnxruntime_go v1.27.0 was built against (ORT_API_VERSION 24).
const minORTMinor = 24

// ortFixHint is appended to every library error: it names the fix.
const ortFixHint = "run `make ort` to fetch the pinned ONNX Runtime 1.24.1, or point --ort-lib / ORT_LIB at a libonnxruntime.so of version 1.24 or newer"

// The ONNX Runtime environment is process-wide: it is initialised once, from one
// library file, and shared by every Engine in the process.
var ortEnv struct {
	mu      sync.Mutex
	path    string // the library the environment was created from; "" before
	version string
}

// initORT loads the ONNX Runtime shared library at path and creates the process-wide
// environment, or checks that the environment already loaded is the same file.
// Every failure is an error naming the fix; it never lets a bad file reach dlopen's
// callers in a way that could crash the process.
func initORT(path string) (version string, err error) {
	if path == "" {
		return "", fmt.Errorf("onnx runtime library: no path given; %s", ortFixHint)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", fmt.Errorf("onnx runtime library %q: %w", path, err)
	}
	if err := checkSharedObject(abs); err != nil {
		return "", err
	}

	ortEnv.mu.Lock()
	defer ortEnv.mu.Unlock()
	if ortEnv.path != "" {
		if sameFile(ortEnv.path, abs) {
			return ortEnv.version, nil
		}
		return "", fmt.Errorf("onnx runtime library %s: this process already loaded ONNX Runtime from %s, and only one library can be loaded per process", abs, ortEnv.path)
	}
	ort.SetSharedLibraryPath(abs)
	if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
		// The binding dlcloses the library again on failure, so a later call may try
		// another path.
		return "", fmt.Errorf("onnx runtime library %s: cannot initialise (%v); it must be ONNX Runtime 1.%d or newer for this build; %s", abs, err, minORTMinor, ortFixHint)
	}
	v := ort.GetVersion()
	if err := checkORTVersion(v); err != nil {
		_ = ort.DestroyEnvironment()
		return "", fmt.Errorf("onnx runtime library %s: %w; %s", abs, err, ortFixHint)
	}
	ortEnv.path = abs
	ortEnv.version = v
	return v, nil
}

// checkSharedObject rejects, before dlopen sees it, a path that does not exist or is
// not an ELF file.
func checkSharedObject(path string) error {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("onnx runtime library %s: file not found; %s", path, ortFixHint)
		}
		return fmt.Errorf("onnx runtime library %s: %w; %s", path, err, ortFixHint)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("onnx runtime library %s: %w", path, err)
	}
	if st.IsDir() {
		return fmt.Errorf("onnx runtime library %s: is a directory, not the library file; %s", path, ortFixHint)
	}
	magic := make([]byte, 4)
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, []byte("\x7fELF")) {
		return fmt.Errorf("onnx runtime library %s: not a shared library (no ELF header); %s", path, ortFixHint)
	}
	return nil
}

// checkORTVersion accepts ONNX Runtime 1.x with x ≥ minORTMinor.
func checkORTVersion(v string) error {
	parts := strings.SplitN(v, ".", 3)
	if len(parts) < 2 {
		return fmt.Errorf("unrecognised ONNX Runtime version %q", v)
	}
	major, err1 := strconv.Atoi(parts[0])
	minor, err2 := strconv.Atoi(parts[1])
	if err1 != nil || err2 != nil {
		return fmt.Errorf("unrecognised ONNX Runtime version %q", v)
	}
	if major != 1 || minor < minORTMinor {
		return fmt.Errorf("ONNX Runtime version %s is not supported (need 1.%d or newer 1.x)", v, minORTMinor)
	}
	return nil
}

func sameFile(a, b string) bool {
	if a == b {
		return true
	}
	sa, err1 := os.Stat(a)
	sb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(sa, sb)
}

// newSessionOptions builds the options shared by the engine's session: thread counts,
// full graph optimisation, and the execution provider.
func newSessionOptions(cfg Config) (*ort.SessionOptions, error) {
	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("session options: %w", err)
	}
	fail := func(err error) (*ort.SessionOptions, error) {
		_ = opts.Destroy()
		return nil, err
	}
	if cfg.IntraOpThreads > 0 {
		if err := opts.SetIntraOpNumThreads(cfg.IntraOpThreads); err != nil {
			return fail(fmt.Errorf("intra-op threads: %w", err))
		}
	}
	if cfg.InterOpThreads > 0 {
		if err := opts.SetInterOpNumThreads(cfg.InterOpThreads); err != nil {
			return fail(fmt.Errorf("inter-op threads: %w", err))
		}
	}
	if err := opts.SetGraphOptimizationLevel(ort.GraphOptimizationLevelEnableAll); err != nil {
		return fail(fmt.Errorf("graph optimisation level: %w", err))
	}
	switch cfg.ExecutionProvider {
	case "", "cpu":
	case "cuda":
		cuda, err := ort.NewCUDAProviderOptions()
		if err != nil {
			return fail(cudaError(err))
		}
		defer func() { _ = cuda.Destroy() }()
		if err := cuda.Update(map[string]string{"device_id": strconv.Itoa(cfg.CUDADeviceID)}); err != nil {
			return fail(cudaError(err))
		}
		if err := opts.AppendExecutionProviderCUDA(cuda); err != nil {
			return fail(cudaError(err))
		}
	default:
		return fail(fmt.Errorf("execution provider %q: unknown (want cpu or cuda)", cfg.ExecutionProvider))
	}
	return opts, nil
}

func cudaError(err error) error {
	return fmt.Errorf("execution provider cuda: the ONNX Runtime library in use has no usable CUDA provider (%v); use a GPU build of ONNX Runtime (--ort-lib / ORT_LIB) with CUDA and cuDNN installed, or --execution-provider cpu", err)
}
