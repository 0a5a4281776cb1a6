// Package loadtest generates HTTP load against an inference server and records what it
// sees with exact (HDR histogram) percentiles.
//
// It replays the seed's Locust scenarios with their weights (basic inference, custom
// length inference, rapid-fire stress, /metrics check) plus an optional streaming
// scenario on /v1/completions that measures time to first token and inter-token
// latency. Load is either closed loop (a number of users, each sending its next request
// when the previous one is done, as Locust does) or open loop (an arrival rate held by
// a Pacer, with latency measured from the intended send time so that a stalled server
// cannot hide behind a slowed-down generator: the coordinated-omission correction wrk2
// makes).
//
// A run is described by Options and executed by Run, which returns a Summary; the
// Summary is written as a text table, JSON, CSV or a self-contained HTML report, and
// checked against Thresholds. Memory is bounded over any duration: nothing is stored
// per request, and the time series keeps at most Options.MaxBuckets buckets, merging
// neighbours when it fills.
package loadtest
