package loadtest

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
)

//go:embed report.html.tmpl
var reportTemplate string

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"dur":    formatSeconds,
	"pct":    func(f float64) string { return fmt.Sprintf("%.2f%%", f*100) },
	"num":    func(f float64) string { return fmt.Sprintf("%.1f", f) },
	"secs":   secondsOf,
	"counts": formatCounts,
}).Parse(reportTemplate))

// WriteHTML writes a self-contained HTML report: summary tables, threshold outcomes
// and SVG charts of latency percentiles, throughput and errors over time, drawn by
// an inline script (no external resources).
func WriteHTML(w io.Writer, s *Summary, thresholds []ThresholdResult) error {
	if err := reportTmpl.Execute(w, struct {
		S          *Summary
		Thresholds []ThresholdResult
	}{s, thresholds}); err != nil {
		return fmt.Errorf("html report: %w", err)
	}
	return nil
}
