#include "keys.h"

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cmath>
#include <limits>
#include <type_traits>

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <mann/cache/redis.h>
#include <mann/core/strings.h>
#include <mann/monitor/alerts.h>
#include <mann/pager/payloads.h>
#include <mann/security/cors.h>
#include <mann/security/rate_limit.h>
#include <mann/security/trusted_hosts.h>
#include <mann/store/backup.h>

namespace mann::config::internal {
namespace {

constexpr double kNoLimit = std::numeric_limits<double>::infinity();

// ---- Predicates for string keys --------------------------------------------------------------

bool IsIpLiteral(const std::string& s) {
  in_addr v4;
  in6_addr v6;
  return inet_pton(AF_INET, s.c_str(), &v4) == 1 || inet_pton(AF_INET6, s.c_str(), &v6) == 1;
}

bool IsHostLabel(std::string_view label) {
  if (label.empty() || label.size() > 63) return false;
  if (label.front() == '-' || label.back() == '-') return false;
  return std::all_of(label.begin(), label.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '-';
  });
}

// RFC 1123 host name: dot-separated labels of letters, digits and inner hyphens. An all-digit
// last label is refused so that a mistyped address such as "300.1.1.1" is not taken for a name.
bool IsHostName(std::string_view s) {
  if (s.empty() || s.size() > 253) return false;
  std::string_view label;
  for (std::size_t start = 0;;) {
    const std::size_t dot = s.find('.', start);
    label = s.substr(start, dot == std::string_view::npos ? dot : dot - start);
    if (!IsHostLabel(label)) return false;
    if (dot == std::string_view::npos) break;
    start = dot + 1;
  }
  return !std::all_of(label.begin(), label.end(),
                      [](char c) { return std::isdigit(static_cast<unsigned char>(c)); });
}

bool IsHostOrIp(const std::string& s) { return IsIpLiteral(s) || IsHostName(s); }

// The security module owns these syntaxes; the configuration only asks whether a value parses,
// and `mann serve` reports the parser's detailed message if it ever disagrees.
bool IsOriginList(const std::string& s) { return security::ParseOriginList(s).ok(); }
bool IsHostList(const std::string& s) { return security::ParseHostList(s).ok(); }
bool IsRateLimitRuleList(const std::string& s) { return security::ParseRateLimitRules(s).ok(); }

bool IsEmptyOrPostgresUrl(const std::string& s) {
  const std::string lower = AsciiLower(s);
  return s.empty() || lower.starts_with("postgresql://") || lower.starts_with("postgres://");
}

bool IsEmptyOrHttpUrl(const std::string& s) {
  if (s.empty()) return true;
  const std::string lower = AsciiLower(s);
  std::size_t authority = 0;
  if (lower.starts_with("http://")) {
    authority = 7;
  } else if (lower.starts_with("https://")) {
    authority = 8;
  } else {
    return false;
  }
  if (authority >= s.size() || s[authority] == '/') return false;
  return std::none_of(s.begin(), s.end(), [](char c) {
    return std::isspace(static_cast<unsigned char>(c)) ||
           std::iscntrl(static_cast<unsigned char>(c));
  });
}

// smtp://host[:port] or smtps://host[:port]; the pager's SMTP sender checks the rest when it
// starts (SmtpSender::Validate).
bool IsEmptyOrSmtpUrl(const std::string& s) {
  if (s.empty()) return true;
  const std::string lower = AsciiLower(s);
  std::size_t authority = 0;
  if (lower.starts_with("smtp://")) {
    authority = 7;
  } else if (lower.starts_with("smtps://")) {
    authority = 8;
  } else {
    return false;
  }
  if (authority >= s.size() || s[authority] == '/' || s[authority] == ':') return false;
  return std::none_of(s.begin(), s.end(), [](char c) {
    return std::isspace(static_cast<unsigned char>(c)) ||
           std::iscntrl(static_cast<unsigned char>(c));
  });
}

// The pager module owns the address syntax (plain local@domain, nothing a header could be
// built from); these ask it.
std::string ExplainEmailAddress(const std::string& s) {
  if (s.empty()) return {};
  return pager::ValidateEmailAddress(s, "the address").message();
}
bool IsEmptyOrEmailAddress(const std::string& s) { return ExplainEmailAddress(s).empty(); }

std::string ExplainEmailAddressList(const std::string& s) {
  for (const std::string& address : SplitList(s)) {
    if (Status st = pager::ValidateEmailAddress(address, "address"); !st.ok()) {
      return st.message();
    }
  }
  return {};
}
bool IsEmailAddressList(const std::string& s) { return ExplainEmailAddressList(s).empty(); }

// The monitor module parses and checks the rules; the configuration refuses at load what it
// would refuse at start, with its message.
std::string ExplainAlertRules(const std::string& s) {
  Result<std::vector<monitor::AlertRule>> rules = monitor::ParseAlertRules(s);
  if (!rules.ok()) return rules.status().message();
  if (Status st = monitor::ValidateAlertRules(*rules); !st.ok()) return st.message();
  return {};
}
bool IsAlertRuleList(const std::string& s) { return ExplainAlertRules(s).empty(); }

// The cache module owns the URL syntax.
bool IsEmptyOrRedisUrl(const std::string& s) { return s.empty() || cache::ParseRedisUrl(s).ok(); }

// Redis key prefixes: printable, without blanks, so that keys stay readable in redis-cli.
bool IsKeyPrefix(const std::string& s) {
  return s.size() <= 64 && std::all_of(s.begin(), s.end(), [](char c) {
           return std::isgraph(static_cast<unsigned char>(c));
         });
}

// The store module splits the command as `mann backup` will run it.
std::string ExplainCommandLine(const std::string& s) {
  if (s.empty()) return {};
  Result<std::vector<std::string>> words = store::SplitCommandLine(s);
  return words.ok() ? std::string() : words.status().message();
}
bool IsEmptyOrCommandLine(const std::string& s) { return ExplainCommandLine(s).empty(); }

bool IsNonEmpty(const std::string& s) { return !s.empty(); }
bool AnyText(const std::string&) { return true; }

// ---- Field bindings --------------------------------------------------------------------------

// The key's value type follows from the C++ type of the field it fills, so the table cannot
// declare one and bind another.
template <typename F>
constexpr ValueType TypeOf() {
  if constexpr (std::is_same_v<F, bool>) {
    return ValueType::kBool;
  } else if constexpr (std::is_same_v<F, std::string>) {
    return ValueType::kString;
  } else if constexpr (std::is_floating_point_v<F>) {
    return ValueType::kNumber;
  } else {
    static_assert(std::is_integral_v<F> || std::is_same_v<F, std::chrono::seconds> ||
                  std::is_same_v<F, std::chrono::milliseconds>);
    return ValueType::kInteger;
  }
}

template <auto Section, auto Field>
void Assign(Config& config, const Value& value) {
  auto& field = (config.*Section).*Field;
  using F = std::remove_cvref_t<decltype(field)>;
  if constexpr (std::is_same_v<F, bool>) {
    field = std::get<bool>(value);
  } else if constexpr (std::is_same_v<F, std::string>) {
    field = std::get<std::string>(value);
  } else if constexpr (std::is_floating_point_v<F>) {
    field = std::get<double>(value);
  } else if constexpr (std::is_same_v<F, std::chrono::seconds>) {
    field = std::chrono::seconds(std::get<std::int64_t>(value));
  } else if constexpr (std::is_same_v<F, std::chrono::milliseconds>) {
    field = std::chrono::milliseconds(std::get<std::int64_t>(value));
  } else {
    // Range checks ran before assignment, so the narrowing cannot lose information.
    field = static_cast<F>(std::get<std::int64_t>(value));
  }
}

struct KeyDef {
  std::string key;
  std::string env = {};  // empty: no environment variable
  std::string default_text;
  Constraint constraint;
  std::string help;
  std::string unit = {};  // appended to the rule, e.g. "seconds"
  bool secret = false;
  Value (*computed_default)(const Environment&) = nullptr;
};

std::string RuleText(const Constraint& constraint) {
  struct Visitor {
    std::string operator()(const AnyBool&) const {
      return "a boolean (true/false, yes/no, on/off, 1/0)";
    }
    std::string operator()(const IntRange& r) const {
      return fmt::format("an integer in {}..{}", r.min, r.max);
    }
    std::string operator()(const NumberRange& r) const {
      if (std::isinf(r.max)) return fmt::format("a number {} {}", r.min_open ? ">" : ">=", r.min);
      if (!r.min_open && !r.max_open) return fmt::format("a number in {}..{}", r.min, r.max);
      return fmt::format("a number in {}{}, {}{}", r.min_open ? "(" : "[", r.min, r.max,
                         r.max_open ? ")" : "]");
    }
    std::string operator()(const Choice& c) const {
      return fmt::format("one of: {}", fmt::join(c.allowed, ", "));
    }
    std::string operator()(const Predicate& p) const { return std::string(p.rule); }
  };
  return std::visit(Visitor{}, constraint);
}

template <auto Section, auto Field>
KeySpec Key(KeyDef def) {
  using F = std::remove_cvref_t<decltype(std::declval<Config&>().*Section.*Field)>;
  std::string rule = RuleText(def.constraint);
  if (!def.unit.empty()) rule += " (" + def.unit + ")";
  return KeySpec{
      .info = KeyInfo{.key = std::move(def.key),
                      .env = std::move(def.env),
                      .type = TypeOf<F>(),
                      .default_text = std::move(def.default_text),
                      .rule = std::move(rule),
                      .secret = def.secret,
                      .help = std::move(def.help)},
      .constraint = std::move(def.constraint),
      .assign = &Assign<Section, Field>,
      .computed_default = def.computed_default,
  };
}

// XDG base directory rules, with a last resort that still works in a bare container.
Value DataDirDefault(const Environment& env) {
  auto get = [&](const char* name) -> std::string {
    auto it = env.find(name);
    return it == env.end() ? std::string() : it->second;
  };
  if (std::string xdg = get("XDG_DATA_HOME"); !xdg.empty()) return xdg + "/mann";
  if (std::string home = get("HOME"); !home.empty()) return home + "/.local/share/mann";
  return std::string("./mann-data");
}

std::vector<KeySpec> BuildTable() {
  using C = Config;
  std::vector<KeySpec> t;

  t.push_back(Key<&C::server, &ServerConfig::host>({
      .key = "server.host",
      .env = "MANN_API_HOST",
      .default_text = "127.0.0.1",
      .constraint = Predicate{&IsHostOrIp, "a non-empty host name or IP literal"},
      .help = "Address the REST API binds; 0.0.0.0 listens on every interface.",
  }));
  t.push_back(Key<&C::server, &ServerConfig::port>({
      .key = "server.port",
      .env = "MANN_API_PORT",
      .default_text = "8000",
      .constraint = IntRange{1, 65535},
      .help = "TCP port of the REST API.",
  }));
  t.push_back(Key<&C::server, &ServerConfig::handler_threads>({
      .key = "server.handler_threads",
      .env = "MANN_HANDLER_THREADS",
      .default_text = "8",
      .constraint = IntRange{1, 1024},
      .help = "Threads running slow handlers (POST /query, which may wait on a language model), "
              "so the I/O threads keep serving; also how many such requests run at once.",
      .unit = "threads",
  }));
  t.push_back(Key<&C::server, &ServerConfig::max_connections>({
      .key = "server.max_connections",
      .default_text = "1024",
      .constraint = IntRange{1, 1'000'000},
      .help = "Connections served at once; one more is answered 503 and closed.",
      .unit = "connections",
  }));
  t.push_back(Key<&C::server, &ServerConfig::max_header_bytes>({
      .key = "server.max_header_bytes",
      .default_text = "16384",
      .constraint = IntRange{1024, 1'048'576},
      .help = "Largest request line plus header fields; more is answered 431.",
      .unit = "bytes",
  }));
  t.push_back(Key<&C::server, &ServerConfig::max_body_bytes>({
      .key = "server.max_body_bytes",
      .default_text = "1048576",
      .constraint = IntRange{1024, 1'073'741'824},
      .help = "Largest request body; more is answered 413.",
      .unit = "bytes",
  }));
  t.push_back(Key<&C::server, &ServerConfig::header_timeout>({
      .key = "server.header_timeout",
      .default_text = "10",
      .constraint = IntRange{1, 3600},
      .help = "Time a client has to send a request's header.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::server, &ServerConfig::body_timeout>({
      .key = "server.body_timeout",
      .default_text = "30",
      .constraint = IntRange{1, 3600},
      .help = "Time a client has to send a request's body.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::server, &ServerConfig::idle_timeout>({
      .key = "server.idle_timeout",
      .default_text = "60",
      .constraint = IntRange{1, 86400},
      .help = "Time an idle keep-alive connection waits for its next request.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::server, &ServerConfig::write_timeout>({
      .key = "server.write_timeout",
      .default_text = "30",
      .constraint = IntRange{1, 3600},
      .help = "Time a client has to take one response.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::server, &ServerConfig::drain_timeout>({
      .key = "server.drain_timeout",
      .default_text = "10",
      .constraint = IntRange{0, 3600},
      .help = "At shutdown, how long requests in progress may take before their connections are "
              "closed.",
      .unit = "seconds",
  }));

  t.push_back(Key<&C::server, &ServerConfig::shutdown_grace>({
      .key = "server.shutdown_grace",
      .env = "MANN_SHUTDOWN_GRACE",
      .default_text = "0",
      .constraint = IntRange{0, 3600},
      .help = "At shutdown, how long /ready answers 503 while requests are still served, before "
              "the listener closes; give load balancers time to notice.",
      .unit = "seconds",
  }));

  t.push_back(Key<&C::security, &SecurityConfig::api_keys_file>({
      .key = "security.api_keys_file",
      .env = "MANN_API_KEYS_FILE",
      .default_text = "",
      .constraint = Predicate{&AnyText, "a path, or empty"},
      .help = "TOML file of API keys (hashes only, each bound to namespaces); empty: no keys. "
              "`mann key create` makes an entry.",
  }));
  t.push_back(Key<&C::security, &SecurityConfig::allow_unauthenticated>({
      .key = "security.allow_unauthenticated",
      .env = "MANN_ALLOW_UNAUTHENTICATED",
      .default_text = "false",
      .constraint = AnyBool{},
      .help = "Serve an address other than loopback without API keys (as --allow-unauthenticated "
              "does); every caller may then touch every namespace.",
  }));
  t.push_back(Key<&C::security, &SecurityConfig::cors_origins>({
      .key = "security.cors_origins",
      .env = "MANN_CORS_ORIGINS",
      .default_text = "",
      .constraint = Predicate{&IsOriginList,
                              "a comma-separated list of origins scheme://host[:port] (never "
                              "null), or *, or empty"},
      .help = "Browser origins allowed to call the API (CORS); empty: none.",
  }));
  t.push_back(Key<&C::security, &SecurityConfig::cors_allow_credentials>({
      .key = "security.cors_allow_credentials",
      .env = "MANN_CORS_ALLOW_CREDENTIALS",
      .default_text = "false",
      .constraint = AnyBool{},
      .help =
          "Let allowed origins send credentials (Access-Control-Allow-Credentials); not with *.",
  }));
  t.push_back(Key<&C::security, &SecurityConfig::trusted_hosts>({
      .key = "security.trusted_hosts",
      .env = "MANN_TRUSTED_HOSTS",
      .default_text = "",
      .constraint = Predicate{&IsHostList,
                              "a comma-separated list of host names, IP literals, *.suffix "
                              "wildcards, or *, or empty"},
      .help = "Host header values accepted (others get 400); empty: server.host, localhost, "
              "127.0.0.1 and [::1].",
  }));

  t.push_back(Key<&C::rate_limit, &RateLimitConfig::enabled>({
      .key = "rate_limit.enabled",
      .env = "MANN_RATE_LIMIT_ENABLED",
      .default_text = "true",
      .constraint = AnyBool{},
      .help = "Apply rate_limit.rules.",
  }));
  t.push_back(Key<&C::rate_limit, &RateLimitConfig::rules>({
      .key = "rate_limit.rules",
      .env = "MANN_RATE_LIMITS",
      .default_text = "",
      .constraint = Predicate{&IsRateLimitRuleList,
                              "comma-separated rules METHOD ROUTE=N/second|minute|hour, or empty"},
      .help = "Requests allowed per API key (per client address without keys) on a route, e.g. "
              "\"POST /memories=10/minute, * *=600/minute\"; empty: no limits.",
  }));

  t.push_back(Key<&C::log, &LogConfig::level>({
      .key = "log.level",
      .env = "MANN_LOG_LEVEL",
      .default_text = "info",
      .constraint =
          Choice{{"trace", "debug", "info", "warn", "warning", "error", "critical", "off"}, {}},
      .help = "Lowest severity written to the log (case-insensitive).",
  }));
  t.push_back(Key<&C::log, &LogConfig::file>({
      .key = "log.file",
      .env = "MANN_LOG_FILE",
      .default_text = "",
      .constraint = Predicate{&AnyText, "a path, or empty for standard error"},
      .help = "File the log is appended to; empty writes to standard error.",
  }));
  t.push_back(Key<&C::log, &LogConfig::format>({
      .key = "log.format",
      .env = "MANN_LOG_FORMAT",
      .default_text = "text",
      .constraint = Choice{{"text", "json"}, {}},
      .help = "text: one line per record for people; json: one JSON object per line for log "
              "collectors (the HTTP access log's fields become the object's).",
  }));
  t.push_back(Key<&C::log, &LogConfig::access_log_probes>({
      .key = "log.access_log_probes",
      .env = "MANN_LOG_ACCESS_PROBES",
      .default_text = "false",
      .constraint = AnyBool{},
      .help = "Access-log successful GET /health, /ready and /metrics at info; false logs them "
              "at debug, since probes arrive every few seconds. Failures are always at info.",
  }));

  t.push_back(Key<&C::monitoring, &MonitoringConfig::enabled>({
      .key = "monitoring.enabled",
      .env = "MANN_ENABLE_MONITORING",
      .default_text = "true",
      .constraint = AnyBool{},
      .help = "Run the monitor: periodic health checks, resource sampling and the alert rules "
              "(GET /alerts); /metrics is served either way.",
  }));
  t.push_back(Key<&C::monitoring, &MonitoringConfig::health_check_interval>({
      .key = "monitoring.health_check_interval",
      .env = "MANN_HEALTH_CHECK_INTERVAL",
      .default_text = "30",
      .constraint = IntRange{1, 86400},
      .help = "Time between two ticks of the monitor: health checks, resource sampling and "
              "alert rule evaluation.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::monitoring, &MonitoringConfig::alert_rules>({
      .key = "monitoring.alert_rules",
      .env = "MANN_ALERT_RULES",
      .default_text = "",
      .constraint = Predicate{&IsAlertRuleList,
                              "comma-separated rules \"[name:] metric > threshold [for <N>s|<N>m|"
                              "<N>h] [info|warning|error|critical]\" with unique names, or empty",
                              &ExplainAlertRules},
      .help = "The alert rules, e.g. \"memory_utilization>0.9 for 60s warning, disk_full: "
              "disk>0.95 critical\"; empty: the default rules (`mann alert list` shows them).",
  }));
  t.push_back(Key<&C::monitoring, &MonitoringConfig::renotify_info>({
      .key = "monitoring.renotify_info",
      .default_text = "60",
      .constraint = IntRange{0, 604'800},
      .help = "Least time between two notifications of a still-firing info alert; 0 repeats "
              "it at every tick.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::monitoring, &MonitoringConfig::renotify_warning>({
      .key = "monitoring.renotify_warning",
      .default_text = "30",
      .constraint = IntRange{0, 604'800},
      .help = "Least time between two notifications of a still-firing warning alert.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::monitoring, &MonitoringConfig::renotify_error>({
      .key = "monitoring.renotify_error",
      .default_text = "10",
      .constraint = IntRange{0, 604'800},
      .help = "Least time between two notifications of a still-firing error alert.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::monitoring, &MonitoringConfig::renotify_critical>({
      .key = "monitoring.renotify_critical",
      .default_text = "0",
      .constraint = IntRange{0, 604'800},
      .help = "Least time between two notifications of a still-firing critical alert.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::monitoring, &MonitoringConfig::request_window>({
      .key = "monitoring.request_window",
      .default_text = "300",
      .constraint = IntRange{1, 3600},
      .help = "Period of HTTP requests the error_rate and processing_time rules judge.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::monitoring, &MonitoringConfig::min_requests>({
      .key = "monitoring.min_requests",
      .default_text = "10",
      .constraint = IntRange{0, 1'000'000'000},
      .help = "Fewer requests than this in the window and error_rate and processing_time are "
              "not judged: one failure in three requests is no error rate worth a page.",
      .unit = "requests",
  }));

  t.push_back(Key<&C::pager, &PagerConfig::enabled>({
      .key = "pager.enabled",
      .env = "MANN_ENABLE_PAGER",
      .default_text = "false",
      .constraint = AnyBool{},
      .help = "Deliver alerts; needs at least one channel (pager.webhook, "
              "pager.pagerduty_routing_key, pager.smtp_url or pager.json_webhook).",
  }));
  t.push_back(Key<&C::pager, &PagerConfig::min_level>({
      .key = "pager.min_level",
      .env = "MANN_PAGER_MIN_LEVEL",
      .default_text = "info",
      .constraint = Choice{{"info", "warning", "error", "critical"}, {}},
      .help = "Lowest alert level sent to any channel; lower ones are only logged.",
  }));
  t.push_back(Key<&C::pager, &PagerConfig::webhook>({
      .key = "pager.webhook",
      .env = "MANN_PAGER_WEBHOOK",
      .default_text = "",
      .constraint = Predicate{&IsEmptyOrHttpUrl, "empty or an http:// or https:// URL"},
      .help = "Slack incoming-webhook URL (channel \"slack\"); it is a credential, so it is "
              "never printed.",
      .secret = true,
  }));
  t.push_back(Key<&C::pager, &PagerConfig::pagerduty_routing_key>({
      .key = "pager.pagerduty_routing_key",
      .env = "MANN_PAGERDUTY_ROUTING_KEY",
      .default_text = "",
      .constraint = Predicate{&AnyText, "an Events API v2 routing key, or empty"},
      .help = "PagerDuty integration key (channel \"pagerduty\"); never printed.",
      .secret = true,
  }));
  t.push_back(Key<&C::pager, &PagerConfig::pagerduty_url>({
      .key = "pager.pagerduty_url",
      .env = "MANN_PAGERDUTY_URL",
      .default_text = "",
      .constraint = Predicate{&IsEmptyOrHttpUrl, "empty or an http:// or https:// URL"},
      .help = "Where PagerDuty events are POSTed; empty: "
              "https://events.pagerduty.com/v2/enqueue.",
  }));
  t.push_back(Key<&C::pager, &PagerConfig::smtp_url>({
      .key = "pager.smtp_url",
      .env = "MANN_SMTP_URL",
      .default_text = "",
      .constraint = Predicate{&IsEmptyOrSmtpUrl,
                              "empty, smtp://host[:port] (STARTTLS required) or "
                              "smtps://host[:port] (TLS)"},
      .help = "Mail server of the email channel (channel \"email\"), e.g. "
              "smtp://mail.example.com:587; needs pager.smtp_from and pager.smtp_to.",
  }));
  t.push_back(Key<&C::pager, &PagerConfig::smtp_username>({
      .key = "pager.smtp_username",
      .env = "MANN_SMTP_USERNAME",
      .default_text = "",
      .constraint = Predicate{&AnyText, "a user name, or empty for no AUTH"},
      .help = "Email channel: the user to log in as; empty: no login.",
  }));
  t.push_back(Key<&C::pager, &PagerConfig::smtp_password>({
      .key = "pager.smtp_password",
      .env = "MANN_SMTP_PASSWORD",
      .default_text = "",
      .constraint = Predicate{&AnyText, "a password, or empty"},
      .help = "Email channel: the password of pager.smtp_username; never printed.",
      .secret = true,
  }));
  t.push_back(Key<&C::pager, &PagerConfig::smtp_from>({
      .key = "pager.smtp_from",
      .env = "MANN_SMTP_FROM",
      .default_text = "",
      .constraint = Predicate{&IsEmptyOrEmailAddress, "empty or a plain address local@domain",
                              &ExplainEmailAddress},
      .help = "Email channel: the sender (From and envelope), e.g. mann@example.com.",
  }));
  t.push_back(Key<&C::pager, &PagerConfig::smtp_to>({
      .key = "pager.smtp_to",
      .env = "MANN_SMTP_TO",
      .default_text = "",
      .constraint = Predicate{&IsEmailAddressList,
                              "a comma-separated list of plain addresses local@domain, or empty",
                              &ExplainEmailAddressList},
      .help = "Email channel: the recipients, comma-separated.",
  }));
  t.push_back(Key<&C::pager, &PagerConfig::smtp_ca_file>({
      .key = "pager.smtp_ca_file",
      .env = "MANN_SMTP_CA_FILE",
      .default_text = "",
      .constraint = Predicate{&AnyText, "a path, or empty for the system's CAs"},
      .help = "Email channel: PEM bundle the server's certificate is verified with (a private "
              "CA); empty: the system's CAs.",
  }));
  t.push_back(Key<&C::pager, &PagerConfig::json_webhook>({
      .key = "pager.json_webhook",
      .env = "MANN_PAGER_JSON_WEBHOOK",
      .default_text = "",
      .constraint = Predicate{&IsEmptyOrHttpUrl, "empty or an http:// or https:// URL"},
      .help = "URL each notification is POSTed to as JSON (channel \"webhook\"); may embed a "
              "token, so it is never printed.",
      .secret = true,
  }));
  t.push_back(Key<&C::pager, &PagerConfig::max_attempts>({
      .key = "pager.max_attempts",
      .default_text = "8",
      .constraint = IntRange{1, 100},
      .help = "Attempts per notification and channel, the first included; then it is "
              "dead-lettered.",
      .unit = "attempts",
  }));
  t.push_back(Key<&C::pager, &PagerConfig::initial_backoff>({
      .key = "pager.initial_backoff",
      .default_text = "1",
      .constraint = IntRange{1, 3600},
      .help = "Wait before the first retry; each further retry doubles it (with full jitter).",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::pager, &PagerConfig::max_backoff>({
      .key = "pager.max_backoff",
      .default_text = "300",
      .constraint = IntRange{1, 86400},
      .help = "Longest wait between two retries. Must be >= pager.initial_backoff.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::pager, &PagerConfig::request_timeout>({
      .key = "pager.request_timeout",
      .default_text = "10",
      .constraint = IntRange{1, 600},
      .help = "Time allowed for one delivery request, connection included (an SMTP session "
              "gets three times as long).",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::pager, &PagerConfig::connect_timeout>({
      .key = "pager.connect_timeout",
      .default_text = "5",
      .constraint = IntRange{1, 600},
      .help = "Time allowed to connect to a receiver.",
      .unit = "seconds",
  }));

  t.push_back(Key<&C::memory, &MemoryConfig::memory_size>({
      .key = "memory.memory_size",
      .env = "MANN_MEMORY_SIZE",
      .default_text = "1000",
      .constraint = IntRange{1, 10'000'000},
      .help = "Nominal bank size that utilization is measured against.",
      .unit = "entries",
  }));
  t.push_back(Key<&C::memory, &MemoryConfig::max_memory_capacity>({
      .key = "memory.max_memory_capacity",
      .env = "MANN_MAX_MEMORY_CAPACITY",
      .default_text = "5000",
      .constraint = IntRange{1, 10'000'000},
      .help = "Hard limit of the bank; eviction runs when it is reached. "
              "Must be >= memory.memory_size.",
      .unit = "entries",
  }));
  t.push_back(Key<&C::memory, &MemoryConfig::update_threshold>({
      .key = "memory.update_threshold",
      .env = "MANN_UPDATE_THRESHOLD",
      .default_text = "0.8",
      .constraint = NumberRange{0, 1, true, false},
      .help = "Similarity at or above which a new fact updates an existing memory.",
  }));
  t.push_back(Key<&C::memory, &MemoryConfig::duplicate_threshold>({
      .key = "memory.duplicate_threshold",
      .env = "MANN_DUPLICATE_THRESHOLD",
      .default_text = "0.95",
      .constraint = NumberRange{0, 1, true, false},
      .help = "Similarity at or above which a new fact is a duplicate (no write). "
              "Must be >= memory.update_threshold.",
  }));

  t.push_back(Key<&C::cache, &CacheConfig::enabled>({
      .key = "cache.enabled",
      .env = "MANN_ENABLE_CACHING",
      .default_text = "true",
      .constraint = AnyBool{},
      .help = "Cache POST /search answers: in process, or in Redis when redis.url is set; "
              "with Redis, also share embeddings between replicas. False turns every cache "
              "off, the in-process embedding cache included.",
  }));
  t.push_back(Key<&C::cache, &CacheConfig::size>({
      .key = "cache.size",
      .env = "MANN_CACHE_SIZE",
      .default_text = "1000",
      .constraint = IntRange{0, 10'000'000},
      .help = "Maximum cached answers in process (with Redis, its maxmemory policy bounds "
              "them).",
      .unit = "entries",
  }));
  t.push_back(Key<&C::cache, &CacheConfig::ttl>({
      .key = "cache.ttl",
      .env = "MANN_CACHE_TTL",
      .default_text = "3600",
      .constraint = IntRange{0, 31'536'000},
      .help = "Lifetime of a cached answer, and of a shared embedding in Redis; 0 turns both "
              "off.",
      .unit = "seconds",
  }));

  t.push_back(Key<&C::redis, &RedisConfig::url>({
      .key = "redis.url",
      .env = "MANN_REDIS_URL",
      .default_text = "",
      .constraint = Predicate{&IsEmptyOrRedisUrl, "empty or redis://[:password@]host:port[/db]"},
      .help = "The Redis replicas share for the result cache, embeddings, rate limits and the "
              "alert lock; empty: none, each process keeps its own.",
      .secret = true,
  }));
  t.push_back(Key<&C::redis, &RedisConfig::connect_timeout>({
      .key = "redis.connect_timeout",
      .env = "MANN_REDIS_CONNECT_TIMEOUT",
      .default_text = "200",
      .constraint = IntRange{1, 60'000},
      .help = "Time allowed to connect to Redis; longer and Redis counts as down.",
      .unit = "milliseconds",
  }));
  t.push_back(Key<&C::redis, &RedisConfig::command_timeout>({
      .key = "redis.command_timeout",
      .env = "MANN_REDIS_COMMAND_TIMEOUT",
      .default_text = "200",
      .constraint = IntRange{1, 60'000},
      .help = "Time allowed for one Redis command; longer and Redis counts as down.",
      .unit = "milliseconds",
  }));
  t.push_back(Key<&C::redis, &RedisConfig::key_prefix>({
      .key = "redis.key_prefix",
      .env = "MANN_REDIS_KEY_PREFIX",
      .default_text = "mann:",
      .constraint = Predicate{&IsKeyPrefix, "at most 64 printable characters without blanks"},
      .help = "Prefix of every Redis key, so that several deployments can share one Redis.",
  }));

  t.push_back(Key<&C::storage, &StorageConfig::backend>({
      .key = "storage.backend",
      .env = "MANN_STORAGE_BACKEND",
      .default_text = "sqlite",
      .constraint = Choice{{"sqlite", "postgres"}, {}},
      .help = "Where memories are kept: sqlite (one process, a file in storage.data_dir) or "
              "postgres (replicas sharing storage.postgres_url).",
  }));
  t.push_back(Key<&C::storage, &StorageConfig::postgres_url>({
      .key = "storage.postgres_url",
      .env = "MANN_DATABASE_URL",
      .default_text = "",
      .constraint = Predicate{&IsEmptyOrPostgresUrl,
                              "empty or a postgresql://user[:password]@host[:port]/database URL"},
      .help = "The PostgreSQL database when storage.backend is postgres; it may hold a password, "
              "so it is never printed.",
      .secret = true,
  }));
  t.push_back(Key<&C::storage, &StorageConfig::postgres_connect_timeout>({
      .key = "storage.postgres_connect_timeout",
      .env = "MANN_DATABASE_CONNECT_TIMEOUT",
      .default_text = "5",
      .constraint = IntRange{1, 600},
      .help = "How long a connection attempt to PostgreSQL may take before the call fails "
              "(the API answers 503).",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::storage, &StorageConfig::postgres_statement_timeout>({
      .key = "storage.postgres_statement_timeout",
      .env = "MANN_DATABASE_STATEMENT_TIMEOUT",
      .default_text = "30",
      .constraint = IntRange{1, 3600},
      .help = "How long one PostgreSQL statement may run (statement_timeout); a server that "
              "stops answering is cut off after this plus the connect timeout and 1 s.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::storage, &StorageConfig::data_dir>({
      .key = "storage.data_dir",
      .env = "MANN_DATA_DIR",
      .default_text = "$XDG_DATA_HOME/mann, else $HOME/.local/share/mann, else ./mann-data",
      .constraint = Predicate{&IsNonEmpty, "a non-empty path"},
      .help = "Directory holding the database and chat history.",
      .computed_default = &DataDirDefault,
  }));

  t.push_back(Key<&C::backup, &BackupConfig::dir>({
      .key = "backup.dir",
      .env = "MANN_BACKUP_DIR",
      .default_text = "",
      .constraint = Predicate{&AnyText, "a directory, or empty for <storage.data_dir>/backups"},
      .help = "Where `mann backup` writes; empty means <storage.data_dir>/backups.",
  }));
  t.push_back(Key<&C::backup, &BackupConfig::retention_days>({
      .key = "backup.retention_days",
      .env = "MANN_BACKUP_RETENTION_DAYS",
      .default_text = "7",
      .constraint = IntRange{0, 36'500},
      .help = "After each backup, backups older than this are removed (never the new one, "
              "never files not named like a backup); 0 keeps every backup.",
      .unit = "days",
  }));
  t.push_back(Key<&C::backup, &BackupConfig::upload_command>({
      .key = "backup.upload_command",
      .env = "MANN_BACKUP_UPLOAD_COMMAND",
      .default_text = "",
      .constraint = Predicate{&IsEmptyOrCommandLine,
                              "empty or a command line (words, '...' and \"...\" quotes; no "
                              "shell)",
                              &ExplainCommandLine},
      .help = "Run after each successful backup, without a shell, with the backup's path and "
              "its manifest's path appended as two arguments; its failure fails `mann backup`.",
  }));
  t.push_back(Key<&C::backup, &BackupConfig::command_timeout>({
      .key = "backup.command_timeout",
      .env = "MANN_BACKUP_COMMAND_TIMEOUT",
      .default_text = "1800",
      .constraint = IntRange{1, 86'400},
      .help = "How long pg_dump, pg_restore or backup.upload_command may run; past it the "
              "program gets SIGTERM, then SIGKILL 10 s later, and the backup or restore fails.",
      .unit = "seconds",
  }));

  t.push_back(Key<&C::health, &HealthConfig::webhook>({
      .key = "health.webhook",
      .env = "MANN_HEALTH_WEBHOOK",
      .default_text = "",
      .constraint = Predicate{&IsEmptyOrHttpUrl, "empty or an http:// or https:// URL"},
      .help = "`mann health` POSTs a Slack-compatible {\"text\": ...} message here when the "
              "check fails; may embed a token, so it is never printed.",
      .secret = true,
  }));

  t.push_back(Key<&C::retrieval, &RetrievalConfig::fusion>({
      .key = "retrieval.fusion",
      .env = "MANN_FUSION",
      .default_text = "weighted_sum",
      .constraint = Choice{{"weighted_sum", "rrf"}, {}},
      .help = "How dense and lexical rankings are combined.",
  }));
  t.push_back(Key<&C::retrieval, &RetrievalConfig::dense_weight>({
      .key = "retrieval.dense_weight",
      .default_text = "0.5",
      .constraint = NumberRange{0, 1},
      .help = "Weight of the dense (embedding) ranking in fusion.",
  }));
  t.push_back(Key<&C::retrieval, &RetrievalConfig::lexical_weight>({
      .key = "retrieval.lexical_weight",
      .default_text = "0.5",
      .constraint = NumberRange{0, 1},
      .help = "Weight of the lexical (BM25) ranking; dense_weight + lexical_weight must be > 0.",
  }));
  t.push_back(Key<&C::retrieval, &RetrievalConfig::lexical_confidence>({
      .key = "retrieval.lexical_confidence",
      .default_text = "true",
      .constraint = AnyBool{},
      .help = "Weighted sum: scale lexical_weight by the query's best lexical score, so that one "
              "shared word does not outvote the meaning when no memory holds the query's words.",
  }));
  t.push_back(Key<&C::retrieval, &RetrievalConfig::default_top_k>({
      .key = "retrieval.default_top_k",
      .default_text = "5",
      .constraint = IntRange{1, 50},
      .help = "Memories returned by a search that does not say how many.",
  }));
  t.push_back(Key<&C::retrieval, &RetrievalConfig::recency_half_life_days>({
      .key = "retrieval.recency_half_life_days",
      .default_text = "30",
      .constraint = NumberRange{0, kNoLimit, true},
      .help = "Age at which the recency bonus of a memory has halved.",
      .unit = "days",
  }));
  t.push_back(Key<&C::retrieval, &RetrievalConfig::recency_weight>({
      .key = "retrieval.recency_weight",
      .default_text = "0.1",
      .constraint = NumberRange{0, 1},
      .help = "Weight of recency in the final score.",
  }));
  t.push_back(Key<&C::retrieval, &RetrievalConfig::importance_boost>({
      .key = "retrieval.importance_boost",
      .default_text = "0.1",
      .constraint = NumberRange{0, 1},
      .help = "Weight of a memory's importance in the final score.",
  }));
  t.push_back(Key<&C::retrieval, &RetrievalConfig::sharpening>({
      .key = "retrieval.sharpening",
      .default_text = "10",
      .constraint = NumberRange{0, kNoLimit, true},
      .help = "Sharpening factor of the attention softmax over the top k.",
  }));

  t.push_back(Key<&C::chat, &ChatConfig::min_relevance>({
      .key = "chat.min_relevance",
      .env = "MANN_CHAT_MIN_RELEVANCE",
      .default_text = "0.25",
      .constraint = NumberRange{0, 1},
      .help = "Below this score the bot says it knows nothing relevant.",
  }));
  t.push_back(Key<&C::chat, &ChatConfig::history_file>({
      .key = "chat.history_file",
      .default_text = "",
      .constraint = Predicate{&AnyText, "a path, or empty for <data_dir>/chat_history"},
      .help = "Line-editing history of `mann chat`; empty means <storage.data_dir>/chat_history.",
  }));

  t.push_back(Key<&C::encoder, &EncoderConfig::kind>({
      .key = "encoder.kind",
      .env = "MANN_ENCODER",
      .default_text = "use-lite",
      .constraint = Choice{{"use-lite", "hashed", "remote"}, {}},
      .help = "Dense encoder: use-lite (the sentence encoder; English, and Vietnamese through "
              "a gloss), hashed (word and character n-grams, every language) or remote (an "
              "OpenAI-compatible /v1/embeddings endpoint). When the chosen one cannot start, "
              "remote falls back to use-lite and use-lite to hashed.",
  }));
  t.push_back(Key<&C::encoder, &EncoderConfig::model_dir>({
      .key = "encoder.model_dir",
      .env = "MANN_MODEL_DIR",
      .default_text = "",
      .constraint = Predicate{&AnyText, "a directory, or empty for the default"},
      .help = "Directory of the sentence encoder (model.json, shards, vocab.json); empty means "
              "models/use-lite or share/mann/models/use-lite beside the binary's directory.",
  }));
  t.push_back(Key<&C::encoder, &EncoderConfig::gloss_vietnamese>({
      .key = "encoder.gloss_vietnamese",
      .default_text = "true",
      .constraint = AnyBool{},
      .help = "Gloss Vietnamese word by word into English for the sentence encoder; when "
              "false, Vietnamese uses the hashed encoder.",
  }));
  t.push_back(Key<&C::encoder, &EncoderConfig::cache_size>({
      .key = "encoder.cache_size",
      .default_text = "4096",
      .constraint = IntRange{0, 1'000'000},
      .help = "Embeddings kept in memory, keyed by a hash of the text; 0 turns the cache off. "
              "With redis.url and cache.enabled, mann serve also shares them through Redis.",
      .unit = "entries",
  }));
  t.push_back(Key<&C::encoder, &EncoderConfig::dimension>({
      .key = "encoder.dimension",
      .default_text = "256",
      .constraint = IntRange{8, 4096},
      .help = "Length of the hashed encoder's vectors.",
  }));
  t.push_back(Key<&C::encoder, &EncoderConfig::url>({
      .key = "encoder.url",
      .env = "MANN_ENCODER_URL",
      .default_text = "",
      .constraint = Predicate{&IsEmptyOrHttpUrl, "empty or an http:// or https:// URL"},
      .help = "Remote encoder: base URL of an OpenAI-compatible API, e.g. "
              "http://127.0.0.1:11434/v1 (POST <url>/embeddings).",
  }));
  t.push_back(Key<&C::encoder, &EncoderConfig::model>({
      .key = "encoder.model",
      .env = "MANN_ENCODER_MODEL",
      .default_text = "",
      .constraint = Predicate{&AnyText, "the model name the server knows"},
      .help = "Remote encoder: the embedding model to ask for.",
  }));
  t.push_back(Key<&C::encoder, &EncoderConfig::api_key>({
      .key = "encoder.api_key",
      .env = "MANN_ENCODER_API_KEY",
      .default_text = "",
      .constraint = Predicate{&AnyText, "a bearer token, or empty"},
      .help = "Remote encoder: sent as Authorization: Bearer; never printed.",
      .secret = true,
  }));
  t.push_back(Key<&C::encoder, &EncoderConfig::timeout>({
      .key = "encoder.timeout",
      .env = "MANN_ENCODER_TIMEOUT",
      .default_text = "10",
      .constraint = IntRange{1, 600},
      .help = "Remote encoder: time allowed for one request.",
      .unit = "seconds",
  }));

  t.push_back(Key<&C::llm, &LlmConfig::base_url>({
      .key = "llm.base_url",
      .env = "MANN_LLM_BASE_URL",
      .default_text = "",
      .constraint = Predicate{&IsEmptyOrHttpUrl, "empty or an http:// or https:// URL"},
      .help = "Language model of the chat: base URL of an OpenAI-compatible API, e.g. "
              "http://127.0.0.1:11434/v1 (POST <url>/chat/completions); empty: no model, the "
              "memory-only responder answers.",
  }));
  t.push_back(Key<&C::llm, &LlmConfig::model>({
      .key = "llm.model",
      .env = "MANN_LLM_MODEL",
      .default_text = "",
      .constraint = Predicate{&AnyText, "the model name the server knows"},
      .help = "The chat model to ask for; needed when llm.base_url is set.",
  }));
  t.push_back(Key<&C::llm, &LlmConfig::api_key>({
      .key = "llm.api_key",
      .env = "MANN_LLM_API_KEY",
      .default_text = "",
      .constraint = Predicate{&AnyText, "a bearer token, or empty"},
      .help = "Sent to the model server as Authorization: Bearer; never printed or logged.",
      .secret = true,
  }));
  t.push_back(Key<&C::llm, &LlmConfig::connect_timeout>({
      .key = "llm.connect_timeout",
      .default_text = "5",
      .constraint = IntRange{1, 600},
      .help = "Time allowed to connect to the model server.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::llm, &LlmConfig::timeout>({
      .key = "llm.timeout",
      .env = "MANN_LLM_TIMEOUT",
      .default_text = "60",
      .constraint = IntRange{1, 3600},
      .help = "Time allowed for one model request, a streamed answer included; past it the "
              "turn falls back to the memory-only responder.",
      .unit = "seconds",
  }));
  t.push_back(Key<&C::llm, &LlmConfig::max_prompt_tokens>({
      .key = "llm.max_prompt_tokens",
      .default_text = "3000",
      .constraint = IntRange{256, 1'000'000},
      .help = "Prompt budget, estimated (docs/llm.md): the oldest turns are left out to stay "
              "within it; the recalled memories and the message never are.",
      .unit = "tokens",
  }));
  t.push_back(Key<&C::llm, &LlmConfig::temperature>({
      .key = "llm.temperature",
      .default_text = "0.7",
      .constraint = NumberRange{0, 2},
      .help = "Sampling temperature of the replies.",
  }));
  t.push_back(Key<&C::llm, &LlmConfig::memory_decisions>({
      .key = "llm.memory_decisions",
      .env = "MANN_LLM_MEMORY_DECISIONS",
      .default_text = "false",
      .constraint = AnyBool{},
      .help = "Let the model propose ADD/UPDATE/DELETE/NOOP for chat statements; an invalid "
              "proposal falls back to the similarity rules.",
  }));
  t.push_back(Key<&C::llm, &LlmConfig::breaker_failures>({
      .key = "llm.breaker_failures",
      .default_text = "5",
      .constraint = IntRange{1, 1000},
      .help = "Consecutive failed model calls that open the circuit breaker.",
      .unit = "calls",
  }));
  t.push_back(Key<&C::llm, &LlmConfig::breaker_open_duration>({
      .key = "llm.breaker_open_duration",
      .default_text = "30",
      .constraint = IntRange{1, 86400},
      .help = "Time the open breaker sends no calls before one probe is let through.",
      .unit = "seconds",
  }));
  return t;
}

// from_chars refuses a leading '+', which people do write ("+5"); accept exactly one.
std::string_view StripPlus(std::string_view s) {
  if (s.size() > 1 && s[0] == '+' && s[1] != '-' && s[1] != '+') s.remove_prefix(1);
  return s;
}

// Optimal string alignment distance: like Levenshtein, but a swap of neighbours costs 1, the
// commonest typo ("prot" for "port").
std::size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<std::vector<std::size_t>> d(a.size() + 1, std::vector<std::size_t>(b.size() + 1));
  for (std::size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (std::size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1]) {
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
      }
    }
  }
  return d[a.size()][b.size()];
}

}  // namespace

const std::vector<KeySpec>& KeySpecs() {
  static const std::vector<KeySpec>* table = new std::vector<KeySpec>(BuildTable());
  return *table;
}

std::optional<std::size_t> FindKeyIndex(std::string_view key) {
  const auto& specs = KeySpecs();
  for (std::size_t i = 0; i < specs.size(); ++i) {
    if (specs[i].info.key == key) return i;
  }
  return std::nullopt;
}

std::optional<std::string> SuggestKey(std::string_view unknown) {
  const std::string lower = AsciiLower(unknown);
  const bool dotted = lower.find('.') != std::string::npos;
  std::optional<std::string> best;
  std::size_t best_distance = std::numeric_limits<std::size_t>::max();
  auto consider = [&](std::string_view candidate, const std::string& key) {
    const std::size_t d = EditDistance(lower, candidate);
    if (d < best_distance) {
      best_distance = d;
      best = key;
    }
  };
  for (const KeySpec& spec : KeySpecs()) {
    const std::string& key = spec.info.key;
    consider(key, key);
    if (!spec.info.env.empty()) consider(AsciiLower(spec.info.env), key);
    if (!dotted) consider(std::string_view(key).substr(key.find('.') + 1), key);
  }
  // Beyond this the "suggestion" is more likely noise than the intended key.
  const std::size_t limit = std::max<std::size_t>(2, lower.size() / 5);
  if (best_distance > limit) return std::nullopt;
  return best;
}

std::optional<Value> ParseText(ValueType type, std::string_view text) {
  if (type == ValueType::kString) return std::string(text);
  const std::string_view s = StripPlus(TrimSpace(text));
  if (s.empty()) return std::nullopt;
  switch (type) {
    case ValueType::kBool: {
      const std::string lower = AsciiLower(s);
      if (lower == "true" || lower == "1" || lower == "yes" || lower == "on") return true;
      if (lower == "false" || lower == "0" || lower == "no" || lower == "off") return false;
      return std::nullopt;
    }
    case ValueType::kInteger: {
      std::int64_t v = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
      return v;
    }
    case ValueType::kNumber: {
      double v = 0;
      auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
      if (ec != std::errc() || end != s.data() + s.size() || !std::isfinite(v)) {
        return std::nullopt;
      }
      return v;
    }
    case ValueType::kString:
      break;
  }
  return std::nullopt;
}

std::optional<std::string> Check(const KeySpec& spec, Value& value) {
  const std::string& key = spec.info.key;
  const std::string fail = key + " must be " + spec.info.rule;
  struct Visitor {
    Value& value;
    const std::string& key;
    const std::string& fail;
    std::optional<std::string> operator()(const AnyBool&) const { return std::nullopt; }
    std::optional<std::string> operator()(const IntRange& r) const {
      const std::int64_t v = std::get<std::int64_t>(value);
      if (v < r.min || v > r.max) return fail;
      return std::nullopt;
    }
    std::optional<std::string> operator()(const NumberRange& r) const {
      const double v = std::get<double>(value);
      const bool low = r.min_open ? v <= r.min : v < r.min;
      const bool high = r.max_open ? v >= r.max : v > r.max;
      if (!std::isfinite(v) || low || high) return fail;
      return std::nullopt;
    }
    std::optional<std::string> operator()(const Choice& c) const {
      std::string& text = std::get<std::string>(value);
      const std::string lower = AsciiLower(text);
      for (std::string_view allowed : c.allowed) {
        if (lower == allowed) {
          text = lower;
          return std::nullopt;
        }
      }
      for (const auto& [name, reason] : c.reserved) {
        if (lower == name) return fmt::format("{} {} {}; {}", key, Quote(lower), reason, fail);
      }
      return fail;
    }
    std::optional<std::string> operator()(const Predicate& p) const {
      const std::string& text = std::get<std::string>(value);
      if (p.ok(text)) return std::nullopt;
      if (p.explain != nullptr) {
        if (std::string why = p.explain(text); !why.empty()) return fail + ": " + why;
      }
      return fail;
    }
  };
  return std::visit(Visitor{value, key, fail}, spec.constraint);
}

std::string FormatValue(const Value& value) {
  struct Visitor {
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(double d) const { return fmt::format("{}", d); }
    std::string operator()(const std::string& s) const { return Quote(s); }
  };
  return std::visit(Visitor{}, value);
}

std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\t') {
      out += "\\t";
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\u{:04X}", u);
    } else {
      out += c;
    }
  }
  out += '"';
  return out;
}

}  // namespace mann::config::internal
