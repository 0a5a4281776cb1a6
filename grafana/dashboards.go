// Package grafana defines the bundle's Grafana dashboards as code (with the Grafana
// Foundation SDK's typed builders) and embeds what Grafana is provisioned with: the
// generated dashboards (dashboards/*.json, written by cmd/dashgen and checked in) and the
// provisioning files (provisioning/).
//
// Every panel's PromQL is listed by Queries, so tests can run each one against a
// Prometheus that scraped a real server.
package grafana

import (
	"bytes"
	"embed"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/grafana/grafana-foundation-sdk/go/cog"
	"github.com/grafana/grafana-foundation-sdk/go/cog/variants"
	"github.com/grafana/grafana-foundation-sdk/go/common"
	"github.com/grafana/grafana-foundation-sdk/go/dashboard"
	"github.com/grafana/grafana-foundation-sdk/go/prometheus"
	"github.com/grafana/grafana-foundation-sdk/go/stat"
	"github.com/grafana/grafana-foundation-sdk/go/timeseries"
)

// Files holds the generated dashboards (dashboards/*.json) and the provisioning files
// (provisioning/datasources, provisioning/dashboards).
//
//go:embed dashboards/*.json provisioning
var Files embed.FS

// DatasourceUID is the uid of the provisioned Prometheus datasource that every panel uses.
const DatasourceUID = "prometheus"

// PanelKind is a Grafana panel type.
type PanelKind string

// Panel kinds used by the dashboards.
const (
	TimeSeries PanelKind = "timeseries"
	Stat       PanelKind = "stat"
)

// Query is one PromQL target of a panel.
type Query struct {
	Expr   string
	Legend string
}

// Panel is a dashboard panel: a title, a unit and its queries.
type Panel struct {
	Title       string
	Description string
	Kind        PanelKind
	Unit        string
	Width       uint32 // grid columns out of 24
	Queries     []Query
	// NeedsGPU marks panels whose series exist only on servers with an NVIDIA GPU.
	NeedsGPU bool
}

// Row groups panels under a title.
type Row struct {
	Title  string
	Panels []Panel
}

// Variable is a dashboard template variable filled from label values of a metric.
type Variable struct {
	Name  string // used as $name in queries
	Label string
	Query string // label_values(metric, label)
}

// Dashboard is a generated dashboard.
type Dashboard struct {
	UID       string
	Title     string
	File      string // name under dashboards/
	Tags      []string
	Variables []Variable
	Rows      []Row
}

// Dashboards returns the bundle's dashboards, in file order.
func Dashboards() []Dashboard {
	return []Dashboard{servingDashboard(), systemDashboard(), qualityDashboard(), loadtestDashboard()}
}

// PanelQuery names one query of one panel, for tests that run them all.
type PanelQuery struct {
	Dashboard string
	Panel     string
	NeedsGPU  bool
	Query
}

// Queries returns every query of every panel of every dashboard.
func Queries() []PanelQuery {
	var out []PanelQuery
	for _, d := range Dashboards() {
		for _, r := range d.Rows {
			for _, p := range r.Panels {
				for _, q := range p.Queries {
					out = append(out, PanelQuery{Dashboard: d.Title, Panel: p.Title, NeedsGPU: p.NeedsGPU, Query: q})
				}
			}
		}
	}
	return out
}

// ExpandForTest replaces the Grafana variables of a query with the values Grafana sends
// when every variable is "All" and the rate interval is the given one (e.g. "1m"), so
// the query can be sent to Prometheus directly.
func ExpandForTest(expr, rateInterval string) string {
	r := strings.NewReplacer(
		"$__rate_interval", rateInterval,
		"$instance", ".*",
		"$scenario", ".*",
	)
	return r.Replace(expr)
}

func datasource() common.DataSourceRef {
	return common.DataSourceRef{Type: cog.ToPtr("prometheus"), Uid: cog.ToPtr(DatasourceUID)}
}

// Build builds the dashboard with the Foundation SDK.
func (d Dashboard) Build() (dashboard.Dashboard, error) {
	b := dashboard.NewDashboardBuilder(d.Title).
		Uid(d.UID).
		Tags(d.Tags).
		Refresh("30s").
		Time("now-1h", "now").
		Timezone(common.TimeZoneBrowser).
		Tooltip(dashboard.DashboardCursorSyncCrosshair).
		Readonly()
	for _, v := range d.Variables {
		b = b.WithVariable(dashboard.NewQueryVariableBuilder(v.Name).
			Label(v.Label).
			Datasource(datasource()).
			Query(dashboard.StringOrMap{String: cog.ToPtr(v.Query)}).
			Refresh(dashboard.VariableRefreshOnTimeRangeChanged).
			Sort(dashboard.VariableSortAlphabeticalAsc).
			Multi(true).
			IncludeAll(true).
			AllValue(".*"))
	}
	id := uint32(1)
	for _, r := range d.Rows {
		b = b.WithRow(dashboard.NewRowBuilder(r.Title).Id(id))
		id++
		for _, p := range r.Panels {
			b = b.WithPanel(p.builder(id))
			id++
		}
	}
	return b.Build()
}

func (p Panel) targets() []cog.Builder[variants.Dataquery] {
	var ts []cog.Builder[variants.Dataquery]
	for i, q := range p.Queries {
		ts = append(ts, prometheus.NewDataqueryBuilder().
			Datasource(datasource()).
			RefId(string(rune('A'+i))).
			Expr(q.Expr).
			LegendFormat(q.Legend).
			Range())
	}
	return ts
}

func (p Panel) builder(id uint32) cog.Builder[dashboard.Panel] {
	w := p.Width
	if w == 0 {
		w = 12
	}
	switch p.Kind {
	case Stat:
		return stat.NewPanelBuilder().
			Id(id).
			Title(p.Title).
			Description(p.Description).
			Datasource(datasource()).
			Unit(p.Unit).
			Height(5).
			Span(w).
			ReduceOptions(common.NewReduceDataOptionsBuilder().Calcs([]string{"lastNotNull"})).
			Targets(p.targets())
	default:
		return timeseries.NewPanelBuilder().
			Id(id).
			Title(p.Title).
			Description(p.Description).
			Datasource(datasource()).
			Unit(p.Unit).
			Height(8).
			Span(w).
			FillOpacity(10).
			Targets(p.targets())
	}
}

// Render returns the dashboard's JSON as written to dashboards/: indented, with a final
// newline, byte-identical on every run.
func (d Dashboard) Render() ([]byte, error) {
	built, err := d.Build()
	if err != nil {
		return nil, fmt.Errorf("build dashboard %s: %w", d.UID, err)
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(built); err != nil {
		return nil, fmt.Errorf("encode dashboard %s: %w", d.UID, err)
	}
	return buf.Bytes(), nil
}

// WriteAll renders every dashboard into dir (grafana/dashboards).
func WriteAll(dir string) error {
	for _, d := range Dashboards() {
		b, err := d.Render()
		if err != nil {
			return err
		}
		if err := os.WriteFile(filepath.Join(dir, d.File), b, 0o644); err != nil {
			return fmt.Errorf("write dashboard: %w", err)
		}
	}
	return nil
}

// quantiles returns the p50/p95/p99 queries of a histogram, summed over the selector.
func quantiles(metric, selector, by string) []Query {
	var qs []Query
	group := "le"
	legendPrefix := ""
	if by != "" {
		group = by + ", le"
		legendPrefix = "{{" + by + "}} "
	}
	for _, q := range []struct {
		v     string
		label string
	}{{"0.5", "p50"}, {"0.95", "p95"}, {"0.99", "p99"}} {
		qs = append(qs, Query{
			Expr:   fmt.Sprintf("histogram_quantile(%s, sum by (%s) (rate(%s_bucket{%s}[$__rate_interval])))", q.v, group, metric, selector),
			Legend: legendPrefix + q.label,
		})
	}
	return qs
}

const sel = `instance=~"$instance"`

// inferSel selects the inference endpoints (not health checks or scrapes), as the SLO
// rules in jobs/prometheus/rules do.
const inferSel = sel + `,endpoint=~"/infer|/v1/completions"`

func instanceVar() Variable {
	return Variable{Name: "instance", Label: "Instance", Query: "label_values(inference_build_info, instance)"}
}

func servingDashboard() Dashboard {
	return Dashboard{
		UID: "inferstack-serving", Title: "Model serving", File: "model-serving.json",
		Tags:      []string{"inferstack", "inference"},
		Variables: []Variable{instanceVar()},
		Rows: []Row{
			{Title: "Traffic", Panels: []Panel{
				{Title: "Ready instances", Kind: Stat, Unit: "none", Width: 6,
					Description: "Servers whose model is loaded and that accept requests (inference_ready).",
					Queries:     []Query{{Expr: `sum(inference_ready{` + sel + `})`, Legend: "ready"}}},
				{Title: "Inference requests/s", Kind: Stat, Unit: "reqps", Width: 6,
					Description: "Requests to /infer and /v1/completions.",
					Queries:     []Query{{Expr: `sum(rate(inference_requests_total{` + inferSel + `}[$__rate_interval]))`, Legend: "requests/s"}}},
				{Title: "Error ratio (5xx)", Kind: Stat, Unit: "percentunit", Width: 6,
					Description: "Share of inference requests answered with a 5xx status (the availability SLO allows 0.5%).",
					Queries: []Query{{Expr: `(sum(rate(inference_requests_total{` + inferSel + `,code=~"5.."}[$__rate_interval])) or vector(0))` +
						` / sum(rate(inference_requests_total{` + inferSel + `}[$__rate_interval]))`, Legend: "5xx ratio"}}},
				{Title: "In flight", Kind: Stat, Unit: "none", Width: 6,
					Queries: []Query{{Expr: `sum(inference_requests_in_flight{` + sel + `})`, Legend: "in flight"}}},
				{Title: "Requests/s by status", Kind: TimeSeries, Unit: "reqps", Width: 8,
					Description: "Inference requests by HTTP status code (429: queue full, 503: queue timeout or draining).",
					Queries:     []Query{{Expr: `sum by (code) (rate(inference_requests_total{` + inferSel + `}[$__rate_interval]))`, Legend: "{{code}}"}}},
				{Title: "Requests/s by endpoint", Kind: TimeSeries, Unit: "reqps", Width: 8,
					Description: "Every route, health checks and scrapes included.",
					Queries:     []Query{{Expr: `sum by (endpoint) (rate(inference_requests_total{` + sel + `}[$__rate_interval]))`, Legend: "{{endpoint}}"}}},
				{Title: "Rejections and cancellations", Kind: TimeSeries, Unit: "reqps", Width: 8,
					Description: "Failed requests by reason: validation, queue_full (429), queue_timeout, draining, cancelled (client went away), unauthorized, too_large, internal.",
					Queries:     []Query{{Expr: `sum by (reason) (rate(inference_request_failures_total{` + sel + `}[$__rate_interval]))`, Legend: "{{reason}}"}}},
			}},
			{Title: "Latency", Panels: []Panel{
				{Title: "Request latency", Kind: TimeSeries, Unit: "s",
					Description: "End-to-end inference latency (model_inference_latency_seconds).",
					Queries:     quantiles("model_inference_latency_seconds", sel, "")},
				{Title: "Time to first token", Kind: TimeSeries, Unit: "s",
					Queries: quantiles("inference_time_to_first_token_seconds", sel, "")},
				{Title: "Inter-token latency", Kind: TimeSeries, Unit: "s",
					Queries: quantiles("inference_inter_token_latency_seconds", sel, "")},
				{Title: "Queue wait", Kind: TimeSeries, Unit: "s",
					Description: "Time from admission to the start of prefill.",
					Queries:     quantiles("inference_queue_wait_seconds", sel, "")},
			}},
			{Title: "Throughput and batching", Panels: []Panel{
				{Title: "Tokens/s", Kind: TimeSeries, Unit: "none",
					Queries: []Query{
						{Expr: `sum(rate(inference_generated_tokens_total{` + sel + `}[$__rate_interval]))`, Legend: "generated"},
						{Expr: `sum(rate(inference_prompt_tokens_total{` + sel + `}[$__rate_interval]))`, Legend: "prompt"},
						{Expr: `sum by (instance) (inference_generated_tokens_per_second{` + sel + `})`, Legend: "{{instance}} (server gauge)"},
					}},
				{Title: "Queue depth and running sequences", Kind: TimeSeries, Unit: "none",
					Queries: []Query{
						{Expr: `sum by (instance) (inference_queue_depth{` + sel + `})`, Legend: "{{instance}} waiting"},
						{Expr: `sum by (instance) (inference_running_sequences{` + sel + `})`, Legend: "{{instance}} running"},
					}},
				{Title: "Batch size", Kind: TimeSeries, Unit: "none",
					Description: "Sequences per decode step.",
					Queries: append(quantiles("inference_batch_size", sel, "")[0:1], Query{
						Expr: `sum(rate(inference_batch_size_sum{` + sel + `}[$__rate_interval])) / sum(rate(inference_batch_size_count{` + sel + `}[$__rate_interval]))`, Legend: "mean",
					})},
				{Title: "Step duration (p99)", Kind: TimeSeries, Unit: "s",
					Queries: []Query{{Expr: `histogram_quantile(0.99, sum by (kind, le) (rate(inference_step_duration_seconds_bucket{` + sel + `}[$__rate_interval])))`, Legend: "{{kind}}"}}},
			}},
			{Title: "Build", Panels: []Panel{
				{Title: "Versions", Kind: TimeSeries, Unit: "none", Width: 24,
					Description: "Servers by version and model (inference_build_info).",
					Queries:     []Query{{Expr: `count by (version, model, model_version) (inference_build_info{` + sel + `})`, Legend: "{{version}} {{model}} {{model_version}}"}}},
			}},
		},
	}
}

func systemDashboard() Dashboard {
	return Dashboard{
		UID: "inferstack-system", Title: "System", File: "system.json",
		Tags:      []string{"inferstack", "system"},
		Variables: []Variable{instanceVar()},
		Rows: []Row{
			{Title: "Host", Panels: []Panel{
				{Title: "CPU", Kind: TimeSeries, Unit: "percent",
					Queries: []Query{{Expr: `cpu_usage_percent{` + sel + `}`, Legend: "{{instance}}"}}},
				{Title: "RAM used", Kind: TimeSeries, Unit: "bytes",
					Queries: []Query{{Expr: `ram_usage_bytes{` + sel + `}`, Legend: "{{instance}}"}}},
			}},
			{Title: "GPU", Panels: []Panel{
				{Title: "GPU memory used", Kind: TimeSeries, Unit: "bytes", NeedsGPU: true,
					Queries: []Query{
						{Expr: `gpu_memory_used_bytes{` + sel + `}`, Legend: "{{instance}} gpu{{gpu}} used"},
						{Expr: `gpu_memory_total_bytes{` + sel + `}`, Legend: "{{instance}} gpu{{gpu}} total"},
					}},
				{Title: "GPU memory used (ratio)", Kind: TimeSeries, Unit: "percentunit", NeedsGPU: true,
					Queries: []Query{{Expr: `gpu_memory_used_bytes{` + sel + `} / gpu_memory_total_bytes{` + sel + `}`, Legend: "{{instance}} gpu{{gpu}}"}}},
			}},
			{Title: "Process", Panels: []Panel{
				{Title: "Process CPU", Kind: TimeSeries, Unit: "percentunit",
					Description: "CPU seconds per second used by the server process.",
					Queries:     []Query{{Expr: `rate(process_cpu_seconds_total{job="inference",` + sel + `}[$__rate_interval])`, Legend: "{{instance}}"}}},
				{Title: "Process memory", Kind: TimeSeries, Unit: "bytes",
					Queries: []Query{
						{Expr: `process_resident_memory_bytes{job="inference",` + sel + `}`, Legend: "{{instance}} resident"},
						{Expr: `go_memstats_heap_inuse_bytes{job="inference",` + sel + `}`, Legend: "{{instance}} Go heap"},
					}},
				{Title: "Goroutines", Kind: TimeSeries, Unit: "none",
					Queries: []Query{{Expr: `go_goroutines{job="inference",` + sel + `}`, Legend: "{{instance}}"}}},
				{Title: "Scrape health", Kind: TimeSeries, Unit: "none",
					Description: "1 when Prometheus scraped the instance successfully.",
					Queries:     []Query{{Expr: `up{job="inference",` + sel + `}`, Legend: "{{instance}}"}}},
			}},
		},
	}
}

func qualityDashboard() Dashboard {
	return Dashboard{
		UID: "inferstack-quality", Title: "Model quality", File: "model-quality.json",
		Tags:      []string{"inferstack", "quality"},
		Variables: []Variable{instanceVar()},
		Rows: []Row{
			{Title: "Loss", Panels: []Panel{
				{Title: "Training and validation loss", Kind: TimeSeries, Unit: "none",
					Description: "training_loss and validation_loss{source=\"config\"} are the values recorded when the model was trained; validation_loss{source=\"startup\"} is measured by the server on load.",
					Queries: []Query{
						{Expr: `training_loss{` + sel + `}`, Legend: "{{instance}} training"},
						{Expr: `validation_loss{` + sel + `}`, Legend: "{{instance}} validation ({{source}})"},
					}},
				{Title: "Validation loss / recorded baseline", Kind: TimeSeries, Unit: "none",
					Description: "Above 1.1 the ModelValidationLossAboveBaseline alert fires.",
					Queries:     []Query{{Expr: `validation_loss{source="startup",` + sel + `} / ignoring (source) validation_loss{source="config",` + sel + `}`, Legend: "{{instance}}"}}},
			}},
			{Title: "Data validation", Panels: []Panel{
				{Title: "Validation checks/s", Kind: TimeSeries, Unit: "ops",
					Queries: []Query{{Expr: `sum by (check, result) (rate(data_validation_checks_total{` + sel + `}[$__rate_interval]))`, Legend: "{{check}} {{result}}"}}},
				{Title: "Checks passing", Kind: TimeSeries, Unit: "none",
					Description: "validation_checks: 1 when the last check of that kind passed, 0 when it failed.",
					Queries:     []Query{{Expr: `min by (check) (validation_checks{` + sel + `})`, Legend: "{{check}}"}}},
			}},
		},
	}
}

func loadtestDashboard() Dashboard {
	const ls = `scenario=~"$scenario"`
	return Dashboard{
		UID: "inferstack-loadtest", Title: "Load test", File: "load-test.json",
		Tags:      []string{"inferstack", "loadtest"},
		Variables: []Variable{{Name: "scenario", Label: "Scenario", Query: "label_values(loadtest_requests_total, scenario)"}},
		Rows: []Row{
			{Title: "Load", Panels: []Panel{
				{Title: "Users and target rate", Kind: TimeSeries, Unit: "none",
					Queries: []Query{
						{Expr: `sum(loadtest_users)`, Legend: "users"},
						{Expr: `sum(loadtest_target_rate)`, Legend: "target req/s"},
						{Expr: `sum(loadtest_in_flight)`, Legend: "in flight"},
					}},
				{Title: "Requests/s by scenario and status", Kind: TimeSeries, Unit: "reqps",
					Queries: []Query{{Expr: `sum by (scenario, code) (rate(loadtest_requests_total{` + ls + `}[$__rate_interval]))`, Legend: "{{scenario}} {{code}}"}}},
				{Title: "Errors/s by kind", Kind: TimeSeries, Unit: "reqps",
					Queries: []Query{{Expr: `sum by (scenario, kind) (rate(loadtest_errors_total{` + ls + `}[$__rate_interval]))`, Legend: "{{scenario}} {{kind}}"}}},
				{Title: "Missed schedule/s", Kind: TimeSeries, Unit: "reqps",
					Description: "Open-loop sends that were late because the in-flight limit was reached: the generator, not the server, is the bottleneck when this is not 0.",
					Queries:     []Query{{Expr: `sum(rate(loadtest_missed_schedule_total[$__rate_interval]))`, Legend: "missed"}}},
			}},
			{Title: "Client-side latency", Panels: []Panel{
				{Title: "Request duration", Kind: TimeSeries, Unit: "s",
					Queries: quantiles("loadtest_request_duration_seconds", ls, "scenario")},
				{Title: "Time to first token", Kind: TimeSeries, Unit: "s",
					Queries: quantiles("loadtest_time_to_first_token_seconds", ls, "scenario")},
				{Title: "Inter-token latency", Kind: TimeSeries, Unit: "s",
					Queries: quantiles("loadtest_inter_token_latency_seconds", ls, "scenario")},
				{Title: "Output tokens/s", Kind: TimeSeries, Unit: "none",
					Queries: []Query{{Expr: `sum by (scenario) (rate(loadtest_output_tokens_total{` + ls + `}[$__rate_interval]))`, Legend: "{{scenario}}"}}},
			}},
		},
	}
}
