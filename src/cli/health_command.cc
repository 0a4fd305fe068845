#include "health_command.h"

#include <chrono>
#include <memory>
#include <ostream>

#include <boost/json.hpp>
#include <curl/curl.h>
#include <fmt/format.h>

#include <mann/core/clock.h>
#include <mann/core/entry_json.h>
#include <mann/pager/http_sender.h>

namespace mann::cli {
namespace {

namespace json = boost::json;

constexpr std::size_t kMaxBody = 64 * 1024;  // a health body is small; more is not ours

struct Probe {
  bool healthy = false;
  std::string reason;  // why not, or what was found
  int http_status = 0;
  double seconds = 0;
};

std::size_t Collect(char* data, std::size_t size, std::size_t count, void* user) {
  auto* body = static_cast<std::string*>(user);
  const std::size_t n = size * count;
  if (body->size() + n > kMaxBody) return 0;  // aborts the transfer: CURLE_WRITE_ERROR
  body->append(data, n);
  return n;
}

std::string DefaultUrl(const config::ServerConfig& server) {
  std::string host = server.host;
  if (host == "0.0.0.0" || host.empty()) host = "127.0.0.1";
  if (host == "::") host = "::1";
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return fmt::format("http://{}:{}/health", host, server.port);
}

// Judges the answer: a 2xx with {"status": "healthy" | "ok" | "ready"}.
void Judge(Probe& probe, const std::string& body) {
  if (probe.http_status < 200 || probe.http_status >= 300) {
    probe.reason = fmt::format("answered HTTP {}", probe.http_status);
    return;
  }
  boost::system::error_code ec;
  const json::value doc = json::parse(body, ec);
  const json::object* o = ec ? nullptr : doc.if_object();
  const json::value* status = o != nullptr ? o->if_contains("status") : nullptr;
  if (status == nullptr || !status->is_string()) {
    probe.reason = fmt::format("answered HTTP {} without a JSON \"status\"", probe.http_status);
    return;
  }
  const std::string value(status->as_string());
  if (value == "healthy" || value == "ok" || value == "ready") {
    probe.healthy = true;
    probe.reason = fmt::format("HTTP {}, status \"{}\"", probe.http_status, value);
    return;
  }
  probe.reason = fmt::format("answered HTTP {} with status \"{}\"", probe.http_status, value);
}

Probe Check(const std::string& url, std::chrono::milliseconds timeout) {
  Probe probe;
  std::unique_ptr<CURL, decltype(&curl_easy_cleanup)> curl(curl_easy_init(), &curl_easy_cleanup);
  if (!curl) {
    probe.reason = "curl could not be initialised";
    return probe;
  }
  std::string body;
  char error[CURL_ERROR_SIZE] = {0};
  CURL* c = curl.get();
  curl_easy_setopt(c, CURLOPT_URL, url.c_str());
  curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
  curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(timeout.count()));
  curl_easy_setopt(c, CURLOPT_NOPROXY, "localhost,127.0.0.1,::1");
  curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, &Collect);
  curl_easy_setopt(c, CURLOPT_WRITEDATA, &body);
  curl_easy_setopt(c, CURLOPT_ERRORBUFFER, error);
  curl_easy_setopt(c, CURLOPT_USERAGENT, "mann-health");

  const auto started = std::chrono::steady_clock::now();
  const CURLcode rc = curl_easy_perform(c);
  probe.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  if (rc != CURLE_OK) {
    const std::string detail = error[0] != '\0' ? error : curl_easy_strerror(rc);
    probe.reason = rc == CURLE_OPERATION_TIMEDOUT
                       ? fmt::format("no answer within {:.1f} s ({})",
                                     static_cast<double>(timeout.count()) / 1000, detail)
                       : fmt::format("unreachable: {}", detail);
    return probe;
  }
  long status = 0;
  curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &status);
  probe.http_status = static_cast<int>(status);
  Judge(probe, body);
  return probe;
}

// POSTs the failure to the webhook; returns why it could not, or an empty string.
std::string Notify(const std::string& webhook, const std::string& url, const Probe& probe) {
  const std::string text =
      fmt::format("mann health check failed at {}: {} {}",
                  FormatTimestamp(SystemClock::Instance().NowMs()), url, probe.reason);
  pager::HttpSenderOptions options;
  options.connect_timeout = std::chrono::seconds(5);
  options.timeout = std::chrono::seconds(10);
  pager::HttpSender sender(options);
  Result<pager::Delivery> sent =
      sender.Post(webhook, json::serialize(json::object{{"text", text}}), {});
  if (!sent.ok()) return sent.status().message();
  if (!sent->succeeded()) {
    return sent->error.empty() ? fmt::format("HTTP {}", sent->http_status) : sent->error;
  }
  return {};
}

}  // namespace

int RunHealth(const config::LoadedConfig& loaded, const HealthArgs& args, Io& io) {
  const std::string url = args.url.value_or(DefaultUrl(loaded.config.server));
  if (Status st = pager::HttpSender::ValidateUrl(url, "--url"); !st.ok()) {
    return ReportError(io.err, InvalidArgumentError(st.message()));
  }
  if (!(args.timeout_seconds > 0 && args.timeout_seconds <= 600)) {
    return ReportError(io.err, InvalidArgumentError(fmt::format(
                                   "--timeout must be a number of seconds in (0, 600], got {}",
                                   args.timeout_seconds)));
  }
  const std::string webhook = args.webhook.value_or(loaded.config.health.webhook);
  if (!webhook.empty()) {
    if (Status st = pager::HttpSender::ValidateUrl(webhook, "--webhook"); !st.ok()) {
      return ReportError(io.err, InvalidArgumentError(st.message()));
    }
  }
  if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
    return ReportError(io.err, InternalError("curl_global_init failed"));
  }

  const auto timeout =
      std::chrono::milliseconds(static_cast<std::int64_t>(args.timeout_seconds * 1000));
  const Probe probe = Check(url, timeout);
  if (probe.healthy) {
    io.out << fmt::format("healthy: {} ({}, {:.3f} s)\n", url, probe.reason, probe.seconds);
    return kExitOk;
  }
  io.err << fmt::format("error: unhealthy: {} {}\n", url, probe.reason);
  if (!webhook.empty()) {
    const std::string failed = Notify(webhook, url, probe);
    if (!failed.empty()) {
      io.err << fmt::format("error: could not notify the health webhook {}: {}\n",
                            pager::DisplayUrl(webhook), failed);
    }
  }
  io.err.flush();
  return kExitFailure;
}

}  // namespace mann::cli
