#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <stdlib.h>
#include <unistd.h>

#include <mann/config/config.h>

#include "../core/testing_temp_dir.h"
#include "../core/testing_unprivileged.h"

namespace mann::config {
namespace {

using ::testing::AllOf;
using ::testing::HasSubstr;
using ::testing::Not;

namespace fs = std::filesystem;

// The error text of a load that must fail.
std::string LoadError(const ConfigInputs& inputs) {
  Result<LoadedConfig> loaded = LoadConfig(inputs);
  EXPECT_FALSE(loaded.ok()) << "load unexpectedly succeeded";
  return loaded.ok() ? std::string() : loaded.status().message();
}

LoadedConfig LoadOk(const ConfigInputs& inputs) {
  Result<LoadedConfig> loaded = LoadConfig(inputs);
  EXPECT_TRUE(loaded.ok()) << loaded.status().ToString();
  return loaded.ok() ? std::move(loaded).value() : LoadedConfig{};
}

std::string Origin(const LoadedConfig& loaded, std::string_view key) {
  const Setting* s = loaded.Find(key);
  return s == nullptr ? "<missing key>" : s->origin;
}

std::string Shown(const LoadedConfig& loaded, std::string_view key) {
  const Setting* s = loaded.Find(key);
  return s == nullptr ? "<missing key>" : s->DisplayValue();
}

const Environment kHome = {{"HOME", "/home/ana"}};

// ---- Defaults --------------------------------------------------------------------------------

TEST(ConfigDefaults, EveryKeyHasItsDocumentedDefault) {
  const std::map<std::string, std::string> expected = {
      {"server.host", "\"127.0.0.1\""},
      {"server.port", "8000"},
      {"server.handler_threads", "8"},
      {"server.max_connections", "1024"},
      {"server.max_header_bytes", "16384"},
      {"server.max_body_bytes", "1048576"},
      {"server.header_timeout", "10"},
      {"server.body_timeout", "30"},
      {"server.idle_timeout", "60"},
      {"server.write_timeout", "30"},
      {"server.drain_timeout", "10"},
      {"server.shutdown_grace", "0"},
      {"security.api_keys_file", "\"\""},
      {"security.allow_unauthenticated", "false"},
      {"security.cors_origins", "\"\""},
      {"security.cors_allow_credentials", "false"},
      {"security.trusted_hosts", "\"\""},
      {"rate_limit.enabled", "true"},
      {"rate_limit.rules", "\"\""},
      {"log.level", "\"info\""},
      {"log.file", "\"\""},
      {"log.format", "\"text\""},
      {"log.access_log_probes", "false"},
      {"monitoring.enabled", "true"},
      {"monitoring.health_check_interval", "30"},
      {"monitoring.alert_rules", "\"\""},
      {"monitoring.renotify_info", "60"},
      {"monitoring.renotify_warning", "30"},
      {"monitoring.renotify_error", "10"},
      {"monitoring.renotify_critical", "0"},
      {"monitoring.request_window", "300"},
      {"monitoring.min_requests", "10"},
      {"pager.enabled", "false"},
      {"pager.min_level", "\"info\""},
      {"pager.webhook", "\"\""},
      {"pager.pagerduty_routing_key", "\"\""},
      {"pager.pagerduty_url", "\"\""},
      {"pager.smtp_url", "\"\""},
      {"pager.smtp_username", "\"\""},
      {"pager.smtp_password", "\"\""},
      {"pager.smtp_from", "\"\""},
      {"pager.smtp_to", "\"\""},
      {"pager.smtp_ca_file", "\"\""},
      {"pager.json_webhook", "\"\""},
      {"pager.max_attempts", "8"},
      {"pager.initial_backoff", "1"},
      {"pager.max_backoff", "300"},
      {"pager.request_timeout", "10"},
      {"pager.connect_timeout", "5"},
      {"memory.memory_size", "1000"},
      {"memory.max_memory_capacity", "5000"},
      {"memory.update_threshold", "0.8"},
      {"memory.duplicate_threshold", "0.95"},
      {"cache.enabled", "true"},
      {"cache.size", "1000"},
      {"cache.ttl", "3600"},
      {"redis.url", "\"\""},
      {"redis.connect_timeout", "200"},
      {"redis.command_timeout", "200"},
      {"redis.key_prefix", "\"mann:\""},
      {"storage.backend", "\"sqlite\""},
      {"storage.data_dir", "\"/home/ana/.local/share/mann\""},
      {"storage.postgres_url", "\"\""},
      {"storage.postgres_connect_timeout", "5"},
      {"storage.postgres_statement_timeout", "30"},
      {"backup.dir", "\"/home/ana/.local/share/mann/backups\""},
      {"backup.retention_days", "7"},
      {"backup.upload_command", "\"\""},
      {"backup.command_timeout", "1800"},
      {"health.webhook", "\"\""},
      {"retrieval.fusion", "\"weighted_sum\""},
      {"retrieval.dense_weight", "0.5"},
      {"retrieval.lexical_weight", "0.5"},
      {"retrieval.lexical_confidence", "true"},
      {"retrieval.default_top_k", "5"},
      {"retrieval.recency_half_life_days", "30"},
      {"retrieval.recency_weight", "0.1"},
      {"retrieval.importance_boost", "0.1"},
      {"retrieval.sharpening", "10"},
      {"chat.min_relevance", "0.25"},
      {"chat.history_file", "\"/home/ana/.local/share/mann/chat_history\""},
      {"encoder.kind", "\"use-lite\""},
      {"encoder.model_dir", "\"\""},
      {"encoder.gloss_vietnamese", "true"},
      {"encoder.cache_size", "4096"},
      {"encoder.dimension", "256"},
      {"encoder.url", "\"\""},
      {"encoder.model", "\"\""},
      {"encoder.api_key", "\"\""},
      {"encoder.timeout", "10"},
      {"llm.base_url", "\"\""},
      {"llm.model", "\"\""},
      {"llm.api_key", "\"\""},
      {"llm.connect_timeout", "5"},
      {"llm.timeout", "60"},
      {"llm.max_prompt_tokens", "3000"},
      {"llm.temperature", "0.7"},
      {"llm.memory_decisions", "false"},
      {"llm.breaker_failures", "5"},
      {"llm.breaker_open_duration", "30"},
  };
  LoadedConfig loaded = LoadOk({.env = kHome});
  ASSERT_EQ(loaded.settings.size(), expected.size()) << "a key was added: extend this table";
  for (const Setting& s : loaded.settings) {
    SCOPED_TRACE(s.info->key);
    ASSERT_TRUE(expected.contains(s.info->key));
    EXPECT_EQ(s.DisplayValue(), expected.at(s.info->key));
    EXPECT_EQ(s.origin, "default");
  }
}

TEST(ConfigDefaults, TypedFieldsCarryTheDefaults) {
  const Config c = LoadOk({.env = kHome}).config;
  EXPECT_EQ(c.server.host, "127.0.0.1");
  EXPECT_EQ(c.server.port, 8000);
  EXPECT_EQ(c.log.level, "info");
  EXPECT_EQ(c.log.file, "");
  EXPECT_TRUE(c.monitoring.enabled);
  EXPECT_EQ(c.monitoring.health_check_interval, std::chrono::seconds(30));
  EXPECT_EQ(c.monitoring.alert_rules, "");
  EXPECT_EQ(c.monitoring.renotify_info, std::chrono::seconds(60));
  EXPECT_EQ(c.monitoring.renotify_warning, std::chrono::seconds(30));
  EXPECT_EQ(c.monitoring.renotify_error, std::chrono::seconds(10));
  EXPECT_EQ(c.monitoring.renotify_critical, std::chrono::seconds(0));
  EXPECT_EQ(c.monitoring.request_window, std::chrono::seconds(300));
  EXPECT_EQ(c.monitoring.min_requests, 10);
  EXPECT_FALSE(c.pager.enabled);
  EXPECT_EQ(c.pager.min_level, "info");
  EXPECT_EQ(c.pager.webhook, "");
  EXPECT_EQ(c.pager.max_attempts, 8);
  EXPECT_EQ(c.pager.initial_backoff, std::chrono::seconds(1));
  EXPECT_EQ(c.pager.max_backoff, std::chrono::seconds(300));
  EXPECT_EQ(c.pager.request_timeout, std::chrono::seconds(10));
  EXPECT_EQ(c.pager.connect_timeout, std::chrono::seconds(5));
  EXPECT_EQ(c.memory.memory_size, 1000);
  EXPECT_EQ(c.memory.max_memory_capacity, 5000);
  EXPECT_DOUBLE_EQ(c.memory.update_threshold, 0.8);
  EXPECT_DOUBLE_EQ(c.memory.duplicate_threshold, 0.95);
  EXPECT_TRUE(c.cache.enabled);
  EXPECT_EQ(c.cache.size, 1000);
  EXPECT_EQ(c.cache.ttl, std::chrono::seconds(3600));
  EXPECT_EQ(c.storage.backend, "sqlite");
  EXPECT_EQ(c.storage.data_dir, "/home/ana/.local/share/mann");
  EXPECT_EQ(c.retrieval.fusion, "weighted_sum");
  EXPECT_DOUBLE_EQ(c.retrieval.dense_weight, 0.5);
  EXPECT_DOUBLE_EQ(c.retrieval.lexical_weight, 0.5);
  EXPECT_TRUE(c.retrieval.lexical_confidence);
  EXPECT_EQ(c.retrieval.default_top_k, 5);
  EXPECT_DOUBLE_EQ(c.retrieval.recency_half_life_days, 30);
  EXPECT_DOUBLE_EQ(c.retrieval.recency_weight, 0.1);
  EXPECT_DOUBLE_EQ(c.retrieval.importance_boost, 0.1);
  EXPECT_DOUBLE_EQ(c.retrieval.sharpening, 10);
  EXPECT_DOUBLE_EQ(c.chat.min_relevance, 0.25);
  EXPECT_EQ(c.chat.history_file, "/home/ana/.local/share/mann/chat_history");
  EXPECT_EQ(c.encoder.kind, "use-lite");
  EXPECT_TRUE(c.encoder.gloss_vietnamese);
  EXPECT_EQ(c.encoder.cache_size, 4096);
  EXPECT_EQ(c.encoder.dimension, 256);
  EXPECT_EQ(c.encoder.timeout.count(), 10);
}

TEST(ConfigDefaults, DefaultConfigEqualsAnEmptyLoadAndIgnoresMannVariables) {
  const Config d = DefaultConfig({{"HOME", "/h"}, {"MANN_API_PORT", "9"}});
  EXPECT_EQ(d.server.port, 8000);
  EXPECT_EQ(d.storage.data_dir, "/h/.local/share/mann");
  EXPECT_EQ(d.chat.history_file, LoadOk({.env = {{"HOME", "/h"}}}).config.chat.history_file);
}

TEST(ConfigDefaults, DataDirFollowsXdgThenHomeThenWorkingDirectory) {
  struct Case {
    Environment env;
    std::string data_dir;
  };
  const Case cases[] = {
      {{{"XDG_DATA_HOME", "/xdg"}, {"HOME", "/home/ana"}}, "/xdg/mann"},
      {{{"XDG_DATA_HOME", ""}, {"HOME", "/home/ana"}}, "/home/ana/.local/share/mann"},
      {{{"HOME", "/home/ana"}}, "/home/ana/.local/share/mann"},
      {{}, "./mann-data"},
  };
  for (const Case& c : cases) {
    const Config config = LoadOk({.env = c.env}).config;
    EXPECT_EQ(config.storage.data_dir, c.data_dir);
    EXPECT_EQ(config.chat.history_file, c.data_dir + "/chat_history");
  }
}

TEST(ConfigDefaults, ExplicitHistoryFileIsKept) {
  const Config c = LoadOk({.env = kHome, .overrides = {{"chat.history_file", "/tmp/h"}}}).config;
  EXPECT_EQ(c.chat.history_file, "/tmp/h");
}

// ---- Precedence ------------------------------------------------------------------------------

TEST(ConfigPrecedence, FlagBeatsEnvBeatsFileBeatsDefault) {
  testing::TempDir dir("mann-config");
  const std::string file = dir.Write("mann.toml", "[server]\nport = 8100\n");
  ConfigInputs in{.env = kHome};
  EXPECT_EQ(LoadOk(in).config.server.port, 8000);
  EXPECT_EQ(Origin(LoadOk(in), "server.port"), "default");

  in.file = file;
  EXPECT_EQ(LoadOk(in).config.server.port, 8100);
  EXPECT_EQ(Origin(LoadOk(in), "server.port"), "file:" + file);

  in.env["MANN_API_PORT"] = "8200";
  EXPECT_EQ(LoadOk(in).config.server.port, 8200);
  EXPECT_EQ(Origin(LoadOk(in), "server.port"), "env:MANN_API_PORT");

  in.overrides = {{"server.port", "8300"}, {"server.port", "8400"}};
  EXPECT_EQ(LoadOk(in).config.server.port, 8400) << "the last flag wins";
  EXPECT_EQ(Origin(LoadOk(in), "server.port"), "flag");
}

TEST(ConfigEnv, EveryVariableInTheTableIsHonoured) {
  struct Case {
    std::string env;
    std::string text;
    std::function<bool(const Config&)> took_effect;
  };
  const std::vector<Case> cases = {
      {"MANN_API_HOST", "0.0.0.0", [](const Config& c) { return c.server.host == "0.0.0.0"; }},
      {"MANN_API_PORT", "9001", [](const Config& c) { return c.server.port == 9001; }},
      {"MANN_HANDLER_THREADS", "3", [](const Config& c) { return c.server.handler_threads == 3; }},
      {"MANN_SHUTDOWN_GRACE", "5",
       [](const Config& c) { return c.server.shutdown_grace.count() == 5; }},
      {"MANN_API_KEYS_FILE", "/etc/mann/keys.toml",
       [](const Config& c) { return c.security.api_keys_file == "/etc/mann/keys.toml"; }},
      {"MANN_ALLOW_UNAUTHENTICATED", "true",
       [](const Config& c) { return c.security.allow_unauthenticated; }},
      {"MANN_CORS_ORIGINS", "https://app.example",
       [](const Config& c) { return c.security.cors_origins == "https://app.example"; }},
      {"MANN_CORS_ALLOW_CREDENTIALS", "true",
       [](const Config& c) { return c.security.cors_allow_credentials; }},
      {"MANN_TRUSTED_HOSTS", "api.example",
       [](const Config& c) { return c.security.trusted_hosts == "api.example"; }},
      {"MANN_RATE_LIMIT_ENABLED", "false", [](const Config& c) { return !c.rate_limit.enabled; }},
      {"MANN_RATE_LIMITS", "POST /memories=10/minute",
       [](const Config& c) { return c.rate_limit.rules == "POST /memories=10/minute"; }},
      {"MANN_LOG_LEVEL", "DEBUG", [](const Config& c) { return c.log.level == "debug"; }},
      {"MANN_LOG_FORMAT", "JSON", [](const Config& c) { return c.log.format == "json"; }},
      {"MANN_LOG_ACCESS_PROBES", "true", [](const Config& c) { return c.log.access_log_probes; }},
      {"MANN_LOG_FILE", "/var/log/m.log",
       [](const Config& c) { return c.log.file == "/var/log/m.log"; }},
      {"MANN_ENABLE_MONITORING", "off", [](const Config& c) { return !c.monitoring.enabled; }},
      {"MANN_HEALTH_CHECK_INTERVAL", "45",
       [](const Config& c) { return c.monitoring.health_check_interval.count() == 45; }},
      {"MANN_ENABLE_PAGER", "yes", [](const Config& c) { return c.pager.enabled; }},
      {"MANN_ALERT_RULES", "disk>0.5 for 5m critical",
       [](const Config& c) { return c.monitoring.alert_rules == "disk>0.5 for 5m critical"; }},
      {"MANN_PAGER_MIN_LEVEL", "Error",
       [](const Config& c) { return c.pager.min_level == "error"; }},
      {"MANN_PAGER_WEBHOOK", "https://h.example/x",
       [](const Config& c) { return c.pager.webhook == "https://h.example/x"; }},
      {"MANN_PAGERDUTY_ROUTING_KEY", "R0UT3",
       [](const Config& c) { return c.pager.pagerduty_routing_key == "R0UT3"; }},
      {"MANN_PAGERDUTY_URL", "http://127.0.0.1:9999/v2/enqueue",
       [](const Config& c) { return c.pager.pagerduty_url == "http://127.0.0.1:9999/v2/enqueue"; }},
      {"MANN_SMTP_URL", "smtp://mail.example.com:587",
       [](const Config& c) { return c.pager.smtp_url == "smtp://mail.example.com:587"; }},
      {"MANN_SMTP_USERNAME", "mann",
       [](const Config& c) { return c.pager.smtp_username == "mann"; }},
      {"MANN_SMTP_PASSWORD", "pw", [](const Config& c) { return c.pager.smtp_password == "pw"; }},
      {"MANN_SMTP_FROM", "mann@example.com",
       [](const Config& c) { return c.pager.smtp_from == "mann@example.com"; }},
      {"MANN_SMTP_TO", "a@example.com, b@example.com",
       [](const Config& c) { return c.pager.smtp_to == "a@example.com, b@example.com"; }},
      {"MANN_SMTP_CA_FILE", "/etc/mann/ca.pem",
       [](const Config& c) { return c.pager.smtp_ca_file == "/etc/mann/ca.pem"; }},
      {"MANN_PAGER_JSON_WEBHOOK", "https://h.example/json",
       [](const Config& c) { return c.pager.json_webhook == "https://h.example/json"; }},
      {"MANN_MEMORY_SIZE", "2000", [](const Config& c) { return c.memory.memory_size == 2000; }},
      {"MANN_MAX_MEMORY_CAPACITY", "9000",
       [](const Config& c) { return c.memory.max_memory_capacity == 9000; }},
      {"MANN_UPDATE_THRESHOLD", "0.7",
       [](const Config& c) { return c.memory.update_threshold == 0.7; }},
      {"MANN_DUPLICATE_THRESHOLD", "0.99",
       [](const Config& c) { return c.memory.duplicate_threshold == 0.99; }},
      {"MANN_ENABLE_CACHING", "0", [](const Config& c) { return !c.cache.enabled; }},
      {"MANN_CACHE_SIZE", "0", [](const Config& c) { return c.cache.size == 0; }},
      {"MANN_CACHE_TTL", "60", [](const Config& c) { return c.cache.ttl.count() == 60; }},
      {"MANN_REDIS_URL", "redis://:pw@cache:6380/1",
       [](const Config& c) { return c.redis.url == "redis://:pw@cache:6380/1"; }},
      {"MANN_REDIS_CONNECT_TIMEOUT", "150",
       [](const Config& c) { return c.redis.connect_timeout.count() == 150; }},
      {"MANN_REDIS_COMMAND_TIMEOUT", "75",
       [](const Config& c) { return c.redis.command_timeout.count() == 75; }},
      {"MANN_REDIS_KEY_PREFIX",
       "prod:mann:", [](const Config& c) { return c.redis.key_prefix == "prod:mann:"; }},
      {"MANN_STORAGE_BACKEND", "SQLite",
       [](const Config& c) { return c.storage.backend == "sqlite"; }},
      {"MANN_BACKUP_DIR", "/srv/backups",
       [](const Config& c) { return c.backup.dir == "/srv/backups"; }},
      {"MANN_BACKUP_RETENTION_DAYS", "30",
       [](const Config& c) { return c.backup.retention_days == 30; }},
      {"MANN_BACKUP_UPLOAD_COMMAND", "/usr/local/bin/up --to 'a b'",
       [](const Config& c) { return c.backup.upload_command == "/usr/local/bin/up --to 'a b'"; }},
      {"MANN_BACKUP_COMMAND_TIMEOUT", "90",
       [](const Config& c) { return c.backup.command_timeout == std::chrono::seconds(90); }},
      {"MANN_HEALTH_WEBHOOK", "https://hooks.example.com/T0",
       [](const Config& c) { return c.health.webhook == "https://hooks.example.com/T0"; }},
      {"MANN_DATA_DIR", "/srv/mann",
       [](const Config& c) { return c.storage.data_dir == "/srv/mann"; }},
      {"MANN_DATABASE_URL", "postgresql://m@db:5432/mann",
       [](const Config& c) { return c.storage.postgres_url == "postgresql://m@db:5432/mann"; }},
      {"MANN_DATABASE_CONNECT_TIMEOUT", "9",
       [](const Config& c) {
         return c.storage.postgres_connect_timeout == std::chrono::seconds(9);
       }},
      {"MANN_DATABASE_STATEMENT_TIMEOUT", "12",
       [](const Config& c) {
         return c.storage.postgres_statement_timeout == std::chrono::seconds(12);
       }},
      {"MANN_FUSION", "rrf", [](const Config& c) { return c.retrieval.fusion == "rrf"; }},
      {"MANN_CHAT_MIN_RELEVANCE", "0.5",
       [](const Config& c) { return c.chat.min_relevance == 0.5; }},
      {"MANN_ENCODER", "hashed", [](const Config& c) { return c.encoder.kind == "hashed"; }},
      {"MANN_MODEL_DIR", "/opt/use",
       [](const Config& c) { return c.encoder.model_dir == "/opt/use"; }},
      {"MANN_ENCODER_URL", "http://127.0.0.1:11434/v1",
       [](const Config& c) { return c.encoder.url == "http://127.0.0.1:11434/v1"; }},
      {"MANN_ENCODER_MODEL", "nomic-embed-text",
       [](const Config& c) { return c.encoder.model == "nomic-embed-text"; }},
      {"MANN_ENCODER_API_KEY", "sk-1", [](const Config& c) { return c.encoder.api_key == "sk-1"; }},
      {"MANN_ENCODER_TIMEOUT", "30",
       [](const Config& c) { return c.encoder.timeout.count() == 30; }},
      {"MANN_LLM_BASE_URL", "http://127.0.0.1:11434/v1",
       [](const Config& c) { return c.llm.base_url == "http://127.0.0.1:11434/v1"; }},
      {"MANN_LLM_MODEL", "llama3.2", [](const Config& c) { return c.llm.model == "llama3.2"; }},
      {"MANN_LLM_API_KEY", "sk-2", [](const Config& c) { return c.llm.api_key == "sk-2"; }},
      {"MANN_LLM_TIMEOUT", "90", [](const Config& c) { return c.llm.timeout.count() == 90; }},
      {"MANN_LLM_MEMORY_DECISIONS", "on", [](const Config& c) { return c.llm.memory_decisions; }},
  };

  std::set<std::string> in_table;
  for (const KeyInfo& k : ConfigKeys()) {
    if (!k.env.empty()) in_table.insert(k.env);
  }
  std::set<std::string> tested;
  for (const Case& c : cases) tested.insert(c.env);
  EXPECT_EQ(tested, in_table) << "every environment variable of the key table needs a case here";

  for (const Case& c : cases) {
    SCOPED_TRACE(c.env);
    ConfigInputs in{.env = kHome};
    in.env[c.env] = c.text;
    // Enabling the pager is only valid with a channel; give it one from a lower layer.
    if (c.env == "MANN_ENABLE_PAGER") in.overrides = {{"pager.webhook", "http://h.example"}};
    // A model server needs a model name.
    if (c.env == "MANN_LLM_BASE_URL") in.overrides = {{"llm.model", "m"}};
    // An email channel needs a sender and recipients.
    if (c.env == "MANN_SMTP_URL") {
      in.overrides = {{"pager.smtp_from", "m@example.com"}, {"pager.smtp_to", "o@example.com"}};
    }
    LoadedConfig loaded = LoadOk(in);
    EXPECT_TRUE(c.took_effect(loaded.config));
    const auto key = std::find_if(ConfigKeys().begin(), ConfigKeys().end(),
                                  [&](const KeyInfo& k) { return k.env == c.env; });
    EXPECT_EQ(Origin(loaded, key->key), "env:" + c.env);
  }
}

TEST(ConfigCrossKeys, ModelServerNeedsAModelName) {
  ConfigInputs in{.env = kHome};
  in.env["MANN_LLM_BASE_URL"] = "http://127.0.0.1:11434/v1";
  Result<LoadedConfig> loaded = LoadConfig(in);
  ASSERT_FALSE(loaded.ok());
  EXPECT_NE(loaded.status().message().find("llm.base_url=\"http://127.0.0.1:11434/v1\" (env "
                                           "MANN_LLM_BASE_URL) needs llm.model"),
            std::string::npos)
      << loaded.status().message();
}

TEST(ConfigEnv, EmptyVariableCountsAsUnset) {
  LoadedConfig loaded = LoadOk({.env = {{"MANN_API_PORT", ""}, {"MANN_ENABLE_PAGER", ""}}});
  EXPECT_EQ(loaded.config.server.port, 8000);
  EXPECT_EQ(Origin(loaded, "server.port"), "default");
}

TEST(ConfigEnv, ReadsTheProcessEnvironment) {
  ASSERT_EQ(setenv("MANN_CONFIG_TEST_PROBE", "a=b", 1), 0);
  const Environment env = CurrentEnvironment();
  unsetenv("MANN_CONFIG_TEST_PROBE");
  ASSERT_TRUE(env.contains("MANN_CONFIG_TEST_PROBE"));
  EXPECT_EQ(env.at("MANN_CONFIG_TEST_PROBE"), "a=b");
}

// ---- Value parsing and rules -----------------------------------------------------------------

TEST(ConfigValues, BadEnvironmentTextNamesVariableValueKeyAndRule) {
  EXPECT_EQ(LoadError({.env = {{"MANN_API_PORT", "70000"}}}),
            "MANN_API_PORT=\"70000\" (env): server.port must be an integer in 1..65535");

  struct Case {
    std::string env;
    std::string text;
    std::string rule;
  };
  const Case cases[] = {
      {"MANN_API_PORT", "80x", "server.port must be an integer in 1..65535"},
      {"MANN_API_PORT", "0", "server.port must be an integer in 1..65535"},
      {"MANN_API_PORT", "99999999999999999999", "server.port must be an integer in 1..65535"},
      {"MANN_API_PORT", "8.5", "server.port must be an integer in 1..65535"},
      {"MANN_ENABLE_CACHING", "maybe", "cache.enabled must be a boolean"},
      {"MANN_UPDATE_THRESHOLD", "nan", "memory.update_threshold must be a number in (0, 1]"},
      {"MANN_UPDATE_THRESHOLD", "inf", "memory.update_threshold must be a number in (0, 1]"},
      {"MANN_UPDATE_THRESHOLD", "0", "memory.update_threshold must be a number in (0, 1]"},
      {"MANN_UPDATE_THRESHOLD", "0.5abc", "memory.update_threshold must be a number in (0, 1]"},
      {"MANN_CHAT_MIN_RELEVANCE", "1.5", "chat.min_relevance must be a number in 0..1"},
      {"MANN_HEALTH_CHECK_INTERVAL", "0",
       "monitoring.health_check_interval must be an integer in 1..86400 (seconds)"},
      {"MANN_CACHE_TTL", "-1", "cache.ttl must be an integer in 0..31536000 (seconds)"},
      {"MANN_MEMORY_SIZE", "10000001", "memory.memory_size must be an integer in 1..10000000"},
      {"MANN_LOG_LEVEL", "loud",
       "log.level must be one of: trace, debug, info, warn, warning, error, critical, off"},
      {"MANN_FUSION", "max", "retrieval.fusion must be one of: weighted_sum, rrf"},
      {"MANN_STORAGE_BACKEND", "mysql", "storage.backend must be one of: sqlite, postgres"},

      {"MANN_ENCODER", "bert", "encoder.kind must be one of: use-lite, hashed, remote"},
      {"MANN_ENCODER_URL", "ftp://x", "encoder.url must be empty or an http:// or https:// URL"},
      {"MANN_ENCODER_TIMEOUT", "0", "encoder.timeout must be an integer in 1..600 (seconds)"},
      {"MANN_API_HOST", "bad host", "server.host must be a non-empty host name or IP literal"},
      {"MANN_API_HOST", "300.1.1.1", "server.host must be a non-empty host name or IP literal"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.env + "=" + c.text);
    const std::string error = LoadError({.env = {{c.env, c.text}}});
    EXPECT_THAT(error, HasSubstr(c.env + "=\"" + c.text + "\" (env): "));
    EXPECT_THAT(error, HasSubstr(c.rule));
  }
}

TEST(ConfigValues, PostgresBackendNeedsAUrlAndNeverPrintsIt) {
  EXPECT_THAT(LoadError({.env = {{"MANN_STORAGE_BACKEND", "postgres"}}}),
              HasSubstr("storage.backend=\"postgres\" (env MANN_STORAGE_BACKEND) needs "
                        "storage.postgres_url (set MANN_DATABASE_URL"));
  const std::string bad = LoadError({.env = {{"MANN_DATABASE_URL", "mysql://u:hunter2@h/db"}}});
  EXPECT_THAT(bad, HasSubstr("storage.postgres_url must be empty or a postgresql://"));
  EXPECT_THAT(bad, Not(HasSubstr("hunter2")));

  const Config c = LoadOk({.env = {{"MANN_STORAGE_BACKEND", "postgres"},
                                   {"MANN_DATABASE_URL", "postgresql://u:hunter2@h:5432/db"},
                                   {"MANN_DATABASE_CONNECT_TIMEOUT", "7"}}})
                       .config;
  EXPECT_EQ(c.storage.backend, "postgres");
  EXPECT_EQ(c.storage.postgres_url, "postgresql://u:hunter2@h:5432/db");
  EXPECT_EQ(c.storage.postgres_connect_timeout, std::chrono::seconds(7));
}

TEST(ConfigValues, BadFlagTextNamesKeyValueAndRule) {
  EXPECT_EQ(LoadError({.overrides = {{"retrieval.default_top_k", "51"}}}),
            "retrieval.default_top_k=\"51\" (flag): retrieval.default_top_k must be an integer "
            "in 1..50");
  EXPECT_EQ(LoadError({.overrides = {{"storage.data_dir", ""}}}),
            "storage.data_dir=\"\" (flag): storage.data_dir must be a non-empty path");
  EXPECT_THAT(LoadError({.overrides = {{"retrieval.sharpening", "0"}}}),
              HasSubstr("retrieval.sharpening must be a number > 0"));
  EXPECT_THAT(LoadError({.overrides = {{"encoder.dimension", "4"}}}),
              HasSubstr("encoder.dimension must be an integer in 8..4096"));
}

TEST(ConfigValues, BooleansAcceptCommonSpellingsInAnyCase) {
  const std::pair<std::string, bool> cases[] = {
      {"true", true},   {"TRUE", true},   {"1", true},  {"yes", true}, {"On", true},
      {"false", false}, {"False", false}, {"0", false}, {"no", false}, {"OFF", false},
  };
  for (const auto& [text, expected] : cases) {
    SCOPED_TRACE(text);
    EXPECT_EQ(LoadOk({.overrides = {{"cache.enabled", text}}}).config.cache.enabled, expected);
  }
}

TEST(ConfigValues, NumbersAcceptSignAndSurroundingBlanks) {
  const Config c = LoadOk({.overrides = {{"server.port", " +8080 "},
                                         {"retrieval.recency_weight", "\t0.25\n"},
                                         {"retrieval.dense_weight", "1"}}})
                       .config;
  EXPECT_EQ(c.server.port, 8080);
  EXPECT_DOUBLE_EQ(c.retrieval.recency_weight, 0.25);
  EXPECT_DOUBLE_EQ(c.retrieval.dense_weight, 1.0);
  EXPECT_THAT(LoadError({.overrides = {{"server.port", "+-80"}}}), HasSubstr("server.port"));
}

TEST(ConfigValues, HostAcceptsNamesAndIpLiteralsOnly) {
  const std::pair<std::string, bool> cases[] = {
      {"localhost", true}, {"api.example.com", true}, {"0.0.0.0", true}, {"::1", true},
      {"fe80::1", true},   {"my-host", true},         {"", false},       {"-bad", false},
      {"a..b", false},     {"host.", false},          {"a_b", false},    {"1.2.3.4.5", false},
      {"http://x", false}, {"[::1]", false},
  };
  for (const auto& [host, valid] : cases) {
    SCOPED_TRACE(host);
    EXPECT_EQ(LoadConfig({.overrides = {{"server.host", host}}}).ok(), valid);
  }
}

TEST(ConfigValues, WebhookMustBeEmptyOrHttpUrl) {
  const std::pair<std::string, bool> cases[] = {
      {"", true},
      {"http://h", true},
      {"HTTPS://h.example/p?q=1", true},
      {"ftp://h", false},
      {"https://", false},
      {"https:///path", false},
      {"http://a b", false},
      {"h.example", false},
  };
  for (const auto& [url, valid] : cases) {
    SCOPED_TRACE(url);
    EXPECT_EQ(LoadConfig({.overrides = {{"pager.webhook", url}}}).ok(), valid);
  }
}

TEST(ConfigValues, EnumeratedValuesAreCaseInsensitiveAndStoredLowerCase) {
  const Config c = LoadOk({.env = {{"MANN_LOG_LEVEL", "WARNING"}, {"MANN_FUSION", "RRF"}}}).config;
  EXPECT_EQ(c.log.level, "warning");
  EXPECT_EQ(c.retrieval.fusion, "rrf");
}

// ---- Cross-key rules -------------------------------------------------------------------------

TEST(ConfigCrossKey, CapacityBelowMemorySizeNamesBothKeysAndValues) {
  EXPECT_EQ(LoadError({.env = {{"MANN_MAX_MEMORY_CAPACITY", "500"}}}),
            "memory.max_memory_capacity=500 (env MANN_MAX_MEMORY_CAPACITY) is less than "
            "memory.memory_size=1000 (default): memory.max_memory_capacity must be >= "
            "memory.memory_size");
  EXPECT_TRUE(LoadConfig({.env = {{"MANN_MAX_MEMORY_CAPACITY", "1000"}}}).ok());
}

TEST(ConfigCrossKey, DuplicateThresholdBelowUpdateThreshold) {
  const std::string error = LoadError({.overrides = {{"memory.duplicate_threshold", "0.7"}}});
  EXPECT_THAT(error, AllOf(HasSubstr("memory.duplicate_threshold=0.7 (flag)"),
                           HasSubstr("memory.update_threshold=0.8 (default)"),
                           HasSubstr("must be >= memory.update_threshold")));
}

TEST(ConfigCrossKey, FusionWeightsMustNotBothBeZero) {
  const std::string error = LoadError(
      {.overrides = {{"retrieval.dense_weight", "0"}, {"retrieval.lexical_weight", "0"}}});
  EXPECT_THAT(error, AllOf(HasSubstr("retrieval.dense_weight=0 (flag)"),
                           HasSubstr("retrieval.lexical_weight=0 (flag)"), HasSubstr("> 0")));
  EXPECT_TRUE(LoadConfig({.overrides = {{"retrieval.dense_weight", "0"}}}).ok());
}

TEST(ConfigCrossKey, RemoteEncoderNeedsAUrlAndAModel) {
  const std::string error = LoadError({.env = {{"MANN_ENCODER", "remote"}}});
  EXPECT_THAT(error,
              AllOf(HasSubstr("encoder.kind=\"remote\" (env MANN_ENCODER) needs encoder.url"),
                    HasSubstr("MANN_ENCODER_URL"), HasSubstr("needs encoder.model"),
                    HasSubstr("MANN_ENCODER_MODEL")));
  EXPECT_TRUE(LoadConfig({.env = {{"MANN_ENCODER", "remote"},
                                  {"MANN_ENCODER_URL", "http://127.0.0.1:11434/v1"},
                                  {"MANN_ENCODER_MODEL", "nomic-embed-text"}}})
                  .ok());
}

TEST(ConfigCrossKey, EnabledPagerNeedsAChannel) {
  const std::string error = LoadError({.env = {{"MANN_ENABLE_PAGER", "true"}}});
  EXPECT_THAT(error, AllOf(HasSubstr("pager.enabled=true (env MANN_ENABLE_PAGER)"),
                           HasSubstr("set MANN_PAGER_WEBHOOK")));
  EXPECT_TRUE(LoadConfig({.env = {{"MANN_ENABLE_PAGER", "true"},
                                  {"MANN_PAGER_WEBHOOK", "https://hooks.example/a"}}})
                  .ok());
}

TEST(ConfigCrossKey, AnyOneChannelSatisfiesAnEnabledPager) {
  const Environment channels[] = {
      {{"MANN_PAGER_WEBHOOK", "https://hooks.example/a"}},
      {{"MANN_PAGERDUTY_ROUTING_KEY", "R0UT3"}},
      {{"MANN_SMTP_URL", "smtps://mail.example.com"},
       {"MANN_SMTP_FROM", "mann@example.com"},
       {"MANN_SMTP_TO", "ops@example.com"}},
      {{"MANN_PAGER_JSON_WEBHOOK", "http://127.0.0.1:9/hook"}},
  };
  for (Environment env : channels) {
    SCOPED_TRACE(env.begin()->first);
    env["MANN_ENABLE_PAGER"] = "true";
    EXPECT_TRUE(LoadConfig({.env = env}).ok()) << LoadConfig({.env = env}).status().ToString();
  }
  EXPECT_THAT(LoadError({.env = {{"MANN_ENABLE_PAGER", "true"}}}),
              AllOf(HasSubstr("MANN_PAGERDUTY_ROUTING_KEY"), HasSubstr("MANN_SMTP_URL"),
                    HasSubstr("MANN_PAGER_JSON_WEBHOOK")));
}

TEST(ConfigCrossKey, EmailChannelNeedsASenderAndRecipientsNamingTheKeys) {
  const std::string neither = LoadError({.env = {{"MANN_SMTP_URL", "smtp://mail.example.com"}}});
  EXPECT_THAT(neither, AllOf(HasSubstr("pager.smtp_url=\"smtp://mail.example.com\" (env "
                                       "MANN_SMTP_URL)"),
                             HasSubstr("pager.smtp_from (MANN_SMTP_FROM)"),
                             HasSubstr("pager.smtp_to (MANN_SMTP_TO)")));
  const std::string no_to = LoadError(
      {.env = {{"MANN_SMTP_URL", "smtp://mail.example.com"}, {"MANN_SMTP_FROM", "m@example.com"}}});
  EXPECT_THAT(no_to, AllOf(HasSubstr("pager.smtp_to"), Not(HasSubstr("pager.smtp_from ("))));
  // A list of blanks and commas names nobody.
  EXPECT_THAT(LoadError({.env = {{"MANN_SMTP_URL", "smtp://mail.example.com"},
                                 {"MANN_SMTP_FROM", "m@example.com"},
                                 {"MANN_SMTP_TO", " , "}}}),
              HasSubstr("pager.smtp_to (MANN_SMTP_TO)"));
  // Without an SMTP server, sender and recipients are just unused.
  EXPECT_TRUE(LoadConfig({.env = {{"MANN_SMTP_FROM", "m@example.com"}}}).ok());
}

TEST(ConfigCrossKey, MaxBackoffIsAtLeastTheInitialBackoff) {
  EXPECT_THAT(LoadError({.overrides = {{"pager.initial_backoff", "600"}}}),
              AllOf(HasSubstr("pager.max_backoff=300 (default) is less than "
                              "pager.initial_backoff=600 (flag)")));
  EXPECT_TRUE(LoadConfig({.overrides = {{"pager.initial_backoff", "300"}}}).ok());
}

TEST(ConfigPager, ValuesThatCannotWorkAreRefusedAtLoad) {
  struct Case {
    Environment env;
    std::string expected;
  };
  const Case cases[] = {
      {{{"MANN_SMTP_URL", "http://mail.example.com"}}, "pager.smtp_url must be empty, smtp://"},
      {{{"MANN_SMTP_URL", "smtp://"}}, "pager.smtp_url must be"},
      {{{"MANN_SMTP_FROM", "Mann <mann@example.com>"}}, "pager.smtp_from must be"},
      {{{"MANN_SMTP_TO", "ops@example.com, not an address"}}, "pager.smtp_to must be"},
      {{{"MANN_PAGERDUTY_URL", "events.pagerduty.com"}}, "pager.pagerduty_url must be"},
      {{{"MANN_PAGER_MIN_LEVEL", "loud"}},
       "pager.min_level must be one of: info, warning, error, critical"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.expected);
    EXPECT_THAT(LoadError({.env = c.env}), HasSubstr(c.expected));
  }
  EXPECT_THAT(LoadError({.overrides = {{"pager.max_attempts", "0"}}}),
              HasSubstr("pager.max_attempts must be an integer in 1..100"));
  EXPECT_THAT(LoadError({.overrides = {{"monitoring.renotify_warning", "-1"}}}),
              HasSubstr("monitoring.renotify_warning must be an integer in 0..604800"));
  EXPECT_THAT(LoadError({.overrides = {{"monitoring.request_window", "7200"}}}),
              HasSubstr("monitoring.request_window must be an integer in 1..3600"));
}

// The monitor's parser checks the rules at load, and its message says what is wrong.
TEST(ConfigMonitoring, AlertRulesAreParsedAtLoadWithTheParsersMessage) {
  const Config ok =
      LoadOk({.env = {{"MANN_ALERT_RULES", "memory_utilization>0.8 for 2m error, disk>0.97"}}})
          .config;
  EXPECT_EQ(ok.monitoring.alert_rules, "memory_utilization>0.8 for 2m error, disk>0.97");

  struct Case {
    std::string rules;
    std::string expected;
  };
  const Case cases[] = {
      {"disk > lots", "threshold 'lots' is not a number"}, {"disk >= 0.9", "'>=' is not supported"},
      {"disk > 0.9 for ever", "duration 'ever'"},          {"disk > 0.9 loud", "loud"},
      {"disk > 0.9, disk > 0.95 critical", "disk"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.rules);
    EXPECT_THAT(LoadError({.env = {{"MANN_ALERT_RULES", c.rules}}}),
                AllOf(HasSubstr("MANN_ALERT_RULES=\"" + c.rules + "\" (env)"),
                      HasSubstr("monitoring.alert_rules must be comma-separated rules"),
                      HasSubstr(c.expected)));
  }
}

TEST(ConfigShow, EveryPagerSecretIsRedacted) {
  const std::string token = "S3CR3T-v4lue";
  LoadedConfig loaded =
      LoadOk({.env = {{"MANN_PAGERDUTY_ROUTING_KEY", token},
                      {"MANN_SMTP_PASSWORD", token},
                      {"MANN_PAGER_JSON_WEBHOOK", "https://hooks.example/" + token},
                      {"MANN_PAGER_WEBHOOK", "https://hooks.slack.example/" + token}}});
  EXPECT_THAT(loaded.Show(), Not(HasSubstr(token)));
  EXPECT_THAT(boost::json::serialize(loaded.ShowJson()), Not(HasSubstr(token)));
  for (const char* key : {"pager.pagerduty_routing_key", "pager.smtp_password",
                          "pager.json_webhook", "pager.webhook"}) {
    EXPECT_EQ(Shown(loaded, key), "<redacted>") << key;
  }
  EXPECT_THAT(LoadError({.env = {{"MANN_PAGER_JSON_WEBHOOK", "ftp://" + token}}}),
              AllOf(Not(HasSubstr(token)), HasSubstr("MANN_PAGER_JSON_WEBHOOK=<redacted> (env)")));
}

TEST(ConfigShow, TheRedisUrlIsASecretAndIsValidated) {
  const std::string password = "r3dis-Pa55";
  LoadedConfig loaded = LoadOk({.env = {{"MANN_REDIS_URL", "redis://:" + password + "@r:6379"}}});
  EXPECT_EQ(Shown(loaded, "redis.url"), "<redacted>");
  EXPECT_THAT(loaded.Show(), Not(HasSubstr(password)));
  EXPECT_THAT(LoadError({.env = {{"MANN_REDIS_URL", "http://:" + password + "@r:6379"}}}),
              AllOf(Not(HasSubstr(password)), HasSubstr("MANN_REDIS_URL=<redacted> (env)")));
  EXPECT_THAT(LoadError({.overrides = {{"redis.command_timeout", "0"}}}),
              HasSubstr("redis.command_timeout"));
  EXPECT_THAT(LoadError({.overrides = {{"redis.key_prefix", "has blank"}}}),
              HasSubstr("redis.key_prefix"));
}

TEST(ConfigSplitList, TrimsItemsAndDropsEmptyOnes) {
  EXPECT_EQ(SplitList(" a@x.example , b@y.example,,  "),
            (std::vector<std::string>{"a@x.example", "b@y.example"}));
  EXPECT_TRUE(SplitList("").empty());
  EXPECT_TRUE(SplitList(" , ").empty());
}

TEST(ConfigCrossKey, CorsCredentialsRefuseTheWildcardOrigin) {
  const std::string error =
      LoadError({.env = {{"MANN_CORS_ORIGINS", "*"}, {"MANN_CORS_ALLOW_CREDENTIALS", "true"}}});
  EXPECT_THAT(error,
              AllOf(HasSubstr("security.cors_allow_credentials=true"),
                    HasSubstr("security.cors_origins=\"*\""), HasSubstr("list the origins")));
  EXPECT_TRUE(LoadConfig({.env = {{"MANN_CORS_ORIGINS", "https://app.example.com"},
                                  {"MANN_CORS_ALLOW_CREDENTIALS", "true"}}})
                  .ok());
}

// The security module parses these lists; the configuration refuses what it cannot parse.
TEST(ConfigSecurity, ListsThatDoNotParseAreRefusedAtLoad) {
  EXPECT_THAT(LoadError({.env = {{"MANN_CORS_ORIGINS", "null"}}}),
              HasSubstr("security.cors_origins must be"));
  EXPECT_THAT(LoadError({.env = {{"MANN_CORS_ORIGINS", "https://a.example/path"}}}),
              HasSubstr("security.cors_origins must be"));
  EXPECT_THAT(LoadError({.env = {{"MANN_TRUSTED_HOSTS", "bad host!"}}}),
              HasSubstr("security.trusted_hosts must be"));
  EXPECT_THAT(LoadError({.env = {{"MANN_RATE_LIMITS", "POST /memories=ten/minute"}}}),
              HasSubstr("rate_limit.rules must be"));
  const Config c = LoadOk({.env = {{"MANN_CORS_ORIGINS", "https://a.example, http://b:8080"},
                                   {"MANN_TRUSTED_HOSTS", "api.example.com, *.internal"},
                                   {"MANN_RATE_LIMITS", "POST /memories=10/minute"}}})
                       .config;
  EXPECT_EQ(c.security.cors_origins, "https://a.example, http://b:8080");
  EXPECT_EQ(c.security.trusted_hosts, "api.example.com, *.internal");
  EXPECT_EQ(c.rate_limit.rules, "POST /memories=10/minute");
}

TEST(ConfigCrossKey, SkippedWhenAnInvolvedKeyIsAlreadyInvalid) {
  // Comparing against a value that was rejected would only add a confusing second error.
  const std::string error =
      LoadError({.env = {{"MANN_MEMORY_SIZE", "abc"}, {"MANN_MAX_MEMORY_CAPACITY", "500"}}});
  EXPECT_THAT(error, HasSubstr("MANN_MEMORY_SIZE=\"abc\""));
  EXPECT_THAT(error, Not(HasSubstr("is less than")));
}

// ---- The TOML file ---------------------------------------------------------------------------

TEST(ConfigFile, NestedTablesFillTypedFields) {
  testing::TempDir dir("mann-config");
  const std::string file = dir.Write("mann.toml", R"(
[server]
host = "0.0.0.0"
port = 9000

[memory]
memory_size = 100
max_memory_capacity = 200
update_threshold = 1   # an integer is a fine number
duplicate_threshold = 1.0

[retrieval]
fusion = "rrf"
default_top_k = 7

[monitoring]
health_check_interval = 5
)");
  LoadedConfig loaded = LoadOk({.file = file});
  EXPECT_EQ(loaded.file, file);
  EXPECT_EQ(loaded.config.server.host, "0.0.0.0");
  EXPECT_EQ(loaded.config.server.port, 9000);
  EXPECT_EQ(loaded.config.memory.memory_size, 100);
  EXPECT_EQ(loaded.config.memory.max_memory_capacity, 200);
  EXPECT_DOUBLE_EQ(loaded.config.memory.update_threshold, 1.0);
  EXPECT_EQ(loaded.config.retrieval.fusion, "rrf");
  EXPECT_EQ(loaded.config.retrieval.default_top_k, 7);
  EXPECT_EQ(loaded.config.monitoring.health_check_interval, std::chrono::seconds(5));
  EXPECT_EQ(Origin(loaded, "server.port"), "file:" + file);
  EXPECT_EQ(Origin(loaded, "log.level"), "default");
}

TEST(ConfigFile, EmptyFileLeavesTheDefaults) {
  testing::TempDir dir("mann-config");
  const std::string file = dir.Write("empty.toml", "");
  LoadedConfig loaded = LoadOk({.file = file});
  EXPECT_EQ(loaded.file, file);
  EXPECT_EQ(Origin(loaded, "server.port"), "default");
}

// As root the load runs in a child as an unprivileged user owning the file: root reads any file.
TEST(ConfigFile, UnreadableFileIsAnError) {
  testing::TempDir dir("mann-config");
  const std::string file = dir.Write("secret.toml", "[server]\nport = 1\n");
  Status given = test_support::GiveToUnprivilegedUser(dir.path());
  ASSERT_TRUE(given.ok()) << given.ToString();
  fs::permissions(file, fs::perms::none);
  Status s = test_support::RunUnprivileged([&] { return LoadConfig({.file = file}).status(); });
  ASSERT_FALSE(s.ok()) << "load unexpectedly succeeded";
  EXPECT_EQ(s.code(), StatusCode::kPermissionDenied) << s.ToString();
  EXPECT_THAT(s.message(), AllOf(HasSubstr(file), HasSubstr("could not be read")));
}

TEST(ConfigFile, DottedKeysAtTopLevelAreTheSameAsTables) {
  testing::TempDir dir("mann-config");
  const std::string file = dir.Write("mann.toml", "server.port = 8123\n");
  EXPECT_EQ(LoadOk({.file = file}).config.server.port, 8123);
}

TEST(ConfigFile, WrongTomlTypeNamesFileLineKeyAndRule) {
  testing::TempDir dir("mann-config");
  const std::string file = dir.Write("mann.toml", "[server]\nport = \"abc\"\n");
  EXPECT_EQ(LoadError({.file = file}),
            "server.port=\"abc\" (file " + file +
                ":2:8): server.port must be an integer in 1..65535, got a string");

  struct Case {
    std::string toml;
    std::string expected;
  };
  const Case cases[] = {
      {"[server]\nport = 80.0\n", "got a floating-point number"},
      {"[cache]\nenabled = \"yes\"\n", "cache.enabled must be a boolean"},
      {"[log]\nlevel = 3\n", "log.level must be one of"},
      {"[memory]\nupdate_threshold = nan\n", "memory.update_threshold must be a number in (0, 1]"},
      {"[memory]\nupdate_threshold = [0.5]\n", "got an array"},
      {"[server]\nport = 0\n", "server.port=0 (file"},
      {"server = 5\n", "server must be a table"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.toml);
    const std::string path = dir.Write("case.toml", c.toml);
    EXPECT_THAT(LoadError({.file = path}), AllOf(HasSubstr(path + ":"), HasSubstr(c.expected)));
  }
}

TEST(ConfigFile, UnknownKeySuggestsTheClosestKnownKey) {
  testing::TempDir dir("mann-config");
  struct Case {
    std::string toml;
    std::string expected;
  };
  const Case cases[] = {
      {"[server]\nprot = 1\n", "unknown key \"server.prot\""},
      {"[server]\nprot = 1\n",
       "did you mean \"server.port\"? Allowed in [server]: host, port, handler_threads, "
       "max_connections, "},
      {"port = 1\n", "did you mean \"server.port\"?"},
      {"[sever]\nport = 1\n", "did you mean \"server.port\"?"},
      {"[memory]\nmemory_sise = 1\n", "did you mean \"memory.memory_size\"?"},
      {"[zzz]\nqqqqqqqq = 1\n", "Known sections: server, security, rate_limit, log, monitoring"},
      {"[sever]\n", "unknown key \"sever\""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.toml);
    const std::string path = dir.Write("case.toml", c.toml);
    EXPECT_THAT(LoadError({.file = path}), AllOf(HasSubstr(path + ":"), HasSubstr(c.expected)));
  }
}

TEST(ConfigFile, SyntaxErrorReportsFileLineAndColumn) {
  testing::TempDir dir("mann-config");
  const std::string file = dir.Write("bad.toml", "[server]\nport = 8000\nhost = \n");
  const Result<LoadedConfig> loaded = LoadConfig({.file = file});
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kInvalidArgument);
  EXPECT_THAT(loaded.status().message(), AllOf(HasSubstr(file + ":3:"), HasSubstr("invalid TOML")));
}

TEST(ConfigFile, MissingExplicitFileIsAnError) {
  testing::TempDir dir("mann-config");
  const std::string missing = (dir.path() / "nope.toml").string();
  const Result<LoadedConfig> loaded = LoadConfig({.file = missing});
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kNotFound);
  EXPECT_EQ(loaded.status().message(),
            "config file \"" + missing + "\" (from --config) does not exist");

  EXPECT_THAT(LoadError({.env = {{"MANN_CONFIG", missing}}}), HasSubstr("(from MANN_CONFIG)"));
  EXPECT_THAT(LoadError({.file = dir.path().string()}), HasSubstr("is a directory"));
}

TEST(ConfigFile, MannConfigIsUsedUnlessAFileIsGiven) {
  testing::TempDir dir("mann-config");
  const std::string from_env = dir.Write("env.toml", "[server]\nport = 1111\n");
  const std::string from_flag = dir.Write("flag.toml", "[server]\nport = 2222\n");
  EXPECT_EQ(LoadOk({.env = {{"MANN_CONFIG", from_env}}}).config.server.port, 1111);
  EXPECT_EQ(LoadOk({.file = from_flag, .env = {{"MANN_CONFIG", from_env}}}).config.server.port,
            2222);
  EXPECT_FALSE(LoadOk({.env = {{"MANN_CONFIG", ""}}}).file.has_value());
}

// ---- Error collection ------------------------------------------------------------------------

TEST(ConfigErrors, EveryProblemOfOneLoadIsReportedOnItsOwnLine) {
  testing::TempDir dir("mann-config");
  const std::string file = dir.Write("mann.toml", "[server]\nport = 0\n[cache]\nsise = 3\n");
  const Result<LoadedConfig> loaded =
      LoadConfig({.file = file,
                  .env = {{"MANN_LOG_LEVEL", "loud"}},
                  .overrides = {{"server.prot", "1"}, {"encoder.dimension", "x"}}});
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kInvalidArgument);
  std::vector<std::string> lines;
  std::istringstream in(loaded.status().message());
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), 5u) << loaded.status().message();
  EXPECT_THAT(lines[0], HasSubstr("server.port=0 (file"));
  EXPECT_THAT(lines[1], HasSubstr("unknown key \"cache.sise\""));
  EXPECT_THAT(lines[2], HasSubstr("MANN_LOG_LEVEL=\"loud\" (env)"));
  EXPECT_THAT(lines[3], HasSubstr("unknown key \"server.prot\" (flag); did you mean"));
  EXPECT_THAT(lines[4], HasSubstr("encoder.dimension=\"x\" (flag)"));
}

TEST(ConfigErrors, MissingFileIsReportedWithTheOtherErrors) {
  const Result<LoadedConfig> loaded =
      LoadConfig({.file = "/nonexistent/mann.toml", .env = {{"MANN_API_PORT", "x"}}});
  ASSERT_FALSE(loaded.ok());
  EXPECT_EQ(loaded.status().code(), StatusCode::kInvalidArgument) << "mixed errors";
  EXPECT_THAT(loaded.status().message(),
              AllOf(HasSubstr("does not exist"), HasSubstr("MANN_API_PORT=\"x\"")));
}

TEST(ConfigErrors, FlagNamedLikeAnEnvironmentVariableSuggestsTheKey) {
  EXPECT_THAT(LoadError({.overrides = {{"MANN_API_PORT", "1"}}}),
              HasSubstr("did you mean \"server.port\"?"));
  EXPECT_THAT(LoadError({.overrides = {{"server", "1"}}}), HasSubstr("unknown key \"server\""));
}

// ---- Show ------------------------------------------------------------------------------------

TEST(ConfigShow, SecretIsRedactedInShowJsonAndErrors) {
  const std::string token = "T0KEN-s3cr3t";
  LoadedConfig loaded = LoadOk({.env = {{"MANN_PAGER_WEBHOOK", "https://hooks.example/" + token},
                                        {"MANN_ENABLE_PAGER", "on"}}});
  EXPECT_EQ(loaded.config.pager.webhook, "https://hooks.example/" + token);
  const std::string shown = loaded.Show();
  EXPECT_THAT(shown, Not(HasSubstr(token)));
  EXPECT_THAT(shown, HasSubstr("= <redacted>"));
  EXPECT_THAT(shown, HasSubstr("# env:MANN_PAGER_WEBHOOK"));
  const std::string json = boost::json::serialize(loaded.ShowJson());
  EXPECT_THAT(json, Not(HasSubstr(token)));
  EXPECT_EQ(loaded.ShowJson().at("pager.webhook").at("value"), "<redacted>");

  EXPECT_THAT(LoadError({.env = {{"MANN_PAGER_WEBHOOK", "ftp://" + token}}}),
              AllOf(Not(HasSubstr(token)), HasSubstr("MANN_PAGER_WEBHOOK=<redacted> (env)")));
  testing::TempDir dir("mann-config");
  const std::string file = dir.Write("m.toml", "[pager]\nwebhook = \"ftp://" + token + "\"\n");
  EXPECT_THAT(LoadError({.file = file}), Not(HasSubstr(token)));
}

TEST(ConfigShow, UnsetSecretShowsEmpty) { EXPECT_EQ(Shown(LoadOk({}), "pager.webhook"), "\"\""); }

TEST(ConfigShow, OneAlignedLinePerKey) {
  LoadedConfig loaded = LoadOk({.env = {{"MANN_API_PORT", "9000"}}});
  std::istringstream in(loaded.Show());
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) lines.push_back(line);
  ASSERT_EQ(lines.size(), ConfigKeys().size());
  const std::size_t eq = lines[0].find(" = ");
  const std::size_t hash = lines[0].find("  # ");
  for (std::size_t i = 0; i < lines.size(); ++i) {
    SCOPED_TRACE(lines[i]);
    EXPECT_EQ(lines[i].rfind(ConfigKeys()[i].key + " ", 0), 0u);
    EXPECT_EQ(lines[i].find(" = "), eq);
    EXPECT_EQ(lines[i].find("  # "), hash);
  }
  EXPECT_THAT(loaded.Show(),
              ::testing::ContainsRegex("server\\.port += 9000 +# env:MANN_API_PORT"));
}

TEST(ConfigShow, JsonCarriesTypedValuesAndSources) {
  const boost::json::object json =
      LoadOk({.overrides = {{"cache.enabled", "no"}, {"retrieval.dense_weight", "0.25"}}})
          .ShowJson();
  EXPECT_EQ(json.size(), ConfigKeys().size());
  EXPECT_EQ(json.at("server.port").at("value"), 8000);
  EXPECT_EQ(json.at("server.port").at("source"), "default");
  EXPECT_EQ(json.at("cache.enabled").at("value"), false);
  EXPECT_EQ(json.at("cache.enabled").at("source"), "flag");
  EXPECT_EQ(json.at("retrieval.dense_weight").at("value"), 0.25);
  EXPECT_EQ(json.at("log.level").at("value"), "info");
}

// ---- The key table and its documentation -----------------------------------------------------

TEST(ConfigKeys, TableIsWellFormed) {
  std::set<std::string> keys;
  std::set<std::string> envs;
  for (const KeyInfo& k : ConfigKeys()) {
    SCOPED_TRACE(k.key);
    EXPECT_TRUE(keys.insert(k.key).second) << "duplicate key";
    if (!k.env.empty()) {
      EXPECT_TRUE(envs.insert(k.env).second) << "duplicate env var";
      EXPECT_EQ(k.env.rfind("MANN_", 0), 0u);
    }
    EXPECT_NE(k.key.find('.'), std::string::npos);
    EXPECT_FALSE(k.rule.empty());
    EXPECT_FALSE(k.help.empty());
  }
}

TEST(ConfigKeys, ReferenceDocumentsEveryKeyAndVariable) {
  std::ifstream in(std::string(MANN_SOURCE_DIR) + "/docs/configuration.md");
  ASSERT_TRUE(in) << "docs/configuration.md is missing";
  std::stringstream doc;
  doc << in.rdbuf();
  for (const KeyInfo& k : ConfigKeys()) {
    SCOPED_TRACE(k.key);
    EXPECT_THAT(doc.str(), HasSubstr("`" + k.key + "`"));
    if (!k.env.empty()) {
      EXPECT_THAT(doc.str(), HasSubstr("`" + k.env + "`"));
    }
  }
}

}  // namespace
}  // namespace mann::config
