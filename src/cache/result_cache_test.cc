#include <chrono>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include <mann/cache/result_cache.h>
#include <mann/metrics/registry.h>

#include "testing_redis.h"

namespace mann::cache {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

bool Rendered(const metrics::Registry& registry, std::string_view line) {
  return registry.Render().find(std::string(line) + "\n") != std::string::npos;
}

// Looks up and, on a miss, stores `answer`; returns what the lookup found ("" on a miss).
std::string LookupOrStore(ResultCache& cache, std::string_view ns, std::string_view request,
                          std::string answer) {
  ResultCache::Ticket ticket;
  if (auto hit = cache.Lookup(ns, request, ticket)) return *hit;
  cache.Store(ticket, std::move(answer));
  return "";
}

// ---- In process ------------------------------------------------------------------------------

class LocalResultCacheTest : public ::testing::Test {
 protected:
  std::unique_ptr<ResultCache> Make(std::size_t entries, milliseconds ttl) {
    return std::make_unique<ResultCache>(ResultCacheOptions{
        .max_entries = entries, .ttl = ttl, .registry = &registry_, .clock = [this] {
          return now_;
        }});
  }
  metrics::Registry registry_;
  Clock::time_point now_ = Clock::time_point() + std::chrono::hours(1);
};

TEST_F(LocalResultCacheTest, MissStoresThenHitsWithTheSameBytes) {
  auto cache = Make(10, std::chrono::seconds(60));
  const std::string answer = "[{\"memory_id\":\"x\",\"similarity\":0.1234567890123}]";
  EXPECT_EQ(LookupOrStore(*cache, "alice", "q=tea", answer), "");
  EXPECT_EQ(LookupOrStore(*cache, "alice", "q=tea", "other"), answer);
  EXPECT_EQ(LookupOrStore(*cache, "alice", "q=coffee", "c"), "") << "another request";
  EXPECT_EQ(LookupOrStore(*cache, "bob", "q=tea", "b"), "") << "another namespace";
  EXPECT_TRUE(Rendered(registry_, "mann_cache_requests_total{cache=\"search\",result=\"hit\"} 1"));
  EXPECT_TRUE(Rendered(registry_, "mann_cache_requests_total{cache=\"search\",result=\"miss\"} 3"));
}

TEST_F(LocalResultCacheTest, EntriesExpireAfterTheTtl) {
  auto cache = Make(10, milliseconds(1000));
  LookupOrStore(*cache, "alice", "q", "a");
  now_ += milliseconds(999);
  EXPECT_EQ(LookupOrStore(*cache, "alice", "q", "b"), "a");
  now_ += milliseconds(1);
  EXPECT_EQ(LookupOrStore(*cache, "alice", "q", "b"), "") << "expired at exactly the TTL";
  EXPECT_EQ(LookupOrStore(*cache, "alice", "q", "c"), "b");
}

TEST_F(LocalResultCacheTest, TheLeastRecentlyUsedEntryMakesRoom) {
  auto cache = Make(2, std::chrono::seconds(60));
  LookupOrStore(*cache, "ns", "a", "A");
  LookupOrStore(*cache, "ns", "b", "B");
  EXPECT_EQ(LookupOrStore(*cache, "ns", "a", "-"), "A");  // a is now the most recent
  LookupOrStore(*cache, "ns", "c", "C");                  // evicts b
  EXPECT_EQ(cache->local_size(), 2u);
  EXPECT_EQ(LookupOrStore(*cache, "ns", "a", "-"), "A");
  EXPECT_EQ(LookupOrStore(*cache, "ns", "c", "-"), "C");
  EXPECT_EQ(LookupOrStore(*cache, "ns", "b", "B2"), "");
  EXPECT_TRUE(Rendered(registry_, "mann_cache_evictions_total{cache=\"search\"} 2"));
}

TEST_F(LocalResultCacheTest, InvalidationDropsOnlyThatNamespace) {
  auto cache = Make(10, std::chrono::seconds(60));
  LookupOrStore(*cache, "alice", "q", "a");
  LookupOrStore(*cache, "bob", "q", "b");
  cache->InvalidateNamespace("alice");
  EXPECT_EQ(LookupOrStore(*cache, "alice", "q", "a2"), "");
  EXPECT_EQ(LookupOrStore(*cache, "alice", "q", "-"), "a2");
  EXPECT_EQ(LookupOrStore(*cache, "bob", "q", "-"), "b");
  EXPECT_TRUE(Rendered(registry_, "mann_cache_invalidations_total{cache=\"search\"} 1"));
}

TEST_F(LocalResultCacheTest, AnAnswerComputedAcrossAWriteIsNeverServed) {
  auto cache = Make(10, std::chrono::seconds(60));
  ResultCache::Ticket ticket;
  ASSERT_FALSE(cache->Lookup("alice", "q", ticket));
  cache->InvalidateNamespace("alice");  // the write lands while the search runs
  cache->Store(ticket, "stale");
  EXPECT_EQ(LookupOrStore(*cache, "alice", "q", "fresh"), "");
  EXPECT_EQ(LookupOrStore(*cache, "alice", "q", "-"), "fresh");
}

TEST_F(LocalResultCacheTest, ZeroSizeOrTtlTurnsItOff) {
  for (auto [entries, ttl] : {std::pair{std::size_t{0}, milliseconds(1000)},
                              std::pair{std::size_t{10}, milliseconds(0)}}) {
    auto cache = Make(entries, ttl);
    EXPECT_FALSE(cache->enabled());
    LookupOrStore(*cache, "ns", "q", "a");
    EXPECT_EQ(LookupOrStore(*cache, "ns", "q", "b"), "");
  }
}

// ---- Shared, in a real Redis -----------------------------------------------------------------

class SharedResultCacheTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(redis_.Start()) << redis_.error(); }

  std::shared_ptr<RedisClient> Client() { return testing::QuickClient(redis_, &registry_); }

  // One "replica": a client of its own and a cache on it.
  std::unique_ptr<ResultCache> Replica(std::shared_ptr<RedisClient> client,
                                       milliseconds ttl = std::chrono::seconds(60),
                                       std::string scope = "") {
    return std::make_unique<ResultCache>(ResultCacheOptions{.max_entries = 10,
                                                            .ttl = ttl,
                                                            .redis = std::move(client),
                                                            .scope = std::move(scope),
                                                            .registry = &registry_});
  }

  static bool WaitUp(const RedisClient& client) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (!client.up() && Clock::now() < deadline) std::this_thread::sleep_for(milliseconds(10));
    return client.up();
  }

  testing::TestingRedis redis_;
  metrics::Registry registry_;
};

TEST_F(SharedResultCacheTest, OneReplicasAnswerIsAnothersHitByteForByte) {
  auto a = Replica(Client());
  auto b = Replica(Client());
  ASSERT_TRUE(a->shared());
  std::string answer = "[{\"content\":\"caf\xc3\xa9\",\"similarity\":0.30000000000000004}]";
  answer += std::string("\0tail", 5);
  EXPECT_EQ(LookupOrStore(*a, "alice", "q", answer), "");
  EXPECT_EQ(LookupOrStore(*b, "alice", "q", "-"), answer);
  EXPECT_EQ(LookupOrStore(*a, "alice", "q", "-"), answer);
  EXPECT_TRUE(Rendered(registry_, "mann_cache_requests_total{cache=\"search\",result=\"hit\"} 2"));
}

TEST_F(SharedResultCacheTest, AWriteOnOneReplicaInvalidatesTheOthers) {
  auto a = Replica(Client());
  auto b = Replica(Client());
  LookupOrStore(*a, "alice", "q", "before");
  LookupOrStore(*a, "bob", "q", "bob's");
  b->InvalidateNamespace("alice");
  EXPECT_EQ(LookupOrStore(*a, "alice", "q", "after"), "");
  EXPECT_EQ(LookupOrStore(*b, "alice", "q", "-"), "after");
  EXPECT_EQ(LookupOrStore(*b, "bob", "q", "-"), "bob's");

  // An answer computed on A across B's write is stored where nobody looks.
  ResultCache::Ticket ticket;
  ASSERT_FALSE(a->Lookup("carol", "q", ticket));
  b->InvalidateNamespace("carol");
  a->Store(ticket, "stale");
  EXPECT_EQ(LookupOrStore(*b, "carol", "q", "fresh"), "");
}

TEST_F(SharedResultCacheTest, ValuesExpireInRedisAfterTheTtl) {
  auto a = Replica(Client(), milliseconds(150));
  auto b = Replica(Client(), milliseconds(150));
  LookupOrStore(*a, "alice", "q", "short-lived");
  EXPECT_EQ(LookupOrStore(*b, "alice", "q", "-"), "short-lived");
  std::this_thread::sleep_for(milliseconds(300));
  EXPECT_EQ(LookupOrStore(*b, "alice", "q", "renewed"), "");
}

TEST_F(SharedResultCacheTest, ScopesKeepDifferentDatabasesApart) {
  auto client = Client();
  auto a = Replica(client, std::chrono::seconds(60), "sqlite:host-a:/data/mann.db");
  auto b = Replica(client, std::chrono::seconds(60), "sqlite:host-b:/data/mann.db");
  LookupOrStore(*a, "alice", "q", "from a");
  EXPECT_EQ(LookupOrStore(*b, "alice", "q", "from b"), "");
  EXPECT_EQ(LookupOrStore(*a, "alice", "q", "-"), "from a");
}

TEST_F(SharedResultCacheTest, RedisDownBypassesAndReplaysInvalidationsWhenBack) {
  auto client = Client();
  auto a = Replica(client);
  LookupOrStore(*a, "alice", "q", "cached");

  redis_.Stop();
  ResultCache::Ticket ticket;
  EXPECT_FALSE(a->Lookup("alice", "q", ticket));
  EXPECT_FALSE(ticket.storable);
  a->InvalidateNamespace("alice");  // cannot reach Redis: remembered
  EXPECT_TRUE(Rendered(registry_, "mann_cache_bypassed_total{cache=\"search\"} 1"));

  ASSERT_TRUE(redis_.Start()) << redis_.error();
  ASSERT_TRUE(WaitUp(*client));
  // The recovery listener replayed the INCR, so answers stored before the outage (had Redis
  // kept them) are unreachable.
  const auto deadline = Clock::now() + std::chrono::seconds(5);
  std::string generation;
  while (Clock::now() < deadline) {
    Result<RedisReply> reply = client->Command({"GET", "mann:gen:shared:alice"});
    if (reply.ok() && !reply->is_nil()) {
      generation = reply->text;
      break;
    }
    std::this_thread::sleep_for(milliseconds(10));
  }
  EXPECT_EQ(generation, "1");
  EXPECT_EQ(LookupOrStore(*a, "alice", "q", "again"), "");
  EXPECT_EQ(LookupOrStore(*a, "alice", "q", "-"), "again");
}

// Calls of each command Redis ran since the latest CONFIG RESETSTAT, from INFO commandstats
// ("cmdstat_get:calls=3,usec=..."), without the INFO and CONFIG of the counting itself.
std::map<std::string, long> CommandCalls(RedisClient& client) {
  std::map<std::string, long> calls;
  Result<RedisReply> info = client.Command({"INFO", "commandstats"});
  if (!info.ok()) return calls;
  std::istringstream lines(info->text);
  std::string line;
  while (std::getline(lines, line)) {
    const std::string prefix = "cmdstat_";
    const std::size_t colon = line.find(':');
    const std::size_t calls_at = line.find("calls=");
    if (line.rfind(prefix, 0) != 0 || colon == std::string::npos || calls_at == std::string::npos)
      continue;
    const std::string name = line.substr(prefix.size(), colon - prefix.size());
    if (name == "info" || name.rfind("config", 0) == 0) continue;  // "config|resetstat"
    calls[name] = std::stol(line.substr(calls_at + 6));
  }
  return calls;
}

std::string Text(RedisClient& client, std::string_view key) {
  Result<RedisReply> reply = client.Command({"GET", key});
  return reply.ok() && reply->type == RedisReply::Type::kString ? reply->text : "";
}

// Takes a replica's client down the way serving does: a lookup that finds Redis gone.
void SeeTheOutage(ResultCache& replica, const RedisClient& client) {
  ResultCache::Ticket ticket;
  EXPECT_FALSE(replica.Lookup("anyone", "q", ticket));
  EXPECT_FALSE(ticket.storable);
  EXPECT_FALSE(client.up());
}

TEST_F(SharedResultCacheTest, ALookupIsStillOneMgetAndOneGet) {
  auto client = Client();
  auto a = Replica(client);
  ASSERT_TRUE(client->Command({"CONFIG", "RESETSTAT"}).ok());
  EXPECT_EQ(LookupOrStore(*a, "alice", "q", "answer"), "");   // MGET, GET, SET
  EXPECT_EQ(LookupOrStore(*a, "alice", "q", "-"), "answer");  // MGET, GET
  EXPECT_EQ(LookupOrStore(*a, "bob", "q", "b"), "");          // MGET, GET, SET
  const std::map<std::string, long> expected = {{"mget", 3}, {"get", 3}, {"set", 2}};
  EXPECT_EQ(CommandCalls(*client), expected);
}

// The outage of the brief: both replicas cached answers, A writes while Redis is unreachable
// and exits before Redis is back; Redis returns with its data (a partition, or a restart with
// persistence); B, back first and alone, must not serve anything stored before the outage.
TEST_F(SharedResultCacheTest, AfterAnOutageNoReplicaServesAPreOutageAnswerEvenIfTheWriterIsGone) {
  auto client_a = Client();
  auto client_b = Client();
  auto a = Replica(client_a);
  auto b = Replica(client_b);
  EXPECT_EQ(LookupOrStore(*a, "alice", "q", "alice before"), "");
  EXPECT_EQ(LookupOrStore(*b, "bob", "q", "bob before"), "");
  EXPECT_EQ(LookupOrStore(*b, "alice", "q", "-"), "alice before");
  EXPECT_EQ(LookupOrStore(*a, "bob", "q", "-"), "bob before");
  ResultCache::Ticket old_ticket;  // B starts a search before the outage, stores after it
  ASSERT_FALSE(b->Lookup("carol", "q", old_ticket));
  ASSERT_TRUE(old_ticket.storable);

  // Keep the answers across the restart, so that they would still be found by their old keys.
  ASSERT_TRUE(client_a->Command({"SAVE"}).ok());
  redis_.Stop();
  SeeTheOutage(*b, *client_b);
  SeeTheOutage(*a, *client_a);
  a->InvalidateNamespace("alice");  // pending in A only
  a.reset();                        // A exits with it
  client_a.reset();

  ASSERT_TRUE(redis_.Start()) << redis_.error();
  auto probe = Client();
  Result<RedisReply> keys = probe->Command({"KEYS", "mann:cache:*"});
  ASSERT_TRUE(keys.ok());
  EXPECT_EQ(keys->elements.size(), 2u) << "the pre-outage answers are still in Redis";
  EXPECT_EQ(Text(*probe, "mann:gen:shared:alice"), "") << "A's invalidation never arrived";

  // No waiting for B's recovery listener: a lookup the moment the client is up must not hit.
  ASSERT_TRUE(WaitUp(*client_b));
  EXPECT_EQ(LookupOrStore(*b, "alice", "q", "alice after"), "");
  EXPECT_EQ(LookupOrStore(*b, "bob", "q", "bob after"), "");
  b->Store(old_ticket, "carol from before the outage");
  EXPECT_EQ(LookupOrStore(*b, "carol", "q", "carol after"), "") << "the stale ticket stored";
  EXPECT_EQ(Text(*probe, "mann:epoch:shared"), "1") << "one bump per outage and replica";

  // The cache works again, for B and for a replica that saw no outage at all.
  auto c = Replica(Client());
  EXPECT_EQ(LookupOrStore(*c, "alice", "q", "-"), "alice after");
  EXPECT_EQ(LookupOrStore(*c, "bob", "q", "-"), "bob after");
  EXPECT_EQ(LookupOrStore(*b, "carol", "q", "-"), "carol after");
  EXPECT_EQ(Text(*probe, "mann:epoch:shared"), "1");
}

// The recovery listener bumps the epoch without waiting for a lookup, so a replica that saw no
// outage stops serving pre-outage answers as soon as one that saw it is back.
TEST_F(SharedResultCacheTest, TheRecoveryListenerBumpsTheEpochForEveryReplica) {
  auto client_a = Client();
  auto a = Replica(client_a);
  EXPECT_EQ(LookupOrStore(*a, "alice", "q", "before"), "");
  ASSERT_TRUE(client_a->Command({"SAVE"}).ok());
  redis_.Stop();
  SeeTheOutage(*a, *client_a);
  ASSERT_TRUE(redis_.Start()) << redis_.error();
  auto probe = Client();
  const auto deadline = Clock::now() + std::chrono::seconds(10);
  while (Text(*probe, "mann:epoch:shared") != "1" && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
  }
  ASSERT_EQ(Text(*probe, "mann:epoch:shared"), "1");
  auto b = Replica(Client());  // never saw the outage
  EXPECT_EQ(LookupOrStore(*b, "alice", "q", "after"), "");
  EXPECT_EQ(LookupOrStore(*a, "alice", "q", "-"), "after");
}

// A process whose Redis is unreachable from the start (it may be the writer of an outage,
// restarted) also bumps once Redis answers; one that started with Redis up does not.
TEST_F(SharedResultCacheTest, AReplicaThatStartedWithoutRedisBumpsTheEpochWhenItIsBack) {
  auto probe = Client();
  auto up_from_start = Replica(Client());
  EXPECT_EQ(LookupOrStore(*up_from_start, "alice", "q", "a"), "");
  EXPECT_EQ(Text(*probe, "mann:epoch:shared"), "");

  redis_.Stop();
  auto late_client = Client();
  ASSERT_FALSE(late_client->up());
  auto late = Replica(late_client);
  ASSERT_TRUE(redis_.Start()) << redis_.error();
  ASSERT_TRUE(WaitUp(*late_client));
  EXPECT_EQ(LookupOrStore(*late, "alice", "q", "b"), "");
  EXPECT_EQ(Text(*probe, "mann:epoch:shared"), "1");
  EXPECT_EQ(LookupOrStore(*late, "alice", "q", "-"), "b");
  EXPECT_EQ(Text(*probe, "mann:epoch:shared"), "1");
}

}  // namespace
}  // namespace mann::cache
