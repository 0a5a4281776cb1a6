package server

import (
	"net/http"
	"testing"
)

// BenchmarkParseInfer measures request parsing and validation alone.
func BenchmarkParseInfer(b *testing.B) {
	lim := Limits{MaxNewTokens: 256, MaxLength: 256, DefaultMaxNewTokens: 50}
	body := []byte(`{"prompt":"What are the symptoms of","max_new_tokens":32,"temperature":0.7,"top_p":0.9,"stop":["\n"]}`)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, e := ParseInfer("", "application/json", body, lim); e != nil {
			b.Fatal(e)
		}
	}
}

// BenchmarkInferHandler measures the HTTP layer's cost per request (middleware,
// parsing, metrics, JSON answer) around an engine that answers at once:
//
//	go test -run '^$' -bench InferHandler ./inference/server
func BenchmarkInferHandler(b *testing.B) {
	s, _ := newTestServer(b, Config{}, newFake())
	h := s.Handler()
	b.ReportAllocs()
	for b.Loop() {
		if w := do(h, http.MethodPost, "/infer?prompt=What%20are%20the%20symptoms%20of", "", ""); w.Code != 200 {
			b.Fatal(w.Code)
		}
	}
}
