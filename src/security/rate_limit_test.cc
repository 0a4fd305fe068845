#include <atomic>
#include <mutex>
#include <thread>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/metrics/registry.h>
#include <mann/security/principal.h>
#include <mann/security/rate_limit.h>
#include <mann/server/router.h>

namespace mann::security {
namespace {

namespace json = boost::json;
using namespace std::chrono_literals;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Clock = std::chrono::steady_clock;

RateLimitRule Rule(std::string method, std::string route, std::int64_t limit,
                   std::chrono::nanoseconds period) {
  return {std::move(method), std::move(route), limit, period};
}

// ---- Rules -------------------------------------------------------------------------------------

TEST(RateLimitRules, ParsesMethodRouteCountAndUnit) {
  Result<std::vector<RateLimitRule>> rules =
      ParseRateLimitRules("POST /memories=10/minute, * /search=120/minute, * *=600/minute");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  EXPECT_THAT(*rules, ElementsAre(Rule("POST", "/memories", 10, 1min),
                                  Rule("*", "/search", 120, 1min), Rule("*", "*", 600, 1min)));

  rules = ParseRateLimitRules(
      " get  /memories/{id} = 5 / s ,delete /memories/{id}=1/Hours,, PUT *=1000000000/m,"
      "GET /x=2/second,GET /y=3/hour");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  EXPECT_THAT(*rules, ElementsAre(Rule("GET", "/memories/{id}", 5, 1s),
                                  Rule("DELETE", "/memories/{id}", 1, 1h),
                                  Rule("PUT", "*", 1'000'000'000, 1min), Rule("GET", "/x", 2, 1s),
                                  Rule("GET", "/y", 3, 1h)));
  EXPECT_TRUE(ParseRateLimitRules("").value().empty());
  EXPECT_TRUE(ParseRateLimitRules(" , ").value().empty());
  // Two rules on one route with different windows are both kept.
  EXPECT_EQ(ParseRateLimitRules("* *=10/second, * *=100/minute").value().size(), 2u);
}

TEST(RateLimitRules, RefusesMalformedRulesNamingThemAndTheProblem) {
  struct Case {
    const char* text;
    const char* want;
  };
  for (const Case& c : std::vector<Case>{
           {"POST /memories", "rule \"POST /memories\": must be METHOD ROUTE=N/UNIT"},
           {"/memories=10/minute", "must name a method and a route"},
           {"POST /a /b=10/minute", "must name a method and a route"},
           {"PO$T /a=1/s", "the method must be \"*\" or a word such as POST, got \"PO$T\""},
           {"POST memories=1/s", "the route must be \"*\" or a route template starting with '/'"},
           {"POST /a=10", "the limit must be N/UNIT"},
           {"POST /a=ten/minute", "the count must be an integer in 1..1000000000, got \"ten\""},
           {"POST /a=0/minute", "got \"0\""},
           {"POST /a=-1/minute", "got \"-1\""},
           {"POST /a=1000000001/minute", "got \"1000000001\""},
           {"POST /a=/minute", "got \"\""},
           {"POST /a=1.5/minute", "got \"1.5\""},
           {"POST /a=10/day", "the unit must be second, minute or hour (or s, m, h), got \"day\""},
           {"POST /a=10/", "got \"\""},
           {"* *=1/s, POST /a=1/s, * *=1/s", "rule \"* *=1/second\" is written twice"},
           {"post /a=1/s, POST /a=1/second", "written twice"},
       }) {
    Result<std::vector<RateLimitRule>> rules = ParseRateLimitRules(c.text);
    ASSERT_FALSE(rules.ok()) << c.text;
    EXPECT_EQ(rules.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(rules.status().message(), HasSubstr(c.want)) << c.text;
  }
}

TEST(RateLimitRules, DescribeAndToStringReadWell) {
  EXPECT_EQ(Rule("POST", "/memories", 10, 1min).Describe(),
            "10 requests per minute on POST /memories");
  EXPECT_EQ(Rule("*", "/search", 1, 1s).Describe(), "1 request per second on /search");
  EXPECT_EQ(Rule("GET", "*", 5, 1h).Describe(), "5 requests per hour on GET requests");
  EXPECT_EQ(Rule("*", "*", 600, 90s).Describe(), "600 requests per 90 seconds on all requests");
  EXPECT_EQ(Rule("POST", "/memories", 10, 1min).ToString(), "POST /memories=10/minute");
  EXPECT_EQ(Rule("*", "*", 3, 1h).ToString(), "* *=3/hour");
  EXPECT_EQ(Rule("*", "*", 3, 90s).ToString(), "* *=3/90s");
  EXPECT_EQ(Rule("*", "*", 3, 1500ms).ToString(), "* *=3/1500000000ns");
  // What ToString writes for the standard units parses back to the same rule.
  for (const RateLimitRule& rule :
       {Rule("POST", "/memories", 10, 1min), Rule("*", "*", 1, 1s), Rule("GET", "/x", 7, 1h)}) {
    EXPECT_THAT(ParseRateLimitRules(rule.ToString()).value(), ElementsAre(rule));
  }
}

TEST(RateLimitRules, CheckRuleRoutesFindsRulesThatCouldNeverApply) {
  const std::vector<std::pair<std::string, std::string>> routes = {
      {"GET", "/memories"}, {"POST", "/memories"}, {"GET", "/memories/{id}"}};
  EXPECT_TRUE(CheckRuleRoutes(ParseRateLimitRules("POST /memories=1/s, * /memories/{id}=1/s, "
                                                  "* *=1/s")
                                  .value(),
                              routes)
                  .ok());
  Status s = CheckRuleRoutes(ParseRateLimitRules("GET /memory=1/s").value(), routes);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("no route has the template \"/memory\""));
}

// ---- GCRA in the local store -------------------------------------------------------------------

TEST(RateLimitStoreTest, AllowsABurstOfLimitThenOnePerInterval) {
  LocalRateLimitStore store;
  const RateLimitRule rule = Rule("*", "*", 10, 1min);  // interval 6 s
  const Clock::time_point t0{1h};
  for (int i = 0; i < 10; ++i) {
    Decision d = store.Acquire("b", rule, t0);
    ASSERT_TRUE(d.allowed) << i;
    EXPECT_EQ(d.remaining, 9 - i);
  }
  Decision refused = store.Acquire("b", rule, t0);
  EXPECT_FALSE(refused.allowed);
  EXPECT_EQ(refused.retry_after, 6s);
  EXPECT_EQ(refused.remaining, 0);

  // Refusals do not push the bucket further back.
  EXPECT_EQ(store.Acquire("b", rule, t0 + 2s).retry_after, 4s);
  EXPECT_FALSE(store.Acquire("b", rule, t0 + 6s - 1ns).allowed);
  EXPECT_TRUE(store.Acquire("b", rule, t0 + 6s).allowed);
  EXPECT_FALSE(store.Acquire("b", rule, t0 + 6s).allowed);

  // After a full period the whole burst is back.
  for (int i = 0; i < 10; ++i) ASSERT_TRUE(store.Acquire("b", rule, t0 + 2min).allowed) << i;
  EXPECT_FALSE(store.Acquire("b", rule, t0 + 2min).allowed);
}

TEST(RateLimitStoreTest, SteadyTrafficAtTheRateIsNeverRefused) {
  LocalRateLimitStore store;
  const RateLimitRule rule = Rule("*", "*", 4, 1s);  // interval 250 ms
  const Clock::time_point t0{1h};
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(store.Acquire("b", rule, t0 + i * 250ms).allowed) << i;
  }
}

TEST(RateLimitStoreTest, BucketsAreIndependent) {
  LocalRateLimitStore store;
  const RateLimitRule rule = Rule("*", "*", 1, 1min);
  const Clock::time_point t0{1h};
  EXPECT_TRUE(store.Acquire("a", rule, t0).allowed);
  EXPECT_FALSE(store.Acquire("a", rule, t0).allowed);
  EXPECT_TRUE(store.Acquire("b", rule, t0).allowed);
  EXPECT_EQ(store.size(), 2u);
}

TEST(RateLimitStoreTest, ThreadsHammeringOneBucketNeverExceedTheLimit) {
  LocalRateLimitStore store;
  const RateLimitRule rule = Rule("*", "*", 500, 1h);
  const Clock::time_point t0{1h};
  std::atomic<int> allowed{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 1000; ++i) {
        // Time moves a little, well short of one interval (7.2 s) over the whole run.
        if (store.Acquire("shared", rule, t0 + std::chrono::microseconds(i + t)).allowed) {
          allowed.fetch_add(1);
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(allowed.load(), 500);
}

TEST(RateLimitStoreTest, SweepDropsBucketsWhoseTheoreticalArrivalHasPassed) {
  LocalRateLimitStore store;
  const RateLimitRule rule = Rule("*", "*", 2, 1s);  // one request leaves TAT at now + 500 ms
  const Clock::time_point t0{1h};
  for (int i = 0; i < 100; ++i) ASSERT_TRUE(store.Acquire(std::to_string(i), rule, t0).allowed);
  ASSERT_TRUE(store.Acquire("busy", rule, t0).allowed);
  ASSERT_TRUE(store.Acquire("busy", rule, t0).allowed);  // TAT at t0 + 1 s
  EXPECT_EQ(store.size(), 101u);
  EXPECT_EQ(store.Sweep(t0 + 499ms), 0u);
  EXPECT_EQ(store.Sweep(t0 + 500ms), 100u);
  EXPECT_EQ(store.size(), 1u);
  // The survivor kept its state: one interval has passed, so one request fits, not a burst.
  EXPECT_TRUE(store.Acquire("busy", rule, t0 + 500ms).allowed);
  EXPECT_FALSE(store.Acquire("busy", rule, t0 + 500ms).allowed);
}

TEST(RateLimitStoreTest, AcquireSweepsEachShardPeriodically) {
  LocalRateLimitStore store({.shards = 1, .sweep_interval = 10s});
  const RateLimitRule rule = Rule("*", "*", 10, 1s);
  const Clock::time_point t0{1h};
  for (int i = 0; i < 50; ++i) ASSERT_TRUE(store.Acquire(std::to_string(i), rule, t0).allowed);
  ASSERT_TRUE(store.Acquire("x", rule, t0 + 5s).allowed);
  EXPECT_EQ(store.size(), 51u);  // expired, but the next sweep is not due
  ASSERT_TRUE(store.Acquire("y", rule, t0 + 10s).allowed);
  EXPECT_EQ(store.size(), 1u);  // everything but "y" had expired
}

TEST(RateLimitStoreTest, AFullStoreEvictsTheBucketNearestToExpiring) {
  LocalRateLimitStore store({.max_entries = 3, .shards = 1, .sweep_interval = 1h});
  const RateLimitRule rule = Rule("*", "*", 1, 1min);
  const Clock::time_point t0{1h};
  ASSERT_TRUE(store.Acquire("a", rule, t0).allowed);
  ASSERT_TRUE(store.Acquire("b", rule, t0 + 1s).allowed);
  ASSERT_TRUE(store.Acquire("c", rule, t0 + 2s).allowed);
  ASSERT_TRUE(store.Acquire("d", rule, t0 + 3s).allowed);  // evicts "a", whose TAT is earliest
  EXPECT_EQ(store.size(), 3u);
  EXPECT_EQ(store.evictions(), 1u);

  // "c" and "d" kept their state; "a" was forgotten and starts afresh, evicting "b" in turn.
  EXPECT_FALSE(store.Acquire("d", rule, t0 + 4s).allowed);
  EXPECT_FALSE(store.Acquire("c", rule, t0 + 4s).allowed);
  EXPECT_TRUE(store.Acquire("a", rule, t0 + 4s).allowed);
  EXPECT_EQ(store.evictions(), 2u);
  EXPECT_EQ(store.size(), 3u);

  // At a full shard, expired buckets make room before anything is evicted (the periodic sweep
  // is an hour away here).
  EXPECT_TRUE(store.Acquire("e", rule, t0 + 10min).allowed);
  EXPECT_EQ(store.evictions(), 2u);
  EXPECT_EQ(store.size(), 1u);
}

// ---- The middleware ----------------------------------------------------------------------------

// Attaches a Principal named by the X-Key header, standing in for the auth middleware.
server::Response FakeAuth(server::Request& request, const server::Next& next) {
  if (auto key = request.Header("X-Key")) {
    Principal principal;
    principal.key_name = std::string(*key);
    AttachPrincipal(request, std::move(principal));
  }
  return next(request);
}

class RateLimitMiddlewareTest : public ::testing::Test {
 protected:
  void Build(std::string_view rules, std::shared_ptr<RateLimitStore> store = nullptr) {
    auto handler = [this](const server::Request&) {
      ++handled_;
      return server::Response::Json({{"ok", true}});
    };
    for (const char* method : {"GET", "POST"}) {
      ASSERT_TRUE(router_.Add(method, "/memories", handler).ok());
      ASSERT_TRUE(router_.Add(method, "/search", handler).ok());
    }
    Result<std::vector<RateLimitRule>> parsed = ParseRateLimitRules(rules);
    ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
    router_.Use(FakeAuth);
    router_.Use(RateLimitMiddleware({.rules = std::move(parsed).value(),
                                     .store = std::move(store),
                                     .clock = [this] { return now_; },
                                     .registry = &registry_}));
  }

  server::Response Call(std::string method, std::string target,
                        std::string client = "127.0.0.1:50312", std::string key = "") {
    server::Request request;
    request.method = std::move(method);
    request.target = std::move(target);
    request.client_address = std::move(client);
    if (!key.empty()) request.headers.Add("X-Key", key);
    return router_.Handle(request);
  }

  double Limited(std::string_view route) {
    auto family =
        registry_.AddCounter("mann_http_rate_limited_total",
                             "Requests refused by a rate limit, by the rule's route.", {"route"});
    EXPECT_TRUE(family.ok()) << family.status().ToString();
    return family.ok() ? (*family)->WithLabels({route}).Value() : -1;
  }

  metrics::Registry registry_;
  server::Router router_;
  Clock::time_point now_{1h};
  int handled_ = 0;
};

TEST_F(RateLimitMiddlewareTest, RefusesOverTheLimitWith429RetryAfterAndTheRule) {
  Build("POST /memories=10/minute");
  for (int i = 0; i < 10; ++i) ASSERT_EQ(Call("POST", "/memories").status, 200) << i;
  server::Response refused = Call("POST", "/memories");
  EXPECT_EQ(refused.status, 429);
  EXPECT_EQ(refused.headers.Get("Retry-After"), "6");
  EXPECT_EQ(json::parse(refused.body).at("detail"),
            "rate limit exceeded: 10 requests per minute on POST /memories");
  EXPECT_EQ(handled_, 10);
  EXPECT_EQ(Limited("/memories"), 1);

  // Other methods and routes are not covered by the rule.
  EXPECT_EQ(Call("GET", "/memories").status, 200);
  EXPECT_EQ(Call("POST", "/search").status, 200);
}

TEST_F(RateLimitMiddlewareTest, RetryAfterRoundsUpToWholeSecondsAndIsAtLeastOne) {
  Build("POST /memories=1/minute");
  ASSERT_EQ(Call("POST", "/memories").status, 200);
  now_ += 59s + 1ms;  // 999 ms to go
  EXPECT_EQ(Call("POST", "/memories").headers.Get("Retry-After"), "1");
  now_ -= 30s;  // 30.999 s to go
  EXPECT_EQ(Call("POST", "/memories").headers.Get("Retry-After"), "31");
}

TEST_F(RateLimitMiddlewareTest, SubSecondWaitsStillSayOneSecond) {
  Build("* *=5/second");  // interval 200 ms
  for (int i = 0; i < 5; ++i) ASSERT_EQ(Call("GET", "/search").status, 200);
  EXPECT_EQ(Call("GET", "/search").headers.Get("Retry-After"), "1");
}

TEST_F(RateLimitMiddlewareTest, RecoversAsTimePasses) {
  Build("POST /memories=2/minute");  // interval 30 s
  ASSERT_EQ(Call("POST", "/memories").status, 200);
  ASSERT_EQ(Call("POST", "/memories").status, 200);
  ASSERT_EQ(Call("POST", "/memories").status, 429);
  now_ += 30s;
  EXPECT_EQ(Call("POST", "/memories").status, 200);
  EXPECT_EQ(Call("POST", "/memories").status, 429);
  now_ += 1h;
  EXPECT_EQ(Call("POST", "/memories").status, 200);
  EXPECT_EQ(Call("POST", "/memories").status, 200);
  EXPECT_EQ(Call("POST", "/memories").status, 429);
}

TEST_F(RateLimitMiddlewareTest, KeysAndClientAddressesHaveSeparateBuckets) {
  Build("* *=1/minute");
  EXPECT_EQ(Call("GET", "/search", "127.0.0.1:1000").status, 200);
  // Another port of the same address is the same client.
  EXPECT_EQ(Call("GET", "/search", "127.0.0.1:2000").status, 429);
  EXPECT_EQ(Call("GET", "/search", "127.0.0.2:1000").status, 200);
  EXPECT_EQ(Call("GET", "/search", "[::1]:1000").status, 200);
  EXPECT_EQ(Call("GET", "/search", "[::1]:2000").status, 429);

  // A key has its own budget, whatever address it comes from, apart from its address's.
  EXPECT_EQ(Call("GET", "/search", "127.0.0.1:1000", "billing").status, 200);
  EXPECT_EQ(Call("GET", "/search", "10.9.9.9:1000", "billing").status, 429);
  EXPECT_EQ(Call("GET", "/search", "127.0.0.1:1000", "ops").status, 200);
}

TEST_F(RateLimitMiddlewareTest, StarRulesCoverEveryMethodAndRouteIncludingUnmatchedPaths) {
  Build("* *=3/minute");
  EXPECT_EQ(Call("GET", "/memories").status, 200);
  EXPECT_EQ(Call("POST", "/search").status, 200);
  EXPECT_EQ(Call("GET", "/nope").status, 404);
  server::Response refused = Call("GET", "/nope");
  EXPECT_EQ(refused.status, 429);
  EXPECT_EQ(json::parse(refused.body).at("detail"),
            "rate limit exceeded: 3 requests per minute on all requests");
  EXPECT_EQ(Limited("*"), 1);
}

TEST_F(RateLimitMiddlewareTest, RouteRulesIgnoreUnmatchedPathsAndHeadCountsAsGet) {
  Build("* /search=1/minute, GET /memories=1/minute");
  EXPECT_EQ(Call("GET", "/nope").status, 404);
  EXPECT_EQ(Call("GET", "/nope").status, 404);
  EXPECT_EQ(Call("POST", "/search").status, 200);
  EXPECT_EQ(Call("GET", "/search").status, 429);
  EXPECT_EQ(Call("HEAD", "/memories").status, 200);
  EXPECT_EQ(Call("GET", "/memories").status, 429);
}

TEST_F(RateLimitMiddlewareTest, EveryMatchingRuleMustPass) {
  Build("POST /memories=2/minute, * *=3/minute");
  EXPECT_EQ(Call("POST", "/memories").status, 200);
  EXPECT_EQ(Call("POST", "/memories").status, 200);
  server::Response refused = Call("POST", "/memories");
  EXPECT_EQ(refused.status, 429);
  EXPECT_THAT(std::string(json::parse(refused.body).at("detail").as_string()),
              HasSubstr("2 requests per minute on POST /memories"));
  // The refused request still spent the global budget, which is now empty too.
  refused = Call("GET", "/search");
  EXPECT_EQ(refused.status, 429);
  EXPECT_THAT(std::string(json::parse(refused.body).at("detail").as_string()),
              HasSubstr("3 requests per minute on all requests"));
  EXPECT_EQ(Limited("/memories"), 1);
  EXPECT_EQ(Limited("*"), 1);
  EXPECT_EQ(handled_, 2);
}

TEST_F(RateLimitMiddlewareTest, TheLongestWaitIsTheOneReported) {
  Build("* *=1/second, * /search=1/hour");
  ASSERT_EQ(Call("GET", "/search").status, 200);
  server::Response refused = Call("GET", "/search");
  EXPECT_EQ(refused.status, 429);
  EXPECT_EQ(refused.headers.Get("Retry-After"), "3600");
}

// Records bucket keys and allows everything.
class RecordingStore : public RateLimitStore {
 public:
  Decision Acquire(std::string_view bucket_key, const RateLimitRule&, Clock::time_point) override {
    std::lock_guard lock(mu_);
    keys.emplace_back(bucket_key);
    return {true, std::chrono::nanoseconds(0), 1};
  }
  std::mutex mu_;
  std::vector<std::string> keys;
};

TEST_F(RateLimitMiddlewareTest, BucketKeysNameTheCallerAndTheRule) {
  auto store = std::make_shared<RecordingStore>();
  Build("POST /memories=10/minute, * *=600/minute", store);
  ASSERT_EQ(Call("POST", "/memories", "[::1]:5000").status, 200);
  ASSERT_EQ(Call("GET", "/search", "127.0.0.1:5000", "billing").status, 200);
  EXPECT_THAT(store->keys,
              ElementsAre("ip:[::1]|POST /memories=10/60000000000ns",
                          "ip:[::1]|* *=600/60000000000ns", "key:billing|* *=600/60000000000ns"));
}

TEST(RateLimitMiddleware, WithoutRulesOnlyCallsNext) {
  auto store = std::make_shared<RecordingStore>();
  server::Router router;
  ASSERT_TRUE(router
                  .Add("GET", "/x",
                       [](const server::Request&) {
                         return server::Response::Json({{"ok", true}});
                       })
                  .ok());
  metrics::Registry registry;
  RateLimitOptions options;
  options.store = store;
  options.registry = &registry;
  router.Use(RateLimitMiddleware(std::move(options)));
  for (int i = 0; i < 5; ++i) {
    server::Request request;
    request.method = "GET";
    request.target = "/x";
    EXPECT_EQ(router.Handle(request).status, 200);
  }
  EXPECT_TRUE(store->keys.empty());
  EXPECT_THAT(registry.Render(), ::testing::Not(HasSubstr("mann_http_rate_limited_total")));
}

}  // namespace
}  // namespace mann::security
