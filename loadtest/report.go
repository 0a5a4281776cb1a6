package loadtest

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteText writes the summary as aligned tables (the CLI prints it on stdout).
func WriteText(w io.Writer, s *Summary) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(w, "mode %s, %s elapsed, stopped by %s, seed %d, weights %s\n",
		s.Mode, formatSeconds(secondsOf(s.Elapsed)), s.StoppedBy, s.Seed, s.Weights)
	if s.Mode == "open" {
		fmt.Fprintf(w, "missed schedule %d (requests that waited for a free in-flight slot; latency still counts from the intended time)\n", s.MissedSchedule)
	}
	if s.Aborted > 0 {
		fmt.Fprintf(w, "aborted %d (in flight at the stop; not counted)\n", s.Aborted)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(tw, "scenario\trequests\terrors\terror%\treq/s\tp50\tp90\tp95\tp99\tp99.9\tmax\tservice p99\ttokens/s\t")
	rows := append(slices.Clone(s.Scenarios), s.Total)
	for _, st := range rows {
		l := st.Latency
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f\t%.1f\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t\n",
			st.Scenario, st.Requests, st.Errors, st.ErrorRate*100, st.Throughput,
			formatSeconds(l.P50), formatSeconds(l.P90), formatSeconds(l.P95), formatSeconds(l.P99),
			formatSeconds(l.P999), formatSeconds(l.Max), formatSeconds(st.ServiceTime.P99), st.TokenRate)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	var streams []Stats
	for _, st := range s.Scenarios {
		if st.TTFT != nil {
			streams = append(streams, st)
		}
	}
	if len(streams) > 0 {
		fmt.Fprintln(w)
		fmt.Fprintln(tw, "streaming\tstreams\tttft p50\tttft p95\tttft p99\titl p50\titl p99\ttpot p50\ttpot p99\ttok/s/req p50\t")
		for _, st := range streams {
			itl, tpot, rate := orZero(st.ITL), orZero(st.TPOT), orZero(st.StreamRate)
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%.1f\t\n", st.Scenario, st.TTFT.Count,
				formatSeconds(st.TTFT.P50), formatSeconds(st.TTFT.P95), formatSeconds(st.TTFT.P99),
				formatSeconds(itl.P50), formatSeconds(itl.P99), formatSeconds(tpot.P50), formatSeconds(tpot.P99), rate.P50)
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if s.Total.Errors > 0 || len(s.Total.Codes) > 1 {
		fmt.Fprintln(w)
		for _, st := range s.Scenarios {
			fmt.Fprintf(w, "%-14s codes %s", st.Scenario, formatCounts(st.Codes))
			if len(st.ErrorKinds) > 0 {
				fmt.Fprintf(w, "  errors %s", formatCounts(st.ErrorKinds))
			}
			fmt.Fprintln(w)
		}
	}
	return nil
}

func orZero(p *Percentiles) Percentiles {
	if p == nil {
		return Percentiles{}
	}
	return *p
}

func secondsOf(s Seconds) float64 { return float64(s) / 1e9 }

func formatCounts(m map[string]uint64) string {
	parts := make([]string, 0, len(m))
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+strconv.FormatUint(m[k], 10))
	}
	return strings.Join(parts, " ")
}

// WriteJSON writes the summary (and threshold outcomes, when given) as indented JSON.
func WriteJSON(w io.Writer, s *Summary, thresholds []ThresholdResult) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false) // thresholds hold < and >
	return enc.Encode(struct {
		*Summary
		Thresholds []ThresholdResult `json:"thresholds,omitempty"`
	}{s, thresholds})
}

// ReadJSON reads what WriteJSON wrote: the summary and the threshold outcomes (nil
// when the run had none), which then format their values as the run printed them.
func ReadJSON(r io.Reader) (*Summary, []ThresholdResult, error) {
	var doc struct {
		Summary
		Thresholds []ThresholdResult `json:"thresholds"`
	}
	if err := json.NewDecoder(r).Decode(&doc); err != nil {
		return nil, nil, fmt.Errorf("load test summary: %w", err)
	}
	for i := range doc.Thresholds {
		kind, _ := metricKind(doc.Thresholds[i].Metric)
		doc.Thresholds[i].duration = kind == "duration"
	}
	return &doc.Summary, doc.Thresholds, nil
}

// summaryColumns are the columns of WriteCSV's table.
var summaryColumns = []string{
	"scenario", "requests", "errors", "error_rate", "requests_per_second", "output_tokens", "output_tokens_per_second",
	"latency_mean_s", "latency_p50_s", "latency_p90_s", "latency_p95_s", "latency_p99_s", "latency_p999_s", "latency_max_s",
	"service_p50_s", "service_p99_s",
	"ttft_p50_s", "ttft_p95_s", "ttft_p99_s", "itl_p50_s", "itl_p99_s", "tpot_p50_s", "tpot_p99_s", "stream_tokens_per_second_p50",
}

// WriteCSV writes one row per scenario and a "total" row. Durations are seconds;
// streaming columns are empty for scenarios without streams.
func WriteCSV(w io.Writer, s *Summary) error {
	cw := csv.NewWriter(w)
	_ = cw.Write(summaryColumns)
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	opt := func(p *Percentiles, get func(Percentiles) float64) string {
		if p == nil {
			return ""
		}
		return f(get(*p))
	}
	for _, st := range append(slices.Clone(s.Scenarios), s.Total) {
		l := st.Latency
		_ = cw.Write([]string{
			st.Scenario, strconv.FormatUint(st.Requests, 10), strconv.FormatUint(st.Errors, 10), f(st.ErrorRate),
			f(st.Throughput), strconv.FormatUint(st.OutputTokens, 10), f(st.TokenRate),
			f(l.Mean), f(l.P50), f(l.P90), f(l.P95), f(l.P99), f(l.P999), f(l.Max),
			f(st.ServiceTime.P50), f(st.ServiceTime.P99),
			opt(st.TTFT, func(p Percentiles) float64 { return p.P50 }),
			opt(st.TTFT, func(p Percentiles) float64 { return p.P95 }),
			opt(st.TTFT, func(p Percentiles) float64 { return p.P99 }),
			opt(st.ITL, func(p Percentiles) float64 { return p.P50 }),
			opt(st.ITL, func(p Percentiles) float64 { return p.P99 }),
			opt(st.TPOT, func(p Percentiles) float64 { return p.P50 }),
			opt(st.TPOT, func(p Percentiles) float64 { return p.P99 }),
			opt(st.StreamRate, func(p Percentiles) float64 { return p.P50 }),
		})
	}
	cw.Flush()
	return cw.Error()
}

// WriteSeriesCSV writes the time series, one row per bucket.
func WriteSeriesCSV(w io.Writer, s *Summary) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"t_s", "requests", "errors", "requests_per_second", "latency_p50_s", "latency_p90_s", "latency_p99_s", "output_tokens", "missed_schedule", "users", "target_rate"})
	f := func(v float64) string { return strconv.FormatFloat(v, 'g', 6, 64) }
	for _, p := range s.Series.Points {
		_ = cw.Write([]string{f(p.T), strconv.FormatUint(p.Requests, 10), strconv.FormatUint(p.Errors, 10), f(p.RPS),
			f(p.P50), f(p.P90), f(p.P99), strconv.FormatUint(p.Tokens, 10), strconv.FormatUint(p.Missed, 10),
			strconv.Itoa(p.Users), f(p.TargetRate)})
	}
	cw.Flush()
	return cw.Error()
}
