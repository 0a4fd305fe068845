#include <chrono>
#include <thread>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <mann/cache/alert_lock.h>
#include <mann/config/config.h>
#include <mann/core/clock.h>
#include <mann/metrics/registry.h>
#include <mann/monitor/alerts.h>

#include "../cli/monitoring.h"
#include "testing_redis.h"

namespace mann::cache {
namespace {

using std::chrono::milliseconds;

bool Rendered(const metrics::Registry& registry, std::string_view line) {
  return registry.Render().find(std::string(line) + "\n") != std::string::npos;
}

// True when `lock` lets this replica deliver a first event of the alert `dedup_key`.
bool Delivers(AlertLock& lock, const std::string& dedup_key) {
  return lock.Decide({.dedup_key = dedup_key}) == AlertLockDecision::kDeliver;
}

// One replica: its alert engine with one rule (error_rate > 0.1, firing at once, reminders an
// hour apart so that only the tests' own events happen) and the server's gate on its own lock.
// Evaluate delivers like the Monitor: every event let through is "enqueued" (kept in
// `delivered`) and then confirmed, unless the replica is made to crash before confirming.
class Replica {
 public:
  Replica(std::shared_ptr<RedisClient> redis, std::string name, milliseconds ttl,
          metrics::Registry& registry)
      : gate_(cli::NotifyGateOf(
            std::make_shared<AlertLock>(AlertLockOptions{.redis = std::move(redis),
                                                         .replica = std::move(name),
                                                         .ttl = ttl,
                                                         .registry = &registry}))) {
    monitor::AlertRule rule;
    rule.name = rule.metric = "error_rate";
    rule.threshold = 0.1;
    monitor::AlertEngineOptions options;
    options.renotify.warning = std::chrono::hours(1);
    engine_ = std::move(monitor::AlertEngine::Create({rule}, options)).value();
  }

  // One evaluation of error_rate = `value` at `now` (Unix ms).
  void Evaluate(double value, TimestampMs now) {
    for (const monitor::AlertEvent& event :
         engine_->Evaluate({{"error_rate", {{"", value}}}}, now, gate_)) {
      if (event.withheld) continue;
      delivered_.push_back(event);
      if (confirms_) gate_.delivered(event);
    }
  }

  void CrashBeforeConfirming() { confirms_ = false; }
  const std::vector<monitor::AlertEvent>& delivered() const { return delivered_; }
  std::size_t pending() const { return engine_->Pending().size(); }

 private:
  monitor::NotifyGate gate_;
  std::unique_ptr<monitor::AlertEngine> engine_;
  std::vector<monitor::AlertEvent> delivered_;
  bool confirms_ = true;
};

TimestampMs Now() { return SystemClock::Instance().NowMs(); }

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
  std::unique_ptr<Replica> MakeReplica(std::string name, milliseconds ttl) {
    return std::make_unique<Replica>(Client(), std::move(name), ttl, registry_);
  }
  std::string Value(const std::string& key) {
    Result<RedisReply> reply = Client()->Command({"GET", key});
    return reply.ok() ? reply->text : reply.status().ToString();
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
  std::thread ta([&] { a_delivers = Delivers(a, "error_rate:"); });
  std::thread tb([&] { b_delivers = Delivers(b, "error_rate:"); });
  ta.join();
  tb.join();
  EXPECT_NE(a_delivers, b_delivers) << "exactly one delivers";

  // The holder's later events (a renotify, the resolve) go through; the other's do not.
  AlertLock& holder = a_delivers ? a : b;
  AlertLock& other = a_delivers ? b : a;
  EXPECT_TRUE(Delivers(holder, "error_rate:"));
  EXPECT_FALSE(Delivers(other, "error_rate:"));
  // Another alert is a race of its own.
  EXPECT_NE(Delivers(a, "disk_full:"), Delivers(b, "disk_full:"));

  EXPECT_TRUE(Rendered(registry_, "mann_alert_lock_decisions_total{result=\"acquired\"} 2"));
  EXPECT_TRUE(Rendered(registry_, "mann_alert_lock_decisions_total{result=\"held\"} 1"));
  EXPECT_TRUE(Rendered(registry_, "mann_alert_lock_decisions_total{result=\"withheld\"} 3"));
}

TEST_F(AlertLockTest, TheLockPassesOnWhenItsHolderStopsAsking) {
  AlertLock a = Lock("a", milliseconds(100));
  AlertLock b = Lock("b", milliseconds(100));
  EXPECT_TRUE(Delivers(a, "k"));
  EXPECT_FALSE(Delivers(b, "k"));
  std::this_thread::sleep_for(milliseconds(250));
  EXPECT_TRUE(Delivers(b, "k"));
  EXPECT_FALSE(Delivers(a, "k"));
}

TEST_F(AlertLockTest, RedisDownLetsEveryReplicaDeliver) {
  AlertLock a = Lock("a");
  AlertLock b = Lock("b");
  redis_.Stop();
  EXPECT_TRUE(Delivers(a, "k"));
  EXPECT_TRUE(Delivers(b, "k"));
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
  monitor::AlertEvent event;
  event.dedup_key = "memory_utilization:alice";
  EXPECT_EQ(first.decide(event), monitor::NotifyDecision::kDeliver);
  EXPECT_EQ(second.decide(event), monitor::NotifyDecision::kDeliver);
  AlertLock other = Lock("elsewhere");
  EXPECT_FALSE(Delivers(other, "memory_utilization:alice"));
  Result<RedisReply> holder = Client()->Command({"GET", "mann:alert:memory_utilization:alice"});
  ASSERT_TRUE(holder.ok());
  EXPECT_EQ(holder->text, DefaultReplicaName());
  Result<RedisReply> ttl = Client()->Command({"PTTL", "mann:alert:memory_utilization:alice"});
  // Two monitoring intervals (30 s by default).
  EXPECT_GT(ttl->integer, 50'000);
  EXPECT_LE(ttl->integer, 60'000);
}

TEST_F(AlertLockTest, AWithheldCopyIsDeliveredOnceWhenTheHolderDiesBeforeConfirming) {
  auto a = MakeReplica("a", milliseconds(300));
  auto b = MakeReplica("b", milliseconds(300));
  const TimestampMs t = Now();
  a->CrashBeforeConfirming();
  a->Evaluate(0.5, t);  // takes the lock and "delivers", then dies before its outbox has it
  ASSERT_EQ(a->delivered().size(), 1u);
  b->Evaluate(0.5, t + 10);
  EXPECT_TRUE(b->delivered().empty()) << "a holds the lock";
  EXPECT_EQ(b->pending(), 1u);
  b->Evaluate(0.5, Now());
  EXPECT_TRUE(b->delivered().empty()) << "still held, not confirmed: b waits";

  // a never asks again: its key expires and b's next evaluation takes over.
  std::this_thread::sleep_for(milliseconds(450));
  b->Evaluate(0.5, Now());
  ASSERT_EQ(b->delivered().size(), 1u);
  EXPECT_EQ(b->delivered()[0].kind, monitor::AlertEventKind::kTrigger);
  EXPECT_TRUE(b->delivered()[0].taken_over);
  EXPECT_EQ(b->delivered()[0].at, t + 10) << "b's own copy, as it was withheld";
  EXPECT_EQ(b->pending(), 0u);
  EXPECT_EQ(Value("mann:alert:error_rate"), fmt::format("b delivered trigger {}", t + 10));

  // Exactly once: later evaluations do not deliver it again, and the resolve comes from b.
  b->Evaluate(0.5, Now());
  EXPECT_EQ(b->delivered().size(), 1u);
  b->Evaluate(0.0, Now());
  ASSERT_EQ(b->delivered().size(), 2u);
  EXPECT_EQ(b->delivered()[1].kind, monitor::AlertEventKind::kResolve);
  EXPECT_FALSE(b->delivered()[1].taken_over);

  EXPECT_TRUE(Rendered(registry_, "mann_alert_lock_decisions_total{result=\"withheld\"} 1"));
  EXPECT_TRUE(Rendered(registry_, "mann_alert_lock_decisions_total{result=\"waiting\"} 1"));
  EXPECT_TRUE(Rendered(registry_, "mann_alert_lock_decisions_total{result=\"taken_over\"} 1"));
}

TEST_F(AlertLockTest, AConfirmedDeliveryMakesTheOthersDropTheirCopies) {
  auto a = MakeReplica("a", std::chrono::seconds(60));
  auto b = MakeReplica("b", std::chrono::seconds(60));
  auto c = MakeReplica("c", std::chrono::seconds(60));
  const TimestampMs t = Now();
  a->CrashBeforeConfirming();  // for now: a confirms by hand below, after b has asked
  a->Evaluate(0.5, t);
  ASSERT_EQ(a->delivered().size(), 1u);
  b->Evaluate(0.5, t + 20);
  EXPECT_EQ(b->pending(), 1u) << "held by a, not yet confirmed";

  // a's outbox has the trigger now: it confirms; b drops its copy at its next evaluation.
  cli::NotifyGateOf(std::make_shared<AlertLock>(AlertLockOptions{
                        .redis = Client(), .replica = "a", .registry = &registry_}))
      .delivered(a->delivered()[0]);
  EXPECT_EQ(Value("mann:alert:error_rate"), fmt::format("a delivered trigger {}", t));
  b->Evaluate(0.5, t + 1020);
  EXPECT_EQ(b->pending(), 0u);
  EXPECT_TRUE(b->delivered().empty());
  // A replica evaluating after the confirmation drops its copy at once.
  c->Evaluate(0.5, t + 40);
  EXPECT_EQ(c->pending(), 0u);
  EXPECT_TRUE(c->delivered().empty());

  EXPECT_TRUE(
      Rendered(registry_, "mann_alert_lock_decisions_total{result=\"confirmed_elsewhere\"} 2"));
  EXPECT_TRUE(Rendered(registry_, "mann_alert_lock_decisions_total{result=\"taken_over\"} 0"));
  EXPECT_EQ(a->delivered().size() + b->delivered().size() + c->delivered().size(), 1u);
}

TEST_F(AlertLockTest, AConfirmedResolveCoversAnOlderTriggerButNotANewAlert) {
  AlertLock a = Lock("a");
  AlertLock b = Lock("b");
  const TimestampMs t = Now();
  const AlertLockEvent resolve{.dedup_key = "k", .stage = AlertStage::kResolve, .at_ms = t};
  ASSERT_EQ(a.Decide(resolve), AlertLockDecision::kDeliver);
  a.Confirm(resolve);
  // b's trigger from before the resolve would only reopen the alert.
  EXPECT_EQ(b.Decide({.dedup_key = "k", .at_ms = t - 5000, .retry = true}),
            AlertLockDecision::kDeliveredElsewhere);
  // A trigger after the resolve is a new alert, which a has not paged (yet).
  EXPECT_EQ(b.Decide({.dedup_key = "k", .at_ms = t + 5000}), AlertLockDecision::kWithhold);
  // A reminder is not covered by an older trigger's confirmation.
  const AlertLockEvent trigger{.dedup_key = "r", .at_ms = t};
  ASSERT_EQ(a.Decide(trigger), AlertLockDecision::kDeliver);
  a.Confirm(trigger);
  EXPECT_EQ(b.Decide({.dedup_key = "r", .stage = AlertStage::kRenotify, .at_ms = t + 30'000}),
            AlertLockDecision::kWithhold);
  // Only the holder confirms: b's Confirm leaves a's value alone.
  b.Confirm({.dedup_key = "r", .stage = AlertStage::kRenotify, .at_ms = t + 30'000});
  EXPECT_EQ(Value("mann:alert:r"), fmt::format("a delivered trigger {}", t));
}

TEST_F(AlertLockTest, AWithheldCopyIsGivenUpAfterThreeTtlsAndCounted) {
  auto a = MakeReplica("a", std::chrono::seconds(60));
  auto b = MakeReplica("b", std::chrono::seconds(60));
  const TimestampMs t = Now();
  a->CrashBeforeConfirming();  // alive and holding the lock, but never confirming
  a->Evaluate(0.5, t);
  b->Evaluate(0.5, t);
  ASSERT_EQ(b->pending(), 1u);
  // By event time, just within three TTLs it still waits; beyond, it is given up.
  b->Evaluate(0.5, t + 180'000);
  EXPECT_EQ(b->pending(), 1u);
  b->Evaluate(0.5, t + 180'001);
  EXPECT_EQ(b->pending(), 0u);
  EXPECT_TRUE(b->delivered().empty());
  EXPECT_TRUE(Rendered(registry_, "mann_alert_lock_decisions_total{result=\"gave_up\"} 1"));
}

TEST_F(AlertLockTest, RedisDownDeliversAWithheldCopy) {
  auto a = MakeReplica("a", std::chrono::seconds(60));
  auto b = MakeReplica("b", std::chrono::seconds(60));
  const TimestampMs t = Now();
  a->CrashBeforeConfirming();
  a->Evaluate(0.5, t);
  b->Evaluate(0.5, t);
  ASSERT_EQ(b->pending(), 1u);
  redis_.Stop();
  b->Evaluate(0.5, t + 1000);
  ASSERT_EQ(b->delivered().size(), 1u) << "a duplicate is better than silence";
  EXPECT_EQ(b->pending(), 0u);
  EXPECT_TRUE(Rendered(registry_, "mann_alert_lock_decisions_total{result=\"unavailable\"} 1"));
}

}  // namespace
}  // namespace mann::cache
