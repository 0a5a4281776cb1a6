# Test fixture: a job that inlines a file.
variable "count" {
  description = "Number of Prometheus instances."
  type        = number
  default     = 1
}

job "prometheus" {
  group "prometheus" {
    count = var.count
    task "prometheus" {
      driver = "raw_exec"
      template {
        data        = file("prometheus/prometheus.yml")
        destination = "local/prometheus.yml"
      }
    }
  }
}
