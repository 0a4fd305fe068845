#include <atomic>
#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <mann/cache/redis.h>
#include <mann/metrics/registry.h>
#include <mann/security/rate_limit.h>

#include "../cache/testing_redis.h"

namespace mann::security {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

RateLimitRule Rule(std::int64_t limit, std::chrono::nanoseconds period) {
  return {.method = "*", .route = "*", .limit = limit, .period = period};
}

class RedisRateLimitTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(redis_.Start()) << redis_.error(); }

  std::shared_ptr<cache::RedisClient> Client() {
    auto client = cache::RedisClient::Create(
        {.url = redis_.url(), .min_backoff = 20ms, .max_backoff = 100ms, .registry = &registry_});
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? *client : nullptr;
  }
  std::unique_ptr<RedisRateLimitStore> Store(std::shared_ptr<cache::RedisClient> client) {
    return std::make_unique<RedisRateLimitStore>(
        RedisRateLimitStoreOptions{.redis = std::move(client), .registry = &registry_});
  }

  mann::testing::TestingRedis redis_;
  metrics::Registry registry_;
};

TEST_F(RedisRateLimitTest, DecidesLikeTheLocalStore) {
  auto shared = Store(Client());
  LocalRateLimitStore local;
  const RateLimitRule rule = Rule(5, 1min);
  const Clock::time_point now = Clock::now();
  for (int i = 0; i < 7; ++i) {
    SCOPED_TRACE(i);
    const Decision expected = local.Acquire("caller", rule, now);
    const Decision got = shared->Acquire("caller", rule, now);
    EXPECT_EQ(got.allowed, expected.allowed);
    EXPECT_EQ(got.remaining, expected.remaining);
    // Redis's clock moves on between calls; the local one was frozen at `now`.
    EXPECT_NEAR(std::chrono::duration<double>(got.retry_after).count(),
                std::chrono::duration<double>(expected.retry_after).count(), 0.05);
  }
  EXPECT_EQ(shared->fallbacks(), 0u);
  // The sixth request waits one interval (12 s), as Retry-After: 12 says.
  EXPECT_NEAR(
      std::chrono::duration<double>(shared->Acquire("caller", rule, now).retry_after).count(), 12.0,
      0.05);
}

TEST_F(RedisRateLimitTest, TwoReplicasShareOneLimit) {
  auto a = Store(Client());
  auto b = Store(Client());
  // 100 per second, from two "replicas" sending as fast as they can for about 1.5 s: GCRA allows
  // the burst of 100 plus 100 per second after it.
  const RateLimitRule rule = Rule(100, 1s);
  std::atomic<int> allowed{0};
  const auto start = Clock::now();
  auto hammer = [&](RedisRateLimitStore& store) {
    while (Clock::now() - start < 1500ms) {
      if (store.Acquire("key:shared", rule, Clock::now()).allowed) ++allowed;
    }
  };
  std::thread ta([&] { hammer(*a); });
  std::thread tb([&] { hammer(*b); });
  ta.join();
  tb.join();
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  const double expected = 100 + 100 * seconds;
  EXPECT_NEAR(allowed.load(), expected, expected * 0.1)
      << "allowed " << allowed.load() << " in " << seconds << " s";
  EXPECT_EQ(a->fallbacks() + b->fallbacks(), 0u);
}

TEST_F(RedisRateLimitTest, ScriptFlushedByRedisIsLoadedAgain) {
  auto client = Client();
  auto store = Store(client);
  const RateLimitRule rule = Rule(2, 1min);
  EXPECT_TRUE(store->Acquire("c", rule, Clock::now()).allowed);
  ASSERT_TRUE(client->Command({"SCRIPT", "FLUSH"}).ok());
  EXPECT_TRUE(store->Acquire("c", rule, Clock::now()).allowed);
  EXPECT_FALSE(store->Acquire("c", rule, Clock::now()).allowed);
  EXPECT_EQ(store->fallbacks(), 0u);
  // The bucket expires in Redis when its TAT passes: within the period.
  Result<cache::RedisReply> ttl = client->Command({"PTTL", "mann:rl:c"});
  EXPECT_GT(ttl->integer, 0);
  EXPECT_LE(ttl->integer, 60'000);
}

TEST_F(RedisRateLimitTest, FallsBackToLocalWhileRedisIsDownAndComesBack) {
  auto client = Client();
  auto store = Store(client);
  const RateLimitRule rule = Rule(3, 1min);
  EXPECT_TRUE(store->Acquire("c", rule, Clock::now()).allowed);

  redis_.Stop();
  // The fallback keeps limiting, with a budget of its own.
  int allowed = 0;
  for (int i = 0; i < 5; ++i) allowed += store->Acquire("c", rule, Clock::now()).allowed ? 1 : 0;
  EXPECT_EQ(allowed, 3);
  EXPECT_EQ(store->fallbacks(), 5u);
  EXPECT_NE(registry_.Render().find("mann_rate_limit_fallbacks_total 5\n"), std::string::npos);

  ASSERT_TRUE(redis_.Start()) << redis_.error();
  const auto deadline = Clock::now() + 10s;
  while (!client->up() && Clock::now() < deadline) std::this_thread::sleep_for(10ms);
  ASSERT_TRUE(client->up());
  // Redis restarted empty: a fresh bucket there, and no more fallbacks.
  EXPECT_TRUE(store->Acquire("c", rule, Clock::now()).allowed);
  EXPECT_EQ(store->fallbacks(), 5u);
}

TEST_F(RedisRateLimitTest, TheMiddlewareRefusesWithRetryAfterAcrossReplicas) {
  auto shared_store = std::shared_ptr<RateLimitStore>(Store(Client()));
  auto other_store = std::shared_ptr<RateLimitStore>(Store(Client()));
  auto make = [&](std::shared_ptr<RateLimitStore> store) {
    return RateLimitMiddleware(
        {.rules = {Rule(2, 1min)}, .store = store, .clock = {}, .registry = &registry_});
  };
  server::Middleware a = make(shared_store);
  server::Middleware b = make(other_store);
  auto call = [](server::Middleware& m) {
    server::Request request;
    request.method = "GET";
    request.route = "/statistics";
    request.client_address = "10.0.0.7:5000";
    return m(request, [](server::Request&) { return server::Response::Json({}); });
  };
  EXPECT_EQ(call(a).status, 200);
  EXPECT_EQ(call(b).status, 200);
  server::Response refused = call(a);
  EXPECT_EQ(refused.status, 429);
  EXPECT_EQ(refused.headers.Get("Retry-After").value_or(""), "30");
}

}  // namespace
}  // namespace mann::security
