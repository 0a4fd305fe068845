#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <stdlib.h>

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
