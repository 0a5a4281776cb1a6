# Test fixture: a small service job in the bundle's shape.
variable "count" {
  description = "Number of server instances."
  type        = number
  default     = 1
}

variable "binary" {
  description = "Path of the inference binary."
  type        = string
  default     = "/usr/local/bin/inference"
}

variable "consul_http_addr" {
  description = "Consul agent the server registers with (empty: no registration)."
  type        = string
  default     = "127.0.0.1:8500"
}

job "inference" {
  group "api" {
    count = var.count
    task "server" {
      driver = "raw_exec"
      config {
        command = var.binary
      }
    }
  }
}
