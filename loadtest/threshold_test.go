package loadtest

import (
	"strings"
	"testing"
)

func TestParseThreshold(t *testing.T) {
	for _, tc := range []struct {
		in       string
		scenario string
		metric   string
		op       string
		value    float64
	}{
		{"p99<2s", "", "p99", "<", 2},
		{"error_rate<1%", "", "error_rate", "<", 0.01},
		{"error_rate <= 0.05", "", "error_rate", "<=", 0.05},
		{"ttft_p95<500ms", "", "ttft_p95", "<", 0.5},
		{"basic:p95<1s", "basic", "p95", "<", 1},
		{"stream:itl_p99<=120ms", "stream", "itl_p99", "<=", 0.12},
		{"rps>=50", "", "rps", ">=", 50},
		{"output_tps>10.5", "", "output_tps", ">", 10.5},
		{"missed_schedule<1", "", "missed_schedule", "<", 1},
		{"service_max<3s", "", "service_max", "<", 3},
	} {
		got, err := ParseThreshold(tc.in)
		if err != nil {
			t.Errorf("%q: %v", tc.in, err)
			continue
		}
		if got.Scenario != tc.scenario || got.Metric != tc.metric || got.Op != tc.op || !within(got.Value, tc.value, 1e-12) {
			t.Errorf("%q = %+v; want %s %s %s %g", tc.in, got, tc.scenario, tc.metric, tc.op, tc.value)
		}
	}
}

func TestParseThresholdErrors(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"p99", "want [scenario:]metric<value"},
		{"p98<1s", "unknown metric"},
		{"p99<fast", "not a duration"},
		{"error_rate<lots%", "not a percentage"},
		{"nosuch:p99<1s", "unknown scenario"},
		{"basic:missed_schedule<1", "whole run only"},
		{"rps>many", "not a number"},
		{"rps>nan", "not a number"},
		{"error_rate<Inf%", "not a percentage"},
		{"service_ttft_p99<1ms", "unknown metric"},
		{"ttft_itl_p99<1ms", "unknown metric"},
	} {
		_, err := ParseThreshold(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want it to contain %q", tc.in, err, tc.want)
		}
	}
	_, err := ParseThresholds([]string{"p99<1s", "bad", "p98<1s"})
	if err == nil || !strings.Contains(err.Error(), `"bad"`) || !strings.Contains(err.Error(), `"p98<1s"`) {
		t.Errorf("ParseThresholds must report every bad threshold, got %v", err)
	}
}

func TestEvaluate(t *testing.T) {
	sum := &Summary{
		MissedSchedule: 3,
		Total: Stats{Scenario: "total", Requests: 100, Errors: 2, ErrorRate: 0.02, Throughput: 50,
			Latency: Percentiles{Count: 100, P50: 0.1, P95: 0.9, P99: 2.5, Max: 3}},
		Scenarios: []Stats{
			{Scenario: "basic", Requests: 60, Latency: Percentiles{Count: 60, P95: 0.8}},
			{Scenario: "stream", Requests: 40, Latency: Percentiles{Count: 40, P95: 1.2},
				TTFT: &Percentiles{Count: 40, P95: 0.4}},
		},
	}
	sum.Total.TTFT = sum.Scenarios[1].TTFT
	for _, tc := range []struct {
		in     string
		pass   bool
		noData bool
	}{
		{"p99<2s", false, false},
		{"p99<3s", true, false},
		{"p95<=900ms", true, false},
		{"error_rate<1%", false, false},
		{"error_rate<5%", true, false},
		{"basic:p95<1s", true, false},
		{"stream:p95<1s", false, false},
		{"ttft_p95<500ms", true, false},
		{"basic:ttft_p95<500ms", false, true}, // no streams in basic
		{"metrics:p99<1s", false, true},       // scenario not run
		{"rps>=50", true, false},
		{"missed_schedule<1", false, false},
	} {
		th, err := ParseThreshold(tc.in)
		if err != nil {
			t.Fatal(err)
		}
		r := Evaluate(sum, []Threshold{th})[0]
		if r.Pass != tc.pass || r.NoData != tc.noData {
			t.Errorf("%s: pass %v noData %v (actual %g); want pass %v noData %v", tc.in, r.Pass, r.NoData, r.Actual, tc.pass, tc.noData)
		}
	}
	th, _ := ParseThresholds([]string{"p99<2s", "error_rate<5%"})
	failed := Failed(Evaluate(sum, th))
	if len(failed) != 1 || failed[0].String() != "FAIL p99<2s: p99 was 2.50s" {
		t.Errorf("failed = %v", failed)
	}
}
