#include <chrono>
#include <filesystem>
#include <future>
#include <set>
#include <string>
#include <utility>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/api/api.h>
#include <mann/api/validation.h>
#include <mann/metrics/registry.h>
#include <mann/monitor/alerts.h>
#include <mann/monitor/health.h>
#include <mann/server/router.h>

#include "../core/testing_temp_dir.h"
#include "../runtime/testing_runtime.h"

namespace mann::api {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using ::testing::HasSubstr;

class ApiTest : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path();
    ASSERT_FALSE(root_.empty());
    auto rt = runtime::Runtime::Open(testing::TestRuntimeConfig(root_), clock_);
    ASSERT_TRUE(rt.ok()) << rt.status().ToString();
    runtime_ = std::move(*rt);
    api_ = std::make_unique<Api>(
        *runtime_, ApiOptions{.draining = [this] { return draining_; }, .registry = &registry_});
    ASSERT_TRUE(api_->RegisterRoutes(router_).ok());
  }
  void TearDown() override {
    api_.reset();
    runtime_.reset();
  }

  struct Answer {
    int status;
    json::value body;
  };

  Answer Call(std::string method, std::string target, std::string body = "") {
    server::Request request;
    request.method = std::move(method);
    request.target = std::move(target);
    if (!body.empty()) request.headers.Add("Content-Type", "application/json");
    request.body = std::move(body);
    server::Response response = router_.Handle(request);
    json::value parsed;
    if (response.content_type == "application/json") parsed = json::parse(response.body);
    return {response.status, std::move(parsed)};
  }

  Answer Post(std::string target, const json::value& body) {
    return Call("POST", std::move(target), json::serialize(body));
  }

  // The (loc, type) pairs of a 422's detail list.
  static std::set<std::pair<std::string, std::string>> Problems(const Answer& a) {
    std::set<std::pair<std::string, std::string>> out;
    for (const json::value& item : a.body.at("detail").as_array()) {
      out.emplace(json::serialize(item.at("loc")), std::string(item.at("type").as_string()));
    }
    return out;
  }

  testing::TempDir dir_{"mann-api"};
  fs::path root_;
  FakeClock clock_;
  bool draining_ = false;
  metrics::Registry registry_;
  std::unique_ptr<runtime::Runtime> runtime_;
  std::unique_ptr<Api> api_;
  server::Router router_;
};

TEST_F(ApiTest, OpenApiDocumentDescribesExactlyTheRegisteredRoutes) {
  std::set<std::pair<std::string, std::string>> routes;
  for (const auto& [method, path] : router_.Routes()) routes.emplace(method, path);

  const json::value doc = OpenApiDocument();
  EXPECT_EQ(doc.at("openapi").as_string().subview().substr(0, 2), "3.");
  std::set<std::pair<std::string, std::string>> documented;
  for (const auto& [path, item] : doc.at("paths").as_object()) {
    for (const auto& [method, op] : item.as_object()) {
      std::string upper(method);
      for (char& c : upper) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      documented.emplace(upper, std::string(path));
      // Every {param} of the template is declared as a path parameter.
      const std::string p(path);
      for (std::size_t open = p.find('{'); open != std::string::npos;
           open = p.find('{', open + 1)) {
        const std::string name = p.substr(open + 1, p.find('}', open) - open - 1);
        bool declared = false;
        if (const json::value* params = op.as_object().if_contains("parameters")) {
          for (const json::value& param : params->as_array()) {
            declared |= param.at("in") == "path" && param.at("name") == json::value(name);
          }
        }
        EXPECT_TRUE(declared) << method << " " << p << " does not declare {" << name << "}";
      }
    }
  }
  EXPECT_EQ(routes, documented);
  EXPECT_EQ(routes.size(), 15u);
}

TEST_F(ApiTest, AddReportsEveryBadFieldAtOnce) {
  const Answer a = Post("/memories", {{"content", 5},
                                      {"importance_weight", 7},
                                      {"tags", {"ok", 3}},
                                      {"metadata", "x"},
                                      {"user_id", ""},
                                      {"unknown_field", true}});
  ASSERT_EQ(a.status, 422);
  const std::set<std::pair<std::string, std::string>> expected = {
      {R"(["body","content"])", "string_type"},
      {R"(["body","importance_weight"])", "less_than_equal"},
      {R"(["body","tags",1])", "string_type"},
      {R"(["body","metadata"])", "dict_type"},
      {R"(["body","user_id"])", "value_error"},
  };
  EXPECT_EQ(Problems(a), expected);
}

TEST_F(ApiTest, ValidationRulesOfEachEndpoint) {
  struct Case {
    std::string target;
    json::value body;
    std::string loc;
    std::string type;
  };
  const Case cases[] = {
      {"/memories", json::object{}, R"(["body","content"])", "missing"},
      {"/memories", {{"content", ""}}, R"(["body","content"])", "string_too_short"},
      {"/memories",
       {{"content", "x"}, {"importance_weight", -0.5}},
       R"(["body","importance_weight"])",
       "greater_than_equal"},
      {"/memories",
       {{"content", "x"}, {"importance_weight", "high"}},
       R"(["body","importance_weight"])",
       "float_type"},
      {"/memories", json::array{1}, R"(["body"])", "dict_type"},
      {"/search", json::object{}, R"(["body","query"])", "missing"},
      {"/search", {{"query", "x"}, {"top_k", 0}}, R"(["body","top_k"])", "greater_than_equal"},
      {"/search", {{"query", "x"}, {"top_k", 51}}, R"(["body","top_k"])", "less_than_equal"},
      {"/search", {{"query", "x"}, {"top_k", 2.5}}, R"(["body","top_k"])", "int_type"},
      {"/search",
       {{"query", "x"}, {"min_similarity", 1.5}},
       R"(["body","min_similarity"])",
       "less_than_equal"},
      {"/query",
       {{"input_text", "hi"}, {"retrieve_memories", "yes"}},
       R"(["body","retrieve_memories"])",
       "bool_type"},
      {"/query", json::object{}, R"(["body","input_text"])", "missing"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.target + " " + json::serialize(c.body));
    const Answer a = Post(c.target, c.body);
    ASSERT_EQ(a.status, 422);
    EXPECT_EQ(Problems(a), (std::set<std::pair<std::string, std::string>>{{c.loc, c.type}}));
  }
}

TEST_F(ApiTest, MalformedJsonIs400AndAnEmptyBodyIsAMissingBody) {
  const Answer bad = Call("POST", "/memories", "{\"content\": ");
  EXPECT_EQ(bad.status, 400);
  EXPECT_THAT(std::string(bad.body.at("detail").as_string()), HasSubstr("JSON"));
  const Answer empty = Call("POST", "/search", "");
  EXPECT_EQ(empty.status, 422);
  EXPECT_EQ(Problems(empty),
            (std::set<std::pair<std::string, std::string>>{{R"(["body"])", "missing"}}));
}

TEST_F(ApiTest, WriteHeadStatusesAndSearchHitShape) {
  const Answer first =
      Post("/memories",
           {{"content", "My cat is called Miso"}, {"tags", {"pets"}}, {"importance_weight", 2}});
  ASSERT_EQ(first.status, 200) << json::serialize(first.body);
  EXPECT_EQ(first.body.at("status"), "created");
  const std::string id(first.body.at("memory_id").as_string());
  const Answer again = Post("/memories", {{"content", "My cat is called Miso"}});
  EXPECT_EQ(again.body.at("status"), "unchanged");
  EXPECT_EQ(again.body.at("memory_id"), json::value(id));

  const Answer hits = Post("/search", {{"query", "cat Miso"}});
  ASSERT_EQ(hits.status, 200);
  ASSERT_EQ(hits.body.as_array().size(), 1u);
  const json::object& hit = hits.body.as_array()[0].as_object();
  std::set<std::string> keys;
  for (const auto& kv : hit) keys.emplace(kv.key());
  EXPECT_EQ(keys, (std::set<std::string>{"memory_id", "content", "context", "importance_weight",
                                         "usage_count", "tags", "timestamp", "similarity",
                                         "attention_weight"}));
  EXPECT_EQ(hit.at("memory_id"), json::value(id));
  EXPECT_EQ(hit.at("importance_weight").to_number<double>(), 2.0);
  EXPECT_EQ(hit.at("tags"), (json::array{"pets"}));
}

TEST_F(ApiTest, UnknownIdsAre404NamingTheId) {
  const std::string id = "01900000-0000-7000-8000-000000000000";
  for (const auto& [method, target, body] :
       std::vector<std::tuple<std::string, std::string, std::string>>{
           {"GET", "/memories/" + id, ""},
           {"PUT", "/memories/" + id, R"({"content": "x"})"},
           {"DELETE", "/memories/" + id, ""},
           {"GET", "/memories/" + id + "/history", ""},
           {"POST", "/memories/" + id + "/forget", ""}}) {
    SCOPED_TRACE(method + " " + target);
    const Answer a = Call(method, target, body);
    EXPECT_EQ(a.status, 404);
    EXPECT_EQ(a.body.at("detail"), json::value("memory " + id + " not found"));
  }
}

TEST_F(ApiTest, UpdateChecksTheBodyIdAgainstThePath) {
  const Answer added = Post("/memories", {{"content", "The sky is blue"}});
  const std::string id(added.body.at("memory_id").as_string());
  const Answer mismatch =
      Call("PUT", "/memories/" + id, R"({"memory_id": "other", "importance_weight": 2})");
  EXPECT_EQ(mismatch.status, 422);
  EXPECT_EQ(
      Problems(mismatch),
      (std::set<std::pair<std::string, std::string>>{{R"(["body","memory_id"])", "value_error"}}));
  const Answer ok =
      Call("PUT", "/memories/" + id, R"({"memory_id": ")" + id + R"(", "importance_weight": 2.5})");
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.body.at("status"), "updated");
  const Answer got = Call("GET", "/memories/" + id);
  EXPECT_EQ(got.body.at("importance_weight").to_number<double>(), 2.5);
  EXPECT_EQ(got.body.at("version"), 2);
}

TEST_F(ApiTest, NamespacesDoNotSeeEachOther) {
  const Answer added = Post("/memories", {{"content", "Anna lives in Hue"}, {"user_id", "anna"}});
  const std::string id(added.body.at("memory_id").as_string());
  EXPECT_EQ(Post("/search", {{"query", "Anna Hue"}, {"user_id", "bob"}}).body.as_array().size(),
            0u);
  EXPECT_EQ(Post("/search", {{"query", "Anna Hue"}, {"user_id", "anna"}}).body.as_array().size(),
            1u);
  EXPECT_EQ(Call("GET", "/memories/" + id + "?user_id=bob").status, 404);
  EXPECT_EQ(Call("DELETE", "/memories/" + id).status, 404) << "the default namespace";
  EXPECT_EQ(Call("GET", "/memories/" + id + "?user_id=anna").status, 200);
  EXPECT_EQ(Call("GET", "/memories?user_id=bob").body.at("memories").as_array().size(), 0u);
  EXPECT_EQ(Call("GET", "/memories?user_id=anna").body.at("memories").as_array().size(), 1u);
}

TEST_F(ApiTest, ListValidatesItsQueryParameters) {
  const Answer a = Call("GET", "/memories?limit=0&created_from=abc");
  ASSERT_EQ(a.status, 422);
  EXPECT_EQ(Problems(a), (std::set<std::pair<std::string, std::string>>{
                             {R"(["query","limit"])", "greater_than_equal"},
                             {R"(["query","created_from"])", "int_type"}}));
  const Answer cursor = Call("GET", "/memories?cursor=garbage");
  EXPECT_EQ(cursor.status, 422);
  EXPECT_EQ(
      Problems(cursor),
      (std::set<std::pair<std::string, std::string>>{{R"(["query","cursor"])", "value_error"}}));
}

TEST_F(ApiTest, ReadyFailsWhileDraining) {
  EXPECT_EQ(Call("GET", "/ready").status, 200);
  draining_ = true;
  const Answer a = Call("GET", "/ready");
  EXPECT_EQ(a.status, 503);
  EXPECT_THAT(std::string(a.body.at("detail").as_string()), HasSubstr("shutting down"));
}

TEST_F(ApiTest, HealthAndQueryAnswerTheOriginalFields) {
  ASSERT_EQ(Post("/memories", {{"content", "My favourite colour is green"}}).status, 200);
  const Answer health = Call("GET", "/health");
  ASSERT_EQ(health.status, 200);
  for (const char* field :
       {"status", "timestamp", "memory_count", "memory_utilization", "uptime", "version"}) {
    EXPECT_TRUE(health.body.as_object().contains(field)) << field;
  }
  EXPECT_EQ(health.body.at("memory_count"), 1);

  const Answer q = Post("/query", {{"input_text", "What is my favourite colour?"}});
  ASSERT_EQ(q.status, 200) << json::serialize(q.body);
  EXPECT_THAT(std::string(q.body.at("output").as_string()), HasSubstr("green"));
  EXPECT_FALSE(q.body.at("memory_info").as_array().empty());
  EXPECT_TRUE(q.body.at("processing_time").is_number());
  EXPECT_TRUE(q.body.at("memory_utilization").is_number());
}

TEST_F(ApiTest, MetricsReadTheBankAtScrapeTime) {
  ASSERT_TRUE(api_->RegisterMetrics(registry_).ok());
  ASSERT_EQ(Post("/memories", {{"content", "one"}, {"user_id", "u1"}}).status, 200);
  const std::string text = registry_.Render();
  EXPECT_THAT(text, HasSubstr("mann_memories{namespace=\"u1\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mann_memory_utilization{namespace=\"u1\"} 0.001\n"));
  EXPECT_THAT(text, HasSubstr("mann_write_decisions_total{action=\"ADD\"} 1\n"));
  EXPECT_THAT(text, HasSubstr("mann_memory_writes_total{namespace=\"u1\"}"));
}

TEST_F(ApiTest, HealthWithoutDetailIsUnchangedAndWithoutACheckerListsNoChecks) {
  const Answer plain = Call("GET", "/health");
  ASSERT_EQ(plain.status, 200);
  EXPECT_FALSE(plain.body.as_object().contains("checks"));
  const Answer off = Call("GET", "/health?detail=0");
  EXPECT_FALSE(off.body.as_object().contains("checks"));

  const Answer detail = Call("GET", "/health?detail=1");
  ASSERT_EQ(detail.status, 200);
  EXPECT_EQ(detail.body.at("status"), "healthy");
  EXPECT_EQ(detail.body.at("checks"),
            (json::object{{"status", "healthy"}, {"checks", json::array{}}}));

  const Answer bad = Call("GET", "/health?detail=maybe");
  EXPECT_EQ(bad.status, 422);
  EXPECT_EQ(
      Problems(bad),
      (std::set<std::pair<std::string, std::string>>{{R"(["query","detail"])", "bool_type"}}));
}

// A check that hangs must not hang the request: the checker's budget bounds the answer.
TEST_F(ApiTest, HealthDetailReportsEachCheckWithinItsBudget) {
  std::promise<void> release;
  std::shared_future<void> released = release.get_future().share();
  monitor::HealthChecker checker(std::chrono::milliseconds(200));
  ASSERT_TRUE(checker
                  .Register("storage",
                            [] {
                              return monitor::CheckResult{monitor::HealthState::kHealthy, "ok"};
                            })
                  .ok());
  ASSERT_TRUE(checker
                  .Register("pager",
                            [] {
                              return monitor::CheckResult{monitor::HealthState::kDegraded,
                                                          "channel slack: 2 pending"};
                            })
                  .ok());
  ASSERT_TRUE(checker
                  .Register("stalled",
                            [released] {
                              released.wait();
                              return monitor::CheckResult{};
                            })
                  .ok());
  Api api(*runtime_, {.draining = {}, .registry = &registry_, .health = &checker});
  server::Router router;
  ASSERT_TRUE(api.RegisterRoutes(router).ok());
  server::Request request;
  request.method = "GET";
  request.target = "/health?detail=true";

  const auto started = std::chrono::steady_clock::now();
  const server::Response response = router.Handle(request);
  const auto took = std::chrono::steady_clock::now() - started;
  release.set_value();

  EXPECT_LT(took, std::chrono::seconds(3)) << "the stalled check held the request";
  ASSERT_EQ(response.status, 200);
  const json::value body = json::parse(response.body);
  EXPECT_EQ(body.at("status"), "healthy") << "liveness is the process's, not the checks'";
  const json::object& checks = body.at("checks").as_object();
  EXPECT_EQ(checks.at("status"), "unhealthy");
  const json::array& list = checks.at("checks").as_array();
  ASSERT_EQ(list.size(), 3u);
  EXPECT_EQ(list[0].at("name"), "storage");
  EXPECT_EQ(list[0].at("status"), "healthy");
  EXPECT_EQ(list[1].at("name"), "pager");
  EXPECT_EQ(list[1].at("status"), "degraded");
  EXPECT_EQ(list[1].at("reason"), "channel slack: 2 pending");
  EXPECT_EQ(list[2].at("name"), "stalled");
  EXPECT_EQ(list[2].at("status"), "unhealthy");
  EXPECT_THAT(std::string(list[2].at("reason").as_string()), HasSubstr("did not finish"));
}

TEST_F(ApiTest, AlertsWithMonitoringOffAreDisabledAndEmpty) {
  const Answer a = Call("GET", "/alerts");
  ASSERT_EQ(a.status, 200);
  EXPECT_EQ(
      a.body,
      (json::object{{"enabled", false}, {"active", json::array{}}, {"history", json::array{}}}));
}

TEST_F(ApiTest, AlertsListActiveAlertsAndTheHistoryNewestFirst) {
  auto rules = monitor::ParseAlertRules("deep: queue>5 critical, slow: latency>1 for 60s warning");
  ASSERT_TRUE(rules.ok()) << rules.status().ToString();
  auto engine = monitor::AlertEngine::Create(*rules);
  ASSERT_TRUE(engine.ok()) << engine.status().ToString();
  const TimestampMs t0 = 1'764'720'000'000;
  (*engine)->Evaluate({{"queue", {{"", 9}}}, {"latency", {{"", 2}}}}, t0);  // trigger; pending
  (*engine)->Evaluate({{"queue", {{"", 8}}}, {"latency", {{"", 2}}}}, t0 + 1000);  // renotify
  (*engine)->Evaluate({{"queue", {{"", 7}}}, {"latency", {{"", 2}}}}, t0 + 2000);  // renotify

  Api api(*runtime_, {.draining = {}, .registry = &registry_, .alerts = engine->get()});
  server::Router router;
  ASSERT_TRUE(api.RegisterRoutes(router).ok());
  auto get = [&](const std::string& target) {
    server::Request request;
    request.method = "GET";
    request.target = target;
    const server::Response response = router.Handle(request);
    return Answer{response.status, json::parse(response.body)};
  };

  const Answer all = get("/alerts");
  ASSERT_EQ(all.status, 200);
  EXPECT_EQ(all.body.at("enabled"), true);
  const json::array& active = all.body.at("active").as_array();
  ASSERT_EQ(active.size(), 2u);
  EXPECT_EQ(active[0].at("dedup_key"), "deep");
  EXPECT_EQ(active[0].at("state"), "firing");
  EXPECT_EQ(active[1].at("dedup_key"), "slow");
  EXPECT_EQ(active[1].at("state"), "pending");
  const json::array& history = all.body.at("history").as_array();
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(history[0].at("sequence"), 3);
  EXPECT_EQ(history[0].at("kind"), "renotify");
  EXPECT_EQ(history[2].at("sequence"), 1);
  EXPECT_EQ(history[2].at("kind"), "trigger");

  const Answer latest = get("/alerts?limit=2");
  ASSERT_EQ(latest.status, 200);
  const json::array& two = latest.body.at("history").as_array();
  ASSERT_EQ(two.size(), 2u);
  EXPECT_EQ(two[0].at("sequence"), 3);
  EXPECT_EQ(two[1].at("sequence"), 2);

  for (const char* bad : {"0", "1001", "ten"}) {
    SCOPED_TRACE(bad);
    const Answer refused = get(std::string("/alerts?limit=") + bad);
    EXPECT_EQ(refused.status, 422);
    ASSERT_EQ(refused.body.at("detail").as_array().size(), 1u);
    EXPECT_EQ(refused.body.at("detail").at(0).at("loc"), (json::array{"query", "limit"}));
  }
}

TEST(ErrorFromStatus, MapsEachCodeOnce) {
  struct Case {
    Status status;
    int http;
  };
  const Case cases[] = {
      {InvalidArgumentError("content must not be empty"), 422},
      {NotFoundError("session s not found"), 404},
      {AlreadyExistsError("x"), 409},
      {PermissionDeniedError("x"), 403},
      {FailedPreconditionError("read-only"), 503},
      {ResourceExhaustedError("disk full"), 503},
      {UnavailableError("locked"), 503},
      {DataLossError("corrupt"), 503},
      {InternalError("bug"), 500},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.status.ToString());
    EXPECT_EQ(ErrorFromStatus(c.status).status, c.http);
  }
  const json::value body =
      json::parse(ErrorFromStatus(UnavailableError("database is locked")).body);
  EXPECT_EQ(body.at("detail"), "storage unavailable: database is locked");
  const json::value v =
      json::parse(ErrorFromStatus(InvalidArgumentError("tags: a tag must not be empty")).body);
  EXPECT_EQ(v.at("detail").at(0).at("loc"), (json::array{"body", "tags"}));
  EXPECT_EQ(json::parse(ErrorFromStatus(InternalError("secret cause")).body).at("detail"),
            json::parse(server::InternalServerError().body).at("detail"))
      << "the cause stays in the log";
}

}  // namespace
}  // namespace mann::api
