#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>
#include <hiredis.h>
#include <sys/time.h>

#include <mann/cache/redis.h>
#include <mann/core/log.h>
#include <mann/core/strings.h>
#include <mann/metrics/registry.h>

namespace mann::cache {
namespace {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;

timeval ToTimeval(milliseconds ms) {
  timeval tv{};
  tv.tv_sec = static_cast<time_t>(ms.count() / 1000);
  tv.tv_usec = static_cast<suseconds_t>((ms.count() % 1000) * 1000);
  return tv;
}

RedisReply CopyReply(const redisReply& r) {
  RedisReply out;
  switch (r.type) {
    case REDIS_REPLY_STRING:
      out.type = RedisReply::Type::kString;
      out.text.assign(r.str, r.len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = RedisReply::Type::kStatus;
      out.text.assign(r.str, r.len);
      break;
    case REDIS_REPLY_ERROR:
      out.type = RedisReply::Type::kError;
      out.text.assign(r.str, r.len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = RedisReply::Type::kInteger;
      out.integer = r.integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = RedisReply::Type::kArray;
      out.elements.reserve(r.elements);
      for (std::size_t i = 0; i < r.elements; ++i) out.elements.push_back(CopyReply(*r.element[i]));
      break;
    default:
      out.type = RedisReply::Type::kNil;
      break;
  }
  return out;
}

// hiredis reports a timeout as an I/O error with errno's text; say what it means.
std::string ContextError(const redisContext& c, milliseconds command_timeout) {
  const std::string text = c.errstr;
  if (c.err == REDIS_ERR_IO && (text.find("temporarily unavailable") != std::string::npos ||
                                text.find("timed out") != std::string::npos)) {
    return fmt::format("no answer within {} ms", command_timeout.count());
  }
  if (c.err == REDIS_ERR_EOF) return "the server closed the connection";
  return text.empty() ? "connection error" : text;
}

}  // namespace

// ---- URL -------------------------------------------------------------------------------------

std::string RedisEndpoint::Describe() const {
  const bool v6 = host.find(':') != std::string::npos;
  return fmt::format("{}{}{}:{}/{}", v6 ? "[" : "", host, v6 ? "]" : "", port, db);
}

Result<RedisEndpoint> ParseRedisUrl(std::string_view url) {
  auto refuse = [](std::string_view why) {
    return InvalidArgumentError(
        fmt::format("redis URL {}: expected redis://[:password@]host:port[/db]", why));
  };
  constexpr std::string_view kScheme = "redis://";
  if (!AsciiLower(url.substr(0, kScheme.size())).starts_with(kScheme)) {
    return refuse("must start with redis://");
  }
  std::string_view rest = url.substr(kScheme.size());
  RedisEndpoint endpoint;

  // [user]:password@ ; the last '@' ends it, since a password may contain '@'.
  if (const std::size_t at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view credentials = rest.substr(0, at);
    const std::size_t colon = credentials.find(':');
    if (colon == std::string_view::npos) return refuse("has a user but no \":password\"");
    endpoint.password = std::string(credentials.substr(colon + 1));
    rest = rest.substr(at + 1);
  }

  // host[:port]
  const std::size_t slash = rest.find('/');
  std::string_view authority = rest.substr(0, slash);
  std::string_view port_text;
  bool has_port = false;
  if (authority.starts_with('[')) {
    const std::size_t close = authority.find(']');
    if (close == std::string_view::npos) return refuse("has an unclosed '[' in its host");
    endpoint.host = std::string(authority.substr(1, close - 1));
    std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (!after.starts_with(':')) return refuse("has text after the bracketed host");
      port_text = after.substr(1);
      has_port = true;
    }
  } else {
    const std::size_t colon = authority.find(':');
    endpoint.host = std::string(authority.substr(0, colon));
    if (colon != std::string_view::npos) {
      port_text = authority.substr(colon + 1);
      has_port = true;
    }
  }
  if (endpoint.host.empty()) return refuse("has no host");
  for (char c : endpoint.host) {
    if (std::isspace(static_cast<unsigned char>(c)) || std::iscntrl(static_cast<unsigned char>(c)))
      return refuse("has a blank or control character in its host");
  }
  if (has_port) {
    int port = 0;
    const auto [end, ec] =
        std::from_chars(port_text.data(), port_text.data() + port_text.size(), port);
    if (port_text.empty() || ec != std::errc() || end != port_text.data() + port_text.size() ||
        port < 1 || port > 65535) {
      return refuse(fmt::format("has port \"{}\", not an integer in 1..65535", port_text));
    }
    endpoint.port = port;
  }

  // [/db]
  if (slash != std::string_view::npos) {
    const std::string_view db_text = rest.substr(slash + 1);
    if (!db_text.empty()) {
      int db = 0;
      const auto [end, ec] = std::from_chars(db_text.data(), db_text.data() + db_text.size(), db);
      if (ec != std::errc() || end != db_text.data() + db_text.size() || db < 0 || db > 65535) {
        return refuse(fmt::format("has database \"{}\", not a number", db_text));
      }
      endpoint.db = db;
    }
  }
  return endpoint;
}

// ---- Client ----------------------------------------------------------------------------------

struct RedisClient::Connection {
  std::mutex mu;
  redisContext* context = nullptr;  // guarded by mu; nullptr: not connected
  std::uint64_t epoch = 0;          // the client's epoch when this connection was opened
  int last_error = 0;               // hiredis's err of the latest failure on this connection

  void Close() {
    if (context != nullptr) redisFree(context);
    context = nullptr;
  }
  ~Connection() { Close(); }
};

Result<std::shared_ptr<RedisClient>> RedisClient::Create(RedisOptions options) {
  MANN_ASSIGN_OR_RETURN(RedisEndpoint endpoint, ParseRedisUrl(options.url));
  if (options.connect_timeout <= milliseconds(0) || options.command_timeout <= milliseconds(0)) {
    return InvalidArgumentError("redis timeouts must be positive");
  }
  if (options.connections == 0) return InvalidArgumentError("redis needs at least 1 connection");
  std::shared_ptr<RedisClient> client(new RedisClient(std::move(options), std::move(endpoint)));

  // One connection now: an unreachable Redis at start-up shows in the log and the gauge at once.
  Connection& first = *client->pool_.front();
  std::lock_guard lock(first.mu);
  if (Status st = client->Connect(first); !st.ok()) client->MarkDown(st.message());
  return client;
}

RedisClient::RedisClient(RedisOptions options, RedisEndpoint endpoint)
    : options_(std::move(options)), endpoint_(std::move(endpoint)) {
  for (std::size_t i = 0; i < options_.connections; ++i) {
    pool_.push_back(std::make_unique<Connection>());
  }
  metrics::Registry& registry =
      options_.registry != nullptr ? *options_.registry : metrics::Registry::Default();
  if (auto gauge =
          registry.AddGauge("mann_redis_up", "1 while Redis answers, 0 while it does not.");
      gauge.ok()) {
    up_gauge_ = &(*gauge)->WithLabels();
    up_gauge_->Set(1);
  }
  if (auto counter = registry.AddCounter(
          "mann_redis_errors_total",
          "Redis commands that got no answer (unreachable, timed out, or refused while down).");
      counter.ok()) {
    errors_counter_ = &(*counter)->WithLabels();
  }
  reconnector_ = std::thread([this] { ReconnectLoop(); });
}

RedisClient::~RedisClient() {
  {
    std::lock_guard lock(state_mu_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (reconnector_.joinable()) reconnector_.join();
}

Status RedisClient::Connect(Connection& connection) {
  connection.Close();
  redisContext* c = redisConnectWithTimeout(endpoint_.host.c_str(), endpoint_.port,
                                            ToTimeval(options_.connect_timeout));
  if (c == nullptr) return UnavailableError("cannot allocate a Redis connection");
  if (c->err != 0) {
    std::string why = c->errstr;
    if (why.find("Operation now in progress") != std::string::npos ||
        why.find("timed out") != std::string::npos) {
      why = fmt::format("no connection within {} ms", options_.connect_timeout.count());
    }
    redisFree(c);
    return UnavailableError(
        fmt::format("cannot connect to redis {}: {}", endpoint_.Describe(), why));
  }
  redisSetTimeout(c, ToTimeval(options_.command_timeout));
  connection.context = c;
  connection.epoch = epoch_.load(std::memory_order_acquire);

  // Log in and pick the database on every new connection: both are per-connection state.
  auto setup = [&](std::vector<std::string> args, std::string_view what) -> Status {
    Result<RedisReply> reply = RunOn(connection, args);
    if (!reply.ok()) return reply.status();
    if (reply->is_error()) {
      connection.Close();
      // The error text of AUTH never contains the password.
      return UnavailableError(
          fmt::format("redis {} refused {}: {}", endpoint_.Describe(), what, reply->text));
    }
    return Status::Ok();
  };
  if (!endpoint_.password.empty()) {
    MANN_RETURN_IF_ERROR(setup({"AUTH", endpoint_.password}, "the password"));
  }
  if (endpoint_.db != 0) {
    MANN_RETURN_IF_ERROR(setup({"SELECT", std::to_string(endpoint_.db)}, "the database"));
  }
  return Status::Ok();
}

Result<RedisReply> RedisClient::RunOn(Connection& connection,
                                      const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lengths;
  argv.reserve(args.size());
  lengths.reserve(args.size());
  for (const std::string& a : args) {
    argv.push_back(a.data());
    lengths.push_back(a.size());
  }
  void* raw = redisCommandArgv(connection.context, static_cast<int>(argv.size()), argv.data(),
                               lengths.data());
  if (raw == nullptr) {
    // The context is unusable after an I/O or protocol error.
    connection.last_error = connection.context->err;
    const std::string why = ContextError(*connection.context, options_.command_timeout);
    connection.Close();
    return UnavailableError(fmt::format("redis {}: {}", endpoint_.Describe(), why));
  }
  auto* reply = static_cast<redisReply*>(raw);
  RedisReply out = CopyReply(*reply);
  freeReplyObject(reply);
  return out;
}

RedisClient::Connection& RedisClient::Acquire(std::unique_lock<std::mutex>& lock) {
  // Round robin over the pool, taking the first free connection; when all are busy, wait for
  // the one the round robin chose.
  const std::size_t start = next_connection_.fetch_add(1, std::memory_order_relaxed);
  for (std::size_t i = 0; i < pool_.size(); ++i) {
    Connection& c = *pool_[(start + i) % pool_.size()];
    std::unique_lock attempt(c.mu, std::try_to_lock);
    if (attempt.owns_lock()) {
      lock = std::move(attempt);
      return c;
    }
  }
  Connection& c = *pool_[start % pool_.size()];
  lock = std::unique_lock(c.mu);
  return c;
}

Result<RedisReply> RedisClient::Command(std::initializer_list<std::string_view> args) {
  std::vector<std::string> copy;
  copy.reserve(args.size());
  for (std::string_view a : args) copy.emplace_back(a);
  return Command(copy);
}

Result<RedisReply> RedisClient::Command(const std::vector<std::string>& args) {
  auto fail = [this](Status st) -> Result<RedisReply> {
    errors_.fetch_add(1, std::memory_order_relaxed);
    if (errors_counter_ != nullptr) errors_counter_->Inc();
    return st;
  };
  if (args.empty()) return InvalidArgumentError("a redis command needs a name");
  if (!up()) {
    return fail(
        UnavailableError(fmt::format("redis {} is unavailable ({}); retrying in the "
                                     "background",
                                     endpoint_.Describe(), last_error())));
  }

  std::unique_lock<std::mutex> lock;
  Connection& connection = Acquire(lock);
  if (connection.context != nullptr && connection.epoch != epoch_.load(std::memory_order_acquire))
    connection.Close();
  const bool reused = connection.context != nullptr;
  if (!reused) {
    if (Status st = Connect(connection); !st.ok()) {
      MarkDown(st.message());
      return fail(st);
    }
  }
  Result<RedisReply> reply = RunOn(connection, args);
  // A pooled connection the server closed while it sat idle (a restart, a client timeout)
  // fails at once with EOF; one fresh connection tells that apart from a Redis that is gone.
  // A timeout is not retried: that would double the wait of every caller.
  if (!reply.ok() && reused && connection.last_error == REDIS_ERR_EOF) {
    if (Status st = Connect(connection); st.ok()) {
      reply = RunOn(connection, args);
    } else {
      reply = st;
    }
  }
  if (!reply.ok()) {
    MarkDown(reply.status().message());
    return fail(reply.status());
  }
  return reply;
}

Status RedisClient::Ping() {
  MANN_ASSIGN_OR_RETURN(RedisReply reply, Command({"PING"}));
  if (reply.type != RedisReply::Type::kStatus || reply.text != "PONG") {
    return UnavailableError(
        fmt::format("redis {} answered PING with \"{}\"", endpoint_.Describe(), reply.text));
  }
  return Status::Ok();
}

std::string RedisClient::last_error() const {
  std::lock_guard lock(state_mu_);
  return last_error_;
}

std::chrono::milliseconds RedisClient::down_for() const {
  std::lock_guard lock(state_mu_);
  if (up()) return milliseconds(0);
  return std::chrono::duration_cast<milliseconds>(Clock::now() - down_since_);
}

void RedisClient::OnRecovery(std::function<void()> listener) {
  std::lock_guard lock(state_mu_);
  listeners_.push_back(std::move(listener));
}

void RedisClient::MarkDown(const std::string& reason) {
  {
    std::lock_guard lock(state_mu_);
    last_error_ = reason;
    if (!up_.load(std::memory_order_acquire)) return;  // already down: said so once
    up_.store(false, std::memory_order_release);
    down_since_ = Clock::now();
    epoch_.fetch_add(1, std::memory_order_acq_rel);
  }
  if (up_gauge_ != nullptr) up_gauge_->Set(0);
  log::Get("redis")->warn(
      "redis unreachable: {}. Serving continues without it: the shared cache is bypassed, rate "
      "limits are per replica and every replica may page; retrying in the background. Check "
      "that redis.url points to a running Redis",
      reason);
  wake_.notify_all();
}

void RedisClient::MarkUp() {
  std::vector<std::function<void()>> listeners;
  milliseconds down{0};
  {
    std::lock_guard lock(state_mu_);
    if (up_.load(std::memory_order_acquire)) return;
    down = std::chrono::duration_cast<milliseconds>(Clock::now() - down_since_);
    last_error_.clear();
    up_.store(true, std::memory_order_release);
    listeners = listeners_;
  }
  if (up_gauge_ != nullptr) up_gauge_->Set(1);
  log::Get("redis")->info("redis reachable again at {} after {:.1f} s down", endpoint_.Describe(),
                          std::chrono::duration<double>(down).count());
  for (const auto& listener : listeners) listener();
}

void RedisClient::ReconnectLoop() {
  milliseconds backoff = options_.min_backoff;
  std::unique_lock lock(state_mu_);
  for (;;) {
    wake_.wait(lock, [this] { return stopping_ || !up_.load(std::memory_order_acquire); });
    if (stopping_) return;

    // Down: wait, then try a connection of our own and a PING on it.
    if (wake_.wait_for(lock, backoff, [this] { return stopping_; })) return;
    lock.unlock();
    Connection probe;
    Status st = Connect(probe);
    if (st.ok()) {
      Result<RedisReply> pong = RunOn(probe, {"PING"});
      if (!pong.ok()) st = pong.status();
    }
    if (st.ok()) {
      MarkUp();
      backoff = options_.min_backoff;
    } else {
      backoff = std::min(options_.max_backoff, backoff * 2);
    }
    lock.lock();
    if (!st.ok()) last_error_ = st.message();
  }
}

}  // namespace mann::cache
