package main

import (
	"bytes"
	"context"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/inferstack/inferstack/tools/deployer/deploy"
)

func TestRunUsageErrors(t *testing.T) {
	cases := []struct {
		args []string
		code int
		want string
	}{
		{nil, deploy.ExitInput, "no command given"},
		{[]string{"upp"}, deploy.ExitInput, `unknown command "upp"`},
		{[]string{"up", "--bogus"}, deploy.ExitInput, "flag provided but not defined: -bogus"},
		{[]string{"logs"}, deploy.ExitInput, "usage: deployer logs [-f] JOB [TASK]"},
		{[]string{"logs", "inference", "--type", "stdin"}, deploy.ExitInput, `--type "stdin"`},
		{[]string{"status", "extra"}, deploy.ExitInput, "status takes no arguments"},
		{[]string{"loadtest", "--duration", "soon"}, deploy.ExitInput, `--duration "soon"`},
		{[]string{"loadtest", "--threshold", "p99<1s,p50<1s"}, deploy.ExitInput, "one threshold per flag"},
		{[]string{"loadtest", "--threshold", "p98<1s"}, deploy.ExitInput, `--threshold: threshold "p98<1s": unknown metric "p98"`},
		{[]string{"up", "--timeout", "soon"}, deploy.ExitInput, "want a duration such as 20m"},
		{[]string{"up", "--var", "novalue"}, deploy.ExitInput, "want name=value"},
		{[]string{"up", "--var-file", "testdata/none.hcl"}, deploy.ExitInput, "read var file"},
		{[]string{"up", "--jobs-dir", "testdata/none"}, deploy.ExitInput, "--jobs-dir testdata/none: not a directory"},
		{[]string{"validate", "--offline", "--jobs-dir", "testdata/itest", "--var", "nope=1"}, deploy.ExitInput, "undeclared variable: nope (--var nope)"},
	}
	for _, c := range cases {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), c.args, &stdout, &stderr)
		code := exitCode(err, &stderr)
		if code != c.code || !strings.Contains(stderr.String(), c.want) {
			t.Errorf("deployer %q: exit %d, stderr %q; want exit %d and %q", c.args, code, stderr.String(), c.code, c.want)
		}
	}
}

func TestRunHelpAndVersion(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := exitCode(run(context.Background(), []string{"help"}, &stdout, &stderr), &stderr); code != 0 {
		t.Fatalf("help: exit %d", code)
	}
	for _, cmd := range commandOrder {
		if !strings.Contains(stdout.String(), "  "+cmd+" ") {
			t.Errorf("help lacks %s", cmd)
		}
	}
	stdout.Reset()
	if code := exitCode(run(context.Background(), []string{"up", "-h"}, &stdout, &stderr), &stderr); code != 0 {
		t.Errorf("up -h: exit %d", code)
	}
	if !strings.Contains(stderr.String(), "-var-file") {
		t.Errorf("up -h does not list --var-file")
	}
	stdout.Reset()
	if code := exitCode(run(context.Background(), []string{"version"}, &stdout, &stderr), &stderr); code != 0 || !strings.HasPrefix(stdout.String(), "deployer ") {
		t.Errorf("version: exit %d, %q", code, stdout.String())
	}
}

func TestRunValidateOfflineAndFlagsAfterArgs(t *testing.T) {
	var stdout, stderr bytes.Buffer
	// Flags after the positional argument are parsed too.
	err := run(context.Background(), []string{"validate", "web", "--offline", "--jobs-dir", "testdata/itest"}, &stdout, &stderr)
	if code := exitCode(err, &stderr); code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	if !strings.Contains(stdout.String(), "valid (offline): web") {
		t.Errorf("stdout %q", stdout.String())
	}
}

func TestRunConnectionRefusedIsExit1(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := "http://" + ln.Addr().String()
	ln.Close()
	var stdout, stderr bytes.Buffer
	t.Setenv("NOMAD_ADDR", "http://127.0.0.1:1") // the flag wins over the environment
	err = run(context.Background(), []string{"status", "--address", addr, "--jobs-dir", "testdata/itest"}, &stdout, &stderr)
	if code := exitCode(err, &stderr); code != deploy.ExitAPI || !strings.Contains(stderr.String(), "cannot reach Nomad at "+addr) {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestParseInterspersed(t *testing.T) {
	var stderr bytes.Buffer
	o := &options{}
	fs := newTestFlagSet(o, &stderr)
	pos, err := parseInterspersed(fs, []string{"inference", "-f", "server", "--", "-x"})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(pos, " ") != "inference server -x" || !o.follow {
		t.Errorf("positional %q, follow %v", pos, o.follow)
	}
}

func newTestFlagSet(o *options, stderr *bytes.Buffer) *flag.FlagSet {
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	fs.SetOutput(stderr)
	commands["logs"].flags(fs, o)
	return fs
}

// writeFiles writes files (path → content) under dir.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for p, content := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

const devJob = `variable "binary" {
  type    = string
  default = "/usr/local/bin/inference"
}

job "inference" {
  group "api" {
    task "server" {
      driver = "raw_exec"
      config {
        command = var.binary
      }
    }
  }
}
`

func TestRunDevOutsideTheCheckoutFails(t *testing.T) {
	withDevVars, err := filepath.Abs("deploy/testdata/bundle") // dev/inference.vars.hcl sets binary
	if err != nil {
		t.Fatal(err)
	}
	repo := t.TempDir()
	writeFiles(t, repo, map[string]string{"jobs/inference.nomad.hcl": devJob, "jobs/web.nomad.hcl": "job \"web\" {}\n"})
	t.Chdir(t.TempDir()) // not the repository root: no bin/inference here
	jobsDir := filepath.Join(repo, "jobs")

	var stdout, stderr bytes.Buffer
	err = run(context.Background(), []string{"validate", "--offline", "--dev", "--jobs-dir", jobsDir}, &stdout, &stderr)
	code := exitCode(err, &stderr)
	if code != deploy.ExitInput || !strings.Contains(stderr.String(), "bin/inference not found (for inference.binary): run from the repository root after `make build`, or give --var inference.binary=PATH") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}

	// Jobs not acted on, or a path given by the user, are no error.
	for _, args := range [][]string{{"web"}, {"--var", "inference.binary=/opt/inference"}} {
		stdout.Reset()
		stderr.Reset()
		err = run(context.Background(), append([]string{"validate", "--offline", "--dev", "--jobs-dir", jobsDir}, args...), &stdout, &stderr)
		if code := exitCode(err, &stderr); code != 0 {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr.String())
		}
	}

	// A dev var file's value is kept, with a warning, when its file exists; it is an
	// error when it does not.
	stderr.Reset()
	err = run(context.Background(), []string{"validate", "--offline", "--dev", "--jobs-dir", withDevVars, "inference"}, &stdout, &stderr)
	if code := exitCode(err, &stderr); code != deploy.ExitInput || !strings.Contains(stderr.String(),
		"bin/inference not found, nor inference.binary = /opt/dev/inference (dev/inference.vars.hcl:1): run from the repository root after `make build`, or give --var inference.binary=PATH") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	hostBinary := filepath.Join(t.TempDir(), "inference")
	writeFiles(t, filepath.Dir(hostBinary), map[string]string{"inference": "#!/bin/sh\n"})
	keeps := t.TempDir()
	writeFiles(t, keeps, map[string]string{"inference.nomad.hcl": devJob, "dev/inference.vars.hcl": "binary = \"" + hostBinary + "\"\n"})
	stderr.Reset()
	err = run(context.Background(), []string{"validate", "--offline", "--dev", "--jobs-dir", keeps, "inference"}, &stdout, &stderr)
	if code := exitCode(err, &stderr); code != 0 || !strings.Contains(stderr.String(), "dev: WARNING: bin/inference not found; inference.binary keeps the value of dev/inference.vars.hcl:1, "+hostBinary) {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
	stderr.Reset()
	err = run(context.Background(), []string{"validate", "--offline", "--dev", "--jobs-dir", withDevVars, "--var", "inference.binary=/x", "inference"}, &stdout, &stderr)
	if code := exitCode(err, &stderr); code != 0 || strings.Contains(stderr.String(), "WARNING") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}

	// Found in the checkout: used and said.
	t.Chdir(repo)
	writeFiles(t, repo, map[string]string{"bin/inference": "#!/bin/sh\n"})
	stderr.Reset()
	err = run(context.Background(), []string{"validate", "--offline", "--dev", "--jobs-dir", jobsDir}, &stdout, &stderr)
	if code := exitCode(err, &stderr); code != 0 || !strings.Contains(stderr.String(), "dev: inference.binary = "+filepath.Join(repo, "bin/inference")) {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestRunJobsDirResolvesFilesAgainstItsParent(t *testing.T) {
	repo := t.TempDir()
	writeFiles(t, repo, map[string]string{
		"jobs/conf.nomad.hcl": "job \"conf\" {\n  meta {\n    data = file(\"jobs/conf/app.yml\")\n  }\n}\n",
		"jobs/conf/app.yml":   "key: value\n",
	})
	t.Chdir(t.TempDir()) // the working directory does not matter
	var stdout, stderr bytes.Buffer
	err := run(context.Background(), []string{"validate", "--offline", "--jobs-dir", filepath.Join(repo, "jobs")}, &stdout, &stderr)
	if code := exitCode(err, &stderr); code != 0 || !strings.Contains(stdout.String(), "valid (offline): conf") {
		t.Fatalf("exit %d, stdout %q, stderr %q", code, stdout.String(), stderr.String())
	}

	if err := os.Remove(filepath.Join(repo, "jobs/conf/app.yml")); err != nil {
		t.Fatal(err)
	}
	stderr.Reset()
	err = run(context.Background(), []string{"validate", "--offline", "--jobs-dir", filepath.Join(repo, "jobs")}, &stdout, &stderr)
	if code := exitCode(err, &stderr); code != deploy.ExitInput || !strings.Contains(stderr.String(), "jobs/conf/app.yml: not found in "+repo+" (the parent of --jobs-dir) nor in "+filepath.Join(repo, "jobs")) {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestRunHelpShowsDefaults(t *testing.T) {
	cases := map[string][]string{
		"up":       {"17m for the bundle", "0: no limit", "(default: $CONSUL_HTTP_ADDR or 127.0.0.1:8500)", "JSON when named *.json"},
		"restart":  {"(default 15m)"},
		"down":     {"(default 5m0s)"},
		"loadtest": {"(default 30m0s)", "5m for the bundle"},
	}
	for cmd, wants := range cases {
		var stdout, stderr bytes.Buffer
		if code := exitCode(run(context.Background(), []string{cmd, "-h"}, &stdout, &stderr), &stderr); code != 0 {
			t.Fatalf("%s -h: exit %d", cmd, code)
		}
		for _, w := range wants {
			if !strings.Contains(stderr.String(), w) {
				t.Errorf("%s -h lacks %q:\n%s", cmd, w, stderr.String())
			}
		}
	}
}

const grafanaJob = `variable "binary" {
  type    = string
  default = "/usr/share/grafana/bin/grafana"
}

variable "homepath" {
  type    = string
  default = "/usr/share/grafana"
}

job "grafana" {
  group "grafana" {
    task "grafana" {
      driver = "raw_exec"
      config {
        command = var.binary
        args    = ["server", "--homepath", var.homepath]
      }
    }
  }
}
`

// TestRunDevChecksGrafanasPaths: --dev checks that the Grafana binary and home path
// the dev var file names exist when grafana is acted on.
func TestRunDevChecksGrafanasPaths(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"grafana.nomad.hcl":    grafanaJob,
		"web.nomad.hcl":        "job \"web\" {}\n",
		"dev/grafana.vars.hcl": "binary   = \"/nonexistent/grafana/bin/grafana\"\nhomepath = \"/nonexistent/grafana\"\n",
	})
	validate := func(args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"validate", "--offline", "--dev", "--jobs-dir", dir}, args...), &stdout, &stderr)
		return exitCode(err, &stderr), stderr.String()
	}
	code, stderr := validate("grafana")
	for _, want := range []string{
		"grafana.binary = /nonexistent/grafana/bin/grafana (dev/grafana.vars.hcl:1) not found: install Grafana (its .deb or tarball from grafana.com; Debian does not package it), or give --var grafana.binary=PATH",
		"grafana.homepath = /nonexistent/grafana (dev/grafana.vars.hcl:2) not found: install Grafana",
		"or give --var grafana.homepath=PATH",
	} {
		if code != deploy.ExitInput || !strings.Contains(stderr, want) {
			t.Errorf("exit %d, stderr %q; want exit 2 and %q", code, stderr, want)
		}
	}
	// Another job acted on, or the paths given: no error.
	for _, args := range [][]string{{"web"}, {"--var", "grafana.binary=/opt/g/bin/grafana", "--var", "grafana.homepath=/opt/g", "grafana"}} {
		if code, stderr := validate(args...); code != 0 {
			t.Errorf("%q: exit %d, stderr %q", args, code, stderr)
		}
	}
	// The job's defaults apply without a dev var file: checked too.
	if err := os.Remove(filepath.Join(dir, "dev/grafana.vars.hcl")); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat("/usr/share/grafana/bin/grafana"); err != nil {
		if code, stderr := validate("grafana"); code != deploy.ExitInput || !strings.Contains(stderr, "grafana.binary = /usr/share/grafana/bin/grafana (grafana.nomad.hcl:3) not found") {
			t.Errorf("exit %d, stderr %q", code, stderr)
		}
	}
	// Installed where the dev var file says: used, and said.
	home := t.TempDir()
	writeFiles(t, home, map[string]string{"bin/grafana": "#!/bin/sh\n"})
	writeFiles(t, dir, map[string]string{"dev/grafana.vars.hcl": "binary   = \"" + home + "/bin/grafana\"\nhomepath = \"" + home + "\"\n"})
	if code, stderr := validate("grafana"); code != 0 || !strings.Contains(stderr, "dev: grafana.binary = "+home+"/bin/grafana (dev/grafana.vars.hcl:1)") {
		t.Errorf("exit %d, stderr %q", code, stderr)
	}
}

const ortJob = `variable "ort_lib" {
  type    = string
  default = "/usr/lib/libonnxruntime.so.1"
}

job "inference" {
  meta {
    ort = var.ort_lib
  }
}
`

const promJob = `variable "binary" {
  type    = string
  default = "/usr/bin/prometheus"
}

job "prometheus" {
  meta {
    bin = var.binary
  }
}
`

// TestRunDevEnvPathMustExist: ORT_LIB or PROMETHEUS_BIN naming no file is an error
// naming the variable, even when the checkout's file exists (no silent fallback).
func TestRunDevEnvPathMustExist(t *testing.T) {
	repo := t.TempDir()
	writeFiles(t, repo, map[string]string{
		"jobs/inference.nomad.hcl":                      ortJob,
		"jobs/prometheus.nomad.hcl":                     promJob,
		".cache/onnxruntime-1.24.1/libonnxruntime.so.1": "lib",
		".cache/prometheus-2.54.1/prometheus":           "#!/bin/sh\n",
		"elsewhere/libonnxruntime.so.1":                 "lib",
	})
	t.Chdir(repo)
	t.Setenv("ORT_LIB", "")
	t.Setenv("PROMETHEUS_BIN", "")
	validate := func(args ...string) (int, string) {
		var stdout, stderr bytes.Buffer
		err := run(context.Background(), append([]string{"validate", "--offline", "--dev", "--jobs-dir", "jobs"}, args...), &stdout, &stderr)
		return exitCode(err, &stderr), stderr.String()
	}
	if code, stderr := validate(); code != 0 || !strings.Contains(stderr, "dev: inference.ort_lib = "+filepath.Join(repo, ".cache/onnxruntime-1.24.1/libonnxruntime.so.1")) {
		t.Fatalf("unset: exit %d, stderr %q", code, stderr)
	}

	t.Setenv("ORT_LIB", "/nowhere/libonnxruntime.so.1")
	code, stderr := validate()
	if want := "ORT_LIB=/nowhere/libonnxruntime.so.1 (for inference.ort_lib) does not exist: point ORT_LIB at the file, unset it to use the checkout's .cache/onnxruntime-1.24.1/libonnxruntime.so.1, or give --var inference.ort_lib=PATH"; code != deploy.ExitInput || !strings.Contains(stderr, want) {
		t.Errorf("bad ORT_LIB: exit %d, stderr %q; want exit 2 and %q", code, stderr, want)
	}
	if code, stderr := validate("prometheus"); code != 0 { // inference not acted on
		t.Errorf("bad ORT_LIB, prometheus only: exit %d, stderr %q", code, stderr)
	}
	if code, stderr := validate("--var", "inference.ort_lib=/opt/ort/libonnxruntime.so.1"); code != 0 {
		t.Errorf("bad ORT_LIB, --var given: exit %d, stderr %q", code, stderr)
	}
	t.Setenv("ORT_LIB", "elsewhere/libonnxruntime.so.1")
	if code, stderr := validate(); code != 0 || !strings.Contains(stderr, "dev: inference.ort_lib = "+filepath.Join(repo, "elsewhere/libonnxruntime.so.1")) {
		t.Errorf("ORT_LIB set: exit %d, stderr %q", code, stderr)
	}

	t.Setenv("PROMETHEUS_BIN", "/nowhere/prometheus")
	code, stderr = validate()
	if want := "PROMETHEUS_BIN=/nowhere/prometheus (for prometheus.binary) does not exist: point PROMETHEUS_BIN at the file"; code != deploy.ExitInput || !strings.Contains(stderr, want) {
		t.Errorf("bad PROMETHEUS_BIN: exit %d, stderr %q; want exit 2 and %q", code, stderr, want)
	}
}
