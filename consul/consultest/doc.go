// Package consultest is a Consul agent test double: an in-process HTTP server that
// imitates the parts of a single Consul agent's HTTP API that service registration
// and Prometheus's consul_sd use. It was written from Consul's documented HTTP API
// (api-docs/agent/service, agent/check, catalog, health, features/blocking) and the
// agent's HTTP handlers, and it keeps their paths, status codes, JSON shapes,
// plain-text error bodies and response headers.
//
// What it does:
//
//   - PUT /v1/agent/service/register (with Consul's validation errors, camel or
//     snake case keys, an embedded Check or Checks list) and
//     PUT /v1/agent/service/deregister/:id.
//   - PUT /v1/agent/check/register, /v1/agent/check/deregister/:id, and the TTL
//     updates /v1/agent/check/pass|warn|fail/:id and /v1/agent/check/update/:id.
//   - It runs HTTP, TCP and TTL checks itself at their intervals (HTTP: 2xx passing,
//     429 warning, anything else critical), starting each interval check after a
//     random stagger within its interval, as the agent does.
//   - It reaps services whose check has been critical for longer than
//     DeregisterCriticalServiceAfter; the minimum timeout and the reaper's period
//     default to Consul's (1m and 30s) and can be shortened for tests.
//   - Reads: /v1/agent/self, /v1/agent/services, /v1/agent/service/:id,
//     /v1/agent/checks, /v1/catalog/services, /v1/catalog/service/:name,
//     /v1/catalog/nodes, /v1/catalog/datacenters, /v1/health/service/:name
//     (?passing, ?tag= (repeatable), ?node-meta=, ?filter=), /v1/health/checks/:name,
//     /v1/status/leader and /v1/status/peers.
//   - Every read carries X-Consul-Index, X-Consul-KnownLeader and
//     X-Consul-LastContact; the catalog and health reads answer blocking queries
//     (?index=&wait=, wait capped at 10m, default 5m, plus up to wait/16 of jitter).
//   - ACLs when configured with WithACL: the token from X-Consul-Token,
//     "Authorization: Bearer", or ?token=; unknown tokens get 403 "ACL not found",
//     missing permissions 403 "Permission denied: ...", and reads are filtered.
//   - Restart makes it forget every service and check, as a dev agent without
//     persisted state does when it restarts.
//
// What it does not do (answered 400 with a message that says so, or not served):
// script, Docker, gRPC, UDP, H2PING, alias and OS-service checks; Connect and
// proxies; namespaces and partitions; KV, sessions, prepared queries; more than the
// simple filter expressions documented on [Server]; hash-based blocking.
// Raft indexes stay monotonic across Restart (as on a cluster whose servers kept
// running), so blocking clients are never stranded on an index from the past.
package consultest
