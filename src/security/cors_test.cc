#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/security/cors.h>
#include <mann/server/router.h>

namespace mann::security {
namespace {

namespace json = boost::json;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Fields = std::vector<std::pair<std::string, std::string>>;

// ---- Origin lists ------------------------------------------------------------------------------

TEST(CorsOrigins, ParsesTrimsLowerCasesAndDropsDefaultPorts) {
  Result<std::vector<std::string>> origins = ParseOriginList(
      " https://App.Example.com , http://localhost:3000,,http://127.0.0.1:80, "
      "https://a.example.com:443, https://[::1]:8443, https://app.example.com");
  ASSERT_TRUE(origins.ok()) << origins.status().ToString();
  EXPECT_THAT(*origins,
              ElementsAre("https://app.example.com", "http://localhost:3000", "http://127.0.0.1",
                          "https://a.example.com", "https://[::1]:8443"));
  EXPECT_THAT(*ParseOriginList("*"), ElementsAre("*"));
  EXPECT_TRUE(ParseOriginList("").value().empty());
  EXPECT_TRUE(ParseOriginList(" , ").value().empty());
}

TEST(CorsOrigins, RefusesWhatIsNotAnOriginNamingTheEntry) {
  struct Case {
    const char* list;
    const char* want;
  };
  for (const Case& c : std::vector<Case>{
           {"https://a.com/", "\"https://a.com/\" must not carry a path"},
           {"https://a.com/app", "must not carry a path"},
           {"https://a.com?x=1", "must not carry a path, query"},
           {"https://a.com#top", "fragment"},
           {"https://user@a.com", "\"https://user@a.com\" must not carry userinfo"},
           {"ftp://a.com", "\"ftp://a.com\" must use the http or https scheme"},
           {"a.com", "\"a.com\" must be scheme://host[:port]"},
           {"https://", "has no host"},
           {"https://a.com:0", "port that is not a number in 1..65535"},
           {"https://a.com:65536", "port"},
           {"https://a.com:+1", "port"},
           {"https://a.com:", "empty port"},
           {"https://a..com", "malformed host name"},
           {"https://*.a.com", "\"https://*.a.com\" has a malformed host name"},
           {"https://[::1", "unclosed IPv6 bracket"},
           {"https://[zz]", "malformed IPv6 address"},
           {"https://ok.com, null",
            "\"null\" is refused: browsers send \"null\" from sandboxed "
            "iframes, file:// pages"},
           {"NULL", "is refused"},
       }) {
    Result<std::vector<std::string>> origins = ParseOriginList(c.list);
    ASSERT_FALSE(origins.ok()) << c.list;
    EXPECT_EQ(origins.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(origins.status().message(), HasSubstr(c.want)) << c.list;
  }
}

TEST(CorsValidate, RefusesWildcardWithCredentialsOrWithOtherOrigins) {
  CorsOptions options;
  options.allowed_origins = {"*"};
  EXPECT_TRUE(ValidateCors(options).ok());
  options.allow_credentials = true;
  Status s = ValidateCors(options);
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(),
              AllOf(HasSubstr("\"*\""), HasSubstr("credentials"), HasSubstr("browsers reject")));

  options.allow_credentials = false;
  options.allowed_origins = {"*", "https://a.com"};
  EXPECT_THAT(ValidateCors(options).message(), HasSubstr("ambiguous"));

  options.allowed_origins = {"https://a.com"};
  options.allow_credentials = true;
  EXPECT_TRUE(ValidateCors(options).ok());
}

TEST(CorsValidate, RefusesHandWrittenEntriesThatAreNotCanonical) {
  CorsOptions options;
  options.allowed_origins = {"https://A.com"};
  EXPECT_THAT(ValidateCors(options).message(), HasSubstr("write \"https://a.com\""));
  options.allowed_origins = {"https://a.com/"};
  EXPECT_THAT(ValidateCors(options).message(), HasSubstr("must not carry a path"));
  options.allowed_origins = {"https://a.com"};
  options.allowed_methods = {"GET", ""};
  EXPECT_THAT(ValidateCors(options).message(), HasSubstr("single tokens"));
  options.allowed_methods = {"GET"};
  options.max_age = std::chrono::seconds(-1);
  EXPECT_THAT(ValidateCors(options).message(), HasSubstr("max_age"));
}

// ---- The middleware ----------------------------------------------------------------------------

// A router with CORS in front of a stand-in for auth (401 without X-API-Key) and a handler.
class CorsMiddlewareTest : public ::testing::Test {
 protected:
  void Build(CorsOptions options) {
    ASSERT_TRUE(ValidateCors(options).ok()) << ValidateCors(options).ToString();
    auto handler = [this](const server::Request&) {
      ++handled_;
      server::Response response = server::Response::Json({{"ok", true}});
      if (handler_vary_) response.headers.Set("Vary", "Accept-Encoding");
      return response;
    };
    for (const char* method : {"GET", "POST", "DELETE"}) {
      ASSERT_TRUE(router_.Add(method, "/memories", handler).ok());
    }
    router_.Use(CorsMiddleware(std::move(options)));
    router_.Use([this](server::Request& request, const server::Next& next) {
      ++authenticated_;
      if (!request.Header("X-API-Key")) return server::ErrorResponse(401, "Not authenticated");
      return next(request);
    });
  }

  server::Response Call(std::string method, Fields headers) {
    server::Request request;
    request.method = std::move(method);
    request.target = "/memories";
    for (auto& [name, value] : headers) request.headers.Add(name, value);
    return router_.Handle(request);
  }

  static CorsOptions Origins(std::vector<std::string> origins, bool credentials = false) {
    CorsOptions options;
    options.allowed_origins = std::move(origins);
    options.allow_credentials = credentials;
    return options;
  }

  server::Router router_;
  int handled_ = 0;
  int authenticated_ = 0;
  bool handler_vary_ = false;
};

TEST_F(CorsMiddlewareTest, RequestsWithoutOriginPassUntouched) {
  Build(Origins({"https://app.example.com"}));
  server::Response response = Call("GET", {{"X-API-Key", "k"}});
  EXPECT_EQ(response.status, 200);
  EXPECT_TRUE(response.headers.empty());
  EXPECT_EQ(handled_, 1);
}

TEST_F(CorsMiddlewareTest, PreflightFromAnAllowedOriginIs204AndReachesNothingBehind) {
  Build(Origins({"https://app.example.com"}, /*credentials=*/true));
  server::Response response = Call("OPTIONS", {{"Origin", "https://app.example.com"},
                                               {"Access-Control-Request-Method", "DELETE"},
                                               {"Access-Control-Request-Headers", "x-api-key"}});
  EXPECT_EQ(response.status, 204);
  EXPECT_TRUE(response.body.empty());
  EXPECT_EQ(response.headers.Get("Access-Control-Allow-Origin"), "https://app.example.com");
  EXPECT_EQ(response.headers.Get("Access-Control-Allow-Methods"), "GET, HEAD, POST, PUT, DELETE");
  EXPECT_EQ(response.headers.Get("Access-Control-Allow-Headers"),
            "Authorization, Content-Type, X-API-Key, X-Request-ID");
  EXPECT_EQ(response.headers.Get("Access-Control-Max-Age"), "600");
  EXPECT_EQ(response.headers.Get("Access-Control-Allow-Credentials"), "true");
  EXPECT_EQ(response.headers.Get("Vary"), "Origin");
  EXPECT_EQ(authenticated_, 0);
  EXPECT_EQ(handled_, 0);
}

TEST_F(CorsMiddlewareTest, OriginsMatchIgnoringCaseAndAreEchoedAsSent) {
  Build(Origins({"https://app.example.com"}));
  server::Response response = Call(
      "OPTIONS", {{"Origin", "HTTPS://App.Example.COM"}, {"Access-Control-Request-Method", "GET"}});
  EXPECT_EQ(response.status, 204);
  EXPECT_EQ(response.headers.Get("Access-Control-Allow-Origin"), "HTTPS://App.Example.COM");
  EXPECT_FALSE(response.headers.Has("Access-Control-Allow-Credentials"));
}

TEST_F(CorsMiddlewareTest, PreflightFromAnotherOriginOrForAnotherMethodIs403NamingIt) {
  Build(Origins({"https://app.example.com"}));
  server::Response response = Call(
      "OPTIONS", {{"Origin", "https://evil.example"}, {"Access-Control-Request-Method", "GET"}});
  EXPECT_EQ(response.status, 403);
  EXPECT_THAT(std::string(json::parse(response.body).at("detail").as_string()),
              HasSubstr("origin \"https://evil.example\" is not allowed"));
  EXPECT_FALSE(response.headers.Has("Access-Control-Allow-Origin"));
  EXPECT_EQ(response.headers.Get("Vary"), "Origin");

  response = Call("OPTIONS", {{"Origin", "https://app.example.com"},
                              {"Access-Control-Request-Method", "PATCH"}});
  EXPECT_EQ(response.status, 403);
  EXPECT_THAT(std::string(json::parse(response.body).at("detail").as_string()),
              AllOf(HasSubstr("method \"PATCH\" is not allowed"), HasSubstr("GET, HEAD")));
  // A port is part of the origin.
  EXPECT_EQ(Call("OPTIONS", {{"Origin", "https://app.example.com:8443"},
                             {"Access-Control-Request-Method", "GET"}})
                .status,
            403);
  EXPECT_EQ(authenticated_, 0);
  EXPECT_EQ(handled_, 0);
}

TEST_F(CorsMiddlewareTest, NullOriginNeverMatchesEvenTheWildcard) {
  Build(Origins({"*"}));
  EXPECT_EQ(Call("OPTIONS", {{"Origin", "null"}, {"Access-Control-Request-Method", "GET"}}).status,
            403);
  server::Response response = Call("GET", {{"Origin", "null"}, {"X-API-Key", "k"}});
  EXPECT_EQ(response.status, 200);
  EXPECT_FALSE(response.headers.Has("Access-Control-Allow-Origin"));
}

TEST_F(CorsMiddlewareTest, WildcardAnswersStarWithoutVaryOrCredentials) {
  Build(Origins({"*"}));
  server::Response response = Call(
      "OPTIONS", {{"Origin", "https://anyone.example"}, {"Access-Control-Request-Method", "POST"}});
  EXPECT_EQ(response.status, 204);
  EXPECT_EQ(response.headers.Get("Access-Control-Allow-Origin"), "*");
  EXPECT_FALSE(response.headers.Has("Vary"));
  EXPECT_FALSE(response.headers.Has("Access-Control-Allow-Credentials"));

  response = Call("GET", {{"Origin", "https://anyone.example"}, {"X-API-Key", "k"}});
  EXPECT_EQ(response.headers.Get("Access-Control-Allow-Origin"), "*");
  EXPECT_FALSE(response.headers.Has("Vary"));
}

TEST_F(CorsMiddlewareTest, SimpleRequestsGetCorsHeadersOnEveryAnswerErrorsIncluded) {
  Build(Origins({"https://app.example.com"}, /*credentials=*/true));
  server::Response ok = Call("POST", {{"Origin", "https://app.example.com"}, {"X-API-Key", "k"}});
  EXPECT_EQ(ok.status, 200);
  EXPECT_EQ(ok.headers.Get("Access-Control-Allow-Origin"), "https://app.example.com");
  EXPECT_EQ(ok.headers.Get("Access-Control-Allow-Credentials"), "true");
  EXPECT_EQ(ok.headers.Get("Access-Control-Expose-Headers"), "X-Request-ID, Retry-After");
  EXPECT_EQ(ok.headers.Get("Vary"), "Origin");
  EXPECT_FALSE(ok.headers.Has("Access-Control-Allow-Methods"));  // only preflights carry it

  // The 401 from behind, so the page can read why.
  server::Response refused = Call("GET", {{"Origin", "https://app.example.com"}});
  EXPECT_EQ(refused.status, 401);
  EXPECT_EQ(refused.headers.Get("Access-Control-Allow-Origin"), "https://app.example.com");
  EXPECT_EQ(refused.headers.Get("Access-Control-Expose-Headers"), "X-Request-ID, Retry-After");

  // OPTIONS without Access-Control-Request-Method is no preflight: it goes on (405 here).
  server::Response options =
      Call("OPTIONS", {{"Origin", "https://app.example.com"}, {"X-API-Key", "k"}});
  EXPECT_EQ(options.status, 405);
  EXPECT_EQ(options.headers.Get("Access-Control-Allow-Origin"), "https://app.example.com");
}

TEST_F(CorsMiddlewareTest, SimpleRequestsFromOtherOriginsPassWithoutCorsHeadersButWithVary) {
  Build(Origins({"https://app.example.com"}));
  server::Response response = Call("GET", {{"Origin", "https://evil.example"}, {"X-API-Key", "k"}});
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(handled_, 1);
  EXPECT_FALSE(response.headers.Has("Access-Control-Allow-Origin"));
  EXPECT_FALSE(response.headers.Has("Access-Control-Expose-Headers"));
  EXPECT_EQ(response.headers.Get("Vary"), "Origin");
}

TEST_F(CorsMiddlewareTest, VaryIsAppendedToWhatTheHandlerSet) {
  handler_vary_ = true;
  Build(Origins({"https://app.example.com"}));
  server::Response response =
      Call("GET", {{"Origin", "https://app.example.com"}, {"X-API-Key", "k"}});
  EXPECT_EQ(response.headers.Get("Vary"), "Accept-Encoding, Origin");
  int vary_fields = 0;
  for (const auto& [name, value] : response.headers.fields()) vary_fields += name == "Vary";
  EXPECT_EQ(vary_fields, 1);
}

TEST_F(CorsMiddlewareTest, EmptyListsLeaveTheirHeadersOut) {
  CorsOptions options = Origins({"https://app.example.com"});
  options.allowed_headers.clear();
  options.exposed_headers.clear();
  options.max_age = std::chrono::seconds(0);
  Build(options);
  server::Response preflight = Call(
      "OPTIONS", {{"Origin", "https://app.example.com"}, {"Access-Control-Request-Method", "GET"}});
  EXPECT_EQ(preflight.status, 204);
  EXPECT_FALSE(preflight.headers.Has("Access-Control-Allow-Headers"));
  EXPECT_EQ(preflight.headers.Get("Access-Control-Max-Age"), "0");
  server::Response simple =
      Call("GET", {{"Origin", "https://app.example.com"}, {"X-API-Key", "k"}});
  EXPECT_FALSE(simple.headers.Has("Access-Control-Expose-Headers"));
}

TEST(CorsMiddleware, AnEmptyOriginListAllowsNoOrigin) {
  server::Router router;
  ASSERT_TRUE(router
                  .Add("GET", "/x",
                       [](const server::Request&) {
                         return server::Response::Json({{"ok", true}});
                       })
                  .ok());
  router.Use(CorsMiddleware({}));
  server::Request request;
  request.method = "OPTIONS";
  request.target = "/x";
  request.headers.Add("Origin", "https://a.com");
  request.headers.Add("Access-Control-Request-Method", "GET");
  EXPECT_EQ(router.Handle(request).status, 403);
}

}  // namespace
}  // namespace mann::security
