{{- /*
  Prometheus configuration, rendered by the template block of jobs/prometheus.nomad.hcl
  (consul-template). It uses no function but env, and the task's env block sets every
  PROM_* value from a job variable, so the jobs package renders it exactly the same way
  in its tests.
*/ -}}
# Generated from jobs/prometheus/prometheus.yml.tpl by Nomad; edit the template, not this file.
global:
  scrape_interval: {{ env "PROM_SCRAPE_INTERVAL" }}
  evaluation_interval: {{ env "PROM_EVALUATION_INTERVAL" }}
  external_labels:
    cluster: "{{ env "PROM_CLUSTER" }}"

rule_files:
  - rules/*.yml

{{- if eq (env "PROM_SERVICE_DISCOVERY") "consul" }}

alerting:
  alertmanagers:
    - consul_sd_configs:
        - server: "{{ env "PROM_CONSUL_HTTP_ADDR" }}"
          services: ["alertmanager"]
{{- if ne (env "PROM_CONSUL_TOKEN_FILE") "" }}
          authorization:
            credentials_file: "{{ env "PROM_CONSUL_TOKEN_FILE" }}"
{{- end }}
{{- else if eq (env "PROM_SERVICE_DISCOVERY") "nomad_template" }}

alerting:
  alertmanagers:
    - file_sd_configs:
        - files: ["targets/alertmanager.json"]
{{- else }}

alerting:
  alertmanagers:
    - nomad_sd_configs:
        - server: "{{ env "PROM_NOMAD_ADDR" }}"
{{- if ne (env "PROM_NOMAD_TOKEN_FILE") "" }}
          authorization:
            credentials_file: "{{ env "PROM_NOMAD_TOKEN_FILE" }}"
{{- end }}
      relabel_configs:
        - source_labels: [__meta_nomad_service]
          regex: alertmanager
          action: keep
{{- end }}

scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["{{ env "NOMAD_ADDR_http" }}"]

  # The model servers. Under Consul each server registers itself (a unique ID holding the
  # Nomad alloc ID; meta metrics_path, model, model_version, version, nomad_node); under
  # Nomad's own catalog the job's Nomad-native service carries a metrics_path=… tag.
  - job_name: inference
    # The target labels model/model_version/version repeat what inference_build_info
    # exposes; honor_labels keeps the scraped values rather than renaming them exported_*.
    honor_labels: true
{{- if eq (env "PROM_SERVICE_DISCOVERY") "consul" }}
    consul_sd_configs:
      - server: "{{ env "PROM_CONSUL_HTTP_ADDR" }}"
        services: ["{{ env "PROM_INFERENCE_SERVICE" }}"]
{{- if ne (env "PROM_CONSUL_TOKEN_FILE") "" }}
        authorization:
          credentials_file: "{{ env "PROM_CONSUL_TOKEN_FILE" }}"
{{- end }}
    relabel_configs:
      - source_labels: [__meta_consul_service_metadata_metrics_path]
        regex: (/.*)
        target_label: __metrics_path__
      - source_labels: [__meta_consul_service_id]
        target_label: instance
      - source_labels: [__meta_consul_service_metadata_model]
        target_label: model
      - source_labels: [__meta_consul_service_metadata_model_version]
        target_label: model_version
      - source_labels: [__meta_consul_service_metadata_version]
        target_label: version
      - source_labels: [__meta_consul_service_metadata_nomad_node]
        target_label: nomad_node
      - source_labels: [__meta_consul_dc]
        target_label: datacenter
{{- else if eq (env "PROM_SERVICE_DISCOVERY") "nomad_template" }}
    # Nomad renders this file from its service catalog (template nomadService) and
    # re-renders it on every change; Prometheus watches it.
    file_sd_configs:
      - files: ["targets/inference.json"]
{{- else }}
    nomad_sd_configs:
      - server: "{{ env "PROM_NOMAD_ADDR" }}"
{{- if ne (env "PROM_NOMAD_TOKEN_FILE") "" }}
        authorization:
          credentials_file: "{{ env "PROM_NOMAD_TOKEN_FILE" }}"
{{- end }}
    relabel_configs:
      - source_labels: [__meta_nomad_service]
        regex: "{{ env "PROM_INFERENCE_SERVICE" }}"
        action: keep
      - source_labels: [__meta_nomad_tags]
        regex: .*,metrics_path=(/[^,]*),.*
        target_label: __metrics_path__
      # Service IDs are _nomad-task-<alloc ID>-<group>-<service>-<port>: instance is the
      # allocation ID (under Consul it is the server's registration ID, which contains it).
      - source_labels: [__meta_nomad_service_id]
        regex: _nomad-task-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-.*
        target_label: instance
      - source_labels: [__meta_nomad_node_id]
        target_label: nomad_node_id
      - source_labels: [__meta_nomad_dc]
        target_label: datacenter
{{- end }}

  # Load generators started by the parameterized loadtest job.
  - job_name: loadtest
{{- if eq (env "PROM_SERVICE_DISCOVERY") "consul" }}
    consul_sd_configs:
      - server: "{{ env "PROM_CONSUL_HTTP_ADDR" }}"
        services: ["{{ env "PROM_LOADTEST_SERVICE" }}"]
{{- if ne (env "PROM_CONSUL_TOKEN_FILE") "" }}
        authorization:
          credentials_file: "{{ env "PROM_CONSUL_TOKEN_FILE" }}"
{{- end }}
    relabel_configs:
      - source_labels: [__meta_consul_service_id]
        target_label: instance
{{- else if eq (env "PROM_SERVICE_DISCOVERY") "nomad_template" }}
    file_sd_configs:
      - files: ["targets/loadtest.json"]
{{- else }}
    nomad_sd_configs:
      - server: "{{ env "PROM_NOMAD_ADDR" }}"
{{- if ne (env "PROM_NOMAD_TOKEN_FILE") "" }}
        authorization:
          credentials_file: "{{ env "PROM_NOMAD_TOKEN_FILE" }}"
{{- end }}
    relabel_configs:
      - source_labels: [__meta_nomad_service]
        regex: "{{ env "PROM_LOADTEST_SERVICE" }}"
        action: keep
      - source_labels: [__meta_nomad_service_id]
        regex: _nomad-task-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})-.*
        target_label: instance
{{- end }}

  # Nomad agents' own metrics (telemetry { prometheus_metrics = true } on every agent).
  - job_name: nomad
    metrics_path: /v1/metrics
    params:
      format: [prometheus]
{{- if eq (env "PROM_SERVICE_DISCOVERY") "consul" }}
    consul_sd_configs:
      - server: "{{ env "PROM_CONSUL_HTTP_ADDR" }}"
        services: ["nomad", "nomad-client"]
        tags: ["http"]
{{- if ne (env "PROM_CONSUL_TOKEN_FILE") "" }}
        authorization:
          credentials_file: "{{ env "PROM_CONSUL_TOKEN_FILE" }}"
{{- end }}
    relabel_configs:
      - source_labels: [__meta_consul_node]
        target_label: instance
      - source_labels: [__meta_consul_service]
        target_label: role
{{- else }}
    static_configs:
      - targets: ["{{ env "PROM_NOMAD_AGENT" }}"]
{{- end }}
{{- if eq (env "PROM_SERVICE_DISCOVERY") "consul" }}

  # Consul agents' own metrics (telemetry { prometheus_retention_time = "…" } on the
  # agents; the token needs agent:read). Consul servers register as the "consul" service
  # on their RPC port; metrics come from the HTTP port.
  - job_name: consul
    metrics_path: /v1/agent/metrics
    params:
      format: [prometheus]
{{- if ne (env "PROM_CONSUL_TOKEN_FILE") "" }}
    authorization:
      credentials_file: "{{ env "PROM_CONSUL_TOKEN_FILE" }}"
{{- end }}
    consul_sd_configs:
      - server: "{{ env "PROM_CONSUL_HTTP_ADDR" }}"
        services: ["consul"]
{{- if ne (env "PROM_CONSUL_TOKEN_FILE") "" }}
        authorization:
          credentials_file: "{{ env "PROM_CONSUL_TOKEN_FILE" }}"
{{- end }}
    relabel_configs:
      - source_labels: [__meta_consul_address]
        regex: (.+)
        replacement: "${1}:{{ env "PROM_CONSUL_HTTP_PORT" }}"
        target_label: __address__
      - source_labels: [__meta_consul_node]
        target_label: instance
{{- end }}
