# One dev machine: a Grafana installed on the host (Grafana's own .deb or tarball; Debian
# does not package it) under raw_exec, finding Prometheus in Nomad's service catalog.
#
#   nomad var put nomad/jobs/grafana admin_password="$(openssl rand -base64 24)"
#   nomad job run -var-file=jobs/dev/grafana.vars.hcl jobs/grafana.nomad.hcl

datacenters      = ["dc1"]
driver           = "raw_exec"
binary           = "/usr/share/grafana/bin/grafana"
homepath         = "/usr/share/grafana"
service_provider = "nomad"
