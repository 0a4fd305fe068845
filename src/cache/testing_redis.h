// Test support: a real redis-server of the test's own, on 127.0.0.1 and a free port, in a
// temporary directory, without persistence, stopped by the destructor (also when the test
// fails). Stop() and Start() let a test take Redis away and bring it back on the same port.
//
//   mann::testing::TestingRedis redis;
//   ASSERT_TRUE(redis.Start()) << redis.error();
//   ... redis.url() ...  // "redis://127.0.0.1:PORT/0"
//   std::shared_ptr<cache::RedisClient> client = QuickClient(redis, &registry);
//
// Header-only and included only by *_test.cc files.
#pragma once

#include <chrono>
#include <csignal>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mann/cache/redis.h>
#include <mann/metrics/registry.h>

extern char** environ;

namespace mann::testing {

// A port nothing listens on at the moment of asking (the kernel's pick for port 0).
inline int FreeLoopbackPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof addr;
  int port = 0;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0 &&
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
    port = ntohs(addr.sin_port);
  }
  ::close(fd);
  return port;
}

// True when something accepts TCP connections on 127.0.0.1:port.
inline bool LoopbackPortOpen(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  const bool open = ::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0;
  ::close(fd);
  return open;
}

class TestingRedis {
 public:
  TestingRedis() : port_(FreeLoopbackPort()) {
    char pattern[] = "/tmp/mann-redis-test-XXXXXX";
    if (::mkdtemp(pattern) != nullptr) dir_ = pattern;
  }
  ~TestingRedis() {
    Stop();
    if (!dir_.empty()) {
      std::error_code ignored;
      std::filesystem::remove_all(dir_, ignored);
    }
  }
  TestingRedis(const TestingRedis&) = delete;
  TestingRedis& operator=(const TestingRedis&) = delete;

  // Starts redis-server and waits (at most 10 s) until it accepts connections. False with
  // error() when it could not.
  bool Start(std::vector<std::string> extra_args = {}) {
    if (pid_ > 0) return true;
    if (dir_.empty() || port_ == 0) {
      error_ = "no temporary directory or free port";
      return false;
    }
    std::vector<std::string> args = {
        "redis-server", "--port",    std::to_string(port_), "--bind", "127.0.0.1",
        "--save",       "",          "--appendonly",        "no",     "--dir",
        dir_,           "--logfile", dir_ + "/redis.log"};
    for (std::string& a : extra_args) args.push_back(std::move(a));
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    pid_t pid = 0;
    if (::posix_spawnp(&pid, "redis-server", nullptr, nullptr, argv.data(), environ) != 0) {
      error_ = "cannot run redis-server (is the redis-server package installed?)";
      return false;
    }
    pid_ = pid;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (std::chrono::steady_clock::now() < deadline) {
      if (LoopbackPortOpen(port_)) return true;
      int status = 0;
      if (::waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        error_ = "redis-server exited at start; see " + dir_ + "/redis.log";
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    error_ = "redis-server did not listen within 10 s";
    Stop();
    return false;
  }

  // Stops the server (SIGTERM, then SIGKILL after 5 s) and waits until it has exited.
  void Stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    int status = 0;
    while (::waitpid(pid_, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() >= deadline) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    pid_ = -1;
  }

  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  std::string url() const { return "redis://127.0.0.1:" + std::to_string(port_) + "/0"; }
  const std::string& error() const { return error_; }

 private:
  int port_ = 0;
  std::string dir_;
  pid_t pid_ = -1;
  std::string error_;
};

// A client of `redis` whose reconnection backoff is 20-100 ms, so a test that stops and restarts
// the server is not left waiting for the production backoff. Null, with a test failure, when the
// client cannot be made.
inline std::shared_ptr<cache::RedisClient> QuickClient(const TestingRedis& redis,
                                                       metrics::Registry* registry) {
  auto client = cache::RedisClient::Create({.url = redis.url(),
                                            .min_backoff = std::chrono::milliseconds(20),
                                            .max_backoff = std::chrono::milliseconds(100),
                                            .registry = registry});
  EXPECT_TRUE(client.ok()) << client.status().ToString();
  return client.ok() ? *client : nullptr;
}

}  // namespace mann::testing
