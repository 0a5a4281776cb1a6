package main

import (
	"github.com/inferstack/inferstack/jobs"
	"github.com/inferstack/inferstack/tools/deployer/deploy"
)

// embeddedBundle is the job bundle compiled into the binary (jobs.FS), with the
// files its jobs read through file() inlined by jobs.Inline.
func embeddedBundle() *deploy.Bundle {
	return &deploy.Bundle{FS: jobs.FS, Inline: jobs.Inline}
}
