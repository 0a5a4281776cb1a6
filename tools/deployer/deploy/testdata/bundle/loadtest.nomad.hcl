# Test fixture: a parameterized batch job.
job "loadtest" {
  type = "batch"
  parameterized {
    meta_optional = ["users", "duration", "thresholds"]
  }
  group "loadtest" {
    task "loadtest" {
      driver = "raw_exec"
      config {
        command = "/usr/local/bin/loadtest"
      }
    }
  }
}
