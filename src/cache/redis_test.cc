#include <chrono>
#include <memory>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <sys/socket.h>

#include <mann/cache/redis.h>
#include <mann/core/log.h>
#include <mann/metrics/registry.h>

#include "testing_redis.h"

namespace mann::cache {
namespace {

using std::chrono::milliseconds;
using ::testing::HasSubstr;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

// ---- URLs ------------------------------------------------------------------------------------

TEST(ParseRedisUrl, ReadsEveryPartWithDefaults) {
  struct Case {
    const char* url;
    const char* host;
    int port;
    const char* password;
    int db;
  };
  const Case cases[] = {
      {"redis://127.0.0.1:6380/2", "127.0.0.1", 6380, "", 2},
      {"redis://cache.internal", "cache.internal", 6379, "", 0},
      {"redis://:s3cr@t@redis:7000", "redis", 7000, "s3cr@t", 0},
      {"redis://default:pw@redis:7000/", "redis", 7000, "pw", 0},
      {"REDIS://[::1]:6390/1", "::1", 6390, "", 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.url);
    Result<RedisEndpoint> e = ParseRedisUrl(c.url);
    ASSERT_TRUE(e.ok()) << e.status().ToString();
    EXPECT_EQ(e->host, c.host);
    EXPECT_EQ(e->port, c.port);
    EXPECT_EQ(e->password, c.password);
    EXPECT_EQ(e->db, c.db);
  }
  EXPECT_EQ(ParseRedisUrl("redis://[::1]:6390/1")->Describe(), "[::1]:6390/1");
}

TEST(ParseRedisUrl, RefusesBadUrlsWithoutEchoingThePassword) {
  const char* bad[] = {"http://localhost:6379", "redis://",          "redis://:pw@",
                       "redis://host:0",        "redis://host:abc",  "redis://host:6379/x",
                       "redis://[::1",          "redis://user@host", "redis://:hunter2@host:99999"};
  for (const char* url : bad) {
    SCOPED_TRACE(url);
    Result<RedisEndpoint> e = ParseRedisUrl(url);
    ASSERT_FALSE(e.ok());
    EXPECT_EQ(e.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(e.status().message(), HasSubstr("redis://[:password@]host:port[/db]"));
    EXPECT_THAT(e.status().message(), Not(HasSubstr("hunter2")));
  }
}

// ---- Against a real server -------------------------------------------------------------------

class RedisClientTest : public ::testing::Test {
 protected:
  void SetUp() override { ASSERT_TRUE(redis_.Start()) << redis_.error(); }

  std::shared_ptr<RedisClient> Connect(RedisOptions options = {}) {
    if (options.url.empty()) options.url = redis_.url();
    options.registry = &registry_;
    options.min_backoff = milliseconds(20);
    options.max_backoff = milliseconds(200);
    Result<std::shared_ptr<RedisClient>> client = RedisClient::Create(std::move(options));
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return client.ok() ? *client : nullptr;
  }

  // Waits (at most 10 s) for the client's background reconnection.
  static bool WaitUp(const RedisClient& client) {
    const auto deadline = Clock::now() + std::chrono::seconds(10);
    while (!client.up() && Clock::now() < deadline) {
      std::this_thread::sleep_for(milliseconds(10));
    }
    return client.up();
  }

  bool Rendered(std::string_view line) {
    return registry_.Render().find(std::string(line) + "\n") != std::string::npos;
  }

  testing::TestingRedis redis_;
  metrics::Registry registry_;
};

TEST_F(RedisClientTest, RoundTripsEveryReplyType) {
  auto client = Connect();
  ASSERT_NE(client, nullptr);
  EXPECT_TRUE(client->Ping().ok());

  const std::string binary("line\nbreak\0nul", 14);
  Result<RedisReply> set = client->Command({"SET", "k", binary});
  ASSERT_TRUE(set.ok()) << set.status().ToString();
  EXPECT_EQ(set->type, RedisReply::Type::kStatus);
  EXPECT_EQ(set->text, "OK");

  Result<RedisReply> get = client->Command({"GET", "k"});
  ASSERT_TRUE(get.ok());
  EXPECT_EQ(get->type, RedisReply::Type::kString);
  EXPECT_EQ(get->text, binary);

  EXPECT_TRUE(client->Command({"GET", "missing"})->is_nil());
  EXPECT_EQ(client->Command({"INCR", "n"})->integer, 1);
  EXPECT_EQ(client->Command({"INCR", "n"})->integer, 2);

  Result<RedisReply> wrong = client->Command({"INCR", "k"});
  ASSERT_TRUE(wrong.ok()) << "an error reply is an answer, not an outage";
  EXPECT_TRUE(wrong->is_error());
  EXPECT_TRUE(client->up());

  ASSERT_TRUE(client->Command({"RPUSH", "list", "a", "b"}).ok());
  Result<RedisReply> list = client->Command({"LRANGE", "list", "0", "-1"});
  ASSERT_EQ(list->type, RedisReply::Type::kArray);
  ASSERT_EQ(list->elements.size(), 2u);
  EXPECT_EQ(list->elements[1].text, "b");
  EXPECT_EQ(client->errors(), 0u);
  EXPECT_TRUE(Rendered("mann_redis_up 1"));
}

TEST_F(RedisClientTest, ConcurrentCallersShareThePool) {
  auto client = Connect({.connections = 3});
  ASSERT_NE(client, nullptr);
  std::vector<std::thread> threads;
  for (int t = 0; t < 8; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 200; ++i) EXPECT_TRUE(client->Command({"INCR", "shared"}).ok());
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(client->Command({"GET", "shared"})->text, "1600");
}

TEST_F(RedisClientTest, PasswordAndDatabaseFromTheUrl) {
  testing::TestingRedis locked;
  ASSERT_TRUE(locked.Start({"--requirepass", "opensesame"})) << locked.error();
  const std::string authority = "127.0.0.1:" + std::to_string(locked.port());

  auto db3 = Connect({.url = "redis://:opensesame@" + authority + "/3"});
  ASSERT_NE(db3, nullptr);
  ASSERT_TRUE(db3->Command({"SET", "where", "three"}).ok());
  EXPECT_EQ(db3->Command({"GET", "where"})->text, "three");
  auto db0 = Connect({.url = "redis://:opensesame@" + authority + "/0"});
  EXPECT_TRUE(db0->Command({"GET", "where"})->is_nil());

  auto wrong = Connect({.url = "redis://:guess@" + authority});
  ASSERT_NE(wrong, nullptr);
  Result<RedisReply> refused = wrong->Command({"PING"});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kUnavailable);
  EXPECT_FALSE(wrong->up());
  EXPECT_THAT(wrong->last_error(), HasSubstr("refused the password"));
  EXPECT_THAT(wrong->last_error(), Not(HasSubstr("guess")));
}

TEST_F(RedisClientTest, ClosedPortFailsFastThenWithoutTouchingTheNetwork) {
  const int closed = testing::FreeLoopbackPort();
  const auto start = Clock::now();
  auto client = Connect({.url = "redis://127.0.0.1:" + std::to_string(closed)});
  ASSERT_NE(client, nullptr);
  EXPECT_FALSE(client->up());
  EXPECT_LT(Clock::now() - start, milliseconds(250));

  for (int i = 0; i < 100; ++i) {
    const auto before = Clock::now();
    Result<RedisReply> reply = client->Command({"GET", "k"});
    ASSERT_FALSE(reply.ok());
    EXPECT_EQ(reply.status().code(), StatusCode::kUnavailable);
    EXPECT_LT(Clock::now() - before, milliseconds(50));
  }
  EXPECT_EQ(client->errors(), 100u);
  EXPECT_TRUE(Rendered("mann_redis_up 0"));
  EXPECT_TRUE(Rendered("mann_redis_errors_total 100"));
  EXPECT_THAT(client->last_error(), HasSubstr("refused"));
}

TEST_F(RedisClientTest, ServerThatNeverAnswersTimesOutWithinTheCommandTimeout) {
  // A socket that listens and never accepts: the kernel completes the handshake, nobody talks.
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  ASSERT_EQ(::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  ASSERT_EQ(::listen(fd, 16), 0);
  ASSERT_EQ(::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len), 0);
  const int port = ntohs(addr.sin_port);

  auto client = Connect({.url = "redis://127.0.0.1:" + std::to_string(port),
                         .connect_timeout = milliseconds(100),
                         .command_timeout = milliseconds(100)});
  ASSERT_NE(client, nullptr);
  const auto start = Clock::now();
  Result<RedisReply> reply = client->Command({"PING"});
  const auto took = Clock::now() - start;
  ::close(fd);
  ASSERT_FALSE(reply.ok());
  EXPECT_THAT(reply.status().message(), HasSubstr("no answer within 100 ms"));
  EXPECT_GE(took, milliseconds(90));
  EXPECT_LT(took, milliseconds(400));
  EXPECT_FALSE(client->up());
}

TEST_F(RedisClientTest, RestartIsSurvivedWithOneWarningAndOneRecoveryLine) {
  auto logger = log::Get("redis");
  const auto saved_level = logger->level();
  logger->set_level(spdlog::level::info);
  auto sink = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(100);
  logger->sinks().push_back(sink);

  auto client = Connect({.connections = 2});
  ASSERT_NE(client, nullptr);
  int recoveries = 0;
  client->OnRecovery([&] { ++recoveries; });
  ASSERT_TRUE(client->Command({"SET", "k", "v"}).ok());

  redis_.Stop();
  for (int i = 0; i < 20; ++i) EXPECT_FALSE(client->Command({"GET", "k"}).ok());
  EXPECT_FALSE(client->up());
  EXPECT_TRUE(Rendered("mann_redis_up 0"));

  ASSERT_TRUE(redis_.Start()) << redis_.error();
  ASSERT_TRUE(WaitUp(*client));
  Result<RedisReply> after = client->Command({"SET", "k", "again"});
  ASSERT_TRUE(after.ok()) << after.status().ToString();
  EXPECT_TRUE(Rendered("mann_redis_up 1"));
  EXPECT_EQ(recoveries, 1);

  int warnings = 0;
  int recovered = 0;
  for (const std::string& line : sink->last_formatted()) {
    if (line.find("redis unreachable") != std::string::npos) ++warnings;
    if (line.find("redis reachable again") != std::string::npos) ++recovered;
  }
  logger->sinks().pop_back();
  logger->set_level(saved_level);
  EXPECT_EQ(warnings, 1);
  EXPECT_EQ(recovered, 1);
}

TEST_F(RedisClientTest, IdleConnectionsClosedByARestartAreReplacedWithoutAnOutage) {
  auto client = Connect({.connections = 1});
  ASSERT_NE(client, nullptr);
  ASSERT_TRUE(client->Ping().ok());
  // Restarted between two commands: the pooled connection is dead, Redis is not.
  redis_.Stop();
  ASSERT_TRUE(redis_.Start()) << redis_.error();
  EXPECT_TRUE(client->Ping().ok());
  EXPECT_TRUE(client->up());
  EXPECT_EQ(client->errors(), 0u);
}

TEST_F(RedisClientTest, BadOptionsAreRefused) {
  EXPECT_EQ(
      RedisClient::Create({.url = "redis://h", .connect_timeout = milliseconds(0)}).status().code(),
      StatusCode::kInvalidArgument);
  EXPECT_EQ(RedisClient::Create({.url = "redis://h", .connections = 0}).status().code(),
            StatusCode::kInvalidArgument);
  EXPECT_EQ(RedisClient::Create({.url = "memcached://h"}).status().code(),
            StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mann::cache
