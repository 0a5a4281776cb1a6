# grafana: the bundle's dashboards over the bundle's Prometheus.
#
#   nomad var put nomad/jobs/grafana admin_password="$(openssl rand -base64 24)"
#   nomad job run jobs/grafana.nomad.hcl
#
# Run it from the repository root: Nomad reads the files this job inlines with file()
# relative to the working directory.
#
# There is no default password: the task waits until the Nomad variable
# nomad/jobs/grafana exists, and fails to render if it has no admin_password key.
# The Prometheus datasource URL comes from service discovery (Consul or Nomad's catalog);
# the dashboards are the generated JSON in ../grafana/dashboards.

variable "datacenters" {
  description = "Datacenters the job may run in."
  type        = list(string)
  default     = ["*"]
}

variable "node_pool" {
  description = "Nomad node pool to place Grafana in."
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
  description = "Grafana container image (docker driver)."
  type        = string
  default     = "grafana/grafana:12.1.1"
}

variable "binary" {
  description = "raw_exec only: path of the grafana binary on the host."
  type        = string
  default     = "/usr/share/grafana/bin/grafana"
}

variable "homepath" {
  description = "raw_exec only: Grafana's home path (its public/ and conf/ folders)."
  type        = string
  default     = "/usr/share/grafana"
}

variable "http_port" {
  description = "Static port of Grafana's web UI."
  type        = number
  default     = 3000
}

variable "service_provider" {
  description = "Catalog to find Prometheus in and to register Grafana in: \"consul\" or \"nomad\"."
  type        = string
  default     = "consul"

  validation {
    condition     = contains(["consul", "nomad"], var.service_provider)
    error_message = "The service_provider must be \"consul\" or \"nomad\"."
  }
}

variable "prometheus_service" {
  description = "Service name of Prometheus."
  type        = string
  default     = "prometheus"
}

variable "admin_user" {
  description = "Grafana admin login; its password is the admin_password key of the Nomad variable nomad/jobs/grafana."
  type        = string
  default     = "admin"
}

variable "cpu" {
  description = "CPU reservation in MHz."
  type        = number
  default     = 500
}

variable "memory" {
  description = "Memory reservation in MiB."
  type        = number
  default     = 512
}

locals {
  discovery_fn = var.service_provider == "consul" ? "service" : "nomadService"
  args_raw     = ["server", "--homepath", var.homepath]
}

job "grafana" {
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

  group "grafana" {
    count = 1

    network {
      port "http" {
        static = var.http_port
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

    ephemeral_disk {
      size    = 512
      sticky  = true
      migrate = true
    }

    service {
      name     = "grafana"
      provider = var.service_provider
      port     = "http"

      check {
        name     = "health"
        type     = "http"
        path     = "/api/health"
        interval = "10s"
        timeout  = "2s"

        check_restart {
          limit = 3
          grace = "60s"
        }
      }
    }

    task "grafana" {
      driver = var.driver

      dynamic "config" {
        for_each = var.driver == "docker" ? [1] : []
        content {
          image        = var.image
          network_mode = "host"
        }
      }

      dynamic "config" {
        for_each = var.driver == "raw_exec" ? [1] : []
        content {
          command = var.binary
          args    = local.args_raw
        }
      }

      dynamic "identity" {
        for_each = var.service_provider == "consul" ? [1] : []
        content {
          name = "consul_default"
          aud  = ["consul.io"]
          ttl  = "1h"
        }
      }

      env {
        GF_SERVER_HTTP_ADDR                   = "${NOMAD_IP_http}"
        GF_SERVER_HTTP_PORT                   = "${NOMAD_PORT_http}"
        GF_PATHS_DATA                         = "${NOMAD_ALLOC_DIR}/data/grafana"
        GF_PATHS_PROVISIONING                 = "${NOMAD_TASK_DIR}/provisioning"
        GF_SECURITY_ADMIN_USER                = var.admin_user
        GF_SECURITY_DISABLE_GRAVATAR          = "true"
        GF_USERS_ALLOW_SIGN_UP                = "false"
        GF_AUTH_ANONYMOUS_ENABLED             = "false"
        GF_ANALYTICS_REPORTING_ENABLED        = "false"
        GF_ANALYTICS_CHECK_FOR_UPDATES        = "false"
        GF_ANALYTICS_CHECK_FOR_PLUGIN_UPDATES = "false"
        GF_NEWS_NEWS_FEED_ENABLED             = "false"
        INFERSTACK_DASHBOARDS_DIR             = "${NOMAD_TASK_DIR}/dashboards"
      }

      # The admin password, from Nomad Variables. nomadVar waits until the variable
      # exists; error_on_missing_key fails the render when it lacks admin_password, so
      # Grafana never starts with its built-in default.
      template {
        destination          = "$${NOMAD_SECRETS_DIR}/admin.env"
        env                  = true
        perms                = "0400"
        change_mode          = "restart"
        error_on_missing_key = true
        data                 = <<-EOT
          {{ with nomadVar "nomad/jobs/grafana" }}GF_SECURITY_ADMIN_PASSWORD={{ .admin_password | toJSON }}{{ end }}
        EOT
      }

      # The Prometheus datasource's URL, from service discovery.
      template {
        destination = "local/prometheus.env"
        env         = true
        change_mode = "restart"
        data        = <<-EOT
          {{ range $i, $s := ${local.discovery_fn} "${var.prometheus_service}" }}{{ if eq $i 0 }}PROMETHEUS_URL=http://{{ $s.Address }}:{{ $s.Port }}{{ end }}{{ end }}
        EOT
      }

      # Provisioning files and dashboards are copied verbatim (the dashboards' legends use
      # {{…}}, so the template delimiters are set to something the files never contain).
      template {
        data            = file("grafana/provisioning/datasources/prometheus.yml")
        destination     = "local/provisioning/datasources/prometheus.yml"
        left_delimiter  = "[[nomad-template-unused"
        right_delimiter = "nomad-template-unused]]"
        change_mode     = "restart"
      }

      template {
        data            = file("grafana/provisioning/dashboards/inferstack.yml")
        destination     = "local/provisioning/dashboards/inferstack.yml"
        left_delimiter  = "[[nomad-template-unused"
        right_delimiter = "nomad-template-unused]]"
        change_mode     = "restart"
      }

      # Grafana rescans the dashboards folder every 30 s; no restart needed.
      template {
        data            = file("grafana/dashboards/model-serving.json")
        destination     = "local/dashboards/model-serving.json"
        left_delimiter  = "[[nomad-template-unused"
        right_delimiter = "nomad-template-unused]]"
        change_mode     = "noop"
      }

      template {
        data            = file("grafana/dashboards/system.json")
        destination     = "local/dashboards/system.json"
        left_delimiter  = "[[nomad-template-unused"
        right_delimiter = "nomad-template-unused]]"
        change_mode     = "noop"
      }

      template {
        data            = file("grafana/dashboards/model-quality.json")
        destination     = "local/dashboards/model-quality.json"
        left_delimiter  = "[[nomad-template-unused"
        right_delimiter = "nomad-template-unused]]"
        change_mode     = "noop"
      }

      template {
        data            = file("grafana/dashboards/load-test.json")
        destination     = "local/dashboards/load-test.json"
        left_delimiter  = "[[nomad-template-unused"
        right_delimiter = "nomad-template-unused]]"
        change_mode     = "noop"
      }

      resources {
        cpu    = var.cpu
        memory = var.memory
      }
    }
  }
}
