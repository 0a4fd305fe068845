#include <atomic>
#include <filesystem>
#include <fstream>
#include <set>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>

#include <mann/metrics/registry.h>
#include <mann/security/api_keys.h>
#include <mann/server/router.h>

#include "../core/testing_temp_dir.h"
#include "../core/testing_unprivileged.h"

namespace mann::security {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

// A [[keys]] table for `key` with the given extra lines.
std::string Entry(std::string_view name, std::string_view key, std::string_view extra) {
  return fmt::format("[[keys]]\nname = \"{}\"\nhash = \"{}\"\n{}\n", name, HashKey(key), extra);
}

KeyStore ParseOk(const std::string& text) {
  Result<KeyStore> store = KeyStore::FromToml(text, "keys.toml");
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(store).value() : KeyStore();
}

std::string ParseError(const std::string& text) {
  Result<KeyStore> store = KeyStore::FromToml(text, "/etc/mann/keys.toml");
  EXPECT_FALSE(store.ok()) << "parse unexpectedly succeeded:\n" << text;
  if (!store.ok()) {
    EXPECT_EQ(store.status().code(), StatusCode::kInvalidArgument);
  }
  return store.ok() ? std::string() : store.status().message();
}

// ---- Hashing and generation --------------------------------------------------------------------

TEST(ApiKeyHash, MatchesKnownSha256Vectors) {
  EXPECT_EQ(HashKey(""), "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(HashKey("abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(ApiKeyGenerate, KeysAreBase64UrlOf32BytesAndDistinct) {
  std::set<std::string> seen;
  for (int i = 0; i < 200; ++i) {
    const std::string key = GenerateKey();
    ASSERT_TRUE(key.starts_with("mann_")) << key;
    ASSERT_EQ(key.size(), 5u + 43u) << key;  // 32 bytes are 43 base64 characters unpadded
    for (char c : key.substr(5)) {
      ASSERT_TRUE(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_') << key;
    }
    seen.insert(key);
  }
  EXPECT_EQ(seen.size(), 200u);
}

TEST(ApiKeyGenerate, AGeneratedKeyAuthenticatesThroughItsHash) {
  const std::string key = GenerateKey();
  KeyStore store = ParseOk(Entry("app", key, "namespaces = [\"n1\"]"));
  ASSERT_EQ(store.size(), 1u);
  std::optional<Principal> who = store.Authenticate(key);
  ASSERT_TRUE(who.has_value());
  EXPECT_EQ(who->key_name, "app");
  EXPECT_FALSE(store.Authenticate(key + "x").has_value());
  EXPECT_FALSE(store.Authenticate(key.substr(1)).has_value());
  EXPECT_FALSE(store.Authenticate("").has_value());
  EXPECT_FALSE(store.Authenticate(HashKey(key)).has_value());  // the hash is not a key
}

// ---- The keys file -----------------------------------------------------------------------------

TEST(ApiKeyStore, ParsesEntriesWithTheirDefaults) {
  const std::string text = Entry("billing-app", "k1",
                                 "namespaces = [\"billing\", \"billing-staging\"]\n"
                                 "default_namespace = \"billing-staging\"") +
                           Entry("reader", "k2", "namespaces = [\"docs\", \"wiki\"]") +
                           Entry("ops", "k3", "admin = true") +
                           Entry("ops.eu_1", "k4", "admin = true\nnamespaces = [\"eu\"]") +
                           Entry("root", "k5", "admin = true\ndefault_namespace = \"anything\"");
  KeyStore store = ParseOk(text);
  ASSERT_EQ(store.size(), 5u);
  EXPECT_FALSE(store.empty());

  std::optional<Principal> billing = store.Authenticate("k1");
  ASSERT_TRUE(billing.has_value());
  EXPECT_EQ(billing->key_name, "billing-app");
  EXPECT_FALSE(billing->admin);
  EXPECT_THAT(billing->namespaces, ElementsAre("billing", "billing-staging"));
  EXPECT_EQ(billing->default_namespace, "billing-staging");
  EXPECT_TRUE(billing->MayAccess("billing"));
  EXPECT_FALSE(billing->MayAccess("docs"));

  // The default namespace of the principal `key` authenticates, or "(none)".
  auto default_of = [&](std::string_view key) {
    std::optional<Principal> who = store.Authenticate(key);
    return who ? who->default_namespace : "(none)";
  };
  EXPECT_EQ(default_of("k2"), "docs");  // the first namespace

  std::optional<Principal> ops = store.Authenticate("k3");
  ASSERT_TRUE(ops.has_value());
  EXPECT_TRUE(ops->admin);
  EXPECT_TRUE(ops->namespaces.empty());
  EXPECT_EQ(ops->default_namespace, "default");
  EXPECT_TRUE(ops->MayAccess("whatever"));

  EXPECT_EQ(default_of("k4"), "eu");
  // An admin's default need not be listed: it may touch every namespace anyway.
  EXPECT_EQ(default_of("k5"), "anything");
}

TEST(ApiKeyStore, AcceptsUpperCaseHexInHashes) {
  std::string hash = HashKey("k1");
  for (std::size_t i = 7; i < hash.size(); ++i) hash[i] = static_cast<char>(std::toupper(hash[i]));
  KeyStore store =
      ParseOk(fmt::format("[[keys]]\nname = \"a\"\nhash = \"{}\"\nnamespaces = [\"n\"]\n", hash));
  EXPECT_TRUE(store.Authenticate("k1").has_value());
}

TEST(ApiKeyStore, FindsKeysInEveryPosition) {
  // Every digest is compared whatever matches; the first, a middle and the last entry are found
  // alike, and a key matching none walks the whole list too.
  std::string text;
  for (int i = 0; i < 64; ++i) {
    text += Entry(fmt::format("app{}", i), fmt::format("key-{}", i), "namespaces = [\"n\"]");
  }
  KeyStore store = ParseOk(text);
  ASSERT_EQ(store.size(), 64u);
  for (int i : {0, 31, 63}) {
    std::optional<Principal> who = store.Authenticate(fmt::format("key-{}", i));
    ASSERT_TRUE(who.has_value()) << i;
    EXPECT_EQ(who->key_name, fmt::format("app{}", i));
  }
  EXPECT_FALSE(store.Authenticate("key-64").has_value());
  EXPECT_FALSE(KeyStore().Authenticate("key-0").has_value());
  EXPECT_TRUE(KeyStore().empty());
}

TEST(ApiKeyStore, RefusesEachKindOfBadEntryNamingFileEntryAndField) {
  const std::string good_hash = HashKey("k");
  struct Case {
    std::string text;
    std::string want;
  };
  const std::vector<Case> cases = {
      {"[[keys]]\nname = \"ops\"\nhash = \"sha256:abc\"\nadmin = true\n",
       "/etc/mann/keys.toml: keys[0] (\"ops\"): hash must be \"sha256:\" followed by 64 hex "
       "digits"},
      {fmt::format("[[keys]]\nname = \"ops\"\nhash = \"{}\"\nadmin = true\n",
                   "md5:" + good_hash.substr(7)),
       "keys[0] (\"ops\"): hash must be \"sha256:\""},
      {fmt::format("[[keys]]\nname = \"ops\"\nhash = \"{}g\"\nadmin = true\n",
                   good_hash.substr(0, good_hash.size() - 1)),
       "keys[0] (\"ops\"): hash must be"},
      {"[[keys]]\nname = \"ops\"\nadmin = true\n", "keys[0] (\"ops\"): hash is required"},
      {"[[keys]]\nname = \"ops\"\nhash = 5\nadmin = true\n",
       "keys[0] (\"ops\"): hash must be a string, got an integer"},
      {fmt::format("[[keys]]\nhash = \"{}\"\nadmin = true\n", good_hash),
       "/etc/mann/keys.toml: keys[0]: name is required"},
      {fmt::format("[[keys]]\nname = 7\nhash = \"{}\"\nadmin = true\n", good_hash),
       "keys[0]: name must be a string, got an integer"},
      {fmt::format("[[keys]]\nname = \"has space\"\nhash = \"{}\"\nadmin = true\n", good_hash),
       "keys[0] (\"has space\"): name must be 1 to 64 characters"},
      {fmt::format("[[keys]]\nname = \"{}\"\nhash = \"{}\"\nadmin = true\n", std::string(65, 'a'),
                   good_hash),
       "name must be 1 to 64 characters"},
      {fmt::format("[[keys]]\nname = \"\"\nhash = \"{}\"\nadmin = true\n", good_hash),
       "keys[0] (\"\"): name must be 1 to 64 characters"},
      {fmt::format("[[keys]]\nname = \"a\"\nhash = \"{}\"\n", good_hash),
       "keys[0] (\"a\"): namespaces is required unless admin = true"},
      {fmt::format("[[keys]]\nname = \"a\"\nhash = \"{}\"\nnamespaces = []\n", good_hash),
       "keys[0] (\"a\"): namespaces must not be empty"},
      {fmt::format("[[keys]]\nname = \"a\"\nhash = \"{}\"\nnamespaces = \"n\"\n", good_hash),
       "keys[0] (\"a\"): namespaces must be an array of strings, got a string"},
      {fmt::format("[[keys]]\nname = \"a\"\nhash = \"{}\"\nnamespaces = [\"n\", 3]\n", good_hash),
       "keys[0] (\"a\"): namespaces[1] must be a string, got an integer"},
      {fmt::format("[[keys]]\nname = \"a\"\nhash = \"{}\"\nnamespaces = [\"\"]\n", good_hash),
       "keys[0] (\"a\"): namespaces[0] (\"\"): user_id (namespace) must not be empty"},
      {fmt::format("[[keys]]\nname = \"a\"\nhash = \"{}\"\nnamespaces = [\"x\\u0001\"]\n",
                   good_hash),
       "namespaces[0] (\"x\\x01\"): user_id (namespace) must not contain control characters"},
      {fmt::format("[[keys]]\nname = \"a\"\nhash = \"{}\"\nnamespaces = [\"n\", \"n\"]\n",
                   good_hash),
       "keys[0] (\"a\"): namespaces[1] (\"n\") is listed twice"},
      {fmt::format("[[keys]]\nname = \"a\"\nhash = \"{}\"\nnamespaces = [\"n\"]\n"
                   "default_namespace = \"m\"\n",
                   good_hash),
       "keys[0] (\"a\"): default_namespace \"m\" must be one of namespaces"},
      {fmt::format("[[keys]]\nname = \"a\"\nhash = \"{}\"\nnamespaces = [\"n\"]\n"
                   "default_namespace = 1\n",
                   good_hash),
       "keys[0] (\"a\"): default_namespace must be a string, got an integer"},
      {fmt::format("[[keys]]\nname = \"a\"\nhash = \"{}\"\nadmin = \"yes\"\n", good_hash),
       "keys[0] (\"a\"): admin must be a boolean, got a string"},
      {fmt::format("[[keys]]\nname = \"a\"\nhash = \"{}\"\nadmin = true\nnamespace = [\"n\"]\n",
                   good_hash),
       "keys[0] (\"a\"): unknown field \"namespace\"; allowed: name, hash, namespaces, "
       "default_namespace, admin"},
      {Entry("a", "k1", "admin = true") + Entry("a", "k2", "admin = true"),
       "keys[1] (\"a\"): name is used by an earlier entry"},
      {Entry("a", "k1", "admin = true") + Entry("b", "k1", "admin = true"),
       "keys[1] (\"b\"): hash is the same as an earlier entry's"},
      {"", "/etc/mann/keys.toml: no [[keys]] entries"},
      {"keys = []\n", "/etc/mann/keys.toml: no [[keys]] entries"},
      {"keys = [1, 2]\n", "keys must be an array of tables ([[keys]]), got an array of other"},
      {"keys = 3\n",
       "/etc/mann/keys.toml: keys must be an array of tables ([[keys]]), got an "
       "integer"},
      {Entry("a", "k1", "admin = true") + "[other]\nx = 1\n",
       "/etc/mann/keys.toml: unknown top-level key \"other\""},
      {"[[keys]\nname = \"a\"\n", "/etc/mann/keys.toml:1:"},
  };
  for (const Case& c : cases) {
    EXPECT_THAT(ParseError(c.text), HasSubstr(c.want)) << c.text;
  }
}

TEST(ApiKeyStore, ReportsEveryProblemOfAFileOnePerLine) {
  const std::string text = "[[keys]]\nname = \"a\"\nhash = \"sha256:00\"\nnamespaces = []\n" +
                           Entry("b", "k", "") + Entry("c", "k", "admin = true");
  const std::string message = ParseError(text);
  EXPECT_THAT(message, AllOf(HasSubstr("keys[0] (\"a\"): hash must be"),
                             HasSubstr("keys[0] (\"a\"): namespaces must not be empty"),
                             HasSubstr("keys[1] (\"b\"): namespaces is required"),
                             HasSubstr("keys[2] (\"c\"): hash is the same")));
  EXPECT_EQ(std::count(message.begin(), message.end(), '\n'), 3) << message;
}

TEST(ApiKeyStore, LoadsAFileAndNamesThePathOfOneThatCannotBeRead) {
  testing::TempDir dir("mann-keys");
  const std::string file = dir.Write("keys.toml", Entry("app", "k", "namespaces = [\"n\"]"));
  Result<KeyStore> loaded = KeyStore::LoadFile(file);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_TRUE(loaded->Authenticate("k").has_value());

  const std::string bad = dir.Write("bad.toml", "[[keys]]\nname = \"x\"\n");
  EXPECT_THAT(KeyStore::LoadFile(bad).status().message(), HasSubstr(bad + ": keys[0] (\"x\")"));

  const std::string missing = (dir.path() / "nope.toml").string();
  Status s = KeyStore::LoadFile(missing).status();
  EXPECT_EQ(s.code(), StatusCode::kNotFound);
  EXPECT_THAT(s.message(), HasSubstr(missing));

  s = KeyStore::LoadFile(dir.path().string()).status();
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("is a directory"));
}

// As root the load runs in a child as an unprivileged user owning the file: root reads any file.
TEST(ApiKeyStore, UnreadableFileIsPermissionDenied) {
  testing::TempDir dir("mann-keys");
  const std::string file = dir.Write("keys.toml", Entry("app", "k", "admin = true"));
  Status given = test_support::GiveToUnprivilegedUser(dir.path());
  ASSERT_TRUE(given.ok()) << given.ToString();
  fs::permissions(file, fs::perms::none);
  Status s = test_support::RunUnprivileged([&] { return KeyStore::LoadFile(file).status(); });
  ASSERT_FALSE(s.ok()) << "load unexpectedly succeeded";
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  EXPECT_THAT(s.message(), AllOf(HasSubstr(file), HasSubstr("could not be read")));
}

// ---- The middleware ----------------------------------------------------------------------------

class ApiKeyAuthTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto whoami = [this](const server::Request& request) {
      ++handled_;
      const Principal* who = PrincipalOf(request);
      return server::Response::Json({{"key", who != nullptr ? who->key_name : "none"},
                                     {"default", who != nullptr ? who->default_namespace : ""}});
    };
    for (const char* method : {"GET", "POST"}) {
      ASSERT_TRUE(router_.Add(method, "/memories", whoami).ok());
      ASSERT_TRUE(router_.Add(method, "/health", whoami).ok());
    }
    ASSERT_TRUE(router_.Add("GET", "/metrics", whoami).ok());
    keys_ = std::make_shared<const KeyStore>(
        ParseOk(Entry("billing", "secret-one", "namespaces = [\"billing\"]") +
                Entry("ops", "secret-two", "admin = true")));
    router_.Use(AuthMiddleware(keys_, {.registry = &registry_}));
  }

  server::Response Call(std::string method, std::string target,
                        std::vector<std::pair<std::string, std::string>> headers = {}) {
    server::Request request;
    request.method = std::move(method);
    request.target = std::move(target);
    request.request_id = "test-request";
    request.client_address = "127.0.0.1:40000";
    for (auto& [name, value] : headers) request.headers.Add(name, value);
    return router_.Handle(request);
  }

  double Failures(std::string_view reason) {
    auto family =
        registry_.AddCounter("mann_http_auth_failures_total",
                             "Requests refused by API-key authentication, by reason.", {"reason"});
    EXPECT_TRUE(family.ok()) << family.status().ToString();
    return family.ok() ? (*family)->WithLabels({reason}).Value() : -1;
  }

  static std::string Detail(const server::Response& response) {
    return std::string(json::parse(response.body).at("detail").as_string());
  }

  metrics::Registry registry_;
  server::Router router_;
  std::shared_ptr<const KeyStore> keys_;
  int handled_ = 0;
};

TEST_F(ApiKeyAuthTest, MissingKeyIs401SayingHowToSendOne) {
  server::Response response = Call("GET", "/memories");
  EXPECT_EQ(response.status, 401);
  EXPECT_EQ(response.headers.Get("WWW-Authenticate"), "Bearer");
  EXPECT_THAT(Detail(response),
              AllOf(HasSubstr("Authorization: Bearer <key>"), HasSubstr("X-API-Key: <key>")));
  EXPECT_EQ(handled_, 0);
  EXPECT_EQ(Failures("missing"), 1);

  // Empty values and a bare scheme offer no key either.
  for (const auto& header : std::vector<std::pair<std::string, std::string>>{
           {"X-API-Key", ""}, {"Authorization", "Bearer"}, {"Authorization", "Bearer   "}}) {
    EXPECT_EQ(Call("GET", "/memories", {header}).status, 401) << header.first << header.second;
  }
  EXPECT_EQ(Failures("missing"), 4);
  EXPECT_EQ(handled_, 0);
}

TEST_F(ApiKeyAuthTest, AnotherAuthorizationSchemeIsNamedInTheDetail) {
  server::Response response = Call("GET", "/memories", {{"Authorization", "Basic dXNlcjpwdw=="}});
  EXPECT_EQ(response.status, 401);
  EXPECT_THAT(Detail(response), HasSubstr("scheme \"Basic\" is not supported"));
  EXPECT_THAT(response.body, Not(HasSubstr("dXNlcjpwdw")));
}

TEST_F(ApiKeyAuthTest, UnknownKeyIs401InvalidTokenWithoutEchoingIt) {
  server::Response response = Call("POST", "/memories", {{"Authorization", "Bearer not-a-key"}});
  EXPECT_EQ(response.status, 401);
  EXPECT_EQ(Detail(response), "Invalid API key");
  EXPECT_EQ(response.headers.Get("WWW-Authenticate"), "Bearer error=\"invalid_token\"");
  EXPECT_THAT(response.body, Not(HasSubstr("not-a-key")));
  EXPECT_EQ(Call("GET", "/memories", {{"X-API-Key", "secret-one "}}).status, 200);  // trimmed
  EXPECT_EQ(Call("GET", "/memories", {{"X-API-Key", "secret-on"}}).status, 401);
  EXPECT_EQ(Failures("invalid"), 2);
  EXPECT_EQ(handled_, 1);
}

TEST_F(ApiKeyAuthTest, ValidKeyFromEitherHeaderReachesTheHandlerWithItsPrincipal) {
  for (const auto& header :
       std::vector<std::pair<std::string, std::string>>{{"Authorization", "Bearer secret-one"},
                                                        {"authorization", "bEaReR secret-one"},
                                                        {"X-API-Key", "secret-one"},
                                                        {"x-api-key", "secret-one"}}) {
    server::Response response = Call("POST", "/memories", {header});
    ASSERT_EQ(response.status, 200) << header.first << ": " << response.body;
    json::value body = json::parse(response.body);
    EXPECT_EQ(body.at("key"), "billing");
    EXPECT_EQ(body.at("default"), "billing");
  }
  EXPECT_EQ(json::parse(Call("GET", "/memories", {{"X-API-Key", "secret-two"}}).body).at("key"),
            "ops");
  EXPECT_EQ(handled_, 5);
}

TEST_F(ApiKeyAuthTest, TwoDifferentKeysAre400NamingBothHeaders) {
  server::Response response = Call(
      "GET", "/memories", {{"Authorization", "Bearer secret-one"}, {"X-API-Key", "secret-two"}});
  EXPECT_EQ(response.status, 400);
  EXPECT_THAT(Detail(response), AllOf(HasSubstr("Authorization"), HasSubstr("X-API-Key")));
  EXPECT_THAT(response.body, Not(HasSubstr("secret")));
  // A header repeated with another key is as ambiguous.
  EXPECT_EQ(
      Call("GET", "/memories", {{"X-API-Key", "secret-one"}, {"X-API-Key", "secret-two"}}).status,
      400);
  EXPECT_EQ(Failures("conflicting"), 2);
  EXPECT_EQ(handled_, 0);

  // The same key in both is fine.
  EXPECT_EQ(Call("GET", "/memories",
                 {{"Authorization", "Bearer secret-one"}, {"X-API-Key", "secret-one"}})
                .status,
            200);
}

TEST_F(ApiKeyAuthTest, PublicRoutesTakeGetAndHeadWithoutAKeyButNotOtherMethods) {
  server::Response response = Call("GET", "/health");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(json::parse(response.body).at("key"), "none");
  EXPECT_EQ(Call("HEAD", "/health").status, 200);
  EXPECT_EQ(Call("GET", "/metrics").status, 200);
  EXPECT_EQ(Call("POST", "/health").status, 401);
  // On a public route a key is neither needed nor looked at: the handler sees no principal.
  EXPECT_EQ(json::parse(Call("GET", "/health", {{"X-API-Key", "secret-one"}}).body).at("key"),
            "none");
}

TEST_F(ApiKeyAuthTest, UnknownPathsNeedAKeyBeforeTheyAre404) {
  EXPECT_EQ(Call("GET", "/nope").status, 401);
  EXPECT_EQ(Call("GET", "/nope", {{"X-API-Key", "secret-one"}}).status, 404);
  // OPTIONS is a method like any other here (CORS answers preflights before auth).
  EXPECT_EQ(Call("OPTIONS", "/health").status, 401);
}

TEST(ApiKeyAuth, CustomPublicRoutesReplaceTheDefaults) {
  server::Router router;
  ASSERT_TRUE(router
                  .Add("GET", "/health",
                       [](const server::Request&) {
                         return server::Response::Json({{"ok", true}});
                       })
                  .ok());
  ASSERT_TRUE(router
                  .Add("GET", "/docs",
                       [](const server::Request&) {
                         return server::Response::Json({{"ok", true}});
                       })
                  .ok());
  metrics::Registry registry;
  router.Use(AuthMiddleware(std::make_shared<const KeyStore>(),
                            {.public_routes = {"/docs"}, .registry = &registry}));
  for (auto [target, want] : {std::pair{"/docs", 200}, std::pair{"/health", 401}}) {
    server::Request request;
    request.method = "GET";
    request.target = target;
    EXPECT_EQ(router.Handle(request).status, want) << target;
  }
}

}  // namespace
}  // namespace mann::security
