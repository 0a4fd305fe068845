#include <optional>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/security/trusted_hosts.h>
#include <mann/server/router.h>

namespace mann::security {
namespace {

namespace json = boost::json;
using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(TrustedHostDefaults, ListTheBindAddressAndLoopbackNamesOnce) {
  EXPECT_THAT(DefaultTrustedHosts("127.0.0.1"), ElementsAre("127.0.0.1", "localhost", "[::1]"));
  EXPECT_THAT(DefaultTrustedHosts("::1"), ElementsAre("[::1]", "localhost", "127.0.0.1"));
  EXPECT_THAT(DefaultTrustedHosts("[::1]"), ElementsAre("[::1]", "localhost", "127.0.0.1"));
  EXPECT_THAT(DefaultTrustedHosts("10.0.0.5"),
              ElementsAre("10.0.0.5", "localhost", "127.0.0.1", "[::1]"));
  EXPECT_THAT(DefaultTrustedHosts("fd00::5"),
              ElementsAre("[fd00::5]", "localhost", "127.0.0.1", "[::1]"));
  EXPECT_THAT(DefaultTrustedHosts("Api.Example.com"),
              ElementsAre("api.example.com", "localhost", "127.0.0.1", "[::1]"));
  // Wildcard binds stay as written: they admit no public name by themselves.
  EXPECT_THAT(DefaultTrustedHosts("0.0.0.0"),
              ElementsAre("0.0.0.0", "localhost", "127.0.0.1", "[::1]"));
  EXPECT_THAT(DefaultTrustedHosts("::"), ElementsAre("[::]", "localhost", "127.0.0.1", "[::1]"));
  EXPECT_THAT(DefaultTrustedHosts(""), ElementsAre("localhost", "127.0.0.1", "[::1]"));
}

TEST(TrustedHostList, ParsesNamesAddressesAndWildcards) {
  Result<std::vector<std::string>> hosts = ParseHostList(
      " API.example.com., 10.0.0.5 ,[::1], fd00::1, *.Internal.example, mann_api, , "
      "api.example.com");
  ASSERT_TRUE(hosts.ok()) << hosts.status().ToString();
  EXPECT_THAT(*hosts, ElementsAre("api.example.com", "10.0.0.5", "[::1]", "[fd00::1]",
                                  "*.internal.example", "mann_api"));
  EXPECT_THAT(*ParseHostList("*"), ElementsAre("*"));
  EXPECT_TRUE(ParseHostList("").value().empty());
}

TEST(TrustedHostList, RefusesMalformedEntriesNamingThem) {
  struct Case {
    const char* list;
    const char* want;
  };
  for (const Case& c : std::vector<Case>{
           {"ok.com, api.example.com:8000", "\"api.example.com:8000\" carries a port"},
           {"[::1]:8000", "\"[::1]:8000\" carries a port"},
           {"[::1", "unclosed IPv6 bracket"},
           {"[abc]", "is not an IPv6 address"},
           {"a*.example.com", "wildcard other than a leading \"*.\""},
           {"*.*.example.com", "wildcard other than"},
           {"*example.com", "wildcard other than"},
           {"bad host", "\"bad host\" is not a host name"},
           {"a..b", "is not a host name"},
           {"http://a.com", "\"http://a.com\" is a URL"},
           {"a.com/path", "is not a host name"},
       }) {
    Result<std::vector<std::string>> hosts = ParseHostList(c.list);
    ASSERT_FALSE(hosts.ok()) << c.list;
    EXPECT_EQ(hosts.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(hosts.status().message(), HasSubstr(c.want)) << c.list;
  }
}

class TrustedHostMiddlewareTest : public ::testing::Test {
 protected:
  void Build(std::vector<std::string> hosts) {
    ASSERT_TRUE(router_
                    .Add("GET", "/health",
                         [this](const server::Request&) {
                           ++handled_;
                           return server::Response::Json({{"ok", true}});
                         })
                    .ok());
    router_.Use(TrustedHostsMiddleware(std::move(hosts)));
  }

  // The status for a request with this Host header (none when nullopt).
  int StatusFor(std::optional<std::string> host) {
    server::Request request;
    request.method = "GET";
    request.target = "/health";
    if (host) request.headers.Add("Host", *host);
    server::Response response = router_.Handle(request);
    if (response.status == 400) {
      EXPECT_EQ(json::parse(response.body).at("detail"), "Invalid host header");
    }
    return response.status;
  }

  server::Router router_;
  int handled_ = 0;
};

TEST_F(TrustedHostMiddlewareTest, AllowsListedHostsWithAnyPortCaseOrTrailingDot) {
  Build(DefaultTrustedHosts("127.0.0.1"));
  for (const char* host : {"127.0.0.1", "127.0.0.1:8000", "localhost", "LOCALHOST:8000",
                           "localhost.", "localhost.:8000", "[::1]", "[::1]:8000", "[::1]:"}) {
    EXPECT_EQ(StatusFor(host), 200) << host;
  }
  EXPECT_EQ(handled_, 9);
}

TEST_F(TrustedHostMiddlewareTest, RefusesOtherMissingAndMalformedHostsBeforeTheHandler) {
  Build(DefaultTrustedHosts("127.0.0.1"));
  for (const char* host :
       {"evil.example", "evil.example:8000", "127.0.0.2", "localhost.evil", "[::2]:8000", "",
        "localhost:80a", "[::1]x", "::1", "local host", "localhost:8000:1"}) {
    EXPECT_EQ(StatusFor(host), 400) << host;
  }
  EXPECT_EQ(StatusFor(std::nullopt), 400);
  EXPECT_EQ(handled_, 0);
}

TEST_F(TrustedHostMiddlewareTest, SuffixWildcardsMatchSubdomainsOnly) {
  Build(ParseHostList("*.example.com, api.other.com").value());
  EXPECT_EQ(StatusFor("a.example.com"), 200);
  EXPECT_EQ(StatusFor("a.b.example.com:443"), 200);
  EXPECT_EQ(StatusFor("API.other.com"), 200);
  EXPECT_EQ(StatusFor("example.com"), 400);
  EXPECT_EQ(StatusFor("evilexample.com"), 400);
  EXPECT_EQ(StatusFor("example.com.evil"), 400);
  EXPECT_EQ(StatusFor("other.com"), 400);
}

TEST_F(TrustedHostMiddlewareTest, StarLetsEveryRequestThrough) {
  Build({"*"});
  EXPECT_EQ(StatusFor("anything.example"), 200);
  EXPECT_EQ(StatusFor(std::nullopt), 200);
}

TEST_F(TrustedHostMiddlewareTest, AnEmptyListRefusesEverything) {
  Build({});
  EXPECT_EQ(StatusFor("localhost"), 400);
}

}  // namespace
}  // namespace mann::security
