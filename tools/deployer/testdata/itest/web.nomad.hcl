# Integration fixture: a tiny HTTP service under raw_exec with a Nomad-native check,
# used to exercise a failed (and auto-reverted) deployment on a real dev agent.
variable "check_path" {
  description = "Path the HTTP check requests; a path that 404s makes the deployment fail."
  type        = string
  default     = "/"
}

variable "python" {
  description = "Python 3 interpreter serving the files."
  type        = string
  default     = "/usr/bin/python3"
}

job "web" {
  type = "service"

  group "web" {
    count = 1

    network {
      port "http" {}
    }

    update {
      max_parallel      = 1
      health_check      = "checks"
      min_healthy_time  = "1s"
      healthy_deadline  = "8s"
      progress_deadline = "10s"
      auto_revert       = true
    }

    restart {
      attempts = 0
      mode     = "fail"
    }

    reschedule {
      attempts  = 0
      unlimited = false
    }

    service {
      name     = "web"
      provider = "nomad"
      port     = "http"

      check {
        name     = "ready"
        type     = "http"
        path     = var.check_path
        interval = "1s"
        timeout  = "1s"
      }
    }

    task "web" {
      driver = "raw_exec"

      config {
        command = var.python
        args    = ["-m", "http.server", "--bind", "127.0.0.1", "${NOMAD_PORT_http}"]
      }

      resources {
        cpu    = 100
        memory = 64
      }
    }
  }
}
