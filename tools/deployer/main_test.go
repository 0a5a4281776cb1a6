package main

import (
	"bytes"
	"context"
	"flag"
	"net"
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
