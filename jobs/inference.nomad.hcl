# inference: the model server (gin + ONNX Runtime), one allocation per GPU node.
#
#   nomad job run jobs/inference.nomad.hcl                                # production: docker, GPUs
#   nomad job run -var-file=jobs/dev/inference.vars.hcl \
#     -var binary=$PWD/bin/inference -var model_dir=$PWD/inference/model/default \
#     -var ort_lib=$PWD/.cache/onnxruntime-1.24.1/libonnxruntime.so.1 jobs/inference.nomad.hcl
#
# The server registers itself in Consul (service "inference", a unique ID holding the Nomad
# alloc ID, meta metrics_path/model/model_version/version) and Nomad also registers a
# Nomad-native service with the same readiness check, so deployments, canaries and
# check_restart gate on real health without a second Consul registration.
#
# Shutdown arithmetic (all in seconds, defaults in brackets):
#   Nomad deregisters the Nomad service, waits group shutdown_delay [5], sends SIGTERM.
#   The server then deregisters from Consul, fails /readyz, waits --shutdown-delay [5] so
#   Consul watchers and Prometheus notice, stops accepting, and drains in-flight requests
#   for at most --drain-timeout [20]. kill_timeout = shutdown_delay_seconds +
#   drain_timeout_seconds + kill_margin_seconds [5 + 20 + 5 = 30], after which Nomad sends
#   SIGKILL. Nomad clients cap kill_timeout at their max_kill_timeout (30s by default):
#   raise that on the clients before raising drain_timeout_seconds.

variable "datacenters" {
  description = "Datacenters the job may run in."
  type        = list(string)
  default     = ["*"]
}

variable "node_pool" {
  description = "Nomad node pool to place the servers in (for example a pool of GPU nodes)."
  type        = string
  default     = "default"
}

variable "count" {
  description = "Number of server allocations."
  type        = number
  default     = 2
}

variable "driver" {
  description = "Task driver: \"docker\" (production, runs var.image) or \"raw_exec\" (one dev machine, runs var.binary)."
  type        = string
  default     = "docker"

  validation {
    condition     = contains(["docker", "raw_exec"], var.driver)
    error_message = "The driver must be \"docker\" or \"raw_exec\"."
  }
}

variable "image" {
  description = "Container image with the inference binary, the bundled model and ONNX Runtime (docker driver)."
  type        = string
  default     = "ghcr.io/inferstack/inference:0.1.0"
}

variable "binary" {
  description = "Path of the inference binary: inside the image for docker, on the host for raw_exec."
  type        = string
  default     = "/usr/local/bin/inference"
}

variable "model_dir" {
  description = "Model directory (Optimum decoder layout). Ignored when model_artifact is set."
  type        = string
  default     = "/opt/inferstack/model"
}

variable "model_artifact" {
  description = "go-getter source of a model archive unpacked into the task, with ?checksum=sha256:… (empty: use model_dir)."
  type        = string
  default     = ""
}

variable "ort_lib" {
  description = "Path of libonnxruntime.so (1.24.x); for GPUs a build with the CUDA execution provider."
  type        = string
  default     = "/opt/inferstack/lib/libonnxruntime.so.1"
}

variable "cpu" {
  description = "CPU reservation in MHz."
  type        = number
  default     = 4000
}

variable "memory" {
  description = "Memory reservation in MiB."
  type        = number
  default     = 4096
}

variable "memory_max" {
  description = "Memory limit in MiB when the cluster enables memory oversubscription (0: no separate limit)."
  type        = number
  default     = 0
}

variable "gpu_count" {
  description = "NVIDIA GPUs per allocation (needs the nomad-device-nvidia plugin); 0 runs on CPU."
  type        = number
  default     = 1
}

variable "gpu_min_memory_mib" {
  description = "Smallest GPU memory (MiB) a GPU must have to be chosen."
  type        = number
  default     = 8192
}

variable "max_batch_size" {
  description = "Sequences decoded together per step (--max-batch-size)."
  type        = number
  default     = 32
}

variable "max_queue" {
  description = "Requests waiting for a slot before 429 (--max-queue)."
  type        = number
  default     = 64
}

variable "queue_timeout" {
  description = "Longest wait for a slot before 503 (--queue-timeout), a Go duration."
  type        = string
  default     = "30s"
}

variable "service_name" {
  description = "Service name in Consul and in Nomad's service catalog."
  type        = string
  default     = "inference"
}

variable "consul_http_addr" {
  description = "Consul agent HTTP address the server registers with (may use Nomad run-time values such as $${attr.unique.network.ip-address}; empty disables registration)."
  type        = string
  default     = "127.0.0.1:8500"
}

variable "consul_token_source" {
  description = "Where the server's Consul token comes from: \"workload_identity\" (Nomad 1.7+ with Consul auth method), \"nomad_variable\" (key consul_token of nomad/jobs/<job>), or \"none\" (Consul without ACLs)."
  type        = string
  default     = "workload_identity"

  validation {
    condition     = contains(["workload_identity", "nomad_variable", "none"], var.consul_token_source)
    error_message = "The consul_token_source must be \"workload_identity\", \"nomad_variable\" or \"none\"."
  }
}

variable "shutdown_delay_seconds" {
  description = "Seconds the server keeps serving after deregistering on SIGTERM (--shutdown-delay); also the group's shutdown_delay."
  type        = number
  default     = 5
}

variable "drain_timeout_seconds" {
  description = "Longest drain of in-flight requests after the shutdown delay (--drain-timeout)."
  type        = number
  default     = 20
}

variable "kill_margin_seconds" {
  description = "Extra seconds in kill_timeout beyond shutdown delay + drain before SIGKILL."
  type        = number
  default     = 5
}

variable "startup_grace" {
  description = "Time allowed for loading and warming the model before failing checks restart the task (check_restart grace)."
  type        = string
  default     = "90s"
}

locals {
  # Both drivers use the host's network namespace, so the server binds the address Nomad
  # allocated and reaches the node-local Consul agent on 127.0.0.1. It advertises the
  # address from NOMAD_IP_http and NOMAD_HOST_PORT_http, and registers with the alloc ID.
  execution_provider = var.gpu_count > 0 ? "cuda" : "cpu"
  model_dir          = var.model_artifact != "" ? "$${NOMAD_TASK_DIR}/model" : var.model_dir
  kill_timeout       = "${var.shutdown_delay_seconds + var.drain_timeout_seconds + var.kill_margin_seconds}s"
  consul_token_file  = var.consul_token_source == "none" ? [] : ["--consul-token-file", "$${NOMAD_SECRETS_DIR}/consul_token"]
  args = concat([
    "--addr", "$${NOMAD_ADDR_http}",
    "--model-dir", local.model_dir,
    "--ort-lib", var.ort_lib,
    "--execution-provider", local.execution_provider,
    "--max-batch-size", format("%d", var.max_batch_size),
    "--max-queue", format("%d", var.max_queue),
    "--queue-timeout", var.queue_timeout,
    "--service-name", var.service_name,
    "--consul-addr", var.consul_http_addr,
    "--shutdown-delay", "${var.shutdown_delay_seconds}s",
    "--drain-timeout", "${var.drain_timeout_seconds}s",
  ], local.consul_token_file)
}

job "inference" {
  datacenters = var.datacenters
  node_pool   = var.node_pool
  type        = "service"

  update {
    max_parallel      = 1
    canary            = 1
    auto_promote      = true
    auto_revert       = true
    health_check      = "checks"
    min_healthy_time  = "20s"
    healthy_deadline  = "5m"
    progress_deadline = "10m"
  }

  group "server" {
    count = var.count

    # Time between Nomad's service deregistration and SIGTERM.
    shutdown_delay = "${var.shutdown_delay_seconds}s"

    network {
      port "http" {}
    }

    # mode "fail": once the attempts are spent the allocation fails and the reschedule
    # policy moves it to another node ("delay" would restart it here forever).
    restart {
      attempts = 3
      interval = "10m"
      delay    = "15s"
      mode     = "fail"
    }

    reschedule {
      delay          = "30s"
      delay_function = "exponential"
      max_delay      = "10m"
      unlimited      = true
    }

    ephemeral_disk {
      size = 2048
    }

    # Nomad-native service: deployments and check_restart gate on /readyz. The server
    # itself registers in Consul, which is what Prometheus and clients use by default.
    service {
      name     = var.service_name
      provider = "nomad"
      port     = "http"
      tags     = ["metrics", "metrics_path=/metrics"]

      check {
        name     = "ready"
        type     = "http"
        path     = "/readyz"
        interval = "5s"
        timeout  = "2s"

        check_restart {
          limit           = 3
          grace           = var.startup_grace
          ignore_warnings = false
        }
      }
    }

    task "server" {
      driver       = var.driver
      kill_signal  = "SIGTERM"
      kill_timeout = local.kill_timeout

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = var.image
          network_mode = "host"
          command      = var.binary
          args         = local.args
        }
      }

      dynamic "config" {
        for_each = var.driver == "raw_exec" ? [1] : []
        content {
          command = var.binary
          args    = local.args
        }
      }

      # Consul token through Workload Identity: Nomad logs in to Consul's "nomad-workloads"
      # auth method with this identity and writes the token to secrets/consul_token.
      dynamic "identity" {
        for_each = var.consul_token_source == "workload_identity" ? [1] : []
        content {
          name = "consul_default"
          aud  = ["consul.io"]
          ttl  = "1h"
        }
      }

      # Consul token from Nomad Variables: nomad var put nomad/jobs/inference consul_token=…
      dynamic "template" {
        for_each = var.consul_token_source == "nomad_variable" ? [1] : []
        content {
          destination = "$${NOMAD_SECRETS_DIR}/consul_token"
          perms       = "0400"
          change_mode = "restart"
          data        = "{{ with nomadVar \"nomad/jobs/inference\" }}{{ .consul_token }}{{ end }}"
        }
      }

      dynamic "artifact" {
        for_each = var.model_artifact != "" ? [1] : []
        content {
          source      = var.model_artifact
          destination = "local/model"
        }
      }

      env {
        GIN_MODE = "release"
      }

      resources {
        cpu        = var.cpu
        memory     = var.memory
        memory_max = var.memory_max

        dynamic "device" {
          for_each = var.gpu_count > 0 ? [1] : []
          iterator = gpu
          labels   = ["nvidia/gpu"]
          content {
            count = var.gpu_count

            constraint {
              attribute = "${device.attr.memory}"
              operator  = ">="
              value     = "${var.gpu_min_memory_mib} MiB"
            }
          }
        }
      }

      logs {
        max_files     = 5
        max_file_size = 20
      }
    }
  }
}
