# Consul ACL policy for the model servers (jobs/inference.nomad.hcl). Each server
# registers, updates and deregisters its own instance of the "inference" service and its
# readiness check through the local agent, and reads node names in health answers.
#
#   consul acl policy create -name inference -rules @consul/acl/inference.hcl

service "inference" {
  policy = "write"
}

node_prefix "" {
  policy = "read"
}
