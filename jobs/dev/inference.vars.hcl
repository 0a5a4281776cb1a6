# One dev machine: `nomad agent -dev -config=jobs/dev/nomad-dev.hcl`, raw_exec, host
# networking, no GPU, no Consul ACLs. Paths depend on the checkout, so give them on the
# command line (from the repository root, after `make build ort`):
#
#   nomad job run -var-file=jobs/dev/inference.vars.hcl \
#     -var binary=$PWD/bin/inference \
#     -var model_dir=$PWD/inference/model/default \
#     -var ort_lib=$PWD/.cache/onnxruntime-1.24.1/libonnxruntime.so.1 \
#     jobs/inference.nomad.hcl
#
# There is no Consul agent on a dev machine by default, so registration is off
# (consul_http_addr = ""); Prometheus finds the server through Nomad's catalog
# (jobs/dev/prometheus.vars.hcl). With `consul agent -dev -config-file=consul/dev/consul.hcl`
# running, add -var consul_http_addr=127.0.0.1:8500.

datacenters         = ["dc1"]
driver              = "raw_exec"
count               = 1
gpu_count           = 0
cpu                 = 1000
memory              = 1024
max_batch_size      = 8
max_queue           = 32
consul_token_source = "none"
consul_http_addr    = ""
startup_grace       = "120s"
