package main

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	xs := []float64{5, 1, 4, 2, 3, 6, 7, 8, 9, 10}
	for p, want := range map[float64]float64{50: 5, 99: 10, 10: 1, 100: 10} {
		if got := percentile(xs, p); got != want {
			t.Errorf("p%.0f = %v, want %v", p, got, want)
		}
	}
	if percentile(nil, 50) != 0 {
		t.Error("empty percentile not 0")
	}
}

func TestReadSSE(t *testing.T) {
	stream := "data: {\"choices\":[{\"text\":\"Hel\"}]}\n\n" +
		"data: {\"choices\":[{\"text\":\"\"}]}\n\n" +
		"data: {\"choices\":[{\"text\":\"lo\"}]}\n\n" +
		"data: {\"choices\":[],\"usage\":{\"completion_tokens\":3}}\n\n" +
		"data: [DONE]\n\n"
	events := 0
	total, err := readSSE(strings.NewReader(stream), func(n int) { events += n })
	if err != nil || total != 3 || events != 2 {
		t.Errorf("readSSE: total %d, events %d, err %v; want 3, 2, nil", total, events, err)
	}
	if _, err := readSSE(strings.NewReader("data: {\"choices\":[{\"text\":\"x\"}]}\n\n"), func(int) {}); err == nil {
		t.Error("a stream without [DONE] must be an error")
	}
	if _, err := readSSE(strings.NewReader("data: {\"error\":{\"message\":\"boom\"}}\n\n"), func(int) {}); err == nil || !strings.Contains(err.Error(), "boom") {
		t.Errorf("error event: %v", err)
	}
}

func TestParseFlags(t *testing.T) {
	ms, err := parseModels("default=inference/model/default, bench=.cache/bench-model,other")
	if err != nil || len(ms) != 3 || ms[1].Name != "bench" || ms[1].Dir != ".cache/bench-model" || ms[2].Dir != "other" {
		t.Errorf("parseModels: %+v, %v", ms, err)
	}
	if _, err := parseInts("1,x"); err == nil {
		t.Error("parseInts accepted x")
	}
	if ns, err := parseInts("1, 16,32"); err != nil || len(ns) != 3 || ns[1] != 16 {
		t.Errorf("parseInts: %v %v", ns, err)
	}
}

func TestStepClock(t *testing.T) {
	var c stepClock
	c.Step("decode", 16, 16, 300*time.Millisecond)
	before := c.snapshot()
	c.Step("decode", 16, 16, 400*time.Millisecond)
	c.Step("decode", 8, 8, 100*time.Millisecond)
	c.Step("prefill", 4, 60, 200*time.Millisecond)
	c.Step("other", 1, 1, time.Second) // unknown kinds are ignored
	got := c.snapshot().since(before, 2*time.Second)
	want := stepShares{DecodeShare: 0.25, PrefillShare: 0.1, DecodeTokensPerSec: 48}
	if math.Abs(got.DecodeShare-want.DecodeShare) > 1e-9 || math.Abs(got.PrefillShare-want.PrefillShare) > 1e-9 || math.Abs(got.DecodeTokensPerSec-want.DecodeTokensPerSec) > 1e-9 {
		t.Errorf("since = %+v, want %+v", got, want)
	}
	if s := (clockReading{}).since(clockReading{}, time.Second); s.DecodeTokensPerSec != 0 {
		t.Errorf("no decode steps: tokens/s %v, want 0", s.DecodeTokensPerSec)
	}
}
