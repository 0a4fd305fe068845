#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <poll.h>
#include <stdlib.h>
#include <unistd.h>

#include <mann/core/log.h>

namespace mann::log {
namespace {

namespace fs = std::filesystem;

// Logs to a file in a temporary directory; restores the default configuration afterwards, so
// other tests keep logging to standard error.
class LogTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "mann-log-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
  }
  void TearDown() override {
    Configure(LogOptions{}).IgnoreError();
    fs::remove_all(dir_);
  }

  std::vector<std::string> Lines() {
    Get("test")->flush();
    std::ifstream in(file());
    std::vector<std::string> out;
    std::string line;
    while (std::getline(in, line)) out.push_back(line);
    return out;
  }
  std::string file() const { return (fs::path(dir_) / "mann.log").string(); }

  fs::path dir_;
};

TEST_F(LogTest, JsonFormatWritesOneObjectPerLineAndMergesJsonMessages) {
  LogOptions o;
  o.file = file();
  o.format = "json";
  ASSERT_TRUE(Configure(o).ok());
  Get("test")->warn("disk almost full path={}", "/var/lib/mann");
  Get("test")->info(R"({"event":"http_request","status":201,"route":"/memories"})");
  Get("test")->info("{not json");

  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 3u);
  const boost::json::object a = boost::json::parse(lines[0]).as_object();
  EXPECT_EQ(a.at("level").as_string(), "warning");
  EXPECT_EQ(a.at("logger").as_string(), "test");
  EXPECT_EQ(a.at("message").as_string(), "disk almost full path=/var/lib/mann");
  const std::string time(a.at("time").as_string());
  ASSERT_EQ(time.size(), 24u) << time;  // 2026-12-03T15:28:49.473Z
  EXPECT_EQ(time[10], 'T');
  EXPECT_EQ(time.back(), 'Z');

  const boost::json::object b = boost::json::parse(lines[1]).as_object();
  EXPECT_EQ(b.at("event").as_string(), "http_request");
  EXPECT_EQ(b.at("status").as_int64(), 201);
  EXPECT_EQ(b.at("level").as_string(), "info");
  EXPECT_FALSE(b.contains("message"));

  const boost::json::object c = boost::json::parse(lines[2]).as_object();
  EXPECT_EQ(c.at("message").as_string(), "{not json");
}

TEST_F(LogTest, TextFormatIsTimeLevelLoggerMessage) {
  LogOptions o;
  o.file = file();
  ASSERT_TRUE(Configure(o).ok());
  Get("test")->error("it broke id={}", 7);
  const std::vector<std::string> lines = Lines();
  ASSERT_EQ(lines.size(), 1u);
  EXPECT_NE(lines[0].find("Z error [test] it broke id=7"), std::string::npos) << lines[0];
}

// Reads what is in a file now, without flushing any logger.
std::string Contents(const std::string& path) {
  std::ifstream in(path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Waits (bounded) until `path` holds `needle`; true when it did.
bool AppearsWithin(const std::string& path, std::string_view needle,
                   std::chrono::milliseconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < deadline) {
    if (Contents(path).find(needle) != std::string::npos) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return Contents(path).find(needle) != std::string::npos;
}

TEST_F(LogTest, InfoLinesReachTheFileWithinTheFlushIntervalWithoutAnExplicitFlush) {
  LogOptions o;
  o.file = file();
  ASSERT_TRUE(Configure(o).ok());
  Get("test")->info("request served id={}", 42);
  // Generous: the flusher runs every kFlushInterval, but the machine may be busy.
  EXPECT_TRUE(AppearsWithin(file(), "request served id=42", kFlushInterval * 10))
      << "an info line was still buffered after ten flush intervals";
}

// Standard error redirected to a pipe, as under journald or a container runtime: lines are
// written in blocks, but a warning goes out at once with everything logged before it.
TEST_F(LogTest, ToAPipeAWarningIsWrittenAtOnceWithTheLinesBeforeIt) {
  int pipe_fds[2];
  ASSERT_EQ(::pipe(pipe_fds), 0);
  const int saved_stderr = ::dup(STDERR_FILENO);
  ASSERT_GE(saved_stderr, 0);
  ASSERT_EQ(::dup2(pipe_fds[1], STDERR_FILENO), STDERR_FILENO);
  ::close(pipe_fds[1]);
  const Status configured = Configure(LogOptions{});  // standard error, now the pipe

  Get("test")->info("first line");
  Get("test")->warn("second line");
  // No sleep: the warning's flush happened inside warn().
  std::string got(4096, '\0');
  pollfd pfd{.fd = pipe_fds[0], .events = POLLIN, .revents = 0};
  const int ready = ::poll(&pfd, 1, 0);
  const ssize_t n = ready > 0 ? ::read(pipe_fds[0], got.data(), got.size()) : 0;
  got.resize(n > 0 ? static_cast<std::size_t>(n) : 0);

  Configure(LogOptions{}).IgnoreError();  // away from the pipe before it is closed
  ::dup2(saved_stderr, STDERR_FILENO);
  ::close(saved_stderr);
  ::close(pipe_fds[0]);

  ASSERT_TRUE(configured.ok()) << configured.ToString();
  const std::size_t first = got.find("first line");
  const std::size_t second = got.find("second line");
  ASSERT_NE(first, std::string::npos) << got;
  ASSERT_NE(second, std::string::npos) << got;
  EXPECT_LT(first, second);
}

TEST_F(LogTest, UnknownFormatOrLevelIsRejected) {
  LogOptions o;
  o.format = "xml";
  Status st = Configure(o);
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("text, json"), std::string::npos) << st.message();
  o.format = "text";
  o.level = "loud";
  EXPECT_FALSE(Configure(o).ok());
}

}  // namespace
}  // namespace mann::log
