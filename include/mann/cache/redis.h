// RedisClient: a small blocking client for the Redis that several `mann serve` replicas share
// (the result cache, the cluster-wide rate limits and the alert lock), on hiredis.
//
//   MANN_ASSIGN_OR_RETURN(auto redis, cache::RedisClient::Create({.url = config.redis.url}));
//   Result<cache::RedisReply> reply = redis->Command({"INCR", "mann:gen:alice"});
//   if (!reply.ok()) ...  // Unavailable: Redis is down; serve without it
//
// Degraded mode. Every command is bounded by connect_timeout and command_timeout (200 ms by
// default), so an unreachable Redis costs a caller at most about that much. The first failure
// marks the client down: one warning is logged (not one per request), the gauge mann_redis_up
// goes to 0, and from then on commands fail at once with Unavailable, without touching the
// network, while a background thread retries with exponential backoff (min_backoff doubling up
// to max_backoff). When a retry connects, one info line says so, mann_redis_up goes back to 1,
// the recovery listeners run, and commands go through again. Callers therefore never wait on a
// dead Redis, and each decides its own fallback (bypass the cache, limit locally, page anyway).
//
// Metrics (in options.registry, else metrics::Registry::Default()):
//   mann_redis_up             gauge: 1 while Redis answers, 0 while the client is down
//   mann_redis_errors_total   counter: commands answered Unavailable, the ones refused at once
//                             while down included (error replies from Redis are not counted:
//                             they are answers)
//
// Thread-safety: every member is safe to call concurrently. Commands run on a small pool of
// connections, each used by one caller at a time.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <mann/core/status.h>

namespace mann::metrics {
class Gauge;
class Counter;
class Registry;
}  // namespace mann::metrics

namespace mann::cache {

// Where a Redis is and how to log in, from redis://[:password@]host:port[/db].
struct RedisEndpoint {
  std::string host;
  int port = 6379;
  std::string password;  // empty: no AUTH
  int db = 0;

  // "127.0.0.1:6379/0": for logs and health reasons, without the password.
  std::string Describe() const;
};

// Parses redis://[[user]:password@]host[:port][/db] (the port defaults to 6379, the db to 0; a
// user name before the colon is accepted and ignored, as Redis 5 had no users). An IPv6 host is
// written in brackets. InvalidArgument saying what is wrong, never echoing the password.
Result<RedisEndpoint> ParseRedisUrl(std::string_view url);

// One reply, copied out of hiredis.
struct RedisReply {
  enum class Type { kNil, kInteger, kString, kStatus, kError, kArray };
  Type type = Type::kNil;
  std::int64_t integer = 0;
  std::string text;  // the bulk string, the status ("OK") or the error ("NOSCRIPT ...")
  std::vector<RedisReply> elements;

  bool is_nil() const { return type == Type::kNil; }
  bool is_error() const { return type == Type::kError; }
};

struct RedisOptions {
  std::string url = {};  // redis://[:password@]host:port[/db]
  std::chrono::milliseconds connect_timeout{200};
  std::chrono::milliseconds command_timeout{200};
  std::size_t connections = 4;  // the pool: commands that run at once
  // Backoff of the background reconnection while down.
  std::chrono::milliseconds min_backoff{100};
  std::chrono::milliseconds max_backoff{5000};
  // Where mann_redis_up and mann_redis_errors_total go; nullptr: metrics::Registry::Default().
  // Must outlive the client.
  metrics::Registry* registry = nullptr;
};

class RedisClient {
 public:
  // InvalidArgument for a bad URL or option. Connects once, without failing when that does not
  // work: a server that starts before its Redis runs degraded until Redis comes up.
  static Result<std::shared_ptr<RedisClient>> Create(RedisOptions options);
  ~RedisClient();
  RedisClient(const RedisClient&) = delete;
  RedisClient& operator=(const RedisClient&) = delete;

  // Runs one command. An error reply from Redis ("NOSCRIPT ...", "WRONGTYPE ...") is a reply of
  // type kError, not a failed Status, so that callers can react to it. Unavailable when Redis
  // could not be reached or did not answer within the timeouts, and at once while down.
  Result<RedisReply> Command(const std::vector<std::string>& args);
  Result<RedisReply> Command(std::initializer_list<std::string_view> args);

  // PING: Ok when Redis answered PONG.
  Status Ping();

  // True until a command fails to reach Redis, then false until a reconnection succeeds.
  bool up() const { return up_.load(std::memory_order_acquire); }
  const RedisEndpoint& endpoint() const { return endpoint_; }
  // Why the client is down ("connection refused"); empty while up.
  std::string last_error() const;
  // How long the client has been down; zero while up.
  std::chrono::milliseconds down_for() const;
  std::uint64_t errors() const { return errors_.load(std::memory_order_relaxed); }
  // How many times the client has gone down, a failed first connection included. A caller that
  // remembers the figure can tell that an outage began since, without waiting for its listener.
  std::uint64_t outages() const { return epoch_.load(std::memory_order_acquire); }

  // Runs `listener` (on the reconnection thread) each time Redis becomes reachable again after
  // being down: a cache replays the invalidations it could not deliver. Listeners must not
  // block for long and must outlive the client.
  void OnRecovery(std::function<void()> listener);

 private:
  struct Connection;
  RedisClient(RedisOptions options, RedisEndpoint endpoint);

  // Opens, authenticates and selects the database; Unavailable with the reason otherwise.
  Status Connect(Connection& connection);
  // One command on one connection; an I/O failure closes the connection.
  Result<RedisReply> RunOn(Connection& connection, const std::vector<std::string>& args);
  Connection& Acquire(std::unique_lock<std::mutex>& lock);
  void MarkDown(const std::string& reason);
  void MarkUp();
  void ReconnectLoop();

  const RedisOptions options_;
  const RedisEndpoint endpoint_;
  std::vector<std::unique_ptr<Connection>> pool_;
  std::atomic<std::size_t> next_connection_{0};
  // Connections opened before the latest outage are stale: a restarted Redis closed them.
  std::atomic<std::uint64_t> epoch_{0};

  std::atomic<bool> up_{true};
  std::atomic<std::uint64_t> errors_{0};
  metrics::Gauge* up_gauge_ = nullptr;
  metrics::Counter* errors_counter_ = nullptr;

  mutable std::mutex state_mu_;
  std::string last_error_;                            // guarded by state_mu_
  std::chrono::steady_clock::time_point down_since_;  // guarded by state_mu_
  std::vector<std::function<void()>> listeners_;      // guarded by state_mu_
  std::condition_variable wake_;                      // with state_mu_: down, or stopping
  bool stopping_ = false;                             // guarded by state_mu_
  std::thread reconnector_;
};

}  // namespace mann::cache
