# One dev machine: the loadtest binary under raw_exec, finding the servers in Nomad's
# service catalog. From the repository root, after `make build`:
#
#   nomad job run -var-file=jobs/dev/loadtest.vars.hcl -var binary=$PWD/bin/loadtest jobs/loadtest.nomad.hcl
#   nomad job dispatch -meta duration=1m -meta users=4 loadtest

datacenters         = ["dc1"]
driver              = "raw_exec"
discovery           = "nomad"
service_provider    = "nomad"
consul_token_source = "none"
cpu                 = 500
memory              = 256
