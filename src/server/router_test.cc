#include <stdexcept>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/server/router.h>

namespace mann::server {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

Request MakeRequest(std::string method, std::string target) {
  Request request;
  request.method = std::move(method);
  request.target = std::move(target);
  request.request_id = "test-request";
  return request;
}

// A handler answering with the route it matched and its parameters.
Response Echo(const Request& request) {
  json::object params;
  for (const auto& [name, value] : request.path_params) params[name] = value;
  json::object query;
  for (const auto& [name, value] : request.query.items()) query[name] = value;
  return Response::Json({{"route", request.route}, {"params", params}, {"query", query}});
}

class HttpRouterTest : public ::testing::Test {
 protected:
  void SetUp() override {
    for (const char* method : {"GET", "POST"})
      ASSERT_TRUE(router_.Add(method, "/memories", Echo).ok());
    for (const char* method : {"GET", "PUT", "DELETE"}) {
      ASSERT_TRUE(router_.Add(method, "/memories/{id}", Echo).ok());
    }
    ASSERT_TRUE(router_.Add("GET", "/memories/{id}/history", Echo).ok());
    ASSERT_TRUE(router_.Add("GET", "/memories/search", Echo).ok());
    ASSERT_TRUE(router_.Add("GET", "/", Echo).ok());
  }

  json::value Call(std::string method, std::string target, int want_status = 200) {
    Request request = MakeRequest(std::move(method), std::move(target));
    Response response = router_.Handle(request);
    EXPECT_EQ(response.status, want_status) << request.target << ": " << response.body;
    return json::parse(response.body);
  }

  Router router_;
};

TEST_F(HttpRouterTest, MatchesTemplatesAndDecodesParamsAndQuery) {
  json::value got = Call("GET", "/memories/abc%2Fdef/history?user_id=u%201&top_k=5");
  EXPECT_EQ(got.at("route"), "/memories/{id}/history");
  EXPECT_EQ(got.at("params").at("id"), "abc/def");  // %2F stays inside the segment
  EXPECT_EQ(got.at("query").at("user_id"), "u 1");
  EXPECT_EQ(got.at("query").at("top_k"), "5");

  EXPECT_EQ(Call("GET", "/").at("route"), "/");
  EXPECT_EQ(Call("GET", "/memories").at("route"), "/memories");
  EXPECT_EQ(Call("DELETE", "/memories/x").at("params").at("id"), "x");
}

TEST_F(HttpRouterTest, LiteralSegmentsWinOverParamsWhateverTheOrder) {
  EXPECT_EQ(Call("GET", "/memories/search").at("route"), "/memories/search");
  // "search" as an id still reaches the parameter route when the literal one has no such child.
  json::value got = Call("GET", "/memories/search/history");
  EXPECT_EQ(got.at("route"), "/memories/{id}/history");
  EXPECT_EQ(got.at("params").at("id"), "search");
}

TEST_F(HttpRouterTest, UnknownPathsAre404AndNotFolded) {
  for (const char* target :
       {"/nope", "/memories/", "/memories/x/history/extra", "//memories", "/memories/x/../y"}) {
    EXPECT_EQ(Call("GET", target, 404).at("detail"), "Not Found") << target;
  }
}

TEST_F(HttpRouterTest, WrongMethodIs405WithAllowIncludingHeadForGet) {
  Request request = MakeRequest("PATCH", "/memories/x");
  Response response = router_.Handle(request);
  EXPECT_EQ(response.status, 405);
  EXPECT_EQ(response.headers.Get("Allow"), "GET, HEAD, PUT, DELETE");
  EXPECT_EQ(request.route, "/memories/{id}");  // known path: middleware and metrics see it

  request = MakeRequest("DELETE", "/memories");
  EXPECT_EQ(router_.Handle(request).headers.Get("Allow"), "GET, HEAD, POST");
}

TEST_F(HttpRouterTest, HeadFallsBackOnGet) {
  EXPECT_EQ(Call("HEAD", "/memories/x").at("route"), "/memories/{id}");
}

TEST_F(HttpRouterTest, MalformedEscapesAndTargetsAre400) {
  EXPECT_THAT(std::string(Call("GET", "/memories/%zz", 400).at("detail").as_string()),
              HasSubstr("request path"));
  EXPECT_THAT(std::string(Call("GET", "/memories?top_k=%", 400).at("detail").as_string()),
              HasSubstr("top_k"));
  EXPECT_THAT(std::string(Call("GET", "memories", 400).at("detail").as_string()),
              HasSubstr("malformed request target"));
}

TEST_F(HttpRouterTest, AbsoluteFormTargetsRouteByTheirPath) {
  EXPECT_EQ(Call("GET", "http://localhost:8000/memories/7?x=1").at("params").at("id"), "7");
}

TEST_F(HttpRouterTest, RouteOfGivesTheTemplateForLabels) {
  EXPECT_EQ(router_.RouteOf("/memories/42"), "/memories/{id}");
  EXPECT_EQ(router_.RouteOf("/nope"), "");
  EXPECT_THAT(router_.Routes(), ::testing::Contains(std::pair<std::string, std::string>(
                                    "GET", "/memories/{id}/history")));
}

TEST(HttpRouter, RejectsMalformedTemplatesNamingThem) {
  Router router;
  struct Case {
    std::string_view method;
    std::string_view path_template;
    StatusCode code;
    std::string_view message_part;
  };
  const Case cases[] = {
      {"GET", "memories", StatusCode::kInvalidArgument, "must start with '/'"},
      {"GET", "/m/{}", StatusCode::kInvalidArgument, "'{}' is not a parameter"},
      {"GET", "/m/{id", StatusCode::kInvalidArgument, "'{id' is not a parameter"},
      {"GET", "/m/{1d}", StatusCode::kInvalidArgument, "is not a parameter"},
      {"GET", "/m/x{id}", StatusCode::kInvalidArgument, "mixes text and braces"},
      {"GET", "/m/{id}/{id}", StatusCode::kInvalidArgument, "{id} appears twice"},
      {"get", "/m", StatusCode::kInvalidArgument, "upper-case token"},
  };
  for (const auto& c : cases) {
    Status status = router.Add(c.method, c.path_template, Echo);
    EXPECT_EQ(status.code(), c.code) << c.path_template;
    EXPECT_THAT(status.message(), HasSubstr(c.message_part)) << c.path_template;
    EXPECT_THAT(status.message(), HasSubstr(std::string(c.path_template)));
  }
}

TEST(HttpRouter, RejectsDuplicatesAndTemplatesThatDifferOnlyInNames) {
  Router router;
  ASSERT_TRUE(router.Add("GET", "/m/{id}", Echo).ok());
  EXPECT_EQ(router.Add("GET", "/m/{id}", Echo).code(), StatusCode::kAlreadyExists);
  Status clash = router.Add("PUT", "/m/{key}", Echo);
  EXPECT_EQ(clash.code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(clash.message(), HasSubstr("/m/{id}"));
  EXPECT_TRUE(router.Add("PUT", "/m/{id}", Echo).ok());
}

TEST(HttpRouter, JsonRoutesAnswer415ForOtherContentTypes) {
  Router router;
  ASSERT_TRUE(router.Add("POST", "/memories", Echo, {.json_body = true}).ok());
  struct Case {
    std::optional<std::string> content_type;
    std::string body;
    int status;
  };
  const Case cases[] = {
      {"application/json", "{}", 200},
      {"application/json; charset=utf-8", "{}", 200},
      {"text/plain", "{}", 415},
      {"application/x-www-form-urlencoded", "a=1", 415},
      {std::nullopt, "{}", 415},
      {std::nullopt, "", 200},  // no body at all: the handler decides (e.g. 422 or 400)
  };
  for (const auto& c : cases) {
    Request request = MakeRequest("POST", "/memories");
    if (c.content_type) request.headers.Add("Content-Type", *c.content_type);
    request.body = c.body;
    Response response = router.Handle(request);
    EXPECT_EQ(response.status, c.status) << c.content_type.value_or("(none)");
    if (c.status == 415) {
      EXPECT_THAT(response.body, HasSubstr("application/json"));
    }
  }
}

TEST(HttpRouter, ThrowingHandlersGive500AndMiddlewareSeesIt) {
  Router router;
  ASSERT_TRUE(router
                  .Add("GET", "/boom",
                       [](const Request&) -> Response { throw std::runtime_error("disk on fire"); })
                  .ok());
  int seen_status = 0;
  router.Use([&](Request& request, const Next& next) {
    Response response = next(request);
    seen_status = response.status;
    response.headers.Set("X-Seen", "yes");
    return response;
  });
  Request request = MakeRequest("GET", "/boom");
  Response response = router.Handle(request);
  EXPECT_EQ(response.status, 500);
  EXPECT_EQ(json::parse(response.body).at("detail"), "Internal Server Error");
  EXPECT_THAT(response.body, ::testing::Not(HasSubstr("disk on fire")));
  EXPECT_EQ(seen_status, 500);
  EXPECT_EQ(response.headers.Get("X-Seen"), "yes");
}

TEST(HttpRouter, MiddlewareRunsInOrderSeesTheRouteAndMayAnswerEarly) {
  Router router;
  std::vector<std::string> trace;
  ASSERT_TRUE(router
                  .Add("GET", "/memories/{id}",
                       [&](const Request& request) {
                         trace.push_back("handler " +
                                         std::any_cast<std::string>(request.attributes.at("key")));
                         return Response::Json({{"ok", true}});
                       })
                  .ok());
  router.Use([&](Request& request, const Next& next) {
    trace.push_back("outer route=" + request.route);
    if (request.method == "OPTIONS") return Response::Empty(204);  // a preflight answer
    Response response = next(request);
    response.headers.Set("Vary", "Origin");
    return response;
  });
  router.Use([&](Request& request, const Next& next) {
    trace.push_back("auth");
    if (!request.Header("X-API-Key")) return ErrorResponse(401, "Not authenticated");
    request.attributes["key"] = std::string(*request.Header("X-API-Key"));
    return next(request);
  });

  Request preflight = MakeRequest("OPTIONS", "/memories/7");
  EXPECT_EQ(router.Handle(preflight).status, 204);
  EXPECT_THAT(trace, ElementsAre("outer route=/memories/{id}"));

  trace.clear();
  Request anonymous = MakeRequest("GET", "/memories/7");
  Response denied = router.Handle(anonymous);
  EXPECT_EQ(denied.status, 401);
  EXPECT_EQ(denied.headers.Get("Vary"), "Origin");
  EXPECT_THAT(trace, ElementsAre("outer route=/memories/{id}", "auth"));

  trace.clear();
  Request keyed = MakeRequest("GET", "/memories/7");
  keyed.headers.Add("X-API-Key", "k1");
  EXPECT_EQ(router.Handle(keyed).status, 200);
  EXPECT_THAT(trace, ElementsAre("outer route=/memories/{id}", "auth", "handler k1"));

  // Unmatched paths go through the middleware too (so CORS can decorate the 404).
  trace.clear();
  Request missing = MakeRequest("GET", "/nope");
  missing.headers.Add("X-API-Key", "k1");
  Response not_found = router.Handle(missing);
  EXPECT_EQ(not_found.status, 404);
  EXPECT_EQ(not_found.headers.Get("Vary"), "Origin");
  EXPECT_THAT(trace, ElementsAre("outer route=", "auth"));
}

TEST(HttpRouter, ResolveTellsWhetherTheMatchedRouteIsBlocking) {
  Router router;
  EXPECT_FALSE(router.HasBlockingRoutes());
  ASSERT_TRUE(router.Add("POST", "/query", Echo, {.json_body = true, .blocking = true}).ok());
  ASSERT_TRUE(router.Add("GET", "/query", Echo).ok());
  ASSERT_TRUE(router.Add("GET", "/model", Echo, {.blocking = true}).ok());
  EXPECT_TRUE(router.HasBlockingRoutes());

  struct Case {
    const char* method;
    const char* target;
    bool blocking;
  };
  const Case cases[] = {
      {"POST", "/query", true},    {"GET", "/query", false},
      {"GET", "/model?x=1", true}, {"HEAD", "/model", true},  // answered by the GET route
      {"PUT", "/query", false},                               // 405: no handler runs
      {"GET", "/missing", false},  {"GET", "/bad%zz", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(std::string(c.method) + " " + c.target);
    Request request = MakeRequest(c.method, c.target);
    const Router::Resolved resolved = router.Resolve(request);
    EXPECT_EQ(resolved.blocking(), c.blocking);
    // Handling after resolving answers as Handle() alone does.
    Request again = MakeRequest(c.method, c.target);
    EXPECT_EQ(router.Handle(request, resolved).status, router.Handle(again).status);
  }
}

TEST(HttpRouter, ARouteCanBeBlockingForSomeRequestsOnly) {
  Router router;
  auto detail = [](const Request& r) { return r.Query("detail") == "1"; };
  ASSERT_TRUE(router.Add("GET", "/health", Echo, {.blocking_when = detail}).ok());
  EXPECT_TRUE(router.HasBlockingRoutes()) << "the server must start its handler pool";
  auto throws = [](const Request&) -> bool { throw std::runtime_error("cannot tell"); };
  ASSERT_TRUE(router.Add("GET", "/odd", Echo, {.blocking_when = throws}).ok());

  struct Case {
    const char* target;
    bool blocking;
  };
  const Case cases[] = {
      {"/health", false},
      {"/health?detail=0", false},
      {"/health?detail=1", true},
      {"/odd", true},  // a predicate that throws sends the request to the pool
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.target);
    Request request = MakeRequest("GET", c.target);
    EXPECT_EQ(router.Resolve(request).blocking(), c.blocking);
  }
}

}  // namespace
}  // namespace mann::server
