# Consul agent configuration for one dev machine (a single server, no ACLs), bound to the
# loopback interface and kept from calling out:
#
#   consul agent -dev -config-file=consul/dev/consul.hcl
#
# The model servers then register at 127.0.0.1:8500 and Prometheus can use
# consul_sd_configs (service_discovery = "consul").

datacenter       = "dc1"
node_name        = "dev"
bind_addr        = "127.0.0.1"
client_addr      = "127.0.0.1"
advertise_addr   = "127.0.0.1"
server           = true
bootstrap_expect = 1

# No version and security-bulletin check against checkpoint-api.hashicorp.com.
disable_update_check = true

# Nothing but HTTP/TCP checks defined by services; no remote exec.
enable_script_checks       = false
enable_local_script_checks = false
disable_remote_exec        = true

ports {
  http     = 8500
  dns      = 8600
  grpc     = -1
  grpc_tls = -1
}

ui_config {
  enabled = true
}

# /v1/agent/metrics?format=prometheus for Prometheus' "consul" scrape job.
telemetry {
  prometheus_retention_time = "1m"
  disable_hostname          = true
}
