#include <atomic>
#include <chrono>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include <mann/cache/embedding_cache.h>
#include <mann/cache/result_cache.h>
#include <mann/encode/hashed_encoder.h>
#include <mann/encode/router.h>
#include <mann/metrics/registry.h>

#include "testing_redis.h"

namespace mann::cache {
namespace {

using std::chrono::milliseconds;
using Clock = std::chrono::steady_clock;

// The real hashed encoder, counting the texts that reach it: a text served by a cache never does.
class CountingEncoder final : public encode::Encoder {
 public:
  std::string Id() const override { return inner_.Id(); }
  std::size_t Dimension() const override { return inner_.Dimension(); }
  Status EncodeBatch(std::span<const std::string> texts,
                     std::vector<encode::Vector>* out) const override {
    texts_ += static_cast<int>(texts.size());
    ++batches_;
    return inner_.EncodeBatch(texts, out);
  }
  int texts() const { return texts_; }
  int batches() const { return batches_; }

 private:
  encode::HashedEncoder inner_{encode::HashedEncoderOptions{.dimension = 64}};
  mutable std::atomic<int> texts_{0};
  mutable std::atomic<int> batches_{0};
};

bool BitIdentical(const encode::Vector& a, const encode::Vector& b) {
  return a.size() == b.size() && std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0;
}

// ---- The value format --------------------------------------------------------------------

TEST(EmbeddingValue, RoundTripsBitForBit) {
  const encode::Vector v = {0.0f, -0.0f, 1.0f, -0.5f, 1e-38f, 3.4e38f, 0.1f, -0.7071068f};
  const std::string bytes = EncodeEmbedding(v);
  ASSERT_EQ(bytes.size(), 4u + 4u * v.size());
  EXPECT_EQ(bytes.substr(0, 4), std::string("\x08\x00\x00\x00", 4)) << "u32 LE dimension";
  EXPECT_EQ(bytes.substr(12, 4), std::string("\x00\x00\x80\x3f", 4)) << "1.0f, LE";
  auto back = DecodeEmbedding(bytes, v.size());
  ASSERT_TRUE(back.has_value());
  EXPECT_TRUE(BitIdentical(*back, v));
}

TEST(EmbeddingValue, AnythingButExactlyTheDimensionIsRejected) {
  const encode::Vector v(8, 0.25f);
  const std::string good = EncodeEmbedding(v);
  std::string nan = good;
  const float quiet_nan = std::numeric_limits<float>::quiet_NaN();
  std::memcpy(nan.data() + 8, &quiet_nan, 4);
  std::string lying = good;  // the header says 9, the body holds 8
  lying[0] = 9;
  const struct {
    std::string value;
    std::size_t dimension;
    const char* why;
  } cases[] = {
      {"", 8, "empty"},
      {"garbage", 8, "not the format"},
      {good, 16, "another dimension than the lane's encoder"},
      {good.substr(0, good.size() - 1), 8, "truncated"},
      {good + "x", 8, "trailing byte"},
      {lying, 8, "header and length disagree"},
      {nan, 8, "NaN"},
  };
  for (const auto& c : cases) {
    EXPECT_FALSE(DecodeEmbedding(c.value, c.dimension).has_value()) << c.why;
  }
}

// ---- Against a real Redis ----------------------------------------------------------------

class SharedEmbeddingTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(redis_.Start()) << redis_.error(); }

  std::shared_ptr<RedisClient> Client() { return testing::QuickClient(redis_, &registry_); }

  // One "replica": a Redis client, a shared tier and a Router with an in-process cache of its
  // own over `encoder`.
  struct Replica {
    std::shared_ptr<RedisClient> client;
    std::shared_ptr<RedisEmbeddingCache> shared;
    std::unique_ptr<encode::Router> router;
  };
  Replica MakeReplica(const CountingEncoder& encoder, milliseconds ttl = std::chrono::hours(1)) {
    Replica r;
    r.client = Client();
    auto shared = RedisEmbeddingCache::Create(
        {.redis = r.client, .ttl = ttl, .key_prefix = "t:", .registry = &registry_});
    EXPECT_TRUE(shared.ok()) << shared.status().ToString();
    if (shared.ok()) r.shared = *shared;
    r.router = encode::Router::Single(encoder, 64);
    r.router->SetSharedCache(r.shared);
    return r;
  }

  encode::Vector Embed(const encode::Router& router, const std::string& text) {
    auto v = router.Embed(router.ForText(text::Language::kEnglish), text);
    EXPECT_TRUE(v.ok()) << v.status().ToString();
    return v.ok() ? *v : encode::Vector{};
  }

  // A command on a client of the test's own.
  RedisReply Run(std::initializer_list<std::string_view> args) {
    if (!admin_) admin_ = Client();
    auto reply = admin_->Command(args);
    EXPECT_TRUE(reply.ok()) << reply.status().ToString();
    return reply.ok() ? *reply : RedisReply{};
  }
  std::vector<std::string> EmbeddingKeys() {
    std::vector<std::string> keys;
    for (const RedisReply& e : Run({"KEYS", "t:emb:*"}).elements) keys.push_back(e.text);
    return keys;
  }
  // How many times Redis ran `command` since the start ("cmdstat_mget:calls=3,...").
  int Calls(const std::string& command) {
    const std::string info = Run({"INFO", "commandstats"}).text;
    const std::string tag = "cmdstat_" + command + ":calls=";
    const auto at = info.find(tag);
    return at == std::string::npos ? 0 : std::stoi(info.substr(at + tag.size()));
  }

  double Series(std::string_view series) {
    const std::string text = registry_.Render();
    const auto at = text.find(std::string(series) + " ");
    if (at == std::string::npos) return 0;
    return std::stod(text.substr(at + series.size() + 1));
  }

  static bool WaitUp(const RedisClient& client) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (!client.up() && Clock::now() < deadline) std::this_thread::sleep_for(milliseconds(10));
    return client.up();
  }

  static constexpr std::string_view kSharedHits =
      "mann_cache_requests_total{cache=\"embedding_shared\",result=\"hit\"}";
  static constexpr std::string_view kSharedMisses =
      "mann_cache_requests_total{cache=\"embedding_shared\",result=\"miss\"}";
  static constexpr std::string_view kBypassed =
      "mann_cache_bypassed_total{cache=\"embedding_shared\"}";
  static constexpr std::string_view kRejected =
      "mann_cache_rejected_values_total{cache=\"embedding_shared\"}";

  testing::TestingRedis redis_;
  metrics::Registry registry_;
  std::shared_ptr<RedisClient> admin_;
};

TEST_F(SharedEmbeddingTest, CreateRefusesAMissingClientAndANonPositiveTtl) {
  EXPECT_EQ(RedisEmbeddingCache::Create({}).status().code(), StatusCode::kInvalidArgument);
  auto zero = RedisEmbeddingCache::Create({.redis = Client(), .ttl = milliseconds(0)});
  EXPECT_EQ(zero.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(zero.status().message().find("cache.ttl"), std::string::npos);
}

TEST_F(SharedEmbeddingTest, EveryTierIsCountedInTheSearchCachesFamilies) {
  // As in `mann serve`: the search cache, the Router's LRU and the Redis tier, one registry.
  ResultCache search({.redis = Client(), .registry = &registry_});
  CountingEncoder encoder;
  Replica a = MakeReplica(encoder);
  auto local = RegisterLocalEmbeddingMetrics(*a.router->cache(), registry_);
  ASSERT_TRUE(local.ok()) << local.status().ToString();
  Embed(*a.router, "counted");
  Embed(*a.router, "counted");
  ResultCache::Ticket ticket;
  EXPECT_FALSE(search.Lookup("ns", "q", ticket).has_value());
  const std::string text = registry_.Render();
  for (const char* line : {
           "mann_cache_requests_total{cache=\"embedding\",result=\"hit\"} 1",
           "mann_cache_requests_total{cache=\"embedding\",result=\"miss\"} 1",
           "mann_cache_requests_total{cache=\"embedding_shared\",result=\"hit\"} 0",
           "mann_cache_requests_total{cache=\"embedding_shared\",result=\"miss\"} 1",
           "mann_cache_requests_total{cache=\"search\",result=\"miss\"} 1",
           "mann_cache_bypassed_total{cache=\"embedding_shared\"} 0",
           "mann_cache_bypassed_total{cache=\"search\"} 0",
       }) {
    EXPECT_NE(text.find(std::string(line) + "\n"), std::string::npos) << line << "\n" << text;
  }
}

TEST_F(SharedEmbeddingTest, SecondReplicaGetsTheFirstsVectorWithoutEncoding) {
  CountingEncoder encoder_a, encoder_b;
  Replica a = MakeReplica(encoder_a);
  Replica b = MakeReplica(encoder_b);

  const encode::Vector computed = Embed(*a.router, "alice drinks green tea");
  EXPECT_EQ(encoder_a.texts(), 1);
  ASSERT_EQ(EmbeddingKeys().size(), 1u);
  const std::string key = EmbeddingKeys().front();
  EXPECT_EQ(key.size(), std::string("t:emb:").size() + 64) << key;
  const auto ttl = Run({"PTTL", key}).integer;
  EXPECT_GT(ttl, 3'590'000) << "SET ... PX cache.ttl";

  const encode::Vector shared = Embed(*b.router, "alice drinks green tea");
  EXPECT_EQ(encoder_b.texts(), 0) << "served from Redis";
  EXPECT_TRUE(BitIdentical(shared, computed));
  EXPECT_EQ(Series(kSharedHits), 1);
  EXPECT_EQ(Series(kSharedMisses), 1) << "replica A's first lookup";

  // The Redis hit filled B's own cache: a repeat does not reach Redis.
  const int mgets = Calls("mget");
  EXPECT_TRUE(BitIdentical(Embed(*b.router, "alice drinks green tea"), computed));
  EXPECT_EQ(Calls("mget"), mgets);
  EXPECT_EQ(b.router->cache()->hits(), 1u);
}

TEST_F(SharedEmbeddingTest, WorksWithTheInProcessCacheTurnedOff) {
  CountingEncoder encoder_a, encoder_b;
  Replica a = MakeReplica(encoder_a);
  auto router_b = encode::Router::Single(encoder_b, /*cache_size=*/0);
  router_b->SetSharedCache(MakeReplica(encoder_b).shared);
  const encode::Vector computed = Embed(*a.router, "no local cache");
  EXPECT_TRUE(BitIdentical(Embed(*router_b, "no local cache"), computed));
  EXPECT_TRUE(BitIdentical(Embed(*router_b, "no local cache"), computed));
  EXPECT_EQ(encoder_b.texts(), 0);
  EXPECT_EQ(Series(kSharedHits), 2) << "each embed asks Redis";
}

TEST_F(SharedEmbeddingTest, ValuesExpireAfterTheTtl) {
  CountingEncoder encoder_a, encoder_b;
  Replica a = MakeReplica(encoder_a, milliseconds(150));
  Replica b = MakeReplica(encoder_b, milliseconds(150));
  Embed(*a.router, "short lived");
  ASSERT_EQ(EmbeddingKeys().size(), 1u);
  EXPECT_LE(Run({"PTTL", EmbeddingKeys().front()}).integer, 150);

  const auto deadline = Clock::now() + std::chrono::seconds(5);
  while (!EmbeddingKeys().empty() && Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(20));
  }
  EXPECT_TRUE(EmbeddingKeys().empty()) << "gone after the TTL";
  Embed(*b.router, "short lived");
  EXPECT_EQ(encoder_b.texts(), 1) << "expired: computed again";
}

TEST_F(SharedEmbeddingTest, ACorruptValueIsAMissRecomputedAndOverwritten) {
  CountingEncoder encoder_a;
  Replica a = MakeReplica(encoder_a);
  const encode::Vector computed = Embed(*a.router, "some memory");
  ASSERT_EQ(EmbeddingKeys().size(), 1u);
  const std::string key = EmbeddingKeys().front();

  for (const std::string& garbage :
       {std::string("garbage"), EncodeEmbedding(encode::Vector(8, 0.5f))}) {
    SCOPED_TRACE(garbage.size());
    Run({"SET", key, garbage});
    const double rejected = Series(kRejected);
    CountingEncoder encoder;
    Replica fresh = MakeReplica(encoder);  // an empty local cache
    EXPECT_TRUE(BitIdentical(Embed(*fresh.router, "some memory"), computed));
    EXPECT_EQ(encoder.texts(), 1) << "the corrupt value was not used";
    EXPECT_EQ(Series(kRejected), rejected + 1);
    auto stored = DecodeEmbedding(Run({"GET", key}).text, computed.size());
    ASSERT_TRUE(stored.has_value()) << "overwritten with the computed vector";
    EXPECT_TRUE(BitIdentical(*stored, computed));
  }
}

TEST_F(SharedEmbeddingTest, WithRedisStoppedEmbedsSucceedAndTheBypassIsCounted) {
  CountingEncoder encoder_a, encoder_b;
  Replica a = MakeReplica(encoder_a);
  redis_.Stop();

  const auto started = Clock::now();
  for (int i = 0; i < 5; ++i) {
    const encode::Vector v = Embed(*a.router, "text " + std::to_string(i));
    EXPECT_EQ(v.size(), encoder_a.Dimension());
  }
  EXPECT_LT(Clock::now() - started, std::chrono::seconds(2)) << "no waiting on a dead Redis";
  EXPECT_EQ(encoder_a.texts(), 5);
  EXPECT_GE(Series(kBypassed), 5);
  EXPECT_FALSE(a.client->up());

  // Back on the same port: the client reconnects by itself and the tier works again.
  ASSERT_TRUE(redis_.Start()) << redis_.error();
  ASSERT_TRUE(WaitUp(*a.client));
  Embed(*a.router, "after the outage");
  Replica b = MakeReplica(encoder_b);
  Embed(*b.router, "after the outage");
  EXPECT_EQ(encoder_b.texts(), 0) << "shared again";
}

TEST_F(SharedEmbeddingTest, WithoutTheTierNothingIsWrittenToRedis) {
  CountingEncoder encoder;
  Replica a = MakeReplica(encoder);
  a.router->SetSharedCache(nullptr);  // what `mann serve` does with cache.enabled=false
  EXPECT_EQ(a.router->shared_cache(), nullptr);
  Embed(*a.router, "private");
  std::vector<encode::Vector> out;
  const std::vector<std::string> texts = {"one", "two", "three"};
  ASSERT_TRUE(a.router->EmbedBatch(a.router->ForText(text::Language::kEnglish), texts, &out).ok());
  EXPECT_EQ(Run({"DBSIZE"}).integer, 0);
  EXPECT_EQ(Calls("mget"), 0);
}

TEST_F(SharedEmbeddingTest, ABatchEncodesOnlyWhatRedisLacksInOneRoundTripEachWay) {
  CountingEncoder encoder_a, encoder_b;
  Replica a = MakeReplica(encoder_a);
  Replica b = MakeReplica(encoder_b);
  std::vector<std::string> texts;
  for (int i = 0; i < 10; ++i) texts.push_back("memory number " + std::to_string(i));

  // K = 4 of them reach Redis through replica A, one by one.
  for (int i : {1, 4, 5, 8}) Embed(*a.router, texts[i]);
  ASSERT_EQ(EmbeddingKeys().size(), 4u);
  const int mgets = Calls("mget");
  const int evals = Calls("eval");

  std::vector<encode::Vector> out;
  ASSERT_TRUE(b.router->EmbedBatch(b.router->ForText(text::Language::kEnglish), texts, &out).ok());
  EXPECT_EQ(encoder_b.texts(), 6) << "N - K";
  EXPECT_EQ(encoder_b.batches(), 1);
  EXPECT_EQ(Calls("mget"), mgets + 1) << "one MGET for the batch";
  EXPECT_EQ(Calls("eval"), evals + 1) << "one write-back for the 6 computed";
  EXPECT_EQ(EmbeddingKeys().size(), 10u);
  ASSERT_EQ(out.size(), texts.size());
  for (std::size_t i = 0; i < texts.size(); ++i) {
    EXPECT_TRUE(BitIdentical(out[i], Embed(*a.router, texts[i]))) << "in order: " << i;
  }
  EXPECT_EQ(Series(kSharedHits), 4 + 6) << "B's 4, then A's 6 that B wrote";

  // Every text now in Redis: a third replica encodes nothing.
  CountingEncoder encoder_c;
  Replica c = MakeReplica(encoder_c);
  ASSERT_TRUE(c.router->EmbedBatch(c.router->ForText(text::Language::kEnglish), texts, &out).ok());
  EXPECT_EQ(encoder_c.texts(), 0);
}

}  // namespace
}  // namespace mann::cache
