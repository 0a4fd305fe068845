// `mann health`: probe a running server from outside, for cron, systemd timers and container
// health checks.
//
//   mann health [--url URL] [--timeout S] [--webhook URL]
//
// GETs URL (default http://<server.host>:<server.port>/health; /ready works too). Healthy means
// a 2xx answer whose body is a JSON object with "status" "healthy", "ok" or "ready". Then one
// line on standard output and exit 0. Otherwise exit 1 with one `error:` line on standard error
// saying why (refused, timed out, HTTP 503, status "unhealthy", not JSON), and, when a webhook
// is given (--webhook or health.webhook), a Slack-compatible {"text": ...} POST to it. A bad
// flag exits 2. Redirects are not followed; a loopback URL never goes through a proxy.
#pragma once

#include <optional>
#include <string>

#include <mann/config/config.h>

#include "context.h"

namespace mann::cli {

struct HealthArgs {
  std::optional<std::string> url;      // default: server.host and server.port, /health
  double timeout_seconds = 5;          // the whole request
  std::optional<std::string> webhook;  // overrides health.webhook
};
int RunHealth(const config::LoadedConfig& loaded, const HealthArgs& args, Io& io);

}  // namespace mann::cli
