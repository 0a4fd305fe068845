#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include <mann/cache/alert_lock.h>
#include <mann/config/config.h>
#include <mann/metrics/registry.h>

#include "../cli/monitoring.h"
#include "testing_redis.h"

namespace mann::cache {
namespace {

using std::chrono::milliseconds;

bool Rendered(const metrics::Registry& registry, std::string_view line) {
  return registry.Render().find(std::string(line) + "\n") != std::string::npos;
}

class AlertLockTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(redis_.Start()) << redis_.error(); }

  std::shared_ptr<RedisClient> Client() {
    auto client = RedisClient::Create({.url = redis_.url(), .registry = &registry_});
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? *client : nullptr;
  }
  AlertLock Lock(std::string replica, milliseconds ttl = std::chrono::seconds(60)) {
    return AlertLock(
        {.redis = Client(), .replica = std::move(replica), .ttl = ttl, .registry = &registry_});
  }

  testing::TestingRedis redis_;
  metrics::Registry registry_;
};

TEST_F(AlertLockTest, ExactlyOneOfTwoReplicasDeliversAnAlert) {
  AlertLock a = Lock("a");
  AlertLock b = Lock("b");
  // Both raise the same alert at once, from two threads.
  bool a_delivers = false;
  bool b_delivers = false;
  std::thread ta([&] { a_delivers = a.MayNotify("error_rate:"); });
  std::thread tb([&] { b_delivers = b.MayNotify("error_rate:"); });
  ta.join();
  tb.join();
  EXPECT_NE(a_delivers, b_delivers) << "exactly one delivers";

  // The holder's later events (a renotify, the resolve) go through; the other's do not.
  AlertLock& holder = a_delivers ? a : b;
  AlertLock& other = a_delivers ? b : a;
  EXPECT_TRUE(holder.MayNotify("error_rate:"));
  EXPECT_FALSE(other.MayNotify("error_rate:"));
  // Another alert is a race of its own.
  EXPECT_NE(a.MayNotify("disk_full:"), b.MayNotify("disk_full:"));

  EXPECT_TRUE(Rendered(registry_, "mann_alert_lock_decisions_total{result=\"acquired\"} 2"));
  EXPECT_TRUE(Rendered(registry_, "mann_alert_lock_decisions_total{result=\"held\"} 1"));
  EXPECT_TRUE(Rendered(registry_, "mann_alert_lock_decisions_total{result=\"withheld\"} 3"));
}

TEST_F(AlertLockTest, TheLockPassesOnWhenItsHolderStopsAsking) {
  AlertLock a = Lock("a", milliseconds(100));
  AlertLock b = Lock("b", milliseconds(100));
  EXPECT_TRUE(a.MayNotify("k"));
  EXPECT_FALSE(b.MayNotify("k"));
  std::this_thread::sleep_for(milliseconds(250));
  EXPECT_TRUE(b.MayNotify("k"));
  EXPECT_FALSE(a.MayNotify("k"));
}

TEST_F(AlertLockTest, RedisDownLetsEveryReplicaDeliver) {
  AlertLock a = Lock("a");
  AlertLock b = Lock("b");
  redis_.Stop();
  EXPECT_TRUE(a.MayNotify("k"));
  EXPECT_TRUE(b.MayNotify("k"));
  EXPECT_TRUE(Rendered(registry_, "mann_alert_lock_decisions_total{result=\"unavailable\"} 2"));
}

TEST_F(AlertLockTest, TheServersGateUsesTheLockWhenRedisIsConfigured) {
  config::Config config = config::DefaultConfig();
  EXPECT_FALSE(static_cast<bool>(cli::ReplicaNotifyGate(config)));
  auto first = cli::ReplicaNotifyGate(config, Client());
  auto second = cli::ReplicaNotifyGate(config, Client());
  ASSERT_TRUE(static_cast<bool>(first));
  // Both gates run in this process, so they share its default replica name: the second is the
  // same "replica" and is let through as the holder. A distinct lock name shows the refusal.
  EXPECT_TRUE(first("memory_utilization:alice"));
  EXPECT_TRUE(second("memory_utilization:alice"));
  AlertLock other = Lock("elsewhere");
  EXPECT_FALSE(other.MayNotify("memory_utilization:alice"));
  Result<RedisReply> holder = Client()->Command({"GET", "mann:alert:memory_utilization:alice"});
  ASSERT_TRUE(holder.ok());
  EXPECT_EQ(holder->text, DefaultReplicaName());
  Result<RedisReply> ttl = Client()->Command({"PTTL", "mann:alert:memory_utilization:alice"});
  // Two monitoring intervals (30 s by default).
  EXPECT_GT(ttl->integer, 50'000);
  EXPECT_LE(ttl->integer, 60'000);
}

}  // namespace
}  // namespace mann::cache
