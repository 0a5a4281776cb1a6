# prometheus: scrapes the model servers, the load generators, and the Nomad and Consul
# agents; evaluates the alert rules in prometheus/rules/.
#
#   nomad job run jobs/prometheus.nomad.hcl                               # production
#   nomad job run -var-file=jobs/dev/prometheus.vars.hcl jobs/prometheus.nomad.hcl
#
# Run it from the repository root: Nomad reads the files this job inlines with file()
# relative to the working directory.
#
# The configuration is jobs/prometheus/prometheus.yml.tpl, rendered by Nomad's template block
# from the PROM_* environment below; rules are copied verbatim. Nomad re-renders them when
# the job changes and sends SIGHUP, on which Prometheus reloads configuration and rules.

variable "datacenters" {
  description = "Datacenters the job may run in."
  type        = list(string)
  default     = ["*"]
}

variable "node_pool" {
  description = "Nomad node pool to place Prometheus in."
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
  description = "Prometheus container image (docker driver)."
  type        = string
  default     = "prom/prometheus:v2.55.1"
}

variable "binary" {
  description = "Path of the prometheus binary: inside the image for docker, on the host for raw_exec."
  type        = string
  default     = "/bin/prometheus"
}

variable "http_port" {
  description = "Static port of Prometheus' web UI and API."
  type        = number
  default     = 9090
}

variable "service_discovery" {
  description = "How Prometheus finds targets: \"consul\" (consul_sd_configs; the servers register themselves), \"nomad\" (nomad_sd_configs over Nomad's service catalog), or \"nomad_template\" (file_sd_configs over files Nomad renders from its catalog; works with Prometheus builds without Consul/Nomad discovery, such as Debian's)."
  type        = string
  default     = "consul"

  validation {
    condition     = contains(["consul", "nomad", "nomad_template"], var.service_discovery)
    error_message = "The service_discovery must be \"consul\", \"nomad\" or \"nomad_template\"."
  }
}

variable "service_provider" {
  description = "Catalog Prometheus registers its own service in, for Grafana to find it: \"consul\" or \"nomad\"."
  type        = string
  default     = "consul"
}

variable "consul_http_addr" {
  description = "Consul agent HTTP address for consul_sd_configs."
  type        = string
  default     = "127.0.0.1:8500"
}

variable "consul_http_port" {
  description = "HTTP port of the Consul agents, for scraping their /v1/agent/metrics."
  type        = number
  default     = 8500
}

variable "consul_token_source" {
  description = "Consul token for discovery and agent metrics: \"workload_identity\", \"nomad_variable\" (key consul_token of nomad/jobs/<job>) or \"none\"."
  type        = string
  default     = "workload_identity"

  validation {
    condition     = contains(["workload_identity", "nomad_variable", "none"], var.consul_token_source)
    error_message = "The consul_token_source must be \"workload_identity\", \"nomad_variable\" or \"none\"."
  }
}

variable "nomad_addr" {
  description = "Nomad HTTP API address for nomad_sd_configs (service_discovery = \"nomad\")."
  type        = string
  default     = "http://127.0.0.1:4646"
}

variable "nomad_agent" {
  description = "host:port of the Nomad agent whose /v1/metrics is scraped unless service_discovery is \"consul\" (with Consul, every agent is discovered)."
  type        = string
  default     = "127.0.0.1:4646"
}

variable "nomad_token" {
  description = "Give Prometheus its workload identity as a Nomad token for nomad_sd_configs (ACL-enabled clusters: attach a policy with read-job to the job)."
  type        = bool
  default     = true
}

variable "inference_service" {
  description = "Service name of the model servers."
  type        = string
  default     = "inference"
}

variable "loadtest_service" {
  description = "Service name of the load generators' metrics."
  type        = string
  default     = "loadtest"
}

variable "scrape_interval" {
  description = "Default scrape interval."
  type        = string
  default     = "15s"
}

variable "evaluation_interval" {
  description = "Rule evaluation interval."
  type        = string
  default     = "15s"
}

variable "cluster_label" {
  description = "Value of the external label cluster on every series and alert."
  type        = string
  default     = "inferstack"
}

variable "retention_time" {
  description = "How long samples are kept (--storage.tsdb.retention.time)."
  type        = string
  default     = "15d"
}

variable "retention_size" {
  description = "Largest size of the TSDB before old blocks are deleted (--storage.tsdb.retention.size)."
  type        = string
  default     = "20GB"
}

variable "host_volume" {
  description = "Name of the client host volume holding the TSDB (empty: the allocation's ephemeral disk)."
  type        = string
  default     = "prometheus-data"
}

variable "raw_exec_storage_path" {
  description = "raw_exec only: host path of the TSDB (raw_exec cannot mount volumes; use the host volume's path)."
  type        = string
  default     = ""
}

variable "cpu" {
  description = "CPU reservation in MHz."
  type        = number
  default     = 1000
}

variable "memory" {
  description = "Memory reservation in MiB."
  type        = number
  default     = 2048
}

locals {
  storage_path = (
    var.driver == "docker" ? (var.host_volume != "" ? "/prometheus" : "/alloc/data/prometheus") :
    var.raw_exec_storage_path != "" ? var.raw_exec_storage_path : "$${NOMAD_ALLOC_DIR}/data/prometheus"
  )
  consul_token_file = var.consul_token_source == "none" ? "" : "$${NOMAD_SECRETS_DIR}/consul_token"
  target_files = {
    inference    = var.inference_service
    loadtest     = var.loadtest_service
    alertmanager = "alertmanager"
  }
  args = [
    "--config.file=$${NOMAD_TASK_DIR}/prometheus.yml",
    "--storage.tsdb.path=${local.storage_path}",
    "--storage.tsdb.retention.time=${var.retention_time}",
    "--storage.tsdb.retention.size=${var.retention_size}",
    "--web.listen-address=$${NOMAD_ADDR_http}",
    "--web.enable-lifecycle",
  ]
}

job "prometheus" {
  datacenters = var.datacenters
  node_pool   = var.node_pool
  type        = "service"

  update {
    max_parallel      = 1
    health_check      = "checks"
    min_healthy_time  = "10s"
    healthy_deadline  = "5m"
    progress_deadline = "10m"
    auto_revert       = true
  }

  group "prometheus" {
    count = 1

    network {
      port "http" {
        static = var.http_port
      }
    }

    dynamic "volume" {
      for_each = var.host_volume != "" ? [var.host_volume] : []
      labels   = ["data"]
      content {
        type      = "host"
        source    = volume.value
        read_only = false
      }
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
      size    = 1024
      sticky  = true
      migrate = true
    }

    service {
      name     = "prometheus"
      provider = var.service_provider
      port     = "http"
      tags     = ["metrics"]

      check {
        name     = "ready"
        type     = "http"
        path     = "/-/ready"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "60s"
        }
      }
    }

    task "prometheus" {
      driver       = var.driver
      kill_timeout = "30s"

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = var.image
          network_mode = "host"
          entrypoint   = [var.binary]
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

      dynamic "volume_mount" {
        for_each = var.driver == "docker" && var.host_volume != "" ? [1] : []
        content {
          volume      = "data"
          destination = "/prometheus"
        }
      }

      dynamic "identity" {
        for_each = var.service_discovery == "consul" && var.consul_token_source == "workload_identity" ? [1] : []
        content {
          name = "consul_default"
          aud  = ["consul.io"]
          ttl  = "1h"
        }
      }

      # The default workload identity as a Nomad token (secrets/nomad_token) for nomad_sd.
      dynamic "identity" {
        for_each = var.service_discovery == "nomad" && var.nomad_token ? [1] : []
        content {
          file = true
        }
      }

      dynamic "template" {
        for_each = var.service_discovery == "consul" && var.consul_token_source == "nomad_variable" ? [1] : []
        content {
          destination = "$${NOMAD_SECRETS_DIR}/consul_token"
          perms       = "0400"
          change_mode = "restart"
          data        = "{{ with nomadVar \"nomad/jobs/prometheus\" }}{{ .consul_token }}{{ end }}"
        }
      }

      env {
        PROM_SERVICE_DISCOVERY   = var.service_discovery
        PROM_CONSUL_HTTP_ADDR    = var.consul_http_addr
        PROM_CONSUL_HTTP_PORT    = var.consul_http_port
        PROM_CONSUL_TOKEN_FILE   = var.service_discovery == "consul" ? local.consul_token_file : ""
        PROM_NOMAD_ADDR          = var.nomad_addr
        PROM_NOMAD_AGENT         = var.nomad_agent
        PROM_NOMAD_TOKEN_FILE    = var.service_discovery == "nomad" && var.nomad_token ? "$${NOMAD_SECRETS_DIR}/nomad_token" : ""
        PROM_INFERENCE_SERVICE   = var.inference_service
        PROM_LOADTEST_SERVICE    = var.loadtest_service
        PROM_SCRAPE_INTERVAL     = var.scrape_interval
        PROM_EVALUATION_INTERVAL = var.evaluation_interval
        PROM_CLUSTER             = var.cluster_label
      }

      # service_discovery = "nomad_template": target files for file_sd_configs, rendered
      # from Nomad's catalog and re-rendered on every change (Prometheus watches them).
      dynamic "template" {
        for_each = var.service_discovery == "nomad_template" ? local.target_files : {}
        content {
          destination = "local/targets/${template.key}.json"
          change_mode = "noop"
          data        = <<-EOT
            [{{ range $i, $s := nomadService "${template.value}" }}{{ if $i }},
            {{ end }}{"targets": ["{{ $s.Address }}:{{ $s.Port }}"], "labels": {"instance": "{{ $s.AllocID }}", "datacenter": "{{ $s.Datacenter }}", "nomad_node_id": "{{ $s.Node }}"}}{{ end }}]
          EOT
        }
      }

      template {
        data          = file("jobs/prometheus/prometheus.yml.tpl")
        destination   = "local/prometheus.yml"
        change_mode   = "signal"
        change_signal = "SIGHUP"
      }

      # Rules are copied verbatim: their {{ $labels.… }} belong to Prometheus, so the
      # template delimiters are set to something the files never contain.
      template {
        data            = file("jobs/prometheus/rules/inference.rules.yml")
        destination     = "local/rules/inference.rules.yml"
        left_delimiter  = "[[nomad-template-unused"
        right_delimiter = "nomad-template-unused]]"
        change_mode     = "signal"
        change_signal   = "SIGHUP"
      }

      resources {
        cpu    = var.cpu
        memory = var.memory
      }
    }
  }
}
