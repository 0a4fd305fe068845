// HttpServer: the HTTP/1.1 server the REST API runs on (Boost.Beast over Asio, one C++20
// coroutine per connection).
//
//   server::ServerOptions options;
//   options.port = 8000;
//   server::HttpServer http(options);
//   MANN_RETURN_IF_ERROR(http.router().Add("GET", "/health", HealthHandler));
//   http.router().Use(CorsMiddleware(cors_options));
//   MANN_RETURN_IF_ERROR(http.Start());  // listening; port() is the bound port
//   ...
//   http.Stop();  // drains, then joins the threads
//
// What a connection goes through (each step has its own deadline, so a client that stalls
// anywhere is cut off and holds no thread; a waiting connection costs a coroutine frame and a
// socket, not a thread):
//   wait for the first byte      first request: header_timeout; later ones: idle_timeout
//   read the header              header_timeout from the first byte (from accept for the first
//                                request), at most max_header_bytes, else 431
//   check Content-Length         over max_body_bytes: 413 before reading the body
//   read the body                body_timeout; a chunked body growing past max_body_bytes: 413
//   run the router               on the connection's I/O thread; a route marked
//                                RouteOptions::blocking on the handler pool (router.h)
//   write the response           write_timeout; a streamed body (Response::producer): the
//                                header, then each part as the producer writes it, each
//                                write within write_timeout; logged once, at the end
// A request the parser rejects (malformed request line or header: 400; header too large: 431;
// body too large: 413) is answered with `Connection: close` and the connection is closed; a
// timeout closes the connection without an answer, since the client has stopped taking part.
// These answers are made before routing, so middleware does not see them. After an error answer
// the server half-closes and reads what the client still sends for up to 2 s, so the client
// reads the answer instead of a connection reset.
//
// Every response carries X-Request-ID; every answered request writes one log line (logger
// "http", level info) whose message is a JSON object:
//   {"event":"http_request","method":"GET","route":"/memories/{id}","status":200,"bytes_in":97,
//    "bytes_out":319,"request_id":"...","client":"127.0.0.1:48988","duration_ms":0.154}
// and updates the metrics below.
//
// Connection limit: a connection accepted while max_connections are open is answered 503
// (Retry-After: 1) and closed, without reading its request, so a load balancer sees a clear
// answer and tries elsewhere.
//
// Metrics (in ServerOptions::registry, default metrics::Registry::Default()):
//   http_requests_total{method, route, status}      requests answered; route is the template,
//                                                   "unmatched" when no template matched;
//                                                   methods outside the standard set are "other"
//   http_request_duration_seconds{method, route}    from the first header byte to the response
//                                                   written, buckets metrics::kLatencyBuckets
//   http_requests_in_flight                         requests whose header was read and whose
//                                                   response is not yet written
//   http_connections_open                           connections being served
//   http_connections_rejected_total                 connections refused at max_connections
//   http_connection_timeouts_total{phase}           connections closed by a deadline: header,
//                                                   body, idle or write
//
// Lifecycle: Created -> (Start) -> Running -> (Stop) -> Stopped; a server is started at most
// once. Stop() first raises draining() (for the readiness endpoint), stops accepting (taking the
// connections already waiting in the listen backlog first, so a request a client has sent is not
// lost), closes idle keep-alive connections at once, lets requests in progress and requests
// whose bytes have arrived finish (their responses carry `Connection: close`), force-closes what
// remains after the drain timeout, and joins the threads. While draining() holds, every response
// carries `Connection: close`, so clients move to other replicas.
//
// Thread-safety: router() must be fully set up before Start(). Start and Stop are meant for one
// controlling thread; draining(), BeginDrain(), port() and address() may be called from any
// thread, handlers included. Stop() must not be called from a handler (it joins the threads
// that run handlers).
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <mann/core/status.h>
#include <mann/server/router.h>

namespace mann::metrics {
class Registry;
}

namespace mann::server {

// Each field will become a configuration key "server.<field>".
struct ServerOptions {
  // IP literal or host name to bind ("0.0.0.0" or "::" listens on every interface).
  std::string host = "127.0.0.1";
  // TCP port; 0 picks a free ephemeral port (read it back with HttpServer::port()).
  std::uint16_t port = 8000;

  // Threads running the I/O and the handlers of fast routes. 0: one per core.
  int io_threads = 0;
  // The handler pool: threads running the handlers of RouteOptions::blocking routes (those that
  // may wait seconds on a language model), so a slow handler cannot delay the connections of
  // its I/O thread. At least 1; it bounds how many blocking requests run at once, the rest
  // queue. Started only when some route is blocking; fast routes never hop onto it, which
  // would cost a thread hand-off per request.
  int handler_threads = 8;

  // Connections served at once; one more is answered 503 and closed.
  std::size_t max_connections = 1024;
  // Request line plus header fields; more is answered 431.
  std::size_t max_header_bytes = 16 * 1024;
  // Request body, whether sized by Content-Length or chunked; more is answered 413.
  std::size_t max_body_bytes = 1024 * 1024;

  std::chrono::milliseconds header_timeout{10'000};  // to read a request's header
  std::chrono::milliseconds body_timeout{30'000};    // to read a request's body
  std::chrono::milliseconds idle_timeout{60'000};    // keep-alive wait for the next request
  std::chrono::milliseconds write_timeout{30'000};   // to write one response
  std::chrono::milliseconds drain_timeout{10'000};   // Stop(): bound on waiting for requests

  // Where the http_* metrics go; nullptr: metrics::Registry::Default(). Must outlive the server.
  metrics::Registry* registry = nullptr;

  // Routes (as registered, e.g. "/health") whose answers below 400 are access-logged at debug
  // instead of info. Probes poll every few seconds from each load balancer, orchestrator and
  // scraper; logging each one buries the lines that matter. Failures are always logged at info.
  std::vector<std::string> quiet_routes;
};

// What Stop() had to do.
struct StopResult {
  std::size_t force_closed = 0;  // connections still busy at the drain deadline
  bool drained() const { return force_closed == 0; }
};

class HttpServer {
 public:
  explicit HttpServer(ServerOptions options = {});
  // Stops (with options.drain_timeout) if still running.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Routes and middleware; set them up before Start().
  Router& router();

  // Validates the options, registers the metrics, binds, listens and starts the threads.
  // Errors: InvalidArgument naming the option that is out of range or the host that does not
  // resolve; Unavailable "cannot listen on 127.0.0.1:8000: Address already in use" when the
  // address cannot be bound; FailedPrecondition when already started; what metric registration
  // returns if the registry holds an http_* family of another shape.
  Status Start();

  // Drains and stops as described above, waiting at most `drain_timeout` for requests in
  // progress. Idempotent; returns at once when not running.
  StopResult Stop(std::chrono::milliseconds drain_timeout);
  StopResult Stop();  // with options.drain_timeout

  // Raises draining() without stopping, e.g. to fail readiness for a while before Stop().
  void BeginDrain() { draining_.store(true); }
  // True from BeginDrain() or the start of Stop(): the readiness endpoint answers 503.
  bool draining() const { return draining_.load(); }

  // The bound port (the ephemeral one when options.port was 0) and "host:port"; valid after a
  // successful Start().
  std::uint16_t port() const { return bound_port_.load(); }
  std::string address() const;

  const ServerOptions& options() const { return options_; }

 private:
  struct Impl;

  ServerOptions options_;
  Router router_;
  std::atomic<bool> draining_{false};
  std::atomic<std::uint16_t> bound_port_{0};
  std::unique_ptr<Impl> impl_;  // the I/O machinery; created by Start()
};

}  // namespace mann::server
