# Nomad agent configuration for one dev machine, to layer on -dev:
#
#   mkdir -p /tmp/inferstack-dev/prometheus-data
#   nomad agent -dev -config=jobs/dev/nomad-dev.hcl
#
# It keeps the agent on the loopback interface and from calling out: no update check, and
# none of the cloud fingerprinters that probe a metadata address.

bind_addr            = "127.0.0.1"
disable_update_check = true
datacenter           = "dc1"

advertise {
  http = "127.0.0.1"
  rpc  = "127.0.0.1"
  serf = "127.0.0.1"
}

client {
  enabled           = true
  network_interface = "lo"

  options = {
    "fingerprint.denylist" = "env_aws,env_gce,env_azure,env_digitalocean"
  }

  # Prometheus' TSDB (jobs/prometheus.nomad.hcl, volume "data").
  host_volume "prometheus-data" {
    path      = "/tmp/inferstack-dev/prometheus-data"
    read_only = false
  }
}

plugin "raw_exec" {
  config {
    enabled = true
  }
}

telemetry {
  prometheus_metrics         = true
  publish_allocation_metrics = true
  publish_node_metrics       = true
  disable_hostname           = true
}
