# Consul ACL policy for the deployer CLI (tools/deployer) and the load generator
# (jobs/loadtest.nomad.hcl): they only read which instances are registered and passing.
#
#   consul acl policy create -name deployer -rules @consul/acl/deployer.hcl

service_prefix "" {
  policy = "read"
}

node_prefix "" {
  policy = "read"
}
