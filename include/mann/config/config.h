// Configuration: one table of settings, four layers, typed access.
//
// Every setting is described once, in the key table returned by ConfigKeys(): its dotted key, its
// environment variable (if any), type, default, rule and help. Parsing, validation, Show() and
// docs/configuration.md all follow that table.
//
// Layers, lowest to highest precedence:
//   1. built-in defaults
//   2. a TOML file (--config PATH, else $MANN_CONFIG, else none); keys are nested tables:
//        [server]
//        port = 8000
//   3. environment variables (MANN_API_PORT=8000); an empty variable counts as unset
//   4. command-line overrides ("server.port" -> "8000")
//
// Errors: LoadConfig validates everything and reports ALL problems of one load together, one per
// line, each naming the key, where the value came from (file:line:column, env var, flag), the
// offending value (secrets are never echoed) and what is allowed, e.g.
//   MANN_API_PORT="70000" (env): server.port must be an integer in 1..65535
//
// Thread-safety: LoadConfig and the other functions are pure over their arguments and safe to
// call from any thread, except CurrentEnvironment(), which reads `environ` and must not race with
// setenv(). Config and LoadedConfig are plain values.
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <boost/json/object.hpp>

#include <mann/core/status.h>

namespace mann::config {

// ---- Typed settings --------------------------------------------------------------------------
//
// Default-constructed fields are zero or empty, NOT the documented defaults: use DefaultConfig()
// or LoadConfig() for those, so the key table stays the single source of defaults. Enumerated
// string settings (log.level, storage.backend, retrieval.fusion, encoder.kind) hold the
// lower-case spelling of an allowed value.

struct ServerConfig {
  std::string host;  // host name or IP literal to bind
  int port = 0;      // 1..65535
  // Threads of the pool that runs slow (blocking) routes such as POST /query.
  int handler_threads = 0;
  // Limits of the HTTP server (server::ServerOptions has what each one bounds).
  std::int64_t max_connections = 0;   // served at once
  std::int64_t max_header_bytes = 0;  // request line plus header fields
  std::int64_t max_body_bytes = 0;    // one request body
  std::chrono::seconds header_timeout{0};
  std::chrono::seconds body_timeout{0};
  std::chrono::seconds idle_timeout{0};
  std::chrono::seconds write_timeout{0};
  std::chrono::seconds drain_timeout{0};  // at shutdown, for requests in progress
  // At shutdown, how long /ready answers 503 while requests are still served, so that load
  // balancers take the replica out before its listener closes.
  std::chrono::seconds shutdown_grace{0};
};

// Who may call the REST API and from where (security::* has the mechanisms).
struct SecurityConfig {
  std::string api_keys_file;           // TOML file of hashed keys; empty: no keys
  bool allow_unauthenticated = false;  // serve a non-loopback address without keys
  std::string cors_origins;            // comma-separated origins, or "*"; empty: no CORS
  bool cors_allow_credentials = false;
  std::string trusted_hosts;  // comma-separated Host names; empty: the bound address + localhost
};

struct RateLimitConfig {
  bool enabled = false;
  std::string rules;  // "POST /memories=10/minute, * *=600/minute"; empty: no limits
};

struct LogConfig {
  std::string level;   // trace|debug|info|warn|warning|error|critical|off (log::ParseLevel)
  std::string file;    // empty: standard error
  std::string format;  // "text" or "json"
  bool access_log_probes = false;  // successful /health, /ready, /metrics at info, not debug
};

struct MonitoringConfig {
  bool enabled = false;
  std::chrono::seconds health_check_interval{0};  // between two ticks of the monitor
  // The alert rules in monitor::ParseAlertRules's text form; empty: monitor::DefaultAlertRules.
  std::string alert_rules;
  // The least time between two notifications of one firing alert, by its level
  // (monitor::RenotifyIntervals); 0 repeats at every tick.
  std::chrono::seconds renotify_info{0};
  std::chrono::seconds renotify_warning{0};
  std::chrono::seconds renotify_error{0};
  std::chrono::seconds renotify_critical{0};
  // The request window behind error_rate and processing_time, and the fewest requests in it
  // for those two to be judged at all.
  std::chrono::seconds request_window{0};
  std::int64_t min_requests = 0;
};

// The pager's channels are each enabled by the setting that makes them deliverable: webhook
// (Slack), pagerduty_routing_key, smtp_url (email) and json_webhook. When `enabled` is true at
// least one of them is set; an email channel also has smtp_from and smtp_to.
struct PagerConfig {
  bool enabled = false;
  std::string min_level;  // "info", "warning", "error" or "critical": the lowest level sent
  std::string webhook;    // secret: the Slack incoming-webhook URL; empty or an http(s) URL
  std::string pagerduty_routing_key;  // secret: the Events API v2 integration key
  std::string pagerduty_url;          // empty: the Events API v2 URL
  std::string smtp_url;               // smtp://host[:port] (STARTTLS) or smtps://host[:port]
  std::string smtp_username;          // empty: no AUTH
  std::string smtp_password;          // secret
  std::string smtp_from;              // a plain address
  std::string smtp_to;                // comma-separated plain addresses
  std::string smtp_ca_file;           // PEM bundle verifying the server; empty: the system's
  std::string json_webhook;           // secret: a URL receiving the notification as JSON
  // Delivery policy (pager::DeliveryPolicy).
  std::int64_t max_attempts = 0;
  std::chrono::seconds initial_backoff{0};
  std::chrono::seconds max_backoff{0};  // >= initial_backoff
  std::chrono::seconds request_timeout{0};
  std::chrono::seconds connect_timeout{0};
};

struct MemoryConfig {
  std::int64_t memory_size = 0;          // nominal bank size, for utilization
  std::int64_t max_memory_capacity = 0;  // hard limit; >= memory_size
  double update_threshold = 0;           // similarity at which a write merges, in (0, 1]
  double duplicate_threshold = 0;        // similarity treated as duplicate, >= update_threshold
};

struct CacheConfig {
  bool enabled = false;
  std::int64_t size = 0;  // entries
  std::chrono::seconds ttl{0};
};

// The Redis that replicas share (cache::RedisClient): the result cache, cluster-wide rate
// limits and the alert lock. With an empty url there is none and each process keeps its own.
struct RedisConfig {
  std::string url;  // secret (it may hold a password): redis://[:password@]host:port[/db]
  std::chrono::milliseconds connect_timeout{0};
  std::chrono::milliseconds command_timeout{0};
  std::string key_prefix;  // of every key this service writes
};

struct StorageConfig {
  std::string backend;       // "sqlite" or "postgres"
  std::string data_dir;      // never empty after loading
  std::string postgres_url;  // secret; set when backend is "postgres"
  std::chrono::seconds postgres_connect_timeout{0};
  std::chrono::seconds postgres_statement_timeout{0};  // also bounds a call to a stalled server
};

// `mann backup` (store::MakeBackup, store::PruneBackups).
struct BackupConfig {
  std::string dir;                  // resolved: never empty after loading
  std::int64_t retention_days = 0;  // older backups are pruned after each backup; 0: none
  std::string upload_command;       // run with the backup's and manifest's paths; empty: none
  std::chrono::seconds command_timeout{0};  // for pg_dump, pg_restore and the upload command
};

// `mann health`.
struct HealthConfig {
  std::string webhook;  // secret: where a failed check is POSTed; empty: nowhere
};

struct RetrievalConfig {
  std::string fusion;  // "weighted_sum" or "rrf"
  double dense_weight = 0;
  double lexical_weight = 0;        // dense_weight + lexical_weight > 0
  bool lexical_confidence = false;  // weighted sum: lexical weight times the best lexical score
  int default_top_k = 0;
  double recency_half_life_days = 0;
  double recency_weight = 0;
  double importance_boost = 0;
  double sharpening = 0;  // attention softmax sharpening factor
};

struct ChatConfig {
  double min_relevance = 0;  // below it the bot says it knows nothing relevant
  std::string history_file;  // resolved: never empty after loading
};

struct EncoderConfig {
  std::string kind;                 // "use-lite", "hashed" or "remote"
  std::string model_dir;            // the sentence encoder's files; empty: next to the binary
  bool gloss_vietnamese = false;    // Vietnamese reaches the sentence encoder through a gloss
  int cache_size = 0;               // embeddings kept in memory; 0 turns the cache off
  int dimension = 0;                // of the hashed encoder's vectors
  std::string url;                  // remote: base URL of an OpenAI-compatible API, ".../v1"
  std::string model;                // remote: the embedding model's name
  std::string api_key;              // remote: secret; empty when the server needs none
  std::chrono::seconds timeout{0};  // remote: per request
};

// The optional language model of the chat (llm::ChatClient, chat::LlmResponder). With an
// empty base_url there is none and the memory-only responder answers.
struct LlmConfig {
  std::string base_url;  // an OpenAI-compatible API, ".../v1"; empty: no model
  std::string model;     // needed when base_url is set
  std::string api_key;   // secret; empty when the server needs none
  std::chrono::seconds connect_timeout{0};
  std::chrono::seconds timeout{0};  // one whole request, a streamed answer included
  std::int64_t max_prompt_tokens = 0;
  double temperature = 0;
  bool memory_decisions = false;      // the model proposes ADD/UPDATE/DELETE/NOOP for statements
  std::int64_t breaker_failures = 0;  // consecutive failures that open the breaker
  std::chrono::seconds breaker_open_duration{0};  // before a probe is let through
};

struct Config {
  ServerConfig server;
  SecurityConfig security;
  RateLimitConfig rate_limit;
  LogConfig log;
  MonitoringConfig monitoring;
  PagerConfig pager;
  MemoryConfig memory;
  CacheConfig cache;
  RedisConfig redis;
  StorageConfig storage;
  BackupConfig backup;
  HealthConfig health;
  RetrievalConfig retrieval;
  ChatConfig chat;
  EncoderConfig encoder;
  LlmConfig llm;
};

// ---- The key table ---------------------------------------------------------------------------

enum class ValueType { kBool, kInteger, kNumber, kString };

// "boolean", "integer", "number", "string".
std::string_view ValueTypeName(ValueType type);

struct KeyInfo {
  std::string key;  // dotted, e.g. "server.port"
  std::string env;  // e.g. "MANN_API_PORT"; empty when there is none
  ValueType type;
  std::string
      default_text;     // as documented; computed defaults are described, e.g. storage.data_dir
  std::string rule;     // completes "<key> must be ...", e.g. "an integer in 1..65535"
  bool secret = false;  // never printed: Show() and error messages say <redacted>
  std::string help;     // one line
};

// Every setting, in documentation order. The reference stays valid for the process lifetime.
const std::vector<KeyInfo>& ConfigKeys();

// ---- Loading ---------------------------------------------------------------------------------

using Environment = std::map<std::string, std::string>;

struct ConfigInputs {
  std::optional<std::string> file = {};  // --config PATH; when unset, env MANN_CONFIG; else none
  Environment env = {};  // injected environment (CurrentEnvironment() in production)
  std::vector<std::pair<std::string, std::string>> overrides = {};  // dotted key -> text; last wins
};

using Value = std::variant<bool, std::int64_t, double, std::string>;

// The effective value of one key and where it came from.
struct Setting {
  const KeyInfo* info = nullptr;  // points into ConfigKeys()
  Value value;
  std::string origin;  // "default", "file:/etc/mann.toml", "env:MANN_API_PORT" or "flag"

  // The value as TOML-like text ("8000", "true", "\"info\""); "<redacted>" for a set secret.
  std::string DisplayValue() const;
};

struct LoadedConfig {
  Config config;
  std::vector<Setting> settings;    // one per key, in ConfigKeys() order
  std::optional<std::string> file;  // the file that was read, if any

  // The setting for a dotted key, or nullptr.
  const Setting* Find(std::string_view key) const;

  // One line per key, columns aligned: `server.port  = 8000  # env:MANN_API_PORT`.
  std::string Show() const;
  // {"server.port": {"value": 8000, "source": "env:MANN_API_PORT"}, ...}; secrets redacted.
  boost::json::object ShowJson() const;
};

// Loads and validates all layers. On failure the Status lists every error found, one per line;
// its code is that of the errors when they agree (NotFound for a missing file alone), else
// InvalidArgument.
Result<LoadedConfig> LoadConfig(const ConfigInputs& inputs);

// The built-in defaults. `env` is consulted only for computed defaults (storage.data_dir from
// XDG_DATA_HOME or HOME; chat.history_file from it), not for MANN_* variables.
Config DefaultConfig(const Environment& env = {});

// A copy of the process environment (`environ`).
Environment CurrentEnvironment();

// The items of a comma-separated setting (pager.smtp_to), blanks around each trimmed, empty
// items dropped: "a@x, b@y," -> {"a@x", "b@y"}.
std::vector<std::string> SplitList(std::string_view text);

}  // namespace mann::config
