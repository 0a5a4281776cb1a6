# Consul ACL policy for Prometheus (jobs/prometheus.nomad.hcl): consul_sd_configs lists
# services and their instances (service and node read), and the "consul" scrape job reads
# each agent's /v1/agent/metrics (agent read).
#
#   consul acl policy create -name prometheus -rules @consul/acl/prometheus.hcl

service_prefix "" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}

agent_prefix "" {
  policy = "read"
}
