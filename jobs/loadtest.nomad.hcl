# loadtest: a parameterized batch job that runs the load generator against the model
# servers while Prometheus scrapes the generator's own metrics (Load test dashboard).
#
#   nomad job run jobs/loadtest.nomad.hcl                      # registers the job, runs nothing
#   nomad job dispatch -meta users=50 -meta duration=10m loadtest
#   nomad job dispatch -meta rate=20 -meta thresholds='p99<10s,error_rate<1%' loadtest
#
# Dispatch meta (all optional; empty means the load generator's default):
#   users, spawn_rate   closed loop: number of users and users started per second
#   rate                open loop: arrival rate in requests/s (0: closed loop)
#   duration            how long to issue requests (Go duration, e.g. 5m)
#   weights             scenario mix, as --weights
#   thresholds          comma-separated objectives, e.g. p99<10s,error_rate<1%;
#                       a failed objective makes the dispatched job fail (exit 2)
#   target_service      service name of the servers (default inference)
# The reports (summary.json, summary.csv, timeseries.csv, report.html) are written to the
# allocation's alloc/report folder: nomad alloc fs <alloc> alloc/report/summary.json

variable "datacenters" {
  description = "Datacenters the job may run in."
  type        = list(string)
  default     = ["*"]
}

variable "node_pool" {
  description = "Nomad node pool to run the load generator in."
  type        = string
  default     = "default"
}

variable "driver" {
  description = "Task driver: \"docker\" (runs var.image) or \"raw_exec\" (runs var.binary on the host)."
  type        = string
  default     = "docker"

  validation {
    condition     = contains(["docker", "raw_exec"], var.driver)
    error_message = "The driver must be \"docker\" or \"raw_exec\"."
  }
}

variable "image" {
  description = "Container image with the loadtest binary (docker driver)."
  type        = string
  default     = "ghcr.io/inferstack/inference:0.1.0"
}

variable "binary" {
  description = "Path of the loadtest binary: inside the image for docker, on the host for raw_exec."
  type        = string
  default     = "/usr/local/bin/loadtest"
}

variable "discovery" {
  description = "How the generator finds the servers: \"consul\" (passing instances of the Consul service) or \"nomad\" (Nomad's service catalog, rendered when the task starts)."
  type        = string
  default     = "consul"

  validation {
    condition     = contains(["consul", "nomad"], var.discovery)
    error_message = "The discovery must be \"consul\" or \"nomad\"."
  }
}

variable "service_provider" {
  description = "Catalog the generator's metrics service is registered in, for Prometheus: \"consul\" or \"nomad\"."
  type        = string
  default     = "consul"
}

variable "consul_http_addr" {
  description = "Consul agent HTTP address (discovery = \"consul\")."
  type        = string
  default     = "127.0.0.1:8500"
}

variable "consul_token_source" {
  description = "Consul token for discovery: \"workload_identity\" or \"none\"."
  type        = string
  default     = "workload_identity"

  validation {
    condition     = contains(["workload_identity", "none"], var.consul_token_source)
    error_message = "The consul_token_source must be \"workload_identity\" or \"none\"."
  }
}

variable "cpu" {
  description = "CPU reservation in MHz."
  type        = number
  default     = 2000
}

variable "memory" {
  description = "Memory reservation in MiB."
  type        = number
  default     = 512
}

locals {
  consul_token = var.discovery == "consul" && var.consul_token_source == "workload_identity"
}

job "loadtest" {
  datacenters = var.datacenters
  node_pool   = var.node_pool
  type        = "batch"

  parameterized {
    payload       = "forbidden"
    meta_required = []
    meta_optional = ["users", "spawn_rate", "rate", "duration", "weights", "thresholds", "target_service"]
  }

  # Defaults of the optional dispatch meta; dispatch -meta overrides them.
  meta {
    users          = ""
    spawn_rate     = ""
    rate           = ""
    duration       = "5m"
    weights        = ""
    thresholds     = ""
    target_service = "inference"
  }

  group "loadtest" {
    count = 1

    network {
      port "metrics" {}
    }

    # A load test is an experiment: a failed run (or a failed threshold) is reported,
    # not retried.
    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    service {
      name     = "loadtest"
      provider = var.service_provider
      port     = "metrics"
      tags     = ["metrics"]
    }

    task "loadtest" {
      driver       = var.driver
      kill_timeout = "20s"

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = var.image
          network_mode = "host"
          command      = var.binary
        }
      }

      dynamic "config" {
        for_each = var.driver == "raw_exec" ? [1] : []
        content {
          command = var.binary
        }
      }

      dynamic "identity" {
        for_each = local.consul_token ? [1] : []
        content {
          name = "consul_default"
          aud  = ["consul.io"]
          ttl  = "1h"
        }
      }

      # Every flag of the load generator has a LOADTEST_<FLAG> variable; empty ones are
      # ignored, so an omitted dispatch meta keeps the generator's default.
      env {
        LOADTEST_USERS          = "${NOMAD_META_users}"
        LOADTEST_SPAWN_RATE     = "${NOMAD_META_spawn_rate}"
        LOADTEST_RATE           = "${NOMAD_META_rate}"
        LOADTEST_DURATION       = "${NOMAD_META_duration}"
        LOADTEST_WEIGHTS        = "${NOMAD_META_weights}"
        LOADTEST_THRESHOLD      = "${NOMAD_META_thresholds}"
        LOADTEST_CONSUL_SERVICE = var.discovery == "consul" ? "${NOMAD_META_target_service}" : ""
        LOADTEST_METRICS_ADDR   = "${NOMAD_ADDR_metrics}"
        LOADTEST_OUT            = "${NOMAD_ALLOC_DIR}/report"
        LOADTEST_STATUS         = "log"
        LOADTEST_LOG_FORMAT     = "json"
        CONSUL_HTTP_ADDR        = var.consul_http_addr
        CONSUL_HTTP_TOKEN_FILE  = local.consul_token ? "${NOMAD_SECRETS_DIR}/consul_token" : ""
      }

      # discovery = "nomad": the servers' addresses from Nomad's catalog when the task
      # starts (a load test runs against the servers that are up when it is dispatched).
      dynamic "template" {
        for_each = var.discovery == "nomad" ? [1] : []
        content {
          destination = "local/targets.env"
          env         = true
          change_mode = "noop"
          data        = <<-EOT
            LOADTEST_TARGET={{ range $i, $s := nomadService (env "NOMAD_META_target_service") }}{{ if $i }},{{ end }}http://{{ $s.Address }}:{{ $s.Port }}{{ end }}
          EOT
        }
      }

      resources {
        cpu    = var.cpu
        memory = var.memory
      }
    }
  }
}
