// POST /search through the result cache, end to end on a real bank: hits are the miss's bytes,
// requests that differ in any field are apart, and every write handler invalidates.
#include <filesystem>
#include <memory>
#include <string>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <mann/api/api.h>
#include <mann/cache/result_cache.h>
#include <mann/core/clock.h>
#include <mann/metrics/registry.h>
#include <mann/runtime/runtime.h>
#include <mann/server/router.h>

#include "../core/testing_temp_dir.h"
#include "../runtime/testing_runtime.h"
#include "testing_redis.h"

namespace mann::cache {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

class SearchCacheApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path();
    ASSERT_FALSE(root_.empty());
    auto rt = runtime::Runtime::Open(testing::TestRuntimeConfig(root_), clock_);
    ASSERT_TRUE(rt.ok()) << rt.status().ToString();
    runtime_ = std::move(*rt);
  }
  void TearDown() override {
    apis_.clear();
    caches_.clear();
    runtime_.reset();
  }

  // A "replica" on the shared bank: an Api with a cache of its own (on `redis`, or in process).
  server::Router& Replica(std::shared_ptr<RedisClient> redis = nullptr) {
    caches_.push_back(std::make_unique<ResultCache>(
        ResultCacheOptions{.redis = std::move(redis), .registry = &registry_}));
    apis_.push_back(std::make_unique<api::Api>(
        *runtime_,
        api::ApiOptions{
            .draining = {}, .registry = &registry_, .search_cache = caches_.back().get()}));
    routers_.push_back(std::make_unique<server::Router>());
    EXPECT_TRUE(apis_.back()->RegisterRoutes(*routers_.back()).ok());
    return *routers_.back();
  }

  static server::Response Call(server::Router& router, std::string method, std::string target,
                               const json::value& body = nullptr) {
    server::Request request;
    request.method = std::move(method);
    request.target = std::move(target);
    if (!body.is_null()) {
      request.headers.Add("Content-Type", "application/json");
      request.body = json::serialize(body);
    }
    return router.Handle(request);
  }
  static std::string Search(server::Router& router, json::object body) {
    server::Response r = Call(router, "POST", "/search", body);
    EXPECT_EQ(r.status, 200) << r.body;
    EXPECT_EQ(r.content_type, "application/json");
    return r.body;
  }
  static std::string Add(server::Router& router, std::string content) {
    server::Response r = Call(router, "POST", "/memories",
                              json::object{{"user_id", "alice"}, {"content", std::move(content)}});
    EXPECT_EQ(r.status, 200) << r.body;
    return std::string(json::parse(r.body).at("memory_id").as_string());
  }
  double Hits() const {
    const std::string text = registry_.Render();
    const std::string series = "mann_cache_requests_total{cache=\"search\",result=\"hit\"} ";
    const std::size_t at = text.find(series);
    return at == std::string::npos ? 0 : std::stod(text.substr(at + series.size()));
  }

  testing::TempDir dir_{"mann-search-cache"};
  fs::path root_;
  FakeClock clock_;
  metrics::Registry registry_;
  std::unique_ptr<runtime::Runtime> runtime_;
  std::vector<std::unique_ptr<ResultCache>> caches_;
  std::vector<std::unique_ptr<api::Api>> apis_;
  std::vector<std::unique_ptr<server::Router>> routers_;
};

TEST_F(SearchCacheApiTest, AHitIsTheMissesBytesAndStillCountsAsARead) {
  server::Router& api = Replica();
  const std::string id = Add(api, "Alice drinks green tea every morning");
  Add(api, "The office is on the third floor");
  const json::object query{{"user_id", "alice"}, {"query", "what does alice drink"}};

  const std::string miss = Search(api, query);
  const std::string hit = Search(api, query);
  EXPECT_EQ(hit, miss);
  EXPECT_EQ(Hits(), 1);
  // The hit bumped the usage of its entry as the search did: two reads.
  Result<MemoryEntry> entry = runtime_->bank().Get("alice", id, /*touch=*/false);
  ASSERT_TRUE(entry.ok());
  EXPECT_EQ(entry->usage_count, 2);
}

TEST_F(SearchCacheApiTest, EveryFieldOfTheRequestIsPartOfTheKey) {
  server::Router& api = Replica();
  Add(api, "Alice drinks green tea");
  Add(api, "Alice drinks black coffee");
  const std::string base =
      Search(api, {{"user_id", "alice"}, {"query", "drinks"}, {"min_similarity", 0.5}});
  // The same request, written differently: a hit.
  EXPECT_EQ(Search(api, {{"user_id", "alice"}, {"query", "drinks"}, {"min_similarity", 0.50}}),
            base);
  EXPECT_EQ(Hits(), 1);
  // Each field changed: a miss.
  Search(api, {{"user_id", "alice"}, {"query", "drinks"}, {"min_similarity", 0.4}});
  Search(api, {{"user_id", "alice"}, {"query", "drinks"}, {"min_similarity", 0.5}, {"top_k", 1}});
  Search(api, {{"user_id", "alice"}, {"query", "Drinks"}, {"min_similarity", 0.5}});
  Search(api, {{"user_id", "bob"}, {"query", "drinks"}, {"min_similarity", 0.5}});
  EXPECT_EQ(Hits(), 1);
}

TEST_F(SearchCacheApiTest, EveryWriteHandlerInvalidatesTheNamespace) {
  server::Router& api = Replica();
  const std::string id = Add(api, "Alice drinks green tea");
  const json::object query{{"user_id", "alice"}, {"query", "alice tea"}};
  struct Write {
    const char* what;
    std::string method;
    std::string target;
    json::value body;
  };
  const Write writes[] = {
      {"POST /memories", "POST", "/memories",
       json::object{{"user_id", "alice"}, {"content", "Alice visited Hanoi in May"}}},
      {"PUT /memories/{id}", "PUT", "/memories/" + id,
       json::object{{"user_id", "alice"}, {"content", "Alice drinks jasmine tea"}}},
      {"POST /memories/{id}/forget", "POST", "/memories/" + id + "/forget",
       json::object{{"user_id", "alice"}}},
  };
  for (const Write& w : writes) {
    SCOPED_TRACE(w.what);
    const std::string before = Search(api, query);
    EXPECT_EQ(Search(api, query), before) << "cached";
    const double hits = Hits();
    EXPECT_EQ(Call(api, w.method, w.target, w.body).status, 200);
    Search(api, query);
    EXPECT_EQ(Hits(), hits) << "the search after the write was computed afresh";
  }

  const std::string other = Add(api, "Alice likes long walks");
  Search(api, query);
  Search(api, query);
  const double hits = Hits();
  EXPECT_EQ(Call(api, "DELETE", "/memories/" + other + "?user_id=alice").status, 200);
  const std::string after = Search(api, query);
  EXPECT_EQ(Hits(), hits) << "DELETE invalidated";
  EXPECT_EQ(after.find(other), std::string::npos) << "the deleted memory is not served";
}

TEST_F(SearchCacheApiTest, ReplicasOnOneRedisServeEachOthersAnswersUntilAWrite) {
  testing::TestingRedis redis;
  ASSERT_TRUE(redis.Start()) << redis.error();
  auto client = [&] {
    auto made = RedisClient::Create({.url = redis.url(), .registry = &registry_});
    EXPECT_TRUE(made.ok()) << made.status().ToString();
    return made.ok() ? *made : nullptr;
  };
  server::Router& a = Replica(client());
  server::Router& b = Replica(client());
  Add(a, "Alice drinks green tea");
  const json::object query{{"user_id", "alice"}, {"query", "tea"}};

  const std::string computed = Search(a, query);
  EXPECT_EQ(Search(b, query), computed) << "B's hit is A's answer, byte for byte";
  EXPECT_EQ(Hits(), 1);

  Add(b, "Alice drinks tea with milk");  // a write through B
  const std::string fresh = Search(a, query);
  EXPECT_NE(fresh, computed);
  EXPECT_NE(fresh.find("milk"), std::string::npos);
  EXPECT_EQ(Hits(), 1);
}

}  // namespace
}  // namespace mann::cache
