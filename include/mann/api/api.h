// Api: the REST API of mann, the handlers that put the memory bank and the chat engine on HTTP.
//
//   runtime::Runtime& rt = ...;
//   server::HttpServer http(options);
//   api::Api api(rt, {.draining = [&] { return http.draining(); }});
//   MANN_RETURN_IF_ERROR(api.RegisterRoutes(http.router()));
//   MANN_RETURN_IF_ERROR(api.RegisterMetrics(metrics::Registry::Default()));
//   MANN_RETURN_IF_ERROR(http.Start());
//
// Routes (every body JSON; the namespace is the `user_id` body field, or the `user_id` query
// parameter for GET and DELETE, "default" when absent):
//   GET    /health                   liveness: status, timestamp, memory_count,
//                                    memory_utilization, uptime, version; no storage round trip.
//                                    ?detail=1 adds "checks": the health checks' report, each
//                                    check bounded by the checker's budget
//   GET    /alerts                   {enabled, active: [...], history: [...] newest first, at
//                                    most ?limit= (1..1000, default 50)}; needs a key when
//                                    keys are configured (any valid key)
//   GET    /ready                    200 when the store answers and the server is not draining,
//                                    else 503; "redis": "up"|"down" when one is configured
//   GET    /metrics                  Prometheus text exposition of the registry
//   GET    /openapi.json             the OpenAPI 3 document (OpenApiDocument())
//   POST   /memories                 the write head: {memory_id, status: created|updated|
//                                    unchanged|deleted, ...}
//   GET    /memories                 a page, newest first: {memories, next_cursor}
//   GET    /memories/{id}            one entry (not counted as a read of it)
//   PUT    /memories/{id}            a new version: {memory_id, status: "updated", version}
//   DELETE /memories/{id}            {memory_id, status: "deleted"}; history stays
//   GET    /memories/{id}/history    {memory_id, history: [...]}, oldest first
//   POST   /memories/{id}/forget     erases the entry and its history: {status: "forgotten"}
//   POST   /search                   the read head: a JSON array of hits, best first
//   POST   /query                    one chat turn: {output, memory_info, processing_time,
//                                    memory_utilization, session_id}
//   GET    /statistics               the namespace's and the bank's statistics
//
// Errors: 422 {"detail": [{loc, msg, type}, ...]} with one item per bad field; 400 for
// malformed JSON; 404 "memory <id> not found"; 503 when the store fails (ErrorFromStatus in
// validation.h maps the core's codes). Handlers never throw for bad input.
//
// Thread-safety: the handlers are safe to run concurrently. Chat turns of one session are
// serialized here (the engine requires it) by a fixed set of striped locks.
// Lifetime: the runtime must outlive the Api, and the Api must outlive the router and the
// metric callbacks it registered (the handles it keeps are released by its destructor).
#pragma once

#include <array>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <boost/json/value.hpp>

#include <mann/core/status.h>
#include <mann/metrics/registry.h>
#include <mann/runtime/runtime.h>
#include <mann/server/http_message.h>
#include <mann/server/router.h>

namespace mann::monitor {
class AlertEngine;
class HealthChecker;
}  // namespace mann::monitor

namespace mann::cache {
class RedisClient;
class ResultCache;
}  // namespace mann::cache

namespace mann::api {

struct ApiOptions {
  // True while the server drains (HttpServer::draining); /ready answers 503 then. Empty: never.
  std::function<bool()> draining;
  // What GET /metrics renders; nullptr: metrics::Registry::Default().
  metrics::Registry* registry = nullptr;
  // The checks GET /health?detail=1 runs; nullptr: the detail lists none. Must outlive the Api.
  monitor::HealthChecker* health = nullptr;
  // The alerts GET /alerts shows; nullptr: monitoring is off ("enabled": false, empty lists).
  // Must outlive the Api.
  const monitor::AlertEngine* alerts = nullptr;
  // Answers of POST /search, keyed on the namespace and the request's normalized fields; every
  // handler that writes a namespace (POST, PUT, DELETE and forget of /memories, and /query
  // when its turn wrote) invalidates it. nullptr: no cache. Must outlive the Api.
  cache::ResultCache* search_cache = nullptr;
  // The shared Redis, whose state /ready reports ("redis": "up" or "down"; down is a degraded
  // mode and /ready stays 200). nullptr: none configured. Must outlive the Api.
  const cache::RedisClient* redis = nullptr;
};

// The OpenAPI 3.0 document describing every route above, written independently of
// RegisterRoutes so that a test comparing the two catches a route documented but not served,
// or served but not documented.
boost::json::value OpenApiDocument();

class Api {
 public:
  explicit Api(runtime::Runtime& runtime, ApiOptions options = {});
  Api(const Api&) = delete;
  Api& operator=(const Api&) = delete;

  // Adds every route to `router`. What Router::Add returns on a clash (AlreadyExists).
  Status RegisterRoutes(server::Router& router);

  // Scrape-time metrics read from the bank's statistics:
  //   mann_memory_utilization{namespace}     entries over memory_size
  //   mann_memories{namespace}               live entries
  //   mann_memory_reads_total{namespace}     reads (search hits, gets)
  //   mann_memory_writes_total{namespace}    changes committed
  //   mann_memory_evictions_total{namespace} entries removed by the capacity policy
  //   mann_write_decisions_total{action}     write-head decisions since start: ADD, UPDATE, ...
  // Errors: what the registry returns for a family of another shape. The callbacks stay
  // registered until this Api is destroyed.
  Status RegisterMetrics(metrics::Registry& registry);

  // The handlers, public for tests that call them without a server.
  server::Response Health(const server::Request& request);
  server::Response Ready(const server::Request& request);
  server::Response Metrics(const server::Request& request);
  server::Response OpenApi(const server::Request& request);
  server::Response AddMemory(const server::Request& request);
  server::Response ListMemories(const server::Request& request);
  server::Response GetMemory(const server::Request& request);
  server::Response UpdateMemory(const server::Request& request);
  server::Response DeleteMemory(const server::Request& request);
  server::Response MemoryHistory(const server::Request& request);
  server::Response ForgetMemory(const server::Request& request);
  server::Response Search(const server::Request& request);
  server::Response Query(const server::Request& request);
  server::Response Statistics(const server::Request& request);
  server::Response Alerts(const server::Request& request);

 private:
  // The lock that serializes turns of `session_id`.
  std::mutex& SessionLock(const std::string& session_id);
  // After a write to `ns`: its cached search answers are stale.
  void InvalidateSearchCache(const std::string& ns);

  runtime::Runtime& runtime_;
  ApiOptions options_;
  std::chrono::steady_clock::time_point started_;
  std::array<std::mutex, 64> session_locks_;
  std::vector<metrics::CallbackHandle> metrics_;  // released first, before the runtime goes
};

}  // namespace mann::api
