# One dev machine: the Debian prometheus binary under raw_exec, storing its data in the
# host volume "prometheus-data" of jobs/dev/nomad-dev.hcl. Debian builds Prometheus
# without Consul and Nomad service discovery, so targets come from files Nomad renders
# from its own service catalog (service_discovery = "nomad_template", file_sd_configs).
# With a full Prometheus build, "nomad" (nomad_sd_configs) works as well.
#
#   apt-get install prometheus
#   nomad job run -var-file=jobs/dev/prometheus.vars.hcl jobs/prometheus.nomad.hcl

datacenters           = ["dc1"]
driver                = "raw_exec"
binary                = "/usr/bin/prometheus"
service_discovery     = "nomad_template"
service_provider      = "nomad"
consul_token_source   = "none"
nomad_addr            = "http://127.0.0.1:4646"
nomad_agent           = "127.0.0.1:4646"
nomad_token           = false
scrape_interval       = "5s"
evaluation_interval   = "5s"
retention_time        = "2d"
retention_size        = "1GB"
host_volume           = "prometheus-data"
raw_exec_storage_path = "/tmp/inferstack-dev/prometheus-data"
cpu                   = 500
memory                = 512
