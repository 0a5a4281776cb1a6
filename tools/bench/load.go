package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/inferstack/inferstack/inference/engine"
)

// client runs one generation; onTokens is called as text arrives with the number of
// tokens it covers (best known), and done with the request's final token count when
// it completes.
type client func(ctx context.Context, onTokens func(n int)) (total int, err error)

// inProcess calls the engine directly: the generation loop without HTTP.
func inProcess(e *engine.Engine, req engine.Request) client {
	return func(ctx context.Context, onTokens func(int)) (int, error) {
		res, err := e.Generate(ctx, req, func(d engine.Delta) error {
			onTokens(max(d.Tokens, 1))
			return nil
		})
		return res.GeneratedTokens, err
	}
}

// completionRequest is the JSON body sent to POST /v1/completions.
type completionRequest struct {
	Model         string         `json:"model,omitempty"`
	Prompt        string         `json:"prompt"`
	MaxTokens     int            `json:"max_tokens"`
	Temperature   float64        `json:"temperature"`
	IgnoreEOS     bool           `json:"ignore_eos"`
	Stream        bool           `json:"stream"`
	StreamOptions map[string]any `json:"stream_options,omitempty"`
}

// overHTTP streams a completion from the server (server-sent events). Each text
// event counts as one token; the usage event at the end gives the exact total.
func overHTTP(hc *http.Client, baseURL string, req engine.Request) client {
	body, _ := json.Marshal(completionRequest{
		Prompt: req.Prompt, MaxTokens: req.MaxNewTokens, Temperature: req.Temperature,
		IgnoreEOS: req.IgnoreEOS, Stream: true, StreamOptions: map[string]any{"include_usage": true},
	})
	return func(ctx context.Context, onTokens func(int)) (int, error) {
		hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/completions", bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		hreq.Header.Set("Content-Type", "application/json")
		resp, err := hc.Do(hreq)
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
			return 0, fmt.Errorf("POST /v1/completions: %s: %s", resp.Status, strings.TrimSpace(string(msg)))
		}
		return readSSE(resp.Body, onTokens)
	}
}

// sseChunk is the part of a streamed completion chunk the benchmark reads.
type sseChunk struct {
	Choices []struct {
		Text string `json:"text"`
	} `json:"choices"`
	Usage *struct {
		CompletionTokens int `json:"completion_tokens"`
	} `json:"usage"`
	Error *struct {
		Message string `json:"message"`
	} `json:"error"`
}

// readSSE reads "data: ..." events until [DONE]; it returns the usage's completion
// token count.
func readSSE(r io.Reader, onTokens func(int)) (int, error) {
	br := bufio.NewReader(r)
	total := 0
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) {
				return total, fmt.Errorf("stream ended without [DONE]")
			}
			return total, err
		}
		data, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			return total, nil
		}
		var ch sseChunk
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			return total, fmt.Errorf("bad event %q: %w", data, err)
		}
		if ch.Error != nil {
			return total, fmt.Errorf("server error event: %s", ch.Error.Message)
		}
		if ch.Usage != nil {
			total = ch.Usage.CompletionTokens
		}
		if len(ch.Choices) > 0 && ch.Choices[0].Text != "" {
			onTokens(1)
		}
	}
}

// loadResult is what one concurrency level measured.
type loadResult struct {
	Concurrency  int     `json:"concurrency"`
	TokensPerSec float64 `json:"tokens_per_second"`
	Requests     int     `json:"completed_requests"`
	Errors       int     `json:"errors"`
	TTFTp50      float64 `json:"ttft_p50_ms"`
	TTFTp99      float64 `json:"ttft_p99_ms"`
	ITLp50       float64 `json:"itl_p50_ms"`
	ITLp99       float64 `json:"itl_p99_ms"`
	FirstError   string  `json:"first_error,omitempty"`
	// Steps is the engine's side of the level (set by the caller).
	Steps stepShares `json:"engine_steps"`
}

// runLoad keeps `conc` requests in flight for d (closed loop) and measures the
// tokens that arrive inside the window; at its end, requests still running are
// cancelled. Time to first token is measured for requests whose first token came
// inside the window.
func runLoad(ctx context.Context, c client, conc int, d time.Duration) loadResult {
	var (
		mu        sync.Mutex
		tokens    int
		ttfts     []float64
		itls      []float64
		completed int
		errs      int
		firstErr  string
	)
	wctx, cancel := context.WithCancel(ctx)
	start := time.Now()
	deadline := start.Add(d)
	timer := time.AfterFunc(d, cancel)
	defer timer.Stop()
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for wctx.Err() == nil {
				t0 := time.Now()
				last := time.Time{}
				n := 0
				_, err := c(wctx, func(k int) {
					now := time.Now()
					if now.After(deadline) {
						return
					}
					mu.Lock()
					defer mu.Unlock()
					tokens += k
					n += k
					if last.IsZero() {
						ttfts = append(ttfts, float64(now.Sub(t0))/1e6)
					} else {
						per := float64(now.Sub(last)) / 1e6 / float64(k)
						for range k {
							itls = append(itls, per)
						}
					}
					last = now
				})
				mu.Lock()
				switch {
				case err == nil:
					completed++
				case wctx.Err() != nil:
					// cut by the end of the window
				default:
					errs++
					if firstErr == "" {
						firstErr = err.Error()
					}
				}
				mu.Unlock()
				if err != nil && wctx.Err() == nil {
					time.Sleep(10 * time.Millisecond) // do not spin on a failing server
				}
			}
		}()
	}
	wg.Wait()
	cancel()
	return loadResult{
		Concurrency:  conc,
		TokensPerSec: float64(tokens) / d.Seconds(),
		Requests:     completed,
		Errors:       errs,
		TTFTp50:      percentile(ttfts, 50),
		TTFTp99:      percentile(ttfts, 99),
		ITLp50:       percentile(itls, 50),
		ITLp99:       percentile(itls, 99),
		FirstError:   firstErr,
	}
}

// percentile returns the p-th percentile (nearest rank) of xs, or 0 when empty.
func percentile(xs []float64, p float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	rank := int(p/100*float64(len(s))+0.999999) - 1
	return s[min(max(rank, 0), len(s)-1)]
}
