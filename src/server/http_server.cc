// The connection machinery behind HttpServer: an accept loop and one coroutine per connection.
// Each I/O thread runs an io_context of its own, and accepted connections are dealt to them in
// turn: a connection's work then stays on one thread, instead of being handed between threads
// that share one io_context, which costs a futex wake-up per handoff (measured: about a third
// of the server's CPU time per request on GET /health). Since exactly one thread runs each
// io_context, the context's own executor already serializes a connection's coroutine and
// whatever Stop() posts to it (Drain, ForceClose): it is the connection's "strand" below, at no
// cost, where an asio::strand would take a lock and an allocation per operation.
#include <algorithm>
#include <array>
#include <cctype>
#include <condition_variable>
#include <ctime>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <mann/core/clock.h>
#include <mann/core/id.h>
#include <mann/core/log.h>
#include <mann/metrics/registry.h>
#include <mann/server/http_server.h>

#include "wire.h"

namespace mann::server {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using tcp = asio::ip::tcp;
using Clock = std::chrono::steady_clock;
using boost::system::error_code;

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

// After an error answer the client may still be sending the request we refused; closing with
// unread input would make the kernel send RST, which can destroy our answer before the client
// reads it. So we half-close and read and discard for a while first, as nginx's lingering_close
// does; these bound how long and how much.
constexpr std::chrono::milliseconds kLingerTime{2000};
constexpr std::size_t kLingerBytes = 4 * 1024 * 1024;
// How many over-limit connections may be waiting for their 503 to be written at once; beyond
// that a connection is closed without an answer, so a flood cannot pile up work.
constexpr int kMaxRejecting = 64;
// Pause before accepting again after accept() fails (e.g. out of file descriptors), so the loop
// does not spin while the condition lasts.
constexpr std::chrono::milliseconds kAcceptRetry{100};
// Bytes read at once while waiting for a request's first byte.
constexpr std::size_t kReadChunk = 4096;
// Stop(): how long to wait for force-closed connections to unwind before giving up on them.
constexpr std::chrono::milliseconds kUnwindTime{5000};

// Methods kept as metric label values; any other becomes "other", so a client inventing
// methods cannot grow the label set.
std::string_view MethodLabel(std::string_view method) {
  static constexpr std::string_view kKnown[] = {"GET",    "HEAD",    "POST", "PUT",
                                                "DELETE", "OPTIONS", "PATCH"};
  for (std::string_view known : kKnown) {
    if (method == known) return known;
  }
  return "other";
}

std::string FormatEndpoint(const tcp::endpoint& endpoint) {
  const auto address = endpoint.address();
  std::string host = address.to_string();
  if (address.is_v6()) host = "[" + host + "]";
  return host + ":" + std::to_string(endpoint.port());
}

// The IMF-fixdate the Date header carries (RFC 9110 5.6.7).
std::string HttpDate() {
  std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[64];
  std::size_t n = std::strftime(text, sizeof text, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  return std::string(text, n);
}

bool IsServerField(std::string_view name) {
  static constexpr std::string_view kOwned[] = {"content-length", "transfer-encoding", "connection",
                                                "date", "x-request-id"};
  return std::any_of(std::begin(kOwned), std::end(kOwned),
                     [&](std::string_view owned) { return beast::iequals(owned, name); });
}

// True for the parser's verdicts on the client's bytes, as opposed to the client leaving
// (end_of_stream, partial_message) or a socket error: only the former deserve an answer.
bool IsParseError(const error_code& ec) {
  return ec.category() == http::make_error_code(http::error::bad_target).category() &&
         ec != http::error::end_of_stream && ec != http::error::partial_message;
}

// The request-target without its query, for Router::RouteOf.
std::string_view PathOf(std::string_view target) { return target.substr(0, target.find('?')); }

using WireResponse = http::response<http::string_body>;

// A field a handler may set: a token for the name (RFC 9110 5.1) and no CR, LF or NUL in the
// value, which would let the value smuggle in fields or a second response.
bool IsValidField(std::string_view name, std::string_view value) {
  static constexpr std::string_view kTokenSymbols = "!#$%&'*+-.^_`|~";
  bool name_ok = !name.empty() && std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) ||
           kTokenSymbols.find(c) != std::string_view::npos;
  });
  return name_ok && value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// False for a response no client could read safely: a status outside 200..599, a field that
// is not a valid field.
bool IsWritable(const Response& response) {
  bool valid = response.status >= 200 && response.status <= 599 &&
               IsValidField("Content-Type", response.content_type);
  for (const auto& [name, value] : response.headers.fields())
    valid = valid && IsValidField(name, value);
  return valid;
}

// The wire form of `response`; HEAD keeps the Content-Length of the body it leaves out. A
// response that is not IsWritable is a handler's bug: it is logged and replaced by a 500.
WireResponse ToWire(Response response, std::string_view request_id, unsigned version, bool head,
                    bool keep_alive, spdlog::logger& log) {
  if (!IsWritable(response)) {
    log.error("handler returned an invalid response request_id={} status={}: answering 500",
              request_id, response.status);
    response = InternalServerError();
  }

  WireResponse wire;
  wire.version(version);
  wire.result(static_cast<unsigned>(response.status));
  wire.set(http::field::date, HttpDate());
  for (auto& [name, value] : response.headers.fields()) {
    if (!IsServerField(name)) wire.insert(name, value);
  }
  if (!request_id.empty()) wire.set("X-Request-ID", request_id);
  wire.keep_alive(keep_alive);

  // 204 and 304 have no body and no Content-Length (RFC 9110 8.6).
  if (response.status == 204 || response.status == 304) return wire;
  if (!response.content_type.empty()) wire.set(http::field::content_type, response.content_type);
  wire.content_length(response.body.size());
  if (!head) wire.body() = std::move(response.body);
  return wire;
}

// The metric families the server updates, with the children that have no free labels.
struct ServerMetrics {
  metrics::CounterFamily* requests = nullptr;
  metrics::HistogramFamily* duration = nullptr;
  metrics::Gauge* in_flight = nullptr;
  metrics::Gauge* connections_open = nullptr;
  metrics::Counter* connections_rejected = nullptr;
  metrics::CounterFamily* timeouts = nullptr;

  static Result<ServerMetrics> Register(metrics::Registry& registry) {
    ServerMetrics m;
    MANN_ASSIGN_OR_RETURN(m.requests,
                          registry.AddCounter("http_requests_total", "HTTP requests answered.",
                                              {"method", "route", "status"}));
    MANN_ASSIGN_OR_RETURN(
        m.duration,
        registry.AddHistogram("http_request_duration_seconds",
                              "Time from a request's first byte to its response written.",
                              {"method", "route"}, metrics::kLatencyBuckets));
    MANN_ASSIGN_OR_RETURN(
        auto* in_flight,
        registry.AddGauge(
            "http_requests_in_flight",
            "HTTP requests whose header was read and whose response is not yet written."));
    MANN_ASSIGN_OR_RETURN(
        auto* open, registry.AddGauge("http_connections_open", "HTTP connections being served."));
    MANN_ASSIGN_OR_RETURN(
        auto* rejected,
        registry.AddCounter("http_connections_rejected_total",
                            "HTTP connections refused because max_connections were open."));
    MANN_ASSIGN_OR_RETURN(m.timeouts,
                          registry.AddCounter("http_connection_timeouts_total",
                                              "HTTP connections closed by a deadline, by phase "
                                              "(header, body, idle, write).",
                                              {"phase"}));
    m.in_flight = &in_flight->WithLabels();
    m.connections_open = &open->WithLabels();
    m.connections_rejected = &rejected->WithLabels();
    return m;
  }
};

// One request's facts for its log line and metrics.
struct Exchange {
  std::string method;
  std::string route;  // template; empty when unmatched
  int status = 0;
  Clock::time_point start;
  std::size_t bytes_in = 0;
  std::size_t bytes_out = 0;
  std::string request_id;
};

// Keeps http_requests_in_flight raised for as long as it lives.
class InFlight {
 public:
  explicit InFlight(metrics::Gauge& gauge) : gauge_(gauge) { gauge_.Inc(); }
  ~InFlight() { gauge_.Dec(); }
  InFlight(const InFlight&) = delete;
  InFlight& operator=(const InFlight&) = delete;

 private:
  metrics::Gauge& gauge_;
};

// Carries a streamed body (Response::producer) from its producer, on the handler pool, to the
// connection's coroutine, on its strand, which writes it. The producer queues parts under `mu_`
// and posts a wake-up to the strand; the coroutine takes everything queued at once. Wake-ups
// are a flag and a timer, both touched only on the strand: the flag covers a wake-up that
// arrives while the coroutine is busy writing, the timer's cancellation one that arrives while
// it waits.
class BodyChannel : public BodyWriter, public std::enable_shared_from_this<BodyChannel> {
 public:
  // A producer that outruns its client waits once this much is queued.
  static constexpr std::size_t kMaxQueuedBytes = 256 * 1024;

  explicit BodyChannel(asio::any_io_executor strand) : strand_(std::move(strand)) {}

  bool Write(std::string_view data) override {
    {
      std::unique_lock lock(mu_);
      room_.wait(lock, [&] { return closed_ || queued_bytes_ < kMaxQueuedBytes; });
      if (closed_) return false;
      if (data.empty()) return true;
      queued_.emplace_back(data);
      queued_bytes_ += data.size();
    }
    PostWake();
    return true;
  }

  bool closed() const override {
    std::lock_guard lock(mu_);
    return closed_;
  }

  // The producer has returned: what is queued is the rest of the body.
  void Finish() {
    {
      std::lock_guard lock(mu_);
      finished_ = true;
    }
    PostWake();
  }

  // Nothing more will be sent: a producer waiting for room wakes, and its writes fail.
  void Close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    room_.notify_all();
  }

  struct Batch {
    std::string data;  // the parts queued since the last Take, joined
    bool finished = false;
  };
  // On the strand: everything queued so far; clears the wake-up flag first, so a part queued
  // after this call wakes the next wait.
  Batch Take() {
    woken_ = false;
    Batch batch;
    {
      std::lock_guard lock(mu_);
      for (std::string& part : queued_) batch.data += part;
      queued_.clear();
      queued_bytes_ = 0;
      batch.finished = finished_;
    }
    room_.notify_all();
    return batch;
  }

  // On the strand: returns once a wake-up has come since the last Take.
  asio::awaitable<void> WaitForWork() {
    if (woken_) co_return;
    asio::steady_timer timer(strand_, asio::steady_timer::time_point::max());
    timer_ = &timer;
    co_await timer.async_wait(kTuple);  // cancelled by Wake
    timer_ = nullptr;
  }

  // On the strand: ends a wait in progress, or makes the next one return at once.
  void Wake() {
    woken_ = true;
    if (timer_ != nullptr) timer_->cancel();
  }

 private:
  void PostWake() {
    asio::post(strand_, [self = shared_from_this()] { self->Wake(); });
  }

  asio::any_io_executor strand_;
  mutable std::mutex mu_;
  std::condition_variable room_;         // signalled when queued_ shrinks or closed_ rises
  std::deque<std::string> queued_;       // guarded by mu_
  std::size_t queued_bytes_ = 0;         // guarded by mu_
  bool finished_ = false;                // guarded by mu_
  bool closed_ = false;                  // guarded by mu_
  bool woken_ = false;                   // strand only
  asio::steady_timer* timer_ = nullptr;  // strand only; the wait in progress
};

class Connection;

// The server's state, shared by the accept loop and the connections. HttpServer::Impl is this
// plus access to HttpServer's private members, which it passes in.
struct ServerCore {
  ServerCore(const ServerOptions& server_options, const Router& server_router,
             std::atomic<bool>& draining_flag, std::atomic<std::uint16_t>& port)
      : opts(server_options), routes(server_router), draining(draining_flag), bound_port(port) {}

  Status Start();
  StopResult Stop(std::chrono::milliseconds drain_timeout);

  asio::awaitable<void> AcceptLoop();
  // Serves a freshly accepted socket, or refuses it when max_connections are open.
  void Adopt(tcp::socket socket);
  // Takes what waits in the listen backlog, then closes the listener. On the acceptor's strand.
  void StopAccepting();
  void Record(const Exchange& exchange, const std::string& client) const;

  const ServerOptions& options() const { return opts; }
  const Router& router() const { return routes; }

  // Registers a new connection; `served` false for one over the limit, which is only answered.
  std::shared_ptr<Connection> Track(tcp::socket socket, bool served);
  void Untrack(std::uint64_t id);
  // Posts `action` to every tracked connection's strand; returns how many there were.
  template <typename Action>
  std::size_t ForEachConnection(Action action);

  // Waits until no connection is tracked or `deadline` passes; true when none is left.
  bool WaitForConnections(Clock::time_point deadline);

  const ServerOptions& opts;
  const Router& routes;
  std::atomic<bool>& draining;  // HttpServer::draining()
  std::atomic<std::uint16_t>& bound_port;
  ServerMetrics metrics;
  IdGenerator ids{SystemClock::Instance()};
  std::shared_ptr<spdlog::logger> log = log::Get("http");
  std::atomic<std::size_t> open_connections{0};  // served, i.e. not being rejected
  std::atomic<int> rejecting{0};
  std::atomic<bool> stopping{false};  // Stop() has begun
  bool running = false;               // touched only by the controlling thread (Start, Stop)
  bool started = false;

  std::mutex mu;
  std::condition_variable connections_done;
  std::unordered_map<std::uint64_t, std::weak_ptr<Connection>> connections;  // guarded by mu
  std::uint64_t next_connection_id = 0;                                      // guarded by mu

  // The io_context of the next connection, round robin over `ioc` and `more_contexts`.
  asio::io_context& NextContext();

  // Runs blocking routes; exists when the router has one (Router::HasBlockingRoutes).
  std::unique_ptr<asio::thread_pool> handler_pool;
  std::vector<std::thread> threads;
  std::atomic<std::size_t> next_context{0};

  // Declared last, so destroyed first: handlers still queued in the io_context (and the
  // coroutine frames they own) are destroyed while everything above is alive. The acceptor and
  // timer come after it because an I/O object must go before its io_context.
  asio::io_context ioc{1};  // the first I/O thread's; also runs the acceptor
  tcp::acceptor acceptor{asio::make_strand(ioc)};
  asio::steady_timer accept_retry{acceptor.get_executor()};
  // The other I/O threads' contexts, one each (a concurrency hint of 1: one thread runs each).
  // Their work guards keep a thread with no connection yet running until Stop() is done.
  std::vector<std::unique_ptr<asio::io_context>> more_contexts;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> idle_guards;
};

// One client connection: reads requests, runs them through the router and writes the answers,
// until the client leaves, a deadline passes, an error ends it, or the server drains.
//
// States, all changed on the connection's strand:
//   kWaiting   -> kReading   the first byte of a request arrived
//   kReading   -> kHandling  header and body read
//   kHandling  -> kWriting   the router answered
//   kWriting   -> kWaiting   keep-alive; or -> kLingering when the connection is to close
//   kLingering               answered and half-closed; reading what the client still sends
// Drain() closes a kWaiting (with no input pending) or kLingering connection at once and makes
// any other close after its current response; ForceClose() closes in any state.
class Connection {
 public:
  Connection(ServerCore& server, tcp::socket socket, std::uint64_t id, bool served)
      : server_(server), stream_(std::move(socket)), id_(id), served_(served) {
    error_code ec;
    auto remote = stream_.socket().remote_endpoint(ec);
    client_ = ec ? std::string("unknown") : FormatEndpoint(remote);
    if (served_) server_.metrics.connections_open->Inc();
  }

  ~Connection() {
    // A producer still running (the server stopped without this connection unwinding) must not
    // wait for room forever: its writes fail from now on.
    if (streaming_) streaming_->Close();
    if (served_) {
      server_.metrics.connections_open->Dec();
      server_.open_connections.fetch_sub(1);
    } else {
      server_.rejecting.fetch_sub(1);
    }
    server_.Untrack(id_);
  }

  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  asio::any_io_executor executor() { return stream_.get_executor(); }

  // The connection's coroutine; `self` keeps the connection alive until it returns.
  static asio::awaitable<void> Serve(std::shared_ptr<Connection> self) {
    if (self->served_) {
      co_await self->Run();
    } else {
      co_await self->RunRejection();
    }
  }

  void Drain() {
    drain_requested_ = true;
    if (state_ == State::kLingering) {
      stream_.close();
    } else if (state_ == State::kWaiting) {
      // Input already in the socket is a request the client sent before we stopped: serve it.
      // Cancel rather than close: a read that has already taken bytes off the socket still
      // delivers them, and the request they begin can then be read to its end.
      error_code ec;
      if (stream_.socket().available(ec) == 0 || ec) stream_.cancel();
    }
  }

  void ForceClose() {
    stream_.close();
    if (streaming_) {
      streaming_->Close();
      streaming_->Wake();
    }
  }

 private:
  enum class State { kWaiting, kReading, kHandling, kWriting, kLingering };

  asio::awaitable<void> Run();
  asio::awaitable<void> RunRejection();

  const ServerOptions& options() const { return server_.options(); }

  // Reads one request and answers it; false when the connection is to close afterwards.
  asio::awaitable<bool> ServeOne();
  asio::awaitable<Response> Dispatch(Request& request);
  // Writes `response` for `exchange`, records it, and reports whether the write succeeded.
  asio::awaitable<bool> Answer(Exchange& exchange, Response response, unsigned version, bool head,
                               bool keep_alive);
  // Answer() for a response with a producer: runs it on the handler pool and writes its parts
  // as they come; returns once the producer has returned.
  asio::awaitable<bool> AnswerStreamed(Exchange& exchange, Response response, unsigned version,
                                       bool head, bool keep_alive);
  asio::awaitable<void> LingeringClose();
  void CountTimeout(std::string_view phase) {
    server_.metrics.timeouts->WithLabels({phase}).Inc();
    server_.log->debug("connection timed out phase={} client={}", phase, client_);
  }

  ServerCore& server_;
  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::uint64_t id_;
  bool served_;  // false: a connection over the limit, only answered 503
  std::string client_;
  State state_ = State::kWaiting;
  bool drain_requested_ = false;
  std::size_t requests_ = 0;                // answered on this connection
  std::shared_ptr<BodyChannel> streaming_;  // while a streamed body is being written
  Clock::time_point accepted_ = Clock::now();
};

asio::awaitable<void> Connection::Run() {
  buffer_.max_size(options().max_header_bytes + 64 * 1024);
  for (;;) {
    // Wait for the next request's first byte: a new connection gets the header deadline, a
    // kept-alive one the idle deadline.
    if (buffer_.size() == 0) {
      state_ = State::kWaiting;
      if (drain_requested_ || server_.stopping.load()) {
        // Stop() began: serve only a request whose bytes already arrived.
        drain_requested_ = true;
        error_code ec;
        if (stream_.socket().available(ec) == 0 || ec) break;
      }
      stream_.expires_after(requests_ == 0 ? options().header_timeout : options().idle_timeout);
      auto [ec, n] = co_await stream_.async_read_some(buffer_.prepare(kReadChunk), kTuple);
      if (ec) {
        if (ec == beast::error::timeout) CountTimeout(requests_ == 0 ? "header" : "idle");
        break;
      }
      buffer_.commit(n);
    }

    state_ = State::kReading;
    if (!co_await ServeOne()) {
      if (stream_.socket().is_open()) co_await LingeringClose();
      break;
    }
    ++requests_;
  }
  stream_.close();
}

asio::awaitable<bool> Connection::ServeOne() {
  const ServerOptions& opts = options();
  Exchange exchange;
  exchange.start = Clock::now();

  // Read the header within its deadline, which for the first request runs from the accept.
  http::request_parser<http::string_body> parser;
  parser.header_limit(static_cast<std::uint32_t>(opts.max_header_bytes));
  parser.body_limit(boost::none);  // checked below against Content-Length, then set for chunks
  stream_.expires_at((requests_ == 0 ? accepted_ : exchange.start) + opts.header_timeout);
  auto [header_ec, header_bytes] =
      co_await http::async_read_header(stream_, buffer_, parser, kTuple);
  exchange.bytes_in = header_bytes;
  exchange.method = std::string(parser.get().method_string());
  if (header_ec) {
    if (header_ec == beast::error::timeout) {
      CountTimeout("header");
    } else if (IsParseError(header_ec)) {
      Response refusal = header_ec == http::error::header_limit
                             ? RequestHeaderFieldsTooLarge(opts.max_header_bytes)
                             : BadRequest("malformed request: " + header_ec.message());
      exchange.request_id = server_.ids.Next();
      co_await Answer(exchange, std::move(refusal), 11, false, false);
    }
    co_return false;  // otherwise the client left, or Stop() closed the connection
  }
  auto& message = parser.get();
  exchange.request_id = internal::RequestIdOf(message, server_.ids);
  const bool head = message.method() == http::verb::head;
  InFlight in_flight(*server_.metrics.in_flight);

  // Refuse a body announced larger than the limit before reading any of it.
  if (auto length = parser.content_length(); length && *length > opts.max_body_bytes) {
    exchange.route = server_.router().RouteOf(PathOf(message.target()));
    co_await Answer(exchange, PayloadTooLarge(opts.max_body_bytes), message.version(), head, false);
    co_return false;
  }

  // Read the body within its deadline; a chunked one is held to the limit as it arrives.
  if (!parser.is_done()) {
    if (message.version() >= 11 && beast::iequals(message[http::field::expect], "100-continue")) {
      http::response<http::empty_body> proceed{http::status::continue_, message.version()};
      stream_.expires_after(opts.write_timeout);
      auto [ec, n] = co_await http::async_write(stream_, proceed, kTuple);
      if (ec) {
        if (ec == beast::error::timeout) CountTimeout("write");
        co_return false;
      }
    }
    parser.body_limit(opts.max_body_bytes);
    stream_.expires_after(opts.body_timeout);
    auto [body_ec, body_bytes] = co_await http::async_read(stream_, buffer_, parser, kTuple);
    exchange.bytes_in += body_bytes;
    if (body_ec) {
      if (body_ec == beast::error::timeout) {
        CountTimeout("body");
      } else if (body_ec == http::error::body_limit) {
        exchange.route = server_.router().RouteOf(PathOf(message.target()));
        co_await Answer(exchange, PayloadTooLarge(opts.max_body_bytes), message.version(), head,
                        false);
      } else if (IsParseError(body_ec)) {
        co_await Answer(exchange, BadRequest("malformed request body: " + body_ec.message()),
                        message.version(), head, false);
      }
      co_return false;
    }
  }

  // The request as handlers see it.
  Request request =
      internal::ToRequest(message, std::move(message.body()), client_, exchange.request_id);

  // Route and run the handler.
  state_ = State::kHandling;
  Response response = co_await Dispatch(request);
  exchange.route = request.route;

  bool keep_alive = message.keep_alive() && !drain_requested_ && !server_.draining.load();
  const bool written =
      co_await Answer(exchange, std::move(response), message.version(), head, keep_alive);
  const bool reuse = written && keep_alive;
  co_return reuse;
}

asio::awaitable<Response> Connection::Dispatch(Request& request) {
  const Router& router = server_.router();
  const Router::Resolved resolved = router.Resolve(request);
  if (!resolved.blocking()) {
    Response response = router.Handle(request, resolved);
    // A producer runs on the handler pool, which a server without blocking routes lacks, and
    // a fast route has no business waiting on one.
    if (response.producer) {
      server_.log->error(
          "a route that is not blocking returned a streamed body request_id={} route={}: "
          "answering 500",
          request.request_id, request.route);
      response = InternalServerError();
    }
    co_return response;
  }
  // Run on the handler pool; the coroutine resumes on this connection's strand afterwards.
  // `request` and `resolved` live in this frame, which waits for the handler to return.
  co_return co_await asio::co_spawn(
      server_.handler_pool->get_executor(),
      [&]() -> asio::awaitable<Response> { co_return router.Handle(request, resolved); },
      asio::use_awaitable);
}

asio::awaitable<bool> Connection::Answer(Exchange& exchange, Response response, unsigned version,
                                         bool head, bool keep_alive) {
  if (response.producer) {
    co_return co_await AnswerStreamed(exchange, std::move(response), version, head, keep_alive);
  }
  state_ = State::kWriting;
  exchange.status = response.status;
  WireResponse wire =
      ToWire(std::move(response), exchange.request_id, version, head, keep_alive, *server_.log);
  stream_.expires_after(options().write_timeout);
  auto [ec, n] = co_await http::async_write(stream_, wire, kTuple);
  exchange.bytes_out = n;
  if (ec == beast::error::timeout) CountTimeout("write");
  server_.Record(exchange, client_);
  co_return !ec;
}

asio::awaitable<bool> Connection::AnswerStreamed(Exchange& exchange, Response response,
                                                 unsigned version, bool head, bool keep_alive) {
  state_ = State::kWriting;
  BodyProducer producer = std::move(response.producer);
  response.producer = nullptr;
  // Without chunked coding (HTTP/1.0) only the end of the connection can end the body.
  const bool chunked = version >= 11;
  if (!chunked) keep_alive = false;
  if (!IsWritable(response) || response.status == 204 || response.status == 304) {
    server_.log->error(
        "handler returned an invalid streamed response request_id={} status={}: "
        "answering 500",
        exchange.request_id, response.status);
    co_return co_await Answer(exchange, InternalServerError(), version, head, keep_alive);
  }

  // Start producing at once, so the first part is on its way while the header is written.
  auto channel = std::make_shared<BodyChannel>(stream_.get_executor());
  streaming_ = channel;
  if (head) {
    channel->Finish();  // HEAD: the header alone; the producer does not run
  } else {
    asio::post(*server_.handler_pool, [channel, producer = std::move(producer), log = server_.log,
                                       request_id = exchange.request_id] {
      try {
        producer(*channel);
      } catch (const std::exception& e) {
        log->error("body producer failed request_id={} error={}", request_id, e.what());
      } catch (...) {
        log->error("body producer failed request_id={} error=unknown exception", request_id);
      }
      channel->Finish();
    });
  }

  // The header: ToWire's checks and fields, with the body's length unknown.
  WireResponse wire =
      ToWire(std::move(response), exchange.request_id, version, true, keep_alive, *server_.log);
  exchange.status = static_cast<int>(wire.result_int());  // checked above: as the handler set
  http::response<http::empty_body> header(std::move(wire.base()));
  header.erase(http::field::content_length);
  if (chunked) header.chunked(true);
  http::response_serializer<http::empty_body> serializer(header);
  stream_.expires_after(options().write_timeout);
  auto [header_ec, header_bytes] = co_await http::async_write_header(stream_, serializer, kTuple);
  exchange.bytes_out = header_bytes;
  error_code ec = header_ec;
  if (ec) channel->Close();

  // The parts, each write within write_timeout; after a failure the producer's writes fail,
  // and what it still queues is dropped until it returns.
  for (;;) {
    auto batch = channel->Take();
    if (!ec && !batch.data.empty()) {
      stream_.expires_after(options().write_timeout);
      std::size_t n = 0;
      if (chunked) {
        std::tie(ec, n) =
            co_await asio::async_write(stream_, http::make_chunk(asio::buffer(batch.data)), kTuple);
      } else {
        std::tie(ec, n) = co_await asio::async_write(stream_, asio::buffer(batch.data), kTuple);
      }
      exchange.bytes_out += n;
      if (ec) channel->Close();
    }
    if (batch.finished) break;
    co_await channel->WaitForWork();
  }
  if (!ec && chunked && !head) {
    stream_.expires_after(options().write_timeout);
    std::size_t n = 0;
    std::tie(ec, n) = co_await asio::async_write(stream_, http::make_chunk_last(), kTuple);
    exchange.bytes_out += n;
  }
  streaming_.reset();
  if (ec == beast::error::timeout) CountTimeout("write");
  server_.Record(exchange, client_);
  co_return !ec && keep_alive;
}

asio::awaitable<void> Connection::LingeringClose() {
  state_ = State::kLingering;
  if (drain_requested_) co_return;
  error_code ec;
  stream_.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (ec) co_return;
  stream_.expires_after(kLingerTime);
  std::array<char, 4096> scratch;
  for (std::size_t discarded = 0; discarded < kLingerBytes;) {
    auto [read_ec, n] = co_await stream_.async_read_some(asio::buffer(scratch), kTuple);
    if (read_ec) break;
    discarded += n;
  }
}

asio::awaitable<void> Connection::RunRejection() {
  // Canned, so a flood costs no formatting; Connection: close since nothing more is read.
  static const std::string kAnswer = [] {
    std::string body = R"({"detail":"the server is at its connection limit; retry shortly"})";
    return "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"
           "Content-Length: " +
           std::to_string(body.size()) + "\r\nRetry-After: 1\r\nConnection: close\r\n\r\n" + body;
  }();
  state_ = State::kWriting;
  stream_.expires_after(std::min<std::chrono::milliseconds>(options().write_timeout, kLingerTime));
  auto [ec, n] = co_await asio::async_write(stream_, asio::buffer(kAnswer), kTuple);
  if (!ec) co_await LingeringClose();
  stream_.close();
}

}  // namespace

// ---- ServerCore --------------------------------------------------------------------------

std::shared_ptr<Connection> ServerCore::Track(tcp::socket socket, bool served) {
  std::lock_guard lock(mu);
  std::uint64_t id = next_connection_id++;
  if (served) {
    open_connections.fetch_add(1);
  } else {
    rejecting.fetch_add(1);
  }
  auto connection = std::make_shared<Connection>(*this, std::move(socket), id, served);
  connections.emplace(id, connection);
  return connection;
}

void ServerCore::Untrack(std::uint64_t id) {
  std::lock_guard lock(mu);
  connections.erase(id);
  if (connections.empty()) connections_done.notify_all();
}

template <typename Action>
std::size_t ServerCore::ForEachConnection(Action action) {
  std::vector<std::shared_ptr<Connection>> live;
  {
    std::lock_guard lock(mu);
    for (auto& [id, weak] : connections) {
      if (auto connection = weak.lock()) live.push_back(std::move(connection));
    }
  }
  // Posted outside the lock: a connection released here may run its destructor, which locks mu.
  for (auto& connection : live) {
    asio::post(connection->executor(), [connection, action] { action(*connection); });
  }
  return live.size();
}

bool ServerCore::WaitForConnections(Clock::time_point deadline) {
  std::unique_lock lock(mu);
  return connections_done.wait_until(lock, deadline, [&] { return connections.empty(); });
}

void ServerCore::Record(const Exchange& exchange, const std::string& client) const {
  const double seconds = std::chrono::duration<double>(Clock::now() - exchange.start).count();
  const std::string_view method = MethodLabel(exchange.method);
  const std::string_view route =
      exchange.route.empty() ? std::string_view("unmatched") : std::string_view(exchange.route);
  const std::string status = std::to_string(exchange.status);
  metrics.requests->WithLabels({method, route, std::string_view(status)}).Inc();
  metrics.duration->WithLabels({method, route}).Observe(seconds);

  const bool quiet = exchange.status < 400 &&
                     std::find(opts.quiet_routes.begin(), opts.quiet_routes.end(), route) !=
                         opts.quiet_routes.end();
  const spdlog::level::level_enum level = quiet ? spdlog::level::debug : spdlog::level::info;
  if (!log->should_log(level)) return;
  json::object line{
      {"event", "http_request"},
      {"method", exchange.method},
      {"route", route},
      {"status", exchange.status},
      {"bytes_in", exchange.bytes_in},
      {"bytes_out", exchange.bytes_out},
      {"request_id", exchange.request_id},
      {"client", client},
  };
  // Boost.JSON writes doubles in exponent form (1.17E-1); the duration reads better fixed.
  std::string text = json::serialize(line);
  text.insert(text.size() - 1, fmt::format(",\"duration_ms\":{:.3f}", seconds * 1e3));
  log->log(level, "{}", text);
}

asio::awaitable<void> ServerCore::AcceptLoop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(NextContext().get_executor(), kTuple);
    if (ec == asio::error::operation_aborted || !acceptor.is_open()) co_return;
    if (ec) {
      // Usually out of file descriptors; the backlog keeps the waiting clients meanwhile.
      log->warn(
          "accept failed error={}: check the open-file limit (ulimit -n) against "
          "server max_connections",
          ec.message());
      accept_retry.expires_after(kAcceptRetry);
      co_await accept_retry.async_wait(kTuple);
      continue;
    }

    Adopt(std::move(socket));
  }
}

asio::io_context& ServerCore::NextContext() {
  const std::size_t i =
      next_context.fetch_add(1, std::memory_order_relaxed) % (more_contexts.size() + 1);
  return i == 0 ? ioc : *more_contexts[i - 1];
}

void ServerCore::Adopt(tcp::socket socket) {
  // Over the limit: answer 503 while few are waiting for that answer, else just close.
  const bool over_limit = open_connections.load() >= options().max_connections;
  if (over_limit) {
    metrics.connections_rejected->Inc();
    if (rejecting.load() >= kMaxRejecting) {
      error_code ignored;
      socket.close(ignored);
      return;
    }
  }
  auto connection = Track(std::move(socket), !over_limit);
  asio::co_spawn(connection->executor(), Connection::Serve(connection),
                 [log = log](std::exception_ptr error) {
                   if (!error) return;
                   try {
                     std::rethrow_exception(error);
                   } catch (const std::exception& e) {
                     log->error("connection failed error={}", e.what());
                   }
                 });
}

void ServerCore::StopAccepting() {
  // Closing the listener resets the connections still in its backlog, which clients have
  // already seen accepted (and may have sent requests on): take them first, to be served.
  error_code ec;
  acceptor.non_blocking(true, ec);
  while (!ec) {
    tcp::socket socket(NextContext().get_executor());
    acceptor.accept(socket, ec);
    if (!ec) Adopt(std::move(socket));
  }
  acceptor.close(ec);
  accept_retry.cancel();
}

Status ValidateOptions(const ServerOptions& o) {
  auto out_of_range = [](std::string_view key, std::string_view expected, auto got) {
    return InvalidArgumentError("server." + std::string(key) + " must be " + std::string(expected) +
                                ", got " + std::to_string(got));
  };
  if (o.host.empty()) return InvalidArgumentError("server.host must not be empty");
  if (o.io_threads < 0) return out_of_range("io_threads", "0 (one per core) or more", o.io_threads);
  if (o.handler_threads < 1)
    return out_of_range("handler_threads", "at least 1", o.handler_threads);
  if (o.max_connections < 1) return out_of_range("max_connections", "at least 1", 0);
  // Beast's header limit is 32 bits; below 1 KiB ordinary browsers' requests would not fit.
  if (o.max_header_bytes < 1024 || o.max_header_bytes > (1u << 30)) {
    return out_of_range("max_header_bytes", "between 1024 and 1073741824", o.max_header_bytes);
  }
  const std::pair<std::string_view, std::chrono::milliseconds> timeouts[] = {
      {"header_timeout", o.header_timeout}, {"body_timeout", o.body_timeout},
      {"idle_timeout", o.idle_timeout},     {"write_timeout", o.write_timeout},
      {"drain_timeout", o.drain_timeout},
  };
  for (const auto& [key, value] : timeouts) {
    if (value.count() <= 0) return out_of_range(key, "a positive duration in ms", value.count());
  }
  return Status::Ok();
}

Status ServerCore::Start() {
  if (started) {
    return FailedPreconditionError("the HTTP server was already started; a server starts once");
  }
  const ServerOptions& o = options();
  MANN_RETURN_IF_ERROR(ValidateOptions(o));
  MANN_ASSIGN_OR_RETURN(
      metrics,
      ServerMetrics::Register(o.registry != nullptr ? *o.registry : metrics::Registry::Default()));

  // Resolve the bind address: an IP literal as is, a host name ("localhost") through the
  // system resolver.
  tcp::endpoint endpoint;
  error_code ec;
  auto literal = asio::ip::make_address(o.host, ec);
  if (!ec) {
    endpoint = tcp::endpoint(literal, o.port);
  } else {
    tcp::resolver resolver(ioc);
    auto results = resolver.resolve(o.host, std::to_string(o.port),
                                    tcp::resolver::passive | tcp::resolver::numeric_service, ec);
    if (ec || results.empty()) {
      return InvalidArgumentError("server.host '" + o.host +
                                  "' is neither an IP address nor a resolvable host name: " +
                                  (ec ? ec.message() : std::string("no addresses")));
    }
    endpoint = results.begin()->endpoint();
  }

  // Listen.
  const std::string where = FormatEndpoint(endpoint);
  auto fail = [&](std::string_view step) {
    error_code ignored;
    acceptor.close(ignored);
    return UnavailableError("cannot listen on " + where + ": " + std::string(step) +
                            " failed: " + ec.message());
  };
  if (acceptor.open(endpoint.protocol(), ec); ec) return fail("socket");
  // Lets a restarted server bind while old connections sit in TIME_WAIT; on Linux it does not
  // let two servers listen on one port.
  if (acceptor.set_option(tcp::acceptor::reuse_address(true), ec); ec) return fail("setsockopt");
  if (acceptor.bind(endpoint, ec); ec) return fail("bind");
  if (acceptor.listen(asio::socket_base::max_listen_connections, ec); ec) return fail("listen");
  bound_port.store(acceptor.local_endpoint(ec).port());

  // Start the threads.
  started = true;
  running = true;
  if (router().HasBlockingRoutes()) {
    handler_pool = std::make_unique<asio::thread_pool>(static_cast<std::size_t>(o.handler_threads));
  }
  asio::co_spawn(acceptor.get_executor(), AcceptLoop(), [log = log](std::exception_ptr error) {
    if (error) log->critical("accept loop ended by an exception; no new connections are taken");
  });
  const int io_threads = o.io_threads > 0
                             ? o.io_threads
                             : static_cast<int>(std::max(1u, std::thread::hardware_concurrency()));
  for (int i = 1; i < io_threads; ++i) {
    more_contexts.push_back(std::make_unique<asio::io_context>(1));
    idle_guards.push_back(asio::make_work_guard(*more_contexts.back()));
  }
  for (int i = 0; i < io_threads; ++i) {
    asio::io_context& context = i == 0 ? ioc : *more_contexts[static_cast<std::size_t>(i - 1)];
    threads.emplace_back([this, &context] {
      // An exception escaping a completion handler would end run(); log it and carry on.
      for (;;) {
        try {
          context.run();
          return;
        } catch (const std::exception& e) {
          log->error("I/O thread caught an exception error={}; continuing", e.what());
        }
      }
    });
  }
  log->info("listening address={} io_threads={} handler_threads={} max_connections={}",
            FormatEndpoint(acceptor.local_endpoint(ec)), io_threads,
            handler_pool ? o.handler_threads : 0, o.max_connections);
  return Status::Ok();
}

StopResult ServerCore::Stop(std::chrono::milliseconds drain_timeout) {
  if (!running) return {};
  running = false;
  const auto deadline = Clock::now() + drain_timeout;
  draining.store(true);
  stopping.store(true);

  // Stop accepting, close idle connections, let busy ones finish their current request.
  asio::post(acceptor.get_executor(), [this] { StopAccepting(); });
  std::size_t open = ForEachConnection([](Connection& c) { c.Drain(); });
  log->info("draining connections={} timeout_ms={}", open, drain_timeout.count());

  // Past the bound, close what is left; a handler that is running still runs to its end.
  StopResult result;
  if (!WaitForConnections(deadline)) {
    result.force_closed = ForEachConnection([](Connection& c) { c.ForceClose(); });
    log->warn("drain timed out; closing connections={} in progress", result.force_closed);
    if (!WaitForConnections(Clock::now() + kUnwindTime)) {
      log->error("connections still open after being closed; a handler may be stuck");
      ioc.stop();
      for (auto& context : more_contexts) context->stop();
    }
  }

  // Every connection is gone: let the threads that were kept waiting for one return.
  idle_guards.clear();
  for (auto& thread : threads) thread.join();
  threads.clear();
  if (handler_pool) handler_pool->join();
  log->info("stopped force_closed={}", result.force_closed);
  return result;
}

// ---- HttpServer ------------------------------------------------------------------------------

struct HttpServer::Impl : ServerCore {
  explicit Impl(HttpServer& server)
      : ServerCore(server.options_, server.router_, server.draining_, server.bound_port_) {}
};

HttpServer::HttpServer(ServerOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(*this)) {}

HttpServer::~HttpServer() { Stop(options_.drain_timeout); }

Router& HttpServer::router() { return router_; }

std::string HttpServer::address() const {
  const std::string& host = options_.host;
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port());
}

Status HttpServer::Start() { return impl_->Start(); }

StopResult HttpServer::Stop(std::chrono::milliseconds drain_timeout) {
  return impl_->Stop(drain_timeout);
}

StopResult HttpServer::Stop() { return Stop(options_.drain_timeout); }

}  // namespace mann::server
