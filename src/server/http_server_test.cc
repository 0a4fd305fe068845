// HttpServer over real loopback TCP. Clients are raw sockets with deadlines (poll), so a server
// bug fails a test instead of hanging it; responses are parsed with Beast's parser.
#include <atomic>
#include <chrono>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <spdlog/sinks/base_sink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mann/core/id.h>
#include <mann/core/log.h>
#include <mann/metrics/registry.h>
#include <mann/server/http_server.h>

namespace mann::server {
namespace {

namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using namespace std::chrono_literals;
using ::testing::HasSubstr;
using SteadyClock = std::chrono::steady_clock;

// Polls `predicate` until it holds or `timeout` passes; metrics and log lines are recorded just
// after a response is written, so a client may see the response first.
bool Eventually(const std::function<bool()>& predicate, std::chrono::milliseconds timeout = 2s) {
  const auto deadline = SteadyClock::now() + timeout;
  while (!predicate()) {
    if (SteadyClock::now() > deadline) return false;
    std::this_thread::sleep_for(2ms);
  }
  return true;
}

long MillisSince(SteadyClock::time_point start) {
  return static_cast<long>(
      std::chrono::duration_cast<std::chrono::milliseconds>(SteadyClock::now() - start).count());
}

struct Reply {
  int status = 0;
  Headers headers;
  std::string body;

  json::value Json() const { return json::parse(body); }
};

// One TCP connection to the server with deadline-bound reads.
class RawConnection {
 public:
  explicit RawConnection(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_port = htons(port);
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    connected_ = ::connect(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) == 0;
  }
  ~RawConnection() { Close(); }
  RawConnection(const RawConnection&) = delete;
  RawConnection& operator=(const RawConnection&) = delete;

  bool connected() const { return connected_; }
  void Close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  bool Send(std::string_view data) {
    while (!data.empty()) {
      ssize_t n = ::send(fd_, data.data(), data.size(), MSG_NOSIGNAL);
      if (n <= 0) return false;
      data.remove_prefix(static_cast<std::size_t>(n));
    }
    return true;
  }

  // Reads one response within `timeout`; std::nullopt if it did not come (or was cut short).
  std::optional<Reply> ReadResponse(std::chrono::milliseconds timeout = 3s, bool head = false) {
    http::response_parser<http::string_body> parser;
    parser.skip(head);
    parser.body_limit(boost::none);
    const auto deadline = SteadyClock::now() + timeout;
    for (;;) {
      // Feed what is buffered; keep the rest for the next response.
      while (!pending_.empty() && !parser.is_done()) {
        beast::error_code ec;
        std::size_t used = parser.put(boost::asio::buffer(pending_), ec);
        if (ec == http::error::need_more) break;
        if (ec) return std::nullopt;
        pending_.erase(0, used);
        if (used == 0) break;
      }
      if (parser.is_done()) break;
      auto chunk = ReadSome(deadline);
      if (!chunk) return std::nullopt;  // timed out
      if (chunk->empty()) {             // closed
        if (!parser.got_some()) return std::nullopt;
        beast::error_code ec;
        parser.put_eof(ec);
        if (ec || !parser.is_done()) return std::nullopt;
        break;
      }
      pending_ += *chunk;
    }
    Reply reply;
    auto& message = parser.get();
    reply.status = static_cast<int>(message.result_int());
    for (const auto& field : message) {
      reply.headers.Add(std::string(field.name_string()), std::string(field.value()));
    }
    reply.body = std::move(message.body());
    return reply;
  }

  // Reads until the bytes received contain `needle` (true) or `timeout` passes or the server
  // closes (false). The bytes stay buffered for ReadResponse.
  bool ReadUntil(std::string_view needle, std::chrono::milliseconds timeout) {
    const auto deadline = SteadyClock::now() + timeout;
    while (pending_.find(needle) == std::string::npos) {
      auto chunk = ReadSome(deadline);
      if (!chunk || chunk->empty()) return false;
      pending_ += *chunk;
    }
    return true;
  }

  // Reads until the server closes (true) or `timeout` passes (false); `data` gets the bytes.
  bool WaitForClose(std::chrono::milliseconds timeout, std::string* data = nullptr) {
    const auto deadline = SteadyClock::now() + timeout;
    for (;;) {
      auto chunk = ReadSome(deadline);
      if (!chunk) return false;
      if (chunk->empty()) return true;
      if (data != nullptr) *data += *chunk;
    }
  }

 private:
  // Bytes that arrived before `deadline`: empty when the peer closed (or reset), nullopt when
  // nothing came in time.
  std::optional<std::string> ReadSome(SteadyClock::time_point deadline) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() < 0) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) return std::nullopt;
    char buffer[16384];
    ssize_t n = ::recv(fd_, buffer, sizeof buffer, 0);
    if (n <= 0) return std::string();
    return std::string(buffer, static_cast<std::size_t>(n));
  }

  int fd_ = -1;
  bool connected_ = false;
  std::string pending_;
};

std::string RequestText(std::string_view method, std::string_view target,
                        std::string_view body = "",
                        std::vector<std::pair<std::string, std::string>> headers = {}) {
  std::string text =
      std::string(method) + " " + std::string(target) + " HTTP/1.1\r\n" + "Host: 127.0.0.1\r\n";
  bool has_length = false;
  for (const auto& [name, value] : headers) {
    text += name + ": " + value + "\r\n";
    has_length = has_length || beast::iequals(name, "Content-Length") ||
                 beast::iequals(name, "Transfer-Encoding");
  }
  if (!has_length && (!body.empty() || method == "POST" || method == "PUT")) {
    text += "Content-Length: " + std::to_string(body.size()) + "\r\n";
  }
  return text + "\r\n" + std::string(body);
}

// One request on a fresh connection.
std::optional<Reply> Fetch(std::uint16_t port, std::string_view method, std::string_view target,
                           std::string_view body = "",
                           std::vector<std::pair<std::string, std::string>> headers = {}) {
  RawConnection connection(port);
  if (!connection.connected()) return std::nullopt;
  headers.emplace_back("Connection", "close");
  if (!connection.Send(RequestText(method, target, body, headers))) return std::nullopt;
  return connection.ReadResponse(3s, method == "HEAD");
}

// Keeps the "http" logger's messages (without the pattern's prefix) while it lives.
class LogCapture {
 public:
  LogCapture() : logger_(log::Get("http")), sink_(std::make_shared<LineSink>()) {
    saved_sinks_ = logger_->sinks();
    saved_level_ = logger_->level();
    logger_->sinks().push_back(sink_);
    logger_->set_level(spdlog::level::info);
  }
  ~LogCapture() {
    logger_->sinks() = saved_sinks_;
    logger_->set_level(saved_level_);
  }
  std::vector<std::string> lines() { return sink_->lines(); }

 private:
  class LineSink : public spdlog::sinks::base_sink<std::mutex> {
   public:
    std::vector<std::string> lines() {
      std::lock_guard lock(mutex_);
      return lines_;
    }

   protected:
    void sink_it_(const spdlog::details::log_msg& message) override {
      lines_.emplace_back(message.payload.data(), message.payload.size());
    }
    void flush_() override {}

   private:
    std::vector<std::string> lines_;  // guarded by mutex_
  };

  std::shared_ptr<spdlog::logger> logger_;
  std::shared_ptr<LineSink> sink_;
  std::vector<spdlog::sink_ptr> saved_sinks_;
  spdlog::level::level_enum saved_level_;
};

// One chunk of a chunked body.
std::string Chunk(std::string_view data) {
  std::ostringstream out;
  out << std::hex << data.size() << "\r\n" << data << "\r\n";
  return out.str();
}

// Stops the server when the test's scope ends, so that handlers still running cannot outlive
// the test's locals they use (declare it after them).
class StopOnExit {
 public:
  explicit StopOnExit(std::unique_ptr<HttpServer>& server) : server_(server) {}
  ~StopOnExit() {
    if (server_) server_->Stop();
  }
  StopOnExit(const StopOnExit&) = delete;
  StopOnExit& operator=(const StopOnExit&) = delete;

 private:
  std::unique_ptr<HttpServer>& server_;
};

class HttpServerTest : public ::testing::Test {
 protected:
  ServerOptions Options() {
    ServerOptions options;
    options.host = "127.0.0.1";
    options.port = 0;
    options.io_threads = 2;
    options.registry = &registry_;
    options.drain_timeout = 2s;
    return options;
  }

  // Starts a server with the test routes:
  //   GET    /memories/{id}          echoes id, query, request id and client address
  //   GET    /memories/{id}/history  echoes the route
  //   POST   /memories               JSON: 400 malformed, 422 without content, 201
  //   GET    /boom                   throws
  //   GET    /slow                   waits for release_slow_ (at most 3 s)
  //   GET    /metrics                the registry
  void StartServer(ServerOptions options) {
    server_ = std::make_unique<HttpServer>(std::move(options));
    Router& router = server_->router();
    ASSERT_TRUE(router
                    .Add("GET", "/memories/{id}",
                         [](const Request& request) {
                           json::object query;
                           for (const auto& [k, v] : request.query.items()) query[k] = v;
                           return Response::Json({{"id", request.PathParam("id")},
                                                  {"query", query},
                                                  {"request_id", request.request_id},
                                                  {"client", request.client_address}});
                         })
                    .ok());
    ASSERT_TRUE(router
                    .Add("GET", "/memories/{id}/history",
                         [](const Request& request) {
                           return Response::Json({{"route", request.route}});
                         })
                    .ok());
    ASSERT_TRUE(
        router
            .Add("POST", "/memories",
                 [](const Request& request) {
                   auto body = ParseJsonBody(request);
                   if (!body.ok()) return BadRequest(body.status().message());
                   if (!body->is_object() || !body->as_object().contains("content")) {
                     return ValidationError({{{"body", "content"}, "field required", "missing"}});
                   }
                   return Response::Json({{"status", "created"}}, 201);
                 },
                 {.json_body = true})
            .ok());
    ASSERT_TRUE(
        router
            .Add("GET", "/boom",
                 [](const Request&) -> Response { throw std::runtime_error("handler exploded"); })
            .ok());
    ASSERT_TRUE(router
                    .Add("GET", "/slow",
                         [this](const Request&) {
                           slow_entered_.store(true);
                           release_slow_future_.wait_for(3s);
                           return Response::Json({{"slow", "done"}});
                         })
                    .ok());
    ASSERT_TRUE(
        router.Add("GET", "/metrics", [this](const Request&) { return MetricsResponse(registry_); })
            .ok());
    Status started = server_->Start();
    ASSERT_TRUE(started.ok()) << started.ToString();
    port_ = server_->port();
    ASSERT_NE(port_, 0);
  }

  // The value of one exposition line, e.g. `http_connections_open`, or nullopt if absent.
  std::optional<double> Sample(const std::string& series) {
    std::string text = registry_.Render();
    std::size_t at = text.find("\n" + series + " ");
    if (at == std::string::npos) return std::nullopt;
    return std::stod(text.substr(at + series.size() + 2));
  }
  bool SampleBecomes(const std::string& series, double want) {
    return Eventually([&] { return Sample(series) == want; });
  }

  metrics::Registry registry_;  // before server_: outlives it
  std::unique_ptr<HttpServer> server_;
  std::uint16_t port_ = 0;
  std::atomic<bool> slow_entered_{false};
  std::promise<void> release_slow_;
  std::shared_future<void> release_slow_future_ = release_slow_.get_future().share();
};

TEST_F(HttpServerTest, RoutesWithPathParamsAndDecodedQuery) {
  StartServer(Options());
  auto reply = Fetch(port_, "GET", "/memories/a%20b%2Fc?user_id=u%2B1&q=x+y&flag");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);
  EXPECT_THAT(std::string(*reply->headers.Get("Content-Type")), HasSubstr("application/json"));
  json::value body = reply->Json();
  EXPECT_EQ(body.at("id"), "a b/c");
  EXPECT_EQ(body.at("query").at("user_id"), "u+1");
  EXPECT_EQ(body.at("query").at("q"), "x y");
  EXPECT_EQ(body.at("query").at("flag"), "");

  auto history = Fetch(port_, "GET", "/memories/7/history");
  ASSERT_TRUE(history);
  EXPECT_EQ(history->Json().at("route"), "/memories/{id}/history");
}

TEST_F(HttpServerTest, UnknownPathIs404AndWrongMethodIs405WithAllow) {
  StartServer(Options());
  auto missing = Fetch(port_, "GET", "/nothing/here");
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->status, 404);
  EXPECT_EQ(missing->Json(), json::parse(R"({"detail": "Not Found"})"));

  auto wrong = Fetch(port_, "DELETE", "/memories");
  ASSERT_TRUE(wrong);
  EXPECT_EQ(wrong->status, 405);
  EXPECT_EQ(wrong->headers.Get("Allow"), "POST");
  EXPECT_EQ(wrong->Json().at("detail"), "Method Not Allowed");

  auto unknown_method = Fetch(port_, "BREW", "/memories/1");
  ASSERT_TRUE(unknown_method);
  EXPECT_EQ(unknown_method->status, 405);
  EXPECT_EQ(unknown_method->headers.Get("Allow"), "GET, HEAD");
}

TEST_F(HttpServerTest, HeadAnswersLikeGetWithoutTheBody) {
  StartServer(Options());
  auto get = Fetch(port_, "GET", "/memories/7/history");
  ASSERT_TRUE(get);

  RawConnection connection(port_);
  ASSERT_TRUE(
      connection.Send(RequestText("HEAD", "/memories/7/history", "", {{"Connection", "close"}})));
  std::string raw;
  ASSERT_TRUE(connection.WaitForClose(3s, &raw));
  EXPECT_THAT(raw, HasSubstr("HTTP/1.1 200 OK\r\n"));
  EXPECT_THAT(raw, HasSubstr("Content-Length: " + std::to_string(get->body.size()) + "\r\n"));
  EXPECT_TRUE(raw.ends_with("\r\n\r\n")) << raw;  // headers only
}

TEST_F(HttpServerTest, BodyOverTheLimitByContentLengthIs413BeforeTheBodyIsSent) {
  ServerOptions options = Options();
  options.max_body_bytes = 1024;
  StartServer(options);
  RawConnection connection(port_);
  // Announce 10 MB and send none of it: the answer must not wait for the body.
  ASSERT_TRUE(connection.Send(
      RequestText("POST", "/memories", "",
                  {{"Content-Type", "application/json"}, {"Content-Length", "10000000"}})));
  auto reply = connection.ReadResponse(2s);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 413);
  EXPECT_THAT(std::string(reply->Json().at("detail").as_string()), HasSubstr("1024 bytes"));
  EXPECT_EQ(reply->headers.Get("Connection"), "close");
  EXPECT_TRUE(connection.WaitForClose(3s));
  EXPECT_TRUE(
      SampleBecomes(R"(http_requests_total{method="POST",route="/memories",status="413"})", 1));
}

TEST_F(HttpServerTest, ChunkedBodyGrowingPastTheLimitIs413) {
  ServerOptions options = Options();
  options.max_body_bytes = 1024;
  StartServer(options);
  RawConnection connection(port_);
  std::string request =
      RequestText("POST", "/memories", "",
                  {{"Content-Type", "application/json"}, {"Transfer-Encoding", "chunked"}});
  for (int i = 0; i < 4; ++i) request += Chunk(std::string(512, 'x'));
  request += "0\r\n\r\n";
  ASSERT_TRUE(connection.Send(request));
  auto reply = connection.ReadResponse(2s);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 413);
  EXPECT_TRUE(connection.WaitForClose(3s));

  // A chunked body within the limit is read whole.
  RawConnection small(port_);
  ASSERT_TRUE(small.Send(
      RequestText("POST", "/memories", "",
                  {{"Content-Type", "application/json"}, {"Transfer-Encoding", "chunked"}}) +
      Chunk(R"({"con)") + Chunk(R"(tent": "x"})") + "0\r\n\r\n"));
  auto ok = small.ReadResponse(2s);
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 201) << ok->body;
}

TEST_F(HttpServerTest, ExpectContinueGetsAnInterimResponse) {
  StartServer(Options());
  RawConnection connection(port_);
  const std::string body = R"({"content": "hello"})";
  ASSERT_TRUE(connection.Send(RequestText("POST", "/memories", "",
                                          {{"Content-Type", "application/json"},
                                           {"Expect", "100-continue"},
                                           {"Content-Length", std::to_string(body.size())}})));
  auto interim = connection.ReadResponse(2s);
  ASSERT_TRUE(interim);
  EXPECT_EQ(interim->status, 100);
  ASSERT_TRUE(connection.Send(body));
  auto reply = connection.ReadResponse(2s);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 201);
}

TEST_F(HttpServerTest, JsonRouteAnswers415ForAnotherContentType) {
  StartServer(Options());
  auto reply = Fetch(port_, "POST", "/memories", "content=x",
                     {{"Content-Type", "application/x-www-form-urlencoded"}});
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 415);
  EXPECT_THAT(std::string(reply->Json().at("detail").as_string()), HasSubstr("application/json"));

  auto with_charset = Fetch(port_, "POST", "/memories", R"({"content": "x"})",
                            {{"Content-Type", "application/json; charset=utf-8"}});
  ASSERT_TRUE(with_charset);
  EXPECT_EQ(with_charset->status, 201);
}

TEST_F(HttpServerTest, MalformedJsonIs400WithTheParserMessage) {
  StartServer(Options());
  auto reply =
      Fetch(port_, "POST", "/memories", R"({"content": )", {{"Content-Type", "application/json"}});
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 400);
  std::string detail(reply->Json().at("detail").as_string());
  EXPECT_THAT(detail, HasSubstr("malformed JSON in request body"));
  EXPECT_THAT(detail, HasSubstr("incomplete JSON"));
}

TEST_F(HttpServerTest, ValidationFailureIs422WithFieldItems) {
  StartServer(Options());
  auto reply = Fetch(port_, "POST", "/memories", R"({"context": "x"})",
                     {{"Content-Type", "application/json"}});
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 422);
  EXPECT_EQ(reply->Json(), json::parse(R"({"detail": [{"loc": ["body", "content"],
                                           "msg": "field required", "type": "missing"}]})"));
}

TEST_F(HttpServerTest, HeaderOverTheLimitIs431AndCloses) {
  StartServer(Options());  // max_header_bytes 16 KiB
  RawConnection connection(port_);
  ASSERT_TRUE(connection.Send(
      RequestText("GET", "/memories/1", "", {{"X-Padding", std::string(20 * 1024, 'p')}})));
  auto reply = connection.ReadResponse(2s);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 431);
  EXPECT_THAT(std::string(reply->Json().at("detail").as_string()), HasSubstr("16384 bytes"));
  EXPECT_TRUE(connection.WaitForClose(3s));
}

TEST_F(HttpServerTest, MalformedRequestLineIs400AndCloses) {
  StartServer(Options());
  RawConnection connection(port_);
  ASSERT_TRUE(connection.Send("THIS IS NOT HTTP\r\n\r\n"));
  auto reply = connection.ReadResponse(2s);
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 400);
  EXPECT_THAT(std::string(reply->Json().at("detail").as_string()), HasSubstr("malformed request"));
  EXPECT_TRUE(reply->headers.Has("X-Request-ID"));
  EXPECT_TRUE(connection.WaitForClose(3s));
}

TEST_F(HttpServerTest, ThrowingHandlerGives500AndTheServerKeepsServing) {
  StartServer(Options());
  RawConnection connection(port_);
  ASSERT_TRUE(connection.Send(RequestText("GET", "/boom")));
  auto boom = connection.ReadResponse();
  ASSERT_TRUE(boom);
  EXPECT_EQ(boom->status, 500);
  EXPECT_EQ(boom->Json().at("detail"), "Internal Server Error");
  EXPECT_THAT(boom->body, ::testing::Not(HasSubstr("exploded")));

  // Same connection, next request.
  ASSERT_TRUE(connection.Send(RequestText("GET", "/memories/1")));
  auto next = connection.ReadResponse();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
}

TEST_F(HttpServerTest, KeepAliveReusesTheConnection) {
  StartServer(Options());
  RawConnection connection(port_);
  std::string client;
  for (int i = 0; i < 3; ++i) {
    ASSERT_TRUE(connection.Send(RequestText("GET", "/memories/" + std::to_string(i))));
    auto reply = connection.ReadResponse();
    ASSERT_TRUE(reply) << "request " << i;
    EXPECT_EQ(reply->status, 200);
    EXPECT_NE(reply->headers.Get("Connection"), "close");
    std::string seen(reply->Json().at("client").as_string());
    if (i == 0) client = seen;
    EXPECT_EQ(seen, client) << "the same client port serves every request";
  }
  EXPECT_EQ(Sample("http_connections_open"), 1);

  // Pipelined requests on the same connection are answered in order.
  ASSERT_TRUE(
      connection.Send(RequestText("GET", "/memories/p1") + RequestText("GET", "/memories/p2")));
  auto first = connection.ReadResponse();
  auto second = connection.ReadResponse();
  ASSERT_TRUE(first && second);
  EXPECT_EQ(first->Json().at("id"), "p1");
  EXPECT_EQ(second->Json().at("id"), "p2");
}

TEST_F(HttpServerTest, HeaderTimeoutCutsOffASlowlorisWithoutHoldingTheThread) {
  ServerOptions options = Options();
  options.io_threads = 1;  // a held thread would stall the other client
  options.header_timeout = 300ms;
  StartServer(options);

  RawConnection slow(port_);
  const auto start = SteadyClock::now();
  ASSERT_TRUE(slow.Send("GET /memories/1 HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: "));

  // Meanwhile, another client is served at once.
  auto other = Fetch(port_, "GET", "/memories/2");
  ASSERT_TRUE(other);
  EXPECT_EQ(other->status, 200);
  EXPECT_LT(MillisSince(start), 250);

  // Dribble a byte every 50 ms; the server must close well before the header would finish.
  bool closed = false;
  while (!closed && MillisSince(start) < 3000) {
    if (!slow.Send("a")) {
      closed = true;
      break;
    }
    closed = slow.WaitForClose(50ms);
  }
  const long elapsed = MillisSince(start);
  EXPECT_TRUE(closed);
  EXPECT_GE(elapsed, 250);
  EXPECT_LT(elapsed, 1500);
  EXPECT_TRUE(SampleBecomes(R"(http_connection_timeouts_total{phase="header"})", 1));
}

TEST_F(HttpServerTest, IdleTimeoutClosesAnIdleKeepAliveConnection) {
  ServerOptions options = Options();
  options.idle_timeout = 300ms;
  StartServer(options);
  RawConnection connection(port_);
  ASSERT_TRUE(connection.Send(RequestText("GET", "/memories/1")));
  ASSERT_TRUE(connection.ReadResponse());
  const auto start = SteadyClock::now();
  EXPECT_TRUE(connection.WaitForClose(3s));
  const long elapsed = MillisSince(start);
  EXPECT_GE(elapsed, 250);
  EXPECT_LT(elapsed, 1500);
  EXPECT_TRUE(SampleBecomes(R"(http_connection_timeouts_total{phase="idle"})", 1));
  EXPECT_TRUE(SampleBecomes("http_connections_open", 0));
}

TEST_F(HttpServerTest, ConnectionsOverTheLimitGet503AndClose) {
  ServerOptions options = Options();
  options.max_connections = 2;
  StartServer(options);
  RawConnection first(port_);
  RawConnection second(port_);
  ASSERT_TRUE(SampleBecomes("http_connections_open", 2));

  RawConnection third(port_);
  ASSERT_TRUE(third.Send(RequestText("GET", "/memories/1")));
  auto refused = third.ReadResponse(2s);
  ASSERT_TRUE(refused);
  EXPECT_EQ(refused->status, 503);
  EXPECT_EQ(refused->headers.Get("Retry-After"), "1");
  EXPECT_THAT(std::string(refused->Json().at("detail").as_string()), HasSubstr("connection limit"));
  EXPECT_TRUE(third.WaitForClose(3s));
  EXPECT_EQ(Sample("http_connections_rejected_total"), 1);

  // The ones inside the limit are served; after one leaves, a newcomer is too.
  ASSERT_TRUE(first.Send(RequestText("GET", "/memories/1")));
  auto served = first.ReadResponse();
  ASSERT_TRUE(served);
  EXPECT_EQ(served->status, 200);
  second.Close();
  ASSERT_TRUE(SampleBecomes("http_connections_open", 1));
  auto later = Fetch(port_, "GET", "/memories/2");
  ASSERT_TRUE(later);
  EXPECT_EQ(later->status, 200);
}

TEST_F(HttpServerTest, RequestIdIsKeptWhenSaneAndMadeOtherwise) {
  StartServer(Options());
  auto kept = Fetch(port_, "GET", "/memories/1", "", {{"X-Request-ID", "client-id-42"}});
  ASSERT_TRUE(kept);
  EXPECT_EQ(kept->headers.Get("X-Request-ID"), "client-id-42");
  EXPECT_EQ(kept->Json().at("request_id"), "client-id-42");

  auto made = Fetch(port_, "GET", "/memories/1");
  ASSERT_TRUE(made);
  ASSERT_TRUE(made->headers.Has("X-Request-ID"));
  EXPECT_TRUE(IsUuid(*made->headers.Get("X-Request-ID"))) << *made->headers.Get("X-Request-ID");
  EXPECT_EQ(made->Json().at("request_id"), json::string(*made->headers.Get("X-Request-ID")));

  for (const std::string& insane : {std::string(129, 'a'), std::string("tab\there")}) {
    auto replaced = Fetch(port_, "GET", "/memories/1", "", {{"X-Request-ID", insane}});
    ASSERT_TRUE(replaced);
    EXPECT_TRUE(IsUuid(*replaced->headers.Get("X-Request-ID")));
  }

  // Error answers carry it too.
  auto missing = Fetch(port_, "GET", "/nope", "", {{"X-Request-ID", "err-1"}});
  ASSERT_TRUE(missing);
  EXPECT_EQ(missing->headers.Get("X-Request-ID"), "err-1");
}

TEST_F(HttpServerTest, MetricsCountRequestsByRouteTemplate) {
  StartServer(Options());
  for (const char* target : {"/memories/1", "/memories/2", "/nope/3"}) {
    ASSERT_TRUE(Fetch(port_, "GET", target));
  }
  ASSERT_TRUE(Fetch(port_, "BREW", "/memories/9"));
  EXPECT_TRUE(
      SampleBecomes(R"(http_requests_total{method="GET",route="/memories/{id}",status="200"})", 2));
  EXPECT_TRUE(
      SampleBecomes(R"(http_requests_total{method="GET",route="unmatched",status="404"})", 1));
  EXPECT_TRUE(SampleBecomes(
      R"(http_requests_total{method="other",route="/memories/{id}",status="405"})", 1));
  EXPECT_TRUE(SampleBecomes(
      R"(http_request_duration_seconds_count{method="GET",route="/memories/{id}"})", 2));
  EXPECT_TRUE(Sample(
      R"(http_request_duration_seconds_bucket{method="GET",route="/memories/{id}",le="0.2"})"));
  // The gauge drops once the answer is written, which the client may see first.
  EXPECT_TRUE(SampleBecomes("http_requests_in_flight", 0));

  // /metrics serves the registry with the exposition content type; raw paths never appear.
  auto scrape = Fetch(port_, "GET", "/metrics");
  ASSERT_TRUE(scrape);
  EXPECT_EQ(scrape->status, 200);
  EXPECT_EQ(scrape->headers.Get("Content-Type"), metrics::kContentType);
  EXPECT_THAT(scrape->body, HasSubstr("# TYPE http_requests_total counter"));
  EXPECT_THAT(scrape->body, HasSubstr("# TYPE http_request_duration_seconds histogram"));
  EXPECT_THAT(scrape->body, ::testing::Not(HasSubstr("/memories/1")));
  EXPECT_THAT(scrape->body, ::testing::Not(HasSubstr("/nope")));
  EXPECT_THAT(scrape->body, ::testing::Not(HasSubstr("BREW")));
}

TEST_F(HttpServerTest, EachRequestWritesOneJsonLogLine) {
  LogCapture capture;
  StartServer(Options());
  auto reply = Fetch(port_, "GET", "/memories/5?x=1", "", {{"X-Request-ID", "log-line-1"}});
  ASSERT_TRUE(reply);
  std::string line;
  ASSERT_TRUE(Eventually([&] {
    for (const auto& l : capture.lines()) {
      if (l.find("log-line-1") != std::string::npos) line = l;
    }
    return !line.empty();
  }));
  server_->Stop();  // no more logging while the capture goes away

  json::value entry = json::parse(line);
  EXPECT_EQ(entry.at("method"), "GET");
  EXPECT_EQ(entry.at("route"), "/memories/{id}");
  EXPECT_EQ(entry.at("status"), 200);
  EXPECT_GE(entry.at("duration_ms").to_number<double>(), 0.0);
  EXPECT_GT(entry.at("bytes_in").to_number<double>(), 0.0);
  EXPECT_GE(entry.at("bytes_out").to_number<double>(), static_cast<double>(reply->body.size()));
  EXPECT_EQ(entry.at("request_id"), "log-line-1");
  EXPECT_THAT(std::string(entry.at("client").as_string()), ::testing::StartsWith("127.0.0.1:"));
  EXPECT_THAT(line, ::testing::Not(HasSubstr("/memories/5")));  // templates, not raw paths
}

TEST_F(HttpServerTest, QuietRoutesLogSuccessAtDebugAndFailuresAtInfo) {
  LogCapture capture;  // at info
  ServerOptions options = Options();
  options.quiet_routes = {"/memories/{id}"};
  StartServer(options);
  ASSERT_TRUE(Fetch(port_, "GET", "/memories/5", "", {{"X-Request-ID", "quiet-ok"}}));
  ASSERT_TRUE(Fetch(port_, "BREW", "/memories/5", "", {{"X-Request-ID", "quiet-refused"}}));
  ASSERT_TRUE(Fetch(port_, "GET", "/nope", "", {{"X-Request-ID", "loud-marker"}}));
  auto logged = [&](std::string_view id) {
    for (const auto& l : capture.lines()) {
      if (l.find(id) != std::string::npos) return true;
    }
    return false;
  };
  // Lines are written in request order on one connection each, so once the last request's line
  // is there, a line for the quiet success would be too.
  ASSERT_TRUE(Eventually([&] { return logged("loud-marker") && logged("quiet-refused"); }));
  server_->Stop();
  EXPECT_FALSE(logged("quiet-ok"));
}

TEST_F(HttpServerTest, StopLetsAnInFlightRequestFinishAndClosesIdleConnections) {
  StartServer(Options());
  // An idle keep-alive connection, and a keep-alive request in progress.
  RawConnection idle(port_);
  ASSERT_TRUE(idle.Send(RequestText("GET", "/memories/1")));
  ASSERT_TRUE(idle.ReadResponse());
  RawConnection busy(port_);
  ASSERT_TRUE(busy.Send(RequestText("GET", "/slow")));
  ASSERT_TRUE(Eventually([&] { return slow_entered_.load(); }));

  const auto start = SteadyClock::now();
  auto stopped = std::async(std::launch::async, [&] { return server_->Stop(2s); });
  ASSERT_TRUE(Eventually([&] { return server_->draining(); }));
  EXPECT_TRUE(idle.WaitForClose(1s)) << "idle connections close at once";
  EXPECT_TRUE(Eventually([&] { return !RawConnection(port_).connected(); }))
      << "no new connections while draining";
  EXPECT_LT(MillisSince(start), 1000);

  release_slow_.set_value();
  auto reply = busy.ReadResponse();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->Json().at("slow"), "done");
  EXPECT_EQ(reply->headers.Get("Connection"), "close") << "the client is told to go elsewhere";
  EXPECT_TRUE(busy.WaitForClose(1s));
  StopResult result = stopped.get();
  EXPECT_TRUE(result.drained());
  EXPECT_LT(MillisSince(start), 2000);
}

TEST_F(HttpServerTest, StopServesRequestsThatArrivedBeforeIt) {
  ServerOptions options = Options();
  options.io_threads = 1;  // blocked by /slow below, so the next client waits unaccepted
  StartServer(options);
  RawConnection busy(port_);
  ASSERT_TRUE(busy.Send(RequestText("GET", "/slow")));
  ASSERT_TRUE(Eventually([&] { return slow_entered_.load(); }));
  RawConnection waiting(port_);  // in the listen backlog, its request sent
  ASSERT_TRUE(waiting.connected());
  ASSERT_TRUE(waiting.Send(RequestText("GET", "/memories/late")));

  auto stopped = std::async(std::launch::async, [&] { return server_->Stop(2s); });
  ASSERT_TRUE(Eventually([&] { return server_->draining(); }));
  release_slow_.set_value();
  auto late = waiting.ReadResponse();
  ASSERT_TRUE(late) << "a request sent before Stop() must not be lost";
  EXPECT_EQ(late->status, 200);
  EXPECT_EQ(late->Json().at("id"), "late");
  EXPECT_EQ(late->headers.Get("Connection"), "close");
  auto slow = busy.ReadResponse();
  ASSERT_TRUE(slow);
  EXPECT_EQ(slow->status, 200);
  EXPECT_TRUE(stopped.get().drained());
}

TEST_F(HttpServerTest, StopForceClosesWhatRemainsAfterTheBound) {
  StartServer(Options());
  RawConnection stuck(port_);
  ASSERT_TRUE(stuck.Send("GET /memories/1 HTTP/1.1\r\nHost: 12"));  // a header never finished
  ASSERT_TRUE(SampleBecomes("http_connections_open", 1));
  const auto start = SteadyClock::now();
  StopResult result = server_->Stop(200ms);
  const long elapsed = MillisSince(start);
  EXPECT_EQ(result.force_closed, 1u);
  EXPECT_GE(elapsed, 150);
  EXPECT_LT(elapsed, 1000);
  EXPECT_TRUE(stuck.WaitForClose(1s));
  EXPECT_EQ(server_->Stop(1s).force_closed, 0u) << "a second Stop is a no-op";
}

TEST_F(HttpServerTest, BlockingRoutesLeaveTheIoThreadServing) {
  ServerOptions options = Options();
  options.io_threads = 1;  // inline, one slow handler would stall every connection
  server_ = std::make_unique<HttpServer>(options);
  std::atomic<int> entered{0};
  ASSERT_TRUE(server_->router()
                  .Add("GET", "/model",
                       [&](const Request&) {
                         entered.fetch_add(1);
                         std::this_thread::sleep_for(2s);  // a language model taking its time
                         return Response::Json({{"model", "done"}});
                       },
                       {.blocking = true})
                  .ok());
  ASSERT_TRUE(server_->router()
                  .Add("GET", "/health", [](const Request&) { return Response::Json({}); })
                  .ok());
  StopOnExit stop_on_exit(server_);
  ASSERT_TRUE(server_->Start().ok());
  const std::uint16_t port = server_->port();

  const auto start = SteadyClock::now();
  auto first = std::async(std::launch::async, [&] { return Fetch(port, "GET", "/model"); });
  auto second = std::async(std::launch::async, [&] { return Fetch(port, "GET", "/model"); });
  ASSERT_TRUE(Eventually([&] { return entered.load() == 2; }));

  const auto health_start = SteadyClock::now();
  auto health = Fetch(port, "GET", "/health");
  const long health_ms = MillisSince(health_start);
  ASSERT_TRUE(health);
  EXPECT_EQ(health->status, 200);
  EXPECT_LT(health_ms, 500) << "a fast route waited for the slow ones";

  for (auto* model : {&first, &second}) {
    auto reply = model->get();
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->status, 200);
  }
  EXPECT_LT(MillisSince(start), 3500) << "the two slow handlers ran one after the other";
}

TEST_F(HttpServerTest, FastRoutesRunInlineOnTheIoThread) {
  ServerOptions options = Options();
  options.io_threads = 1;
  options.handler_threads = 1;  // one blocking request fills the pool
  server_ = std::make_unique<HttpServer>(options);
  std::atomic<bool> model_entered{false};
  std::thread::id model_thread;  // written before model_entered is raised
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  ASSERT_TRUE(server_->router()
                  .Add("GET", "/model",
                       [&](const Request&) {
                         model_thread = std::this_thread::get_id();
                         model_entered.store(true);
                         released.wait_for(3s);
                         return Response::Json({});
                       },
                       {.blocking = true})
                  .ok());
  std::mutex mu;
  std::vector<std::thread::id> fast_threads;  // guarded by mu
  ASSERT_TRUE(server_->router()
                  .Add("GET", "/fast",
                       [&](const Request&) {
                         std::lock_guard lock(mu);
                         fast_threads.push_back(std::this_thread::get_id());
                         return Response::Json({});
                       })
                  .ok());
  StopOnExit stop_on_exit(server_);
  ASSERT_TRUE(server_->Start().ok());
  const std::uint16_t port = server_->port();

  // While the only pool thread is held, fast requests are still answered at once: they never
  // queue for the pool, and they run on the one I/O thread, not the pool's.
  auto model = std::async(std::launch::async, [&] { return Fetch(port, "GET", "/model"); });
  ASSERT_TRUE(Eventually([&] { return model_entered.load(); }));
  for (int i = 0; i < 3; ++i) {
    const auto start = SteadyClock::now();
    auto reply = Fetch(port, "GET", "/fast");
    ASSERT_TRUE(reply);
    EXPECT_EQ(reply->status, 200);
    EXPECT_LT(MillisSince(start), 500);
  }
  release.set_value();
  auto reply = model.get();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);

  std::lock_guard lock(mu);
  ASSERT_EQ(fast_threads.size(), 3u);
  for (const std::thread::id& id : fast_threads) {
    EXPECT_EQ(id, fast_threads.front()) << "fast routes all run on the one I/O thread";
    EXPECT_NE(id, model_thread) << "a fast route ran on the handler pool";
  }
}

TEST_F(HttpServerTest, StreamedBodiesAreSentAsTheyAreWritten) {
  server_ = std::make_unique<HttpServer>(Options());
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  std::atomic<bool> producer_done{false};
  ASSERT_TRUE(server_->router()
                  .Add("GET", "/stream",
                       [&](const Request&) {
                         Response response = Response::Text("", 200, "text/event-stream");
                         response.headers.Set("Cache-Control", "no-cache");
                         response.producer = [&](BodyWriter& out) {
                           out.Write("first;");
                           released.wait_for(3s);
                           out.Write("second;");
                           out.Write("third;");
                           producer_done.store(true);
                         };
                         return response;
                       },
                       {.blocking = true})
                  .ok());
  ASSERT_TRUE(server_->router()
                  .Add("GET", "/fast", [](const Request&) { return Response::Json({}); })
                  .ok());
  StopOnExit stop_on_exit(server_);
  ASSERT_TRUE(server_->Start().ok());

  // The header and the first part arrive while the producer is still at work.
  RawConnection connection(server_->port());
  ASSERT_TRUE(connection.Send(RequestText("GET", "/stream")));
  EXPECT_TRUE(connection.ReadUntil("first;", 1s));
  EXPECT_FALSE(producer_done.load());
  release.set_value();
  auto reply = connection.ReadResponse();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->body, "first;second;third;") << "every part, in order";
  EXPECT_EQ(reply->headers.Get("Transfer-Encoding"), "chunked");
  EXPECT_FALSE(reply->headers.Has("Content-Length"));
  EXPECT_EQ(reply->headers.Get("Content-Type"), "text/event-stream");
  EXPECT_EQ(reply->headers.Get("Cache-Control"), "no-cache");
  EXPECT_TRUE(producer_done.load());

  // The connection is kept alive, and the exchange was counted once.
  ASSERT_TRUE(connection.Send(RequestText("GET", "/fast")));
  auto next = connection.ReadResponse();
  ASSERT_TRUE(next);
  EXPECT_EQ(next->status, 200);
  EXPECT_TRUE(
      SampleBecomes(R"(http_requests_total{method="GET",route="/stream",status="200"})", 1));
}

TEST_F(HttpServerTest, AClientThatLeavesStopsTheProducer) {
  server_ = std::make_unique<HttpServer>(Options());
  std::atomic<bool> producer_done{false};
  std::atomic<bool> saw_closed{false};
  std::atomic<int> parts{0};
  constexpr int kMaxParts = 20'000;  // 1.3 GB: far more than the socket buffers could hold
  ASSERT_TRUE(server_->router()
                  .Add("GET", "/endless",
                       [&](const Request&) {
                         Response response = Response::Text("", 200, "text/plain");
                         response.producer = [&](BodyWriter& out) {
                           const std::string part(64 * 1024, 'x');
                           for (int i = 0; i < kMaxParts; ++i) {
                             if (!out.Write(part)) {
                               saw_closed.store(out.closed());
                               break;
                             }
                             parts.fetch_add(1);
                           }
                           producer_done.store(true);
                         };
                         return response;
                       },
                       {.blocking = true})
                  .ok());
  StopOnExit stop_on_exit(server_);
  ASSERT_TRUE(server_->Start().ok());

  {
    RawConnection connection(server_->port());
    ASSERT_TRUE(connection.Send(RequestText("GET", "/endless")));
    ASSERT_TRUE(connection.ReadUntil("xxxx", 1s));
  }  // the client leaves without reading the rest
  ASSERT_TRUE(Eventually([&] { return producer_done.load(); }, 3s));
  EXPECT_TRUE(saw_closed.load()) << "the producer saw a closed writer";
  EXPECT_LT(parts.load(), kMaxParts);
  EXPECT_TRUE(
      SampleBecomes(R"(http_requests_total{method="GET",route="/endless",status="200"})", 1));
}

TEST_F(HttpServerTest, AStreamedBodyFromARouteThatIsNotBlockingIs500) {
  server_ = std::make_unique<HttpServer>(Options());
  bool produced = false;
  ASSERT_TRUE(server_->router()
                  .Add("GET", "/stream",
                       [&](const Request&) {
                         Response response;
                         response.producer = [&](BodyWriter&) { produced = true; };
                         return response;
                       })
                  .ok());
  ASSERT_TRUE(server_->Start().ok());
  auto reply = Fetch(server_->port(), "GET", "/stream");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 500);
  EXPECT_FALSE(produced);
}

TEST_F(HttpServerTest, InvalidHandlerResponsesBecome500) {
  server_ = std::make_unique<HttpServer>(Options());
  ASSERT_TRUE(server_->router()
                  .Add("GET", "/bad-status", [](const Request&) { return ErrorResponse(42, "x"); })
                  .ok());
  ASSERT_TRUE(server_->router()
                  .Add("GET", "/bad-header",
                       [](const Request&) {
                         Response response = Response::Json({{"ok", true}});
                         response.headers.Add("X-Evil", "a\r\nSet-Cookie: stolen=1");
                         return response;
                       })
                  .ok());
  ASSERT_TRUE(server_->Start().ok());
  for (const char* target : {"/bad-status", "/bad-header"}) {
    auto reply = Fetch(server_->port(), "GET", target);
    ASSERT_TRUE(reply) << target;
    EXPECT_EQ(reply->status, 500) << target;
    EXPECT_FALSE(reply->headers.Has("Set-Cookie"));
  }
}

TEST_F(HttpServerTest, StartFailsOnAPortInUseNamingIt) {
  StartServer(Options());
  ServerOptions options = Options();
  options.port = port_;
  HttpServer second(options);
  Status status = second.Start();
  EXPECT_EQ(status.code(), StatusCode::kUnavailable);
  EXPECT_THAT(status.message(), HasSubstr("127.0.0.1:" + std::to_string(port_)));
  EXPECT_THAT(status.message(), HasSubstr("in use"));
  EXPECT_EQ(second.Stop().force_closed, 0u);  // never started: nothing to do

  // The first server is unaffected.
  auto reply = Fetch(port_, "GET", "/memories/1");
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);
}

TEST_F(HttpServerTest, StartRejectsBadOptionsNamingTheKey) {
  struct Case {
    std::function<void(ServerOptions&)> change;
    std::string_view message_part;
  };
  const Case cases[] = {
      {[](ServerOptions& o) { o.max_header_bytes = 10; }, "server.max_header_bytes"},
      {[](ServerOptions& o) { o.header_timeout = 0ms; }, "server.header_timeout"},
      {[](ServerOptions& o) { o.max_connections = 0; }, "server.max_connections"},
      {[](ServerOptions& o) { o.io_threads = -1; }, "server.io_threads"},
      {[](ServerOptions& o) { o.handler_threads = 0; },
       "server.handler_threads must be at least 1"},
      {[](ServerOptions& o) { o.host.clear(); }, "server.host"},
  };
  for (const auto& c : cases) {
    ServerOptions options = Options();
    c.change(options);
    HttpServer server(options);
    Status status = server.Start();
    EXPECT_EQ(status.code(), StatusCode::kInvalidArgument) << c.message_part;
    EXPECT_THAT(status.message(), HasSubstr(std::string(c.message_part)));
  }
}

TEST_F(HttpServerTest, StartsOnceAndReportsItsAddress) {
  StartServer(Options());
  EXPECT_EQ(server_->address(), "127.0.0.1:" + std::to_string(port_));
  EXPECT_EQ(server_->Start().code(), StatusCode::kFailedPrecondition);
  EXPECT_FALSE(server_->draining());
  server_->BeginDrain();
  EXPECT_TRUE(server_->draining());
  // Still serving while draining, but telling clients to go elsewhere.
  RawConnection connection(port_);
  ASSERT_TRUE(connection.Send(RequestText("GET", "/memories/1")));
  auto reply = connection.ReadResponse();
  ASSERT_TRUE(reply);
  EXPECT_EQ(reply->status, 200);
  EXPECT_EQ(reply->headers.Get("Connection"), "close");
}

}  // namespace
}  // namespace mann::server
