package server

import (
	"net/http"
	"testing"
	"unicode/utf8"
)

// FuzzParseInfer feeds arbitrary query strings, content types and bodies to the /infer
// parser: it must never panic, and must either accept the request with a usable prompt
// and in-range parameters, or reject it with a 4xx error that names a check.
func FuzzParseInfer(f *testing.F) {
	seeds := []struct{ q, ct, body string }{
		{"prompt=What%20are%20the%20symptoms%20of", "", ""},
		{"prompt=hi&max_length=20&temperature=0.5&top_k=3&top_p=0.9&seed=1&stop=x&stop=y&ignore_eos=true", "", ""},
		{"", "application/json", `{"prompt":"hi","max_new_tokens":5,"stop":["a"],"seed":18446744073709551615}`},
		{"", "application/json; charset=utf-8", `{"prompt":"a\u0000b"}`},
		{"prompt=x", "application/json", `{"prompt":"y"}`},
		{"", "text/plain", "hello"},
		{"temperature=NaN&prompt=a", "", ""},
		{"", "application/json", `{"prompt":"hi"} trailing`},
		{"%zz", "", ""},
		{"", "application/json", `{"prompt":"hi","max_new_tokens":1e400}`},
	}
	for _, s := range seeds {
		f.Add(s.q, s.ct, []byte(s.body))
	}
	lim := Limits{MaxNewTokens: 256, MaxLength: 256, DefaultMaxNewTokens: 50}
	f.Fuzz(func(t *testing.T, rawQuery, contentType string, body []byte) {
		r, passed, e := ParseInfer(rawQuery, contentType, body, lim)
		if e != nil {
			switch e.Status {
			case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnsupportedMediaType, http.StatusUnprocessableEntity:
			default:
				t.Fatalf("status %d is not a client error", e.Status)
			}
			if e.Check == "" || e.Code == "" || e.Message == "" {
				t.Fatalf("error without check, code or message: %+v", e)
			}
			if !utf8.ValidString(e.Message) || !utf8.ValidString(e.Param) {
				t.Fatalf("error text is not UTF-8: %+v", e)
			}
			return
		}
		if r.Prompt == "" || !utf8.ValidString(r.Prompt) || textProblem(r.Prompt) != "" {
			t.Fatalf("accepted an unusable prompt %q", r.Prompt)
		}
		if r.MaxNewTokens < 0 || r.MaxNewTokens > lim.MaxNewTokens || r.MaxLength < 0 || r.MaxLength > lim.MaxLength ||
			r.Temperature < 0 || r.Temperature > MaxTemperature || r.TopK < 0 || r.TopP <= 0 || r.TopP > 1 || len(r.Stop) > MaxStopSequences {
			t.Fatalf("accepted out-of-range parameters %+v", r)
		}
		if len(passed) == 0 {
			t.Fatal("accepted without running any check")
		}
	})
}
