#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/sinks/ostream_sink.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mann/core/log.h>
#include <mann/encode/remote_encoder.h>

namespace mann::encode {
namespace {

namespace json = boost::json;
using ::testing::Each;
using ::testing::ElementsAre;
using ::testing::FloatNear;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::Pointwise;
using namespace std::chrono_literals;

constexpr std::size_t kDim = 16;
constexpr std::string_view kApiKey = "sk-test-5f1e0c9a7b3d4e2f";

// ---------------------------------------------------------------------------------------------
// A fake embeddings server: real HTTP/1.1 over a loopback socket on an ephemeral port, one thread
// per connection (keep-alive connections from several client threads are served at once).

struct HttpRequest {
  std::string method;
  std::string path;
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  json::value json;  // the parsed body; null when it is not JSON

  std::optional<std::string> Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    if (it == headers.end()) return std::nullopt;
    return it->second;
  }

  // The "input" strings of an embeddings request, in order.
  std::vector<std::string> Inputs() const {
    std::vector<std::string> inputs;
    const json::object* o = json.if_object();
    const json::value* input = o != nullptr ? o->if_contains("input") : nullptr;
    if (input == nullptr || !input->is_array()) return inputs;
    for (const json::value& v : input->get_array()) {
      inputs.push_back(v.is_string() ? std::string(v.get_string()) : "<not a string>");
    }
    return inputs;
  }
};

struct HttpReply {
  int status = 200;
  std::string body;
  std::string content_type = "application/json";
  std::chrono::milliseconds delay{0};  // wait this long before answering
  std::string raw;  // when set: sent verbatim instead, then the connection is closed
};

using Handler = std::function<HttpReply(const HttpRequest&)>;

HttpReply Reply(int status, std::string body, std::chrono::milliseconds delay = 0ms) {
  HttpReply reply;
  reply.status = status;
  reply.body = std::move(body);
  reply.delay = delay;
  return reply;
}

HttpReply RawReply(std::string raw) {
  HttpReply reply;
  reply.raw = std::move(raw);
  return reply;
}

// Deterministic, not unit-length, different for every text: a test can tell which went where.
Vector FakeVector(std::string_view text, std::size_t dim) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (char c : text) h = (h ^ static_cast<unsigned char>(c)) * 0x100000001b3ULL;
  Vector v(dim);
  for (float& x : v) {
    h = h * 6364136223846793005ULL + 1442695040888963407ULL;
    x = static_cast<float>((h >> 40) & 0xffffff) / 4194304.0f - 2.0f;  // in [-2, 2)
  }
  return v;
}

Vector ExpectedVector(std::string_view text) {
  Vector v = FakeVector(text, kDim);
  NormalizeL2(v);
  return v;
}

// An OpenAI-style answer for `inputs`, in order.
json::object EmbeddingsJson(const std::vector<std::string>& inputs, std::size_t dim) {
  json::array data;
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    json::array numbers;
    for (float x : FakeVector(inputs[i], dim)) numbers.emplace_back(static_cast<double>(x));
    data.push_back(json::object{{"object", "embedding"}, {"index", i}, {"embedding", numbers}});
  }
  return json::object{{"object", "list"}, {"data", data}, {"model", "fake"}};
}

HttpReply JsonReply(const json::value& v, int status = 200) {
  return Reply(status, json::serialize(v));
}

// Answers embeddings of `dim` numbers, after `mutate` (when given) has edited the answer.
Handler Serving(std::size_t dim, std::function<void(json::object&)> mutate = {}) {
  return [dim, mutate](const HttpRequest& request) {
    json::object answer = EmbeddingsJson(request.Inputs(), dim);
    if (mutate) mutate(answer);
    return JsonReply(answer);
  };
}

Handler Answering(int status, std::string body) {
  return [status, body](const HttpRequest&) { return Reply(status, body); };
}

std::string_view Reason(int status) {
  static const std::map<int, std::string_view> kReasons = {{200, "OK"},
                                                           {301, "Moved Permanently"},
                                                           {400, "Bad Request"},
                                                           {401, "Unauthorized"},
                                                           {403, "Forbidden"},
                                                           {404, "Not Found"},
                                                           {429, "Too Many Requests"},
                                                           {500, "Internal Server Error"},
                                                           {503, "Service Unavailable"}};
  auto it = kReasons.find(status);
  return it != kReasons.end() ? it->second : "Status";
}

void SendAll(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const ssize_t n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return;  // the client went away (it timed out); nothing to do
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

class FakeEmbeddingServer {
 public:
  FakeEmbeddingServer() : handler_(Serving(kDim)) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    socklen_t len = sizeof(addr);
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listen_fd_, 64) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "fake server cannot listen on 127.0.0.1: " << std::strerror(errno);
      return;
    }
    port_ = ntohs(addr.sin_port);
    acceptor_ = std::thread([this] { AcceptLoop(); });
  }

  ~FakeEmbeddingServer() {
    {
      std::lock_guard lock(mu_);
      stopping_ = true;
      for (int fd : connections_) ::shutdown(fd, SHUT_RDWR);
    }
    wake_.notify_all();
    if (listen_fd_ >= 0) ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    if (acceptor_.joinable()) acceptor_.join();
    // The acceptor is gone, so no worker can be added any more.
    for (std::thread& worker : workers_) worker.join();
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }

  FakeEmbeddingServer(const FakeEmbeddingServer&) = delete;
  FakeEmbeddingServer& operator=(const FakeEmbeddingServer&) = delete;

  int port() const { return port_; }
  std::string base_url() const { return "http://127.0.0.1:" + std::to_string(port_) + "/v1"; }

  void SetHandler(Handler handler) {
    std::lock_guard lock(mu_);
    handler_ = std::move(handler);
  }

  std::vector<HttpRequest> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::size_t request_count() const {
    std::lock_guard lock(mu_);
    return requests_.size();
  }

 private:
  void AcceptLoop() {
    while (true) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      std::lock_guard lock(mu_);
      if (stopping_) {
        if (fd >= 0) ::close(fd);
        return;
      }
      if (fd < 0) continue;
      connections_.push_back(fd);
      workers_.emplace_back([this, fd] { Serve(fd); });
    }
  }

  void Serve(int fd) {
    std::string buffer;
    HttpRequest request;
    while (ReadRequest(fd, &buffer, &request)) {
      Handler handler;
      {
        std::lock_guard lock(mu_);
        requests_.push_back(request);
        handler = handler_;
      }
      const HttpReply reply = handler(request);
      if (reply.delay > 0ms) {
        std::unique_lock lock(mu_);
        if (wake_.wait_for(lock, reply.delay, [this] { return stopping_; })) break;
      }
      if (!reply.raw.empty()) {
        SendAll(fd, reply.raw);
        break;
      }
      SendAll(fd, "HTTP/1.1 " + std::to_string(reply.status) + " " +
                      std::string(Reason(reply.status)) +
                      "\r\nContent-Type: " + reply.content_type + "\r\nContent-Length: " +
                      std::to_string(reply.body.size()) + "\r\n\r\n" + reply.body);
    }
    std::lock_guard lock(mu_);
    std::erase(connections_, fd);
    ::close(fd);
  }

  // Reads one request (request line, headers, Content-Length body) from `fd`; bytes past it stay
  // in *buffer for the next request on the same connection. False when the connection ends.
  static bool ReadRequest(int fd, std::string* buffer, HttpRequest* request) {
    const auto fill = [&] {
      char chunk[4096];
      const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
      if (n <= 0) return false;
      buffer->append(chunk, static_cast<std::size_t>(n));
      return true;
    };
    std::size_t head_end;
    while ((head_end = buffer->find("\r\n\r\n")) == std::string::npos) {
      if (!fill()) return false;
    }
    *request = HttpRequest{};
    std::istringstream head(buffer->substr(0, head_end));
    std::string line;
    std::getline(head, line);
    std::istringstream(line) >> request->method >> request->path;
    std::size_t content_length = 0;
    while (std::getline(head, line)) {
      if (!line.empty() && line.back() == '\r') line.pop_back();
      const std::size_t colon = line.find(':');
      if (colon == std::string::npos) continue;
      std::string name = line.substr(0, colon);
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      std::string value = line.substr(colon + 1);
      value.erase(0, value.find_first_not_of(' '));
      if (name == "content-length") content_length = std::stoul(value);
      request->headers[name] = value;
    }
    const std::size_t body_start = head_end + 4;
    while (buffer->size() < body_start + content_length) {
      if (!fill()) return false;
    }
    request->body = buffer->substr(body_start, content_length);
    buffer->erase(0, body_start + content_length);
    boost::system::error_code ec;
    request->json = json::parse(request->body, ec);
    if (ec) request->json = nullptr;
    return true;
  }

  int listen_fd_ = -1;
  int port_ = 0;
  std::thread acceptor_;

  mutable std::mutex mu_;
  std::condition_variable wake_;       // stopping_ changed
  bool stopping_ = false;              // guarded by mu_
  Handler handler_;                    // guarded by mu_
  std::vector<HttpRequest> requests_;  // guarded by mu_
  std::vector<int> connections_;       // guarded by mu_
  std::vector<std::thread> workers_;   // guarded by mu_; joined after the acceptor
};

// A loopback port bound but never listening: connecting to it is refused at once.
class RefusingPort {
 public:
  RefusingPort() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (fd_ < 0 || ::bind(fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot bind a loopback port: " << std::strerror(errno);
    }
    port_ = ntohs(addr.sin_port);
  }
  ~RefusingPort() {
    if (fd_ >= 0) ::close(fd_);
  }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// Sends every line of the "encode" logger, at every level, into a string while alive.
class LogCapture {
 public:
  LogCapture() : logger_(log::Get("encode")) {
    saved_sinks_ = logger_->sinks();
    saved_level_ = logger_->level();
    logger_->sinks().push_back(std::make_shared<spdlog::sinks::ostream_sink_mt>(stream_));
    logger_->set_level(spdlog::level::trace);
  }
  ~LogCapture() {
    logger_->sinks() = saved_sinks_;
    logger_->set_level(saved_level_);
  }
  std::string text() {
    logger_->flush();
    return stream_.str();
  }

 private:
  std::shared_ptr<spdlog::logger> logger_;
  std::vector<spdlog::sink_ptr> saved_sinks_;
  spdlog::level::level_enum saved_level_;
  std::ostringstream stream_;
};

class RemoteEncoderFixture : public ::testing::Test {
 protected:
  RemoteEncoderOptions Options() const {
    RemoteEncoderOptions options;
    options.base_url = server_.base_url();
    options.model = "nomic-embed-text";
    options.connect_timeout = 1000ms;
    options.timeout = 2000ms;
    return options;
  }

  std::unique_ptr<RemoteEncoder> MustCreate(const RemoteEncoderOptions& options) {
    Result<std::unique_ptr<RemoteEncoder>> encoder = RemoteEncoder::Create(options);
    EXPECT_TRUE(encoder.ok()) << encoder.status().ToString();
    return encoder.ok() ? std::move(encoder).value() : nullptr;
  }

  // The requests after the probe that Create() sent.
  std::vector<HttpRequest> RequestsAfterProbe() const {
    std::vector<HttpRequest> all = server_.requests();
    if (!all.empty()) all.erase(all.begin());
    return all;
  }

  FakeEmbeddingServer server_;
};

using RemoteEncoderCreate = RemoteEncoderFixture;
using RemoteEncoderRequest = RemoteEncoderFixture;
using RemoteEncoderBatch = RemoteEncoderFixture;
using RemoteEncoderErrors = RemoteEncoderFixture;

// ---------------------------------------------------------------------------------------------
// Create

TEST_F(RemoteEncoderCreate, ProbeLearnsTheDimension) {
  auto encoder = MustCreate(Options());
  ASSERT_NE(encoder, nullptr);
  EXPECT_EQ(encoder->Dimension(), kDim);
  EXPECT_EQ(encoder->Id(), "remote-nomic-embed-text-d16");
  EXPECT_EQ(encoder->endpoint(), server_.base_url() + "/embeddings");

  const std::vector<HttpRequest> requests = server_.requests();
  ASSERT_EQ(requests.size(), 1u);
  ASSERT_EQ(requests[0].Inputs().size(), 1u);
  EXPECT_FALSE(requests[0].Inputs()[0].empty());
}

TEST_F(RemoteEncoderCreate, ConfiguredDimensionIsChecked) {
  RemoteEncoderOptions options = Options();
  options.dimension = kDim;
  auto encoder = MustCreate(options);
  ASSERT_NE(encoder, nullptr);
  EXPECT_EQ(encoder->Dimension(), kDim);

  options.dimension = 32;
  Result<std::unique_ptr<RemoteEncoder>> wrong = RemoteEncoder::Create(options);
  ASSERT_FALSE(wrong.ok());
  EXPECT_EQ(wrong.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(wrong.status().message(), HasSubstr("returns 16-dimensional vectors"));
  EXPECT_THAT(wrong.status().message(), HasSubstr("option dimension is 32"));
  EXPECT_THAT(wrong.status().message(), HasSubstr(server_.base_url() + "/embeddings"));
}

TEST_F(RemoteEncoderCreate, IdReplacesUnsafeCharactersOfTheModel) {
  RemoteEncoderOptions options = Options();
  options.model = "library/bge-m3:latest v1.5";
  auto encoder = MustCreate(options);
  ASSERT_NE(encoder, nullptr);
  EXPECT_EQ(encoder->Id(), "remote-library_bge-m3_latest_v1.5-d16");
  // The model is sent as given, not as sanitized for the id.
  EXPECT_EQ(server_.requests().at(0).json.at("model").as_string(), "library/bge-m3:latest v1.5");
}

TEST_F(RemoteEncoderCreate, InvalidOptionsAreNamedAndSendNothing) {
  const struct {
    const char* name;
    std::function<void(RemoteEncoderOptions&)> edit;
    const char* option;
  } cases[] = {
      {"empty base_url", [](auto& o) { o.base_url = ""; }, "base_url"},
      {"ftp scheme", [](auto& o) { o.base_url = "ftp://127.0.0.1/v1"; }, "base_url"},
      {"no scheme", [](auto& o) { o.base_url = "127.0.0.1:11434/v1"; }, "base_url"},
      {"no host", [](auto& o) { o.base_url = "http://"; }, "base_url"},
      {"empty model", [](auto& o) { o.model = ""; }, "model"},
      {"newline in key", [](auto& o) { o.api_key = "sk-abc\r\nX-Injected: 1"; }, "api_key"},
      {"zero connect timeout", [](auto& o) { o.connect_timeout = 0ms; }, "connect_timeout"},
      {"negative timeout", [](auto& o) { o.timeout = -5ms; }, "option timeout"},
      {"zero max_batch", [](auto& o) { o.max_batch = 0; }, "max_batch"},
      {"zero response cap", [](auto& o) { o.max_response_bytes = 0; }, "max_response_bytes"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    RemoteEncoderOptions options = Options();
    c.edit(options);
    EXPECT_EQ(RemoteEncoder::Validate(options).code(), StatusCode::kInvalidArgument);
    Result<std::unique_ptr<RemoteEncoder>> encoder = RemoteEncoder::Create(options);
    ASSERT_FALSE(encoder.ok());
    EXPECT_EQ(encoder.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(encoder.status().message(), HasSubstr(c.option));
    EXPECT_THAT(encoder.status().message(), Not(HasSubstr("X-Injected")));
  }
  EXPECT_EQ(server_.request_count(), 0u);
  EXPECT_TRUE(RemoteEncoder::Validate(Options()).ok());
}

TEST_F(RemoteEncoderCreate, ProbeErrorsAreTheStatusOfCreate) {
  server_.SetHandler(Answering(401, R"({"error":{"message":"bad key"}})"));
  Result<std::unique_ptr<RemoteEncoder>> denied = RemoteEncoder::Create(Options());
  ASSERT_FALSE(denied.ok());
  EXPECT_EQ(denied.status().code(), StatusCode::kPermissionDenied);

  server_.SetHandler(Answering(200, "<html>not an API</html>"));
  Result<std::unique_ptr<RemoteEncoder>> garbled = RemoteEncoder::Create(Options());
  ASSERT_FALSE(garbled.ok());
  EXPECT_EQ(garbled.status().code(), StatusCode::kDataLoss);
  EXPECT_THAT(garbled.status().message(), HasSubstr("not JSON"));
  EXPECT_THAT(garbled.status().message(), HasSubstr("<html>not an API"));

  RefusingPort closed;
  RemoteEncoderOptions options = Options();
  options.base_url = "http://127.0.0.1:" + std::to_string(closed.port()) + "/v1";
  Result<std::unique_ptr<RemoteEncoder>> refused = RemoteEncoder::Create(options);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(), HasSubstr("connection refused"));
}

// ---------------------------------------------------------------------------------------------
// What goes over the wire

TEST_F(RemoteEncoderRequest, BodyHasTheModelAndTheInputsInOrder) {
  auto encoder = MustCreate(Options());
  ASSERT_NE(encoder, nullptr);
  const std::vector<std::string> texts = {"first text", "second, with \"quotes\"\n", "thứ ba"};
  std::vector<Vector> out;
  ASSERT_TRUE(encoder->EncodeBatch(texts, &out).ok());

  const std::vector<HttpRequest> requests = RequestsAfterProbe();
  ASSERT_EQ(requests.size(), 1u);
  const HttpRequest& r = requests[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.path, "/v1/embeddings");
  EXPECT_EQ(r.Header("content-type"), "application/json");
  ASSERT_TRUE(r.json.is_object()) << r.body;
  EXPECT_EQ(r.json.as_object().size(), 2u) << r.body;
  EXPECT_EQ(r.json.at("model").as_string(), "nomic-embed-text");
  EXPECT_EQ(r.Inputs(), texts);
}

TEST_F(RemoteEncoderRequest, PathIsJoinedWithOneSlash) {
  const std::string root = "http://127.0.0.1:" + std::to_string(server_.port());
  const struct {
    std::string base_url;
    std::string path;
  } cases[] = {
      {root + "/v1", "/v1/embeddings"},
      {root + "/v1/", "/v1/embeddings"},
      {root + "/v1//", "/v1/embeddings"},
      {root, "/embeddings"},
      {root + "/", "/embeddings"},
      {root + "/api/v1?tenant=a", "/api/v1/embeddings?tenant=a"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.base_url);
    RemoteEncoderOptions options = Options();
    options.base_url = c.base_url;
    const std::size_t before = server_.request_count();
    auto encoder = MustCreate(options);
    ASSERT_NE(encoder, nullptr);
    const std::vector<HttpRequest> requests = server_.requests();
    ASSERT_EQ(requests.size(), before + 1);
    EXPECT_EQ(requests.back().path, c.path);
  }
}

TEST_F(RemoteEncoderRequest, AuthorizationHeaderOnlyWithAKey) {
  auto anonymous = MustCreate(Options());
  ASSERT_NE(anonymous, nullptr);
  ASSERT_TRUE(anonymous->Encode("hello").ok());
  for (const HttpRequest& r : server_.requests()) {
    EXPECT_EQ(r.Header("authorization"), std::nullopt);
  }

  RemoteEncoderOptions options = Options();
  options.api_key = std::string(kApiKey);
  const std::size_t before = server_.request_count();
  auto keyed = MustCreate(options);
  ASSERT_NE(keyed, nullptr);
  ASSERT_TRUE(keyed->Encode("hello").ok());
  const std::vector<HttpRequest> requests = server_.requests();
  ASSERT_EQ(requests.size(), before + 2);
  for (std::size_t i = before; i < requests.size(); ++i) {
    EXPECT_EQ(requests[i].Header("authorization"), "Bearer " + std::string(kApiKey));
  }
}

TEST_F(RemoteEncoderRequest, LoopbackServerIsReachedDespiteAProxySetting) {
  RefusingPort proxy;
  const std::string proxy_url = "http://127.0.0.1:" + std::to_string(proxy.port());
  const char* saved = std::getenv("http_proxy");
  const std::optional<std::string> previous =
      saved != nullptr ? std::optional<std::string>(saved) : std::nullopt;
  ::setenv("http_proxy", proxy_url.c_str(), 1);
  Result<std::unique_ptr<RemoteEncoder>> encoder = RemoteEncoder::Create(Options());
  if (previous) {
    ::setenv("http_proxy", previous->c_str(), 1);
  } else {
    ::unsetenv("http_proxy");
  }
  EXPECT_TRUE(encoder.ok()) << encoder.status().ToString();
  EXPECT_EQ(server_.request_count(), 1u);
}

// ---------------------------------------------------------------------------------------------
// Results

TEST_F(RemoteEncoderBatch, VectorsAreUnitLengthAndBelongToTheirText) {
  auto encoder = MustCreate(Options());
  ASSERT_NE(encoder, nullptr);
  const std::vector<std::string> texts = {"alpha", "beta", "gamma", "delta"};
  std::vector<Vector> out;
  ASSERT_TRUE(encoder->EncodeBatch(texts, &out).ok());
  ASSERT_EQ(out.size(), texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    SCOPED_TRACE(texts[i]);
    EXPECT_NEAR(std::sqrt(Dot(out[i], out[i])), 1.0, 1e-5);
    EXPECT_THAT(out[i], Pointwise(FloatNear(1e-6f), ExpectedVector(texts[i])));
  }
}

TEST_F(RemoteEncoderBatch, SplitsIntoChunksOfMaxBatchAndKeepsOrder) {
  RemoteEncoderOptions options = Options();
  options.max_batch = 3;
  auto encoder = MustCreate(options);
  ASSERT_NE(encoder, nullptr);
  // Nine texts, one blank: eight are sent, as 3 + 3 + 2.
  const std::vector<std::string> texts = {"t0", "t1", "t2", "t3", " ", "t5", "t6", "t7", "t8"};
  std::vector<Vector> out;
  ASSERT_TRUE(encoder->EncodeBatch(texts, &out).ok());

  const std::vector<HttpRequest> requests = RequestsAfterProbe();
  ASSERT_EQ(requests.size(), 3u);
  EXPECT_THAT(requests[0].Inputs(), ElementsAre("t0", "t1", "t2"));
  EXPECT_THAT(requests[1].Inputs(), ElementsAre("t3", "t5", "t6"));
  EXPECT_THAT(requests[2].Inputs(), ElementsAre("t7", "t8"));

  ASSERT_EQ(out.size(), texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    SCOPED_TRACE(texts[i]);
    if (i == 4) {
      EXPECT_THAT(out[i], Each(0.0f));
      EXPECT_EQ(out[i].size(), kDim);
    } else {
      EXPECT_THAT(out[i], Pointwise(FloatNear(1e-6f), ExpectedVector(texts[i])));
    }
  }
}

TEST_F(RemoteEncoderBatch, ReorderedAnswerIsPlacedByIndex) {
  auto encoder = MustCreate(Options());
  ASSERT_NE(encoder, nullptr);
  server_.SetHandler(Serving(kDim, [](json::object& answer) {
    json::array& data = answer["data"].as_array();
    std::reverse(data.begin(), data.end());
  }));
  const std::vector<std::string> texts = {"one", "two", "three"};
  std::vector<Vector> out;
  ASSERT_TRUE(encoder->EncodeBatch(texts, &out).ok());
  ASSERT_EQ(out.size(), 3u);
  for (std::size_t i = 0; i < texts.size(); ++i) {
    EXPECT_THAT(out[i], Pointwise(FloatNear(1e-6f), ExpectedVector(texts[i]))) << texts[i];
  }
}

TEST_F(RemoteEncoderBatch, BlankTextsGiveTheZeroVectorWithoutARequest) {
  auto encoder = MustCreate(Options());
  ASSERT_NE(encoder, nullptr);
  const std::size_t before = server_.request_count();

  Result<Vector> empty = encoder->Encode("");
  ASSERT_TRUE(empty.ok()) << empty.status().ToString();
  EXPECT_EQ(empty->size(), kDim);
  EXPECT_THAT(*empty, Each(0.0f));

  const std::vector<std::string> blanks = {" \t\r\n", "", "\f\v"};
  std::vector<Vector> out;
  ASSERT_TRUE(encoder->EncodeBatch(blanks, &out).ok());
  ASSERT_EQ(out.size(), 3u);
  for (const Vector& v : out) {
    EXPECT_EQ(v.size(), kDim);
    EXPECT_THAT(v, Each(0.0f));
  }

  ASSERT_TRUE(encoder->EncodeBatch({}, &out).ok());
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(server_.request_count(), before);
}

TEST_F(RemoteEncoderBatch, ConcurrentCallsGetTheirOwnVectors) {
  auto encoder = MustCreate(Options());
  ASSERT_NE(encoder, nullptr);
  constexpr int kThreads = 4;
  constexpr int kCalls = 15;
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int call = 0; call < kCalls; ++call) {
        const std::vector<std::string> texts = {
            "thread " + std::to_string(t) + " call " + std::to_string(call) + " a",
            "thread " + std::to_string(t) + " call " + std::to_string(call) + " b"};
        std::vector<Vector> out;
        if (!encoder->EncodeBatch(texts, &out).ok() || out.size() != 2) {
          ++wrong;
          continue;
        }
        for (std::size_t i = 0; i < 2; ++i) {
          const Vector expected = ExpectedVector(texts[i]);
          for (std::size_t j = 0; j < kDim; ++j) {
            if (std::abs(out[i][j] - expected[j]) > 1e-6f) {
              ++wrong;
              break;
            }
          }
        }
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  EXPECT_EQ(wrong.load(), 0);
  EXPECT_EQ(server_.request_count(), 1u + kThreads * kCalls);
}

// ---------------------------------------------------------------------------------------------
// Errors

TEST_F(RemoteEncoderErrors, HttpStatusesMapToCodes) {
  auto encoder = MustCreate(Options());
  ASSERT_NE(encoder, nullptr);
  const struct {
    int status;
    std::string body;
    StatusCode code;
    std::string says;
  } cases[] = {
      {401, R"({"error":{"message":"Invalid API key","type":"invalid_request_error"}})",
       StatusCode::kPermissionDenied, "HTTP 401: Invalid API key"},
      {403, "forbidden for this project", StatusCode::kPermissionDenied,
       "HTTP 403: forbidden for this project"},
      {404, R"({"error":"model \"nomic\" not found, try pulling it first"})",
       StatusCode::kInvalidArgument, "HTTP 404: model \"nomic\" not found, try pulling it first"},
      {400, R"({"object":"error","message":"input is too long","code":400})",
       StatusCode::kInvalidArgument, "HTTP 400: input is too long"},
      {422, R"({"detail":"field required"})", StatusCode::kInvalidArgument,
       "HTTP 422: field required"},
      {301, "", StatusCode::kInvalidArgument, "redirects are not followed"},
      {408, "", StatusCode::kUnavailable, "HTTP 408"},
      {429, R"({"error":{"message":"Rate limit reached"}})", StatusCode::kUnavailable,
       "HTTP 429: Rate limit reached"},
      {500, "internal\nerror", StatusCode::kUnavailable, "HTTP 500: internal error"},
      {503, "", StatusCode::kUnavailable, "HTTP 503"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.status);
    server_.SetHandler(Answering(c.status, c.body));
    std::vector<Vector> out = {Vector(3)};
    const Status s = encoder->EncodeBatch(std::vector<std::string>{"text"}, &out);
    EXPECT_EQ(s.code(), c.code) << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr(c.says));
    EXPECT_THAT(s.message(), HasSubstr("POST " + encoder->endpoint()));
    EXPECT_TRUE(out.empty());
  }
}

TEST_F(RemoteEncoderErrors, LongServerMessageIsCutOnACharacterBoundary) {
  auto encoder = MustCreate(Options());
  ASSERT_NE(encoder, nullptr);
  std::string body = "a";
  for (int i = 0; i < 500; ++i) body += "é";  // two bytes each: byte 200 falls inside one
  server_.SetHandler(Answering(400, body));
  const Status s = encoder->Encode("text").status();
  ASSERT_EQ(s.code(), StatusCode::kInvalidArgument);
  const std::size_t quoted = s.message().find("HTTP 400: ");
  ASSERT_NE(quoted, std::string::npos);
  const std::string message = s.message().substr(quoted + 10);
  ASSERT_TRUE(message.ends_with("...")) << message;
  const std::string kept = message.substr(0, message.size() - 3);
  EXPECT_LE(kept.size(), 200u);
  EXPECT_GE(kept.size(), 190u);
  EXPECT_EQ(kept, body.substr(0, kept.size()));
  EXPECT_EQ(kept.size() % 2, 1u) << "a UTF-8 sequence was split";
}

TEST_F(RemoteEncoderErrors, MalformedAnswersAreDataLoss) {
  auto encoder = MustCreate(Options());
  ASSERT_NE(encoder, nullptr);
  const auto edit = [](std::function<void(json::object&)> f) { return Serving(kDim, f); };
  // The answer with its first number replaced by `literal`, for numbers JSON writers never emit.
  const auto first_number = [](std::string literal) {
    return [literal](const HttpRequest& request) {
      json::object answer = EmbeddingsJson(request.Inputs(), kDim);
      answer["data"].as_array()[0].as_object()["embedding"].as_array()[0] = "FIRST";
      std::string body = json::serialize(answer);
      body.replace(body.find("\"FIRST\""), 7, literal);
      return Reply(200, body);
    };
  };
  const struct {
    const char* name;
    Handler handler;
    std::string says;
  } cases[] = {
      {"not JSON", Answering(200, "{\"data\": [tru"), "response is not JSON"},
      {"no data", Answering(200, R"({"object":"list"})"), "no \"data\" array"},
      {"data not an array", Answering(200, R"({"data":{}})"), "no \"data\" array"},
      {"top level array", Answering(200, "[]"), "no \"data\" array"},
      {"one short", edit([](auto& a) { a["data"].as_array().pop_back(); }),
       "holds 2 vectors for 3 texts"},
      {"one extra", edit([](auto& a) {
         json::array& d = a["data"].as_array();
         d.push_back(d[0]);
       }),
       "holds 4 vectors for 3 texts"},
      {"repeated index", edit([](auto& a) { a["data"].as_array()[2].as_object()["index"] = 0; }),
       "data[2] repeats index 0"},
      {"index too large", edit([](auto& a) { a["data"].as_array()[1].as_object()["index"] = 7; }),
       "data[1].index is 7, outside [0, 3)"},
      {"negative index", edit([](auto& a) { a["data"].as_array()[0].as_object()["index"] = -1; }),
       "data[0].index is not a non-negative integer"},
      {"item not an object", edit([](auto& a) { a["data"].as_array()[0] = 5; }),
       "data[0] is not an object"},
      {"no embedding",
       edit([](auto& a) { a["data"].as_array()[1].as_object().erase("embedding"); }),
       "data[1].embedding is missing or not an array"},
      {"base64 embedding",
       edit([](auto& a) { a["data"].as_array()[1].as_object()["embedding"] = "AAAA"; }),
       "data[1].embedding is missing or not an array"},
      {"empty embedding",
       edit([](auto& a) { a["data"].as_array()[0].as_object()["embedding"] = json::array(); }),
       "data[0].embedding is empty"},
      {"wrong dimension", edit([](auto& a) {
         a["data"].as_array()[2].as_object()["embedding"].as_array().pop_back();
       }),
       "data[2].embedding has 15 numbers, expected 16"},
      {"string number", edit([](auto& a) {
         a["data"].as_array()[0].as_object()["embedding"].as_array()[3] = "0.5";
       }),
       "data[0].embedding[3] is not a finite float"},
      {"infinite number", first_number("1e999"), "data[0].embedding[0] is not a finite float"},
      {"too large for a float", first_number("1e39"), "data[0].embedding[0] is not a finite float"},
  };
  const std::vector<std::string> texts = {"x", "y", "z"};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    server_.SetHandler(c.handler);
    std::vector<Vector> out;
    const Status s = encoder->EncodeBatch(texts, &out);
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    EXPECT_THAT(s.message(), HasSubstr(c.says));
    EXPECT_THAT(s.message(), HasSubstr(encoder->endpoint()));
    EXPECT_TRUE(out.empty());
  }
}

TEST_F(RemoteEncoderErrors, WrongDimensionAfterCreateIsDataLoss) {
  auto encoder = MustCreate(Options());
  ASSERT_NE(encoder, nullptr);
  server_.SetHandler(Serving(kDim * 2));
  const Status s = encoder->Encode("text").status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss);
  EXPECT_THAT(s.message(), HasSubstr("has 32 numbers, expected 16"));
}

TEST_F(RemoteEncoderErrors, FailedChunkNamesItsTexts) {
  RemoteEncoderOptions options = Options();
  options.max_batch = 2;
  auto encoder = MustCreate(options);
  ASSERT_NE(encoder, nullptr);
  server_.SetHandler([](const HttpRequest& request) {
    if (request.Inputs().at(0) == "c") return Reply(500, "boom");
    return JsonReply(EmbeddingsJson(request.Inputs(), kDim));
  });
  std::vector<Vector> out;
  // The blank text is not sent, so the second request carries "c" (text 3) and "d" (text 4).
  const Status s =
      encoder->EncodeBatch(std::vector<std::string>{"a", "", "b", "c", "d", "e"}, &out);
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("HTTP 500: boom (the request carrying texts 3-4 of 6)"));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(RequestsAfterProbe().size(), 2u) << "no request after the failed one";
}

TEST_F(RemoteEncoderErrors, TimeoutFiresWithinItsBound) {
  RemoteEncoderOptions options = Options();
  options.timeout = 300ms;
  auto encoder = MustCreate(options);
  ASSERT_NE(encoder, nullptr);
  server_.SetHandler([](const HttpRequest& request) {
    return Reply(200, json::serialize(EmbeddingsJson(request.Inputs(), kDim)), 3000ms);
  });
  const auto started = std::chrono::steady_clock::now();
  const Status s = encoder->Encode("slow").status();
  const auto elapsed = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("timed out after 300 ms"));
  EXPECT_THAT(s.message(), HasSubstr(encoder->endpoint()));
  EXPECT_GE(elapsed, 250ms);
  EXPECT_LT(elapsed, 1500ms);
}

TEST_F(RemoteEncoderErrors, ConnectionRefusedIsUnavailable) {
  auto encoder = MustCreate(Options());
  ASSERT_NE(encoder, nullptr);
  RefusingPort closed;
  RemoteEncoderOptions options = Options();
  options.base_url = "http://127.0.0.1:" + std::to_string(closed.port()) + "/v1";
  const auto started = std::chrono::steady_clock::now();
  Result<std::unique_ptr<RemoteEncoder>> refused = RemoteEncoder::Create(options);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 1000ms);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(refused.status().message(), HasSubstr("connection refused"));
  EXPECT_THAT(refused.status().message(),
              HasSubstr("127.0.0.1:" + std::to_string(closed.port()) + "/v1/embeddings"));
}

TEST_F(RemoteEncoderErrors, ConnectionClosedMidAnswerIsUnavailable) {
  auto encoder = MustCreate(Options());
  ASSERT_NE(encoder, nullptr);
  server_.SetHandler([](const HttpRequest&) {
    return RawReply("HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"data\": [");
  });
  const Status s = encoder->Encode("text").status();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("transfer failed"));
}

TEST_F(RemoteEncoderErrors, OversizedAnswerIsRefused) {
  RemoteEncoderOptions options = Options();
  options.max_response_bytes = 4096;
  auto encoder = MustCreate(options);
  ASSERT_NE(encoder, nullptr);
  const std::string padding(10000, ' ');

  // Announced by Content-Length: refused before the body is read.
  server_.SetHandler([&](const HttpRequest& request) {
    return Reply(200, json::serialize(EmbeddingsJson(request.Inputs(), kDim)) + padding);
  });
  Status s = encoder->Encode("text").status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("larger than the 4096 bytes accepted"));

  // Chunked, length unknown: refused once the collected body passes the cap.
  server_.SetHandler([&](const HttpRequest& request) {
    std::string body = json::serialize(EmbeddingsJson(request.Inputs(), kDim)) + padding;
    std::string raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    for (std::size_t at = 0; at < body.size(); at += 1000) {
      const std::string piece = body.substr(at, 1000);
      std::ostringstream size;
      size << std::hex << piece.size();
      raw += size.str() + "\r\n" + piece + "\r\n";
    }
    raw += "0\r\n\r\n";
    return RawReply(raw);
  });
  s = encoder->Encode("text").status();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_THAT(s.message(), HasSubstr("larger than the 4096 bytes accepted"));

  // Under the cap the same padding is fine.
  server_.SetHandler([&](const HttpRequest& request) {
    return Reply(200, json::serialize(EmbeddingsJson(request.Inputs(), kDim)) + "  ");
  });
  EXPECT_TRUE(encoder->Encode("text").ok());
}

TEST_F(RemoteEncoderErrors, NullOutputIsInvalidArgument) {
  auto encoder = MustCreate(Options());
  ASSERT_NE(encoder, nullptr);
  EXPECT_EQ(encoder->EncodeBatch(std::vector<std::string>{"x"}, nullptr).code(),
            StatusCode::kInvalidArgument);
}

TEST_F(RemoteEncoderErrors, ApiKeyNeverAppearsInMessagesOrLogs) {
  LogCapture logs;
  RemoteEncoderOptions options = Options();
  options.api_key = std::string(kApiKey);
  options.timeout = 300ms;
  auto encoder = MustCreate(options);
  ASSERT_NE(encoder, nullptr);

  // Servers that echo the Authorization header back, in every kind of failure.
  const auto echo = [](int status, bool as_json) {
    return [status, as_json](const HttpRequest& request) {
      const std::string auth = request.Header("authorization").value_or("none");
      std::string body =
          as_json
              ? json::serialize(json::object{{"error", {{"message", "rejected header " + auth}}}})
              : "rejected header " + auth + " " + std::string(300, '.');
      return Reply(status, body);
    };
  };
  const Handler handlers[] = {
      echo(401, true),
      echo(403, false),
      echo(400, true),
      echo(400, false),
      echo(429, true),
      echo(500, false),
      echo(200, false),  // not JSON: the message quotes the start of the body
      [](const HttpRequest&) { return Reply(200, "", 2000ms); },
  };
  for (std::size_t i = 0; i < std::size(handlers); ++i) {
    SCOPED_TRACE(i);
    server_.SetHandler(handlers[i]);
    const Status s = encoder->Encode("text").status();
    ASSERT_FALSE(s.ok());
    EXPECT_THAT(s.message(), HasSubstr(encoder->endpoint()));
    EXPECT_THAT(s.message(), Not(HasSubstr(kApiKey)));
  }
  // The key really was sent (and echoed), so the checks above could have failed.
  const std::vector<HttpRequest> requests = server_.requests();
  ASSERT_FALSE(requests.empty());
  EXPECT_EQ(requests.back().Header("authorization"), "Bearer " + std::string(kApiKey));

  // A password inside the base URL is not shown either.
  RemoteEncoderOptions in_url = Options();
  in_url.base_url =
      "http://user:hunter2-secret@127.0.0.1:" + std::to_string(server_.port()) + "/v1";
  server_.SetHandler(Answering(500, "down"));
  const Status s = RemoteEncoder::Create(in_url).status();
  EXPECT_EQ(s.code(), StatusCode::kUnavailable);
  EXPECT_THAT(s.message(), HasSubstr("POST http://127.0.0.1:"));
  EXPECT_THAT(s.message(), Not(HasSubstr("hunter2")));
  EXPECT_EQ(server_.requests().back().Header("authorization"),
            "Basic dXNlcjpodW50ZXIyLXNlY3JldA==");  // user:hunter2-secret, so it was used

  const std::string logged = logs.text();
  EXPECT_THAT(logged, HasSubstr("remote encoder ready"));
  EXPECT_THAT(logged, HasSubstr("remote encoder request"));
  EXPECT_THAT(logged, Not(HasSubstr(kApiKey)));
}

}  // namespace
}  // namespace mann::encode
