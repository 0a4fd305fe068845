#include "context.h"

#include <sstream>

#include <gtest/gtest.h>

namespace mann::cli {
namespace {

TEST(ColorAllowed, FollowsTerminalNoColorTermAndFlag) {
  struct Case {
    bool tty;
    config::Environment env;
    bool flag;
    bool want;
  };
  const Case cases[] = {
      {true, {}, false, true},
      {false, {}, false, false},
      {true, {{"NO_COLOR", "1"}}, false, false},
      {true, {{"NO_COLOR", "anything"}}, false, false},
      {true, {{"NO_COLOR", ""}}, false, true},  // no-color.org: only a non-empty value counts
      {true, {{"TERM", "dumb"}}, false, false},
      {true, {{"TERM", "xterm-256color"}}, false, true},
      {true, {}, true, false},
  };
  for (const Case& c : cases) {
    EXPECT_EQ(ColorAllowed(c.tty, c.env, c.flag), c.want)
        << "tty=" << c.tty << " flag=" << c.flag << " env size=" << c.env.size();
  }
}

TEST(ReportError, PrefixesEveryLineAndMapsTheExitCode) {
  std::ostringstream err;
  EXPECT_EQ(ReportError(err, InvalidArgumentError("first problem\nsecond problem")), kExitUsage);
  EXPECT_EQ(err.str(), "error: first problem\nerror: second problem\n");

  std::ostringstream err2;
  EXPECT_EQ(ReportError(err2, NotFoundError("no memory with id x")), kExitFailure);
  EXPECT_EQ(err2.str(), "error: no memory with id x\n");
  std::ostringstream err3;
  EXPECT_EQ(ReportError(err3, UnavailableError("database is locked")), kExitFailure);
}

const config::Environment kEnv = {{"HOME", "/home/test"}};

TEST(LoadCliConfig, MalformedSetIsAUsageError) {
  GlobalOptions g;
  g.sets = {"memory.memory_size"};
  auto loaded = LoadCliConfig(g, kEnv);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("KEY=VALUE"), std::string::npos);
}

TEST(LoadCliConfig, DedicatedFlagsBeatSet) {
  GlobalOptions g;
  g.sets = {"storage.data_dir=/from/set", "memory.memory_size=77"};
  g.data_dir = "/from/flag";
  auto loaded = LoadCliConfig(g, kEnv);
  ASSERT_TRUE(loaded.ok()) << loaded.status().ToString();
  EXPECT_EQ(loaded->config.storage.data_dir, "/from/flag");
  EXPECT_EQ(loaded->config.memory.memory_size, 77);
}

TEST(LoadCliConfig, LogsOnlyWarningsUnlessALevelIsChosen) {
  auto quiet = LoadCliConfig(GlobalOptions{}, kEnv);
  ASSERT_TRUE(quiet.ok());
  EXPECT_EQ(quiet->config.log.level, "warn");

  GlobalOptions g;
  g.log_level = "debug";
  auto chosen = LoadCliConfig(g, kEnv);
  ASSERT_TRUE(chosen.ok());
  EXPECT_EQ(chosen->config.log.level, "debug");

  config::Environment env = kEnv;
  env["MANN_LOG_LEVEL"] = "info";
  auto from_env = LoadCliConfig(GlobalOptions{}, env);
  ASSERT_TRUE(from_env.ok());
  EXPECT_EQ(from_env->config.log.level, "info");
}

TEST(LoadCliConfig, InvalidValuesAndMissingFilesAreUsageErrors) {
  GlobalOptions bad_value;
  bad_value.sets = {"server.port=70000"};
  auto loaded = LoadCliConfig(bad_value, kEnv);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("server.port"), std::string::npos);

  GlobalOptions missing;
  missing.config_path = "/nonexistent/mann.toml";
  loaded = LoadCliConfig(missing, kEnv);
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(loaded.status().message().find("/nonexistent/mann.toml"), std::string::npos);
}

}  // namespace
}  // namespace mann::cli
