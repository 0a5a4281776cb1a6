# Consul ACL policy for Grafana (jobs/grafana.nomad.hcl): its template looks up the
# "prometheus" service to point the datasource at it.
#
#   consul acl policy create -name grafana -rules @consul/acl/grafana.hcl

service "prometheus" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
