#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <limits>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <thread>
#include <utility>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <unistd.h>

#include <mann/core/id.h>
#include <mann/core/log.h>
#include <mann/metrics/registry.h>
#include <mann/pager/pager.h>

#include "curl_util.h"

namespace mann::pager {
namespace {

namespace json = boost::json;
using std::chrono::milliseconds;
using store::DeliveryOutcome;
using store::OutboxDelivery;
using store::OutboxState;

constexpr TimestampMs kForever = std::numeric_limits<TimestampMs>::max();
constexpr milliseconds kPruneEvery{3'600'000};
constexpr milliseconds kStoreErrorLogEvery{60'000};
constexpr std::size_t kMaxChannelName = 64;

constexpr ChannelKind kChannelKinds[] = {ChannelKind::kSlack, ChannelKind::kPagerDuty,
                                         ChannelKind::kEmail, ChannelKind::kWebhook};

std::string DefaultService() {
  char host[256] = {};
  if (gethostname(host, sizeof(host) - 1) != 0 || host[0] == '\0') return "mann";
  return fmt::format("mann@{}", host);
}

std::string NameOf(const ChannelConfig& c) {
  return c.name.empty() ? std::string(ChannelKindName(c.kind)) : c.name;
}

// The secrets a channel holds besides its URL, which the senders scrub by themselves.
std::vector<std::string> ChannelSecrets(const ChannelConfig& c) {
  std::vector<std::string> secrets;
  if (!c.routing_key.empty()) secrets.push_back(c.routing_key);
  for (const auto& [name, value] : c.headers) secrets.push_back(value);
  if (!c.smtp.password.empty()) secrets.push_back(c.smtp.password);
  if (!c.url.empty()) secrets.push_back(c.url);
  return secrets;
}

Status ValidateChannel(const ChannelConfig& c, const DeliveryPolicy& policy) {
  const std::string name = NameOf(c);
  const std::string where = fmt::format("pager channel '{}' ({})", name, ChannelKindName(c.kind));
  const auto invalid = [&](std::string_view what) {
    return InvalidArgumentError(
        RedactSecrets(fmt::format("{}: {}", where, what), ChannelSecrets(c)));
  };
  const bool name_ok =
      name.size() <= kMaxChannelName && std::all_of(name.begin(), name.end(), [](char ch) {
        return (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-';
      });
  if (!name_ok) {
    return InvalidArgumentError(
        fmt::format("pager channel name '{}' must be 1 to {} characters of a-z, 0-9, '_' and '-'",
                    ClipToOneLine(name, 80), kMaxChannelName));
  }
  switch (c.kind) {
    case ChannelKind::kSlack:
    case ChannelKind::kWebhook:
      if (Status s = HttpSender::ValidateUrl(c.url, "url"); !s.ok()) return invalid(s.message());
      for (const auto& [header, value] : c.headers) {
        if (header.empty() || header.find(':') != std::string::npos ||
            internal::HasControlCharacters(header) || internal::HasControlCharacters(value)) {
          return invalid(fmt::format("header '{}' needs a name without ':' and no CR/LF",
                                     ClipToOneLine(header, 64)));
        }
      }
      break;
    case ChannelKind::kPagerDuty:
      if (!c.url.empty()) {
        if (Status s = HttpSender::ValidateUrl(c.url, "url"); !s.ok()) return invalid(s.message());
      }
      if (c.routing_key.empty()) return invalid("routing_key must be set (the integration key)");
      if (internal::HasControlCharacters(c.routing_key)) {
        return invalid("routing_key must not hold control characters");
      }
      break;
    case ChannelKind::kEmail: {
      SmtpOptions smtp = c.smtp;
      smtp.connect_timeout = policy.connect_timeout;
      smtp.timeout = policy.request_timeout * 3;
      if (Status s = SmtpSender(smtp).Validate(); !s.ok()) return invalid(s.message());
      if (Status s = ValidateEmailAddress(c.email.from, "email from"); !s.ok()) {
        return invalid(s.message());
      }
      if (c.email.to.empty()) return invalid("email to needs at least one address");
      for (const std::string& to : c.email.to) {
        if (Status s = ValidateEmailAddress(to, "email to"); !s.ok()) return invalid(s.message());
      }
      break;
    }
  }
  return Status::Ok();
}

// What an attempt's Delivery means for its row.
enum class Verdict { kDelivered, kRetry, kFailed };

struct Judgement {
  Verdict verdict = Verdict::kRetry;
  std::string error;  // for the row and the log; empty when delivered
  int status = 0;     // HTTP status or SMTP reply
  std::optional<std::chrono::seconds> retry_after;
};

Judgement Judge(const Delivery& d) {
  Judgement j;
  j.status = d.http_status != 0 ? d.http_status : d.smtp_reply;
  if (d.succeeded()) {
    j.verdict = Verdict::kDelivered;
    return j;
  }
  if (!d.error.empty()) {
    j.verdict = d.permanent ? Verdict::kFailed : Verdict::kRetry;
    j.error = d.error;
    return j;
  }
  const int s = d.http_status;
  j.error = d.response_snippet.empty() ? fmt::format("HTTP {}", s)
                                       : fmt::format("HTTP {}: {}", s, d.response_snippet);
  if (s == 429 || s == 503) j.retry_after = d.retry_after;
  // 408: the receiver gave up waiting for us, which says nothing about the request itself.
  const bool transient = s == 408 || s == 429 || (s >= 500 && s < 600) || d.smtp_reply != 0;
  j.verdict = transient ? Verdict::kRetry : Verdict::kFailed;
  if (s >= 300 && s < 400) j.error += " (redirects are not followed; configure the final URL)";
  return j;
}

}  // namespace

std::string_view ChannelKindName(ChannelKind kind) {
  switch (kind) {
    case ChannelKind::kSlack:
      return "slack";
    case ChannelKind::kPagerDuty:
      return "pagerduty";
    case ChannelKind::kEmail:
      return "email";
    case ChannelKind::kWebhook:
      return "webhook";
  }
  return "webhook";  // unreachable: every enumerator is handled above
}

std::optional<ChannelKind> ParseChannelKind(std::string_view name) {
  for (ChannelKind kind : kChannelKinds) {
    if (ChannelKindName(kind) == name) return kind;
  }
  return std::nullopt;
}

Status Validate(const DeliveryPolicy& p) {
  const auto positive = [](milliseconds d, std::string_view field) -> Status {
    if (d.count() > 0) return Status::Ok();
    return InvalidArgumentError(
        fmt::format("pager policy {} must be positive, got {} ms", field, d.count()));
  };
  if (p.max_attempts < 1) {
    return InvalidArgumentError(
        fmt::format("pager policy max_attempts must be at least 1, got {}", p.max_attempts));
  }
  MANN_RETURN_IF_ERROR(positive(p.initial_backoff, "initial_backoff"));
  MANN_RETURN_IF_ERROR(positive(p.max_backoff, "max_backoff"));
  MANN_RETURN_IF_ERROR(positive(p.request_timeout, "request_timeout"));
  MANN_RETURN_IF_ERROR(positive(p.connect_timeout, "connect_timeout"));
  MANN_RETURN_IF_ERROR(positive(p.max_retry_after, "max_retry_after"));
  MANN_RETURN_IF_ERROR(positive(p.poll_interval, "poll_interval"));
  MANN_RETURN_IF_ERROR(positive(p.stale_after, "stale_after"));
  MANN_RETURN_IF_ERROR(positive(p.dead_letter_window, "dead_letter_window"));
  MANN_RETURN_IF_ERROR(positive(p.retention, "retention"));
  if (p.initial_backoff > p.max_backoff) {
    return InvalidArgumentError(
        fmt::format("pager policy initial_backoff ({} ms) must not exceed max_backoff ({} ms)",
                    p.initial_backoff.count(), p.max_backoff.count()));
  }
  if (p.batch < 1) return InvalidArgumentError("pager policy batch must be at least 1, got 0");
  return Status::Ok();
}

milliseconds Backoff(const DeliveryPolicy& policy, int retry, double u) {
  // Doubling stops at the cap, so a large retry number cannot overflow.
  milliseconds delay = policy.initial_backoff;
  for (int i = 1; i < retry && delay < policy.max_backoff; ++i) delay *= 2;
  delay = std::min(delay, policy.max_backoff);
  if (policy.jitter == Jitter::kNone) return delay;
  u = std::clamp(u, 0.0, 1.0);
  return milliseconds(static_cast<milliseconds::rep>(static_cast<double>(delay.count()) * u));
}

// ---------------------------------------------------------------------------------------------

struct Pager::Impl {
  struct Channel {
    ChannelConfig config;
    std::string name;
    std::string display;  // "slack https://hooks.slack.com/...": no secrets
    std::unique_ptr<HttpSender> http;
    std::unique_ptr<SmtpSender> smtp;
    metrics::Counter* sent = nullptr;
    metrics::Counter* retried = nullptr;
    metrics::Counter* failed = nullptr;
    metrics::Counter* dead = nullptr;
    bool wake = false;  // guarded by Impl::mu: Notify() queued rows for this channel
    std::jthread worker;
  };

  // An attempt's outcome that could not be written to the store. Its row is skipped while the
  // outcome waits here, so a failing disk does not turn into the receiver being hammered.
  struct Unsaved {
    OutboxState to;
    DeliveryOutcome outcome;
  };

  enum class State { kCreated, kRunning, kStopped };

  Impl(PagerOptions o, store::Store& s)
      : options(std::move(o)),
        store(s),
        clock(options.clock != nullptr ? *options.clock : SystemClock::Instance()),
        ids(clock),
        log(log::Get("pager")),
        rng(options.policy.seed != 0 ? options.policy.seed : std::random_device{}()) {}

  Status Init();
  Status Start();
  void Stop();
  Status Notify(const Notification& n);
  Result<Delivery> SendNow(Channel& c, const Notification& n);
  DeliveryHealth Health() const;

  Result<Notification> Complete(Notification n);
  Result<Delivery> Send(Channel& c, const Notification& n, std::stop_token stop);
  void Work(Channel& c, std::stop_token stop);
  // Sends one row and records the outcome; an outcome the store refuses goes into `unsaved`.
  void Attempt(Channel& c, const OutboxDelivery& row, std::stop_token stop,
               std::map<std::string, Unsaved>& unsaved);
  Status Save(const Unsaved& u);
  Status DeadLetterOrphans();
  void MaybePrune();
  std::vector<metrics::Sample> QueueDepthSamples() const;
  milliseconds RetryDelay(const Judgement& j, int retry);

  PagerOptions options;
  store::Store& store;
  const Clock& clock;
  IdGenerator ids;
  std::vector<std::unique_ptr<Channel>> channels;
  std::shared_ptr<spdlog::logger> log;

  std::mutex rng_mu;
  std::mt19937_64 rng;  // guarded by rng_mu
  std::atomic<TimestampMs> last_prune_ms{0};

  mutable std::mutex mu;
  std::condition_variable_any cv;  // a channel's wake flag was raised
  State state = State::kCreated;   // guarded by mu

  // Last, so it is destroyed first: no scrape can run the callback once the rest is going.
  metrics::CallbackHandle queue_depth;
};

// --- set-up ---

Status Pager::Impl::Init() {
  metrics::Registry& registry =
      options.registry != nullptr ? *options.registry : metrics::Registry::Default();
  MANN_ASSIGN_OR_RETURN(
      metrics::CounterFamily * sent,
      registry.AddCounter("mann_pager_notifications_sent_total",
                          "Notifications a channel accepted (HTTP 2xx, or mail accepted).",
                          {"channel"}));
  MANN_ASSIGN_OR_RETURN(
      metrics::CounterFamily * retried,
      registry.AddCounter("mann_pager_notifications_retried_total",
                          "Delivery attempts that failed transiently and were scheduled again.",
                          {"channel"}));
  MANN_ASSIGN_OR_RETURN(
      metrics::CounterFamily * failed,
      registry.AddCounter("mann_pager_notifications_failed_total",
                          "Notifications a channel refused for good (e.g. HTTP 4xx); not retried.",
                          {"channel"}));
  MANN_ASSIGN_OR_RETURN(
      metrics::CounterFamily * dead,
      registry.AddCounter("mann_pager_notifications_dead_lettered_total",
                          "Notifications given up after the policy's maximum attempts.",
                          {"channel"}));

  if (options.service.empty()) options.service = DefaultService();
  for (const ChannelConfig& config : options.channels) {
    auto c = std::make_unique<Channel>();
    c->config = config;
    c->name = NameOf(config);
    c->display = fmt::format("{} {}", ChannelKindName(config.kind),
                             config.kind == ChannelKind::kEmail ? DisplayUrl(config.smtp.url)
                             : config.url.empty()               ? kPagerDutyEventsUrl
                                                                : DisplayUrl(config.url));
    if (config.kind == ChannelKind::kEmail) {
      SmtpOptions smtp = config.smtp;
      smtp.connect_timeout = options.policy.connect_timeout;
      smtp.timeout = options.policy.request_timeout * 3;  // a session is several round trips
      c->smtp = std::make_unique<SmtpSender>(std::move(smtp));
    } else {
      HttpSenderOptions http;
      http.connect_timeout = options.policy.connect_timeout;
      http.timeout = options.policy.request_timeout;
      http.secrets = ChannelSecrets(config);
      c->http = std::make_unique<HttpSender>(std::move(http));
    }
    c->sent = &sent->WithLabels({c->name});
    c->retried = &retried->WithLabels({c->name});
    c->failed = &failed->WithLabels({c->name});
    c->dead = &dead->WithLabels({c->name});
    channels.push_back(std::move(c));
  }

  MANN_ASSIGN_OR_RETURN(
      queue_depth,
      registry.AddGaugeCallback("mann_pager_queue_depth",
                                "Notifications waiting in the outbox to be sent, per channel.",
                                {"channel"}, [this] { return QueueDepthSamples(); }));
  return Status::Ok();
}

std::vector<metrics::Sample> Pager::Impl::QueueDepthSamples() const {
  Result<std::vector<store::OutboxChannelStats>> stats = store.OutboxStats(kForever);
  if (!stats.ok()) {
    log->debug("queue depth unavailable error={}", stats.status().ToString());
    return {};  // the scrape leaves the gauge out rather than report a made-up zero
  }
  std::vector<metrics::Sample> samples;
  for (const auto& c : channels) {
    double pending = 0;
    for (const store::OutboxChannelStats& s : *stats) {
      if (s.channel == c->name) pending = static_cast<double>(s.pending);
    }
    samples.push_back(metrics::Sample{{c->name}, pending});
  }
  return samples;
}

// --- lifecycle ---

Status Pager::Impl::Start() {
  {
    std::lock_guard lock(mu);
    if (state != State::kCreated) {
      return FailedPreconditionError(state == State::kRunning
                                         ? "pager is already running"
                                         : "pager was stopped; create a new one to start again");
    }
  }
  MANN_RETURN_IF_ERROR(DeadLetterOrphans());
  MaybePrune();

  std::int64_t pending = 0;
  if (auto stats = store.OutboxStats(kForever); stats.ok()) {
    for (const store::OutboxChannelStats& s : *stats) pending += s.pending;
  }
  std::vector<std::string> running;
  {
    std::lock_guard lock(mu);
    state = State::kRunning;
    for (auto& c : channels) {
      if (!c->config.enabled) continue;
      running.push_back(c->name);
      c->worker = std::jthread([this, raw = c.get()](std::stop_token stop) { Work(*raw, stop); });
    }
  }
  log->info("pager started channels=[{}] pending={} store={}", fmt::join(running, ","), pending,
            store.Describe());
  return Status::Ok();
}

void Pager::Impl::Stop() {
  {
    std::lock_guard lock(mu);
    const bool was_running = state == State::kRunning;
    state = State::kStopped;
    if (!was_running) return;
  }
  // request_stop wakes each worker's wait and aborts its transfer in progress.
  for (auto& c : channels) c->worker.request_stop();
  for (auto& c : channels) {
    if (c->worker.joinable()) c->worker.join();
  }
  log->info("pager stopped");
}

// Rows for a channel this process does not run can never be sent; leaving them pending would
// keep the health check degraded forever without saying why.
Status Pager::Impl::DeadLetterOrphans() {
  MANN_ASSIGN_OR_RETURN(std::vector<store::OutboxChannelStats> stats, store.OutboxStats(kForever));
  for (const store::OutboxChannelStats& s : stats) {
    if (s.pending == 0) continue;
    const auto it = std::find_if(channels.begin(), channels.end(), [&](const auto& c) {
      return c->name == s.channel && c->config.enabled;
    });
    if (it != channels.end()) continue;
    const std::string reason = fmt::format(
        "channel '{}' is not configured or is disabled in this mann; the notification cannot be "
        "delivered",
        s.channel);
    std::int64_t dead = 0;
    for (;;) {
      MANN_ASSIGN_OR_RETURN(std::vector<OutboxDelivery> rows,
                            store.DueDeliveries(s.channel, kForever, options.policy.batch));
      if (rows.empty()) break;
      for (const OutboxDelivery& row : rows) {
        MANN_RETURN_IF_ERROR(store.MarkDead(DeliveryOutcome{row.id, clock.NowMs(), reason, 0, 0}));
        ++dead;
      }
    }
    log->error(
        "pending notifications dead-lettered channel={} count={}: the channel is not "
        "configured or is disabled; configure and enable it to deliver future ones",
        s.channel, dead);
  }
  return Status::Ok();
}

void Pager::Impl::MaybePrune() {
  const TimestampMs now = clock.NowMs();
  TimestampMs last = last_prune_ms.load();
  if (last != 0 && now - last < kPruneEvery.count()) return;
  if (!last_prune_ms.compare_exchange_strong(last, now)) return;  // another worker is on it
  Result<std::int64_t> pruned = store.PruneDeliveries(now - options.policy.retention.count());
  if (!pruned.ok()) {
    log->warn("outbox prune failed error={}", pruned.status().ToString());
  } else if (*pruned > 0) {
    log->info("outbox pruned rows={} older_than_ms={}", *pruned, options.policy.retention.count());
  }
}

// --- enqueueing ---

Result<Notification> Pager::Impl::Complete(Notification n) {
  n = WithValidUtf8(std::move(n));
  if (n.id.empty()) n.id = ids.Next();
  if (n.time.time_since_epoch().count() == 0) {
    n.time = std::chrono::system_clock::time_point(milliseconds(clock.NowMs()));
  }
  // The outbox keeps milliseconds; cutting here makes what is sent now equal what a restart
  // would send.
  n.time = std::chrono::time_point_cast<milliseconds>(n.time);
  if (n.service.empty()) n.service = options.service;
  MANN_RETURN_IF_ERROR(pager::Validate(n));
  return n;
}

Status Pager::Impl::Notify(const Notification& notification) {
  MANN_ASSIGN_OR_RETURN(Notification n, Complete(notification));
  const std::string body = json::serialize(ToJson(n));
  const TimestampMs now = clock.NowMs();

  std::vector<OutboxDelivery> rows;
  std::vector<Channel*> woken;
  for (auto& c : channels) {
    if (!c->config.enabled || n.level < c->config.min_level) continue;
    OutboxDelivery row;
    row.id = ids.Next();
    row.channel = c->name;
    row.notification_id = n.id;
    row.notification = body;
    row.created_ms = now;
    row.next_attempt_ms = now;
    rows.push_back(std::move(row));
    woken.push_back(c.get());
  }
  if (rows.empty()) {
    log->debug("notification skipped: no enabled channel takes level={} notification={}",
               LevelName(n.level), n.id);
    return Status::Ok();
  }
  MANN_RETURN_IF_ERROR(store.EnqueueDeliveries(std::move(rows)));
  log->info("notification queued notification={} kind={} level={} dedup_key={} channels={}", n.id,
            KindName(n.kind), LevelName(n.level), n.dedup_key, woken.size());
  {
    std::lock_guard lock(mu);
    for (Channel* c : woken) c->wake = true;
  }
  cv.notify_all();
  return Status::Ok();
}

// --- sending ---

Result<Delivery> Pager::Impl::Send(Channel& c, const Notification& n, std::stop_token stop) {
  const ChannelConfig& config = c.config;
  switch (config.kind) {
    case ChannelKind::kSlack:
      return c.http->Post(config.url, json::serialize(SlackPayload(n)), {}, stop);
    case ChannelKind::kPagerDuty: {
      const std::string url = config.url.empty() ? std::string(kPagerDutyEventsUrl) : config.url;
      return c.http->Post(url, json::serialize(PagerDutyPayload(n, config.routing_key)), {}, stop);
    }
    case ChannelKind::kWebhook: {
      // Stable across retries, so the receiver can drop a repeat.
      HeaderList headers = config.headers;
      headers.emplace_back("X-Mann-Notification-Id", n.id);
      headers.emplace_back("X-Mann-Event", std::string(KindName(n.kind)));
      return c.http->Post(config.url, json::serialize(WebhookPayload(n)), headers, stop);
    }
    case ChannelKind::kEmail:
      return c.smtp->Send(EmailMessage(n, config.email),
                          SmtpEnvelope{config.email.from, config.email.to}, stop);
  }
  return InternalError("pager: unknown channel kind");
}

Result<Delivery> Pager::Impl::SendNow(Channel& c, const Notification& notification) {
  MANN_ASSIGN_OR_RETURN(Notification n, Complete(notification));
  Result<Delivery> d = Send(c, n, {});
  if (d.ok()) {
    log->info("notification sent directly channel={} notification={} status={} error={}", c.name,
              n.id, d->http_status != 0 ? d->http_status : d->smtp_reply, d->error);
  }
  return d;
}

milliseconds Pager::Impl::RetryDelay(const Judgement& j, int retry) {
  if (j.retry_after) {
    return std::min<milliseconds>(*j.retry_after, options.policy.max_retry_after);
  }
  double u = 0;
  {
    std::lock_guard lock(rng_mu);
    u = std::uniform_real_distribution<double>(0.0, 1.0)(rng);
  }
  return Backoff(options.policy, retry, u);
}

Status Pager::Impl::Save(const Unsaved& u) {
  switch (u.to) {
    case OutboxState::kPending:
      return store.RecordDeliveryAttempt(u.outcome);
    case OutboxState::kDelivered:
      return store.MarkDelivered(u.outcome);
    case OutboxState::kFailed:
      return store.MarkFailed(u.outcome);
    case OutboxState::kDead:
      return store.MarkDead(u.outcome);
  }
  return InternalError("pager: unknown outbox state");
}

void Pager::Impl::Attempt(Channel& c, const OutboxDelivery& row, std::stop_token stop,
                          std::map<std::string, Unsaved>& unsaved) {
  const int attempt = static_cast<int>(row.attempts) + 1;
  const int max_attempts = options.policy.max_attempts;

  // The attempt. A row that cannot be decoded can never be sent: it goes straight to dead.
  Judgement j;
  Result<Notification> n = FromJsonText(row.notification);
  if (!n.ok()) {
    j.verdict = Verdict::kFailed;
    j.error = "the stored notification cannot be read: " + n.status().message();
  } else {
    Result<Delivery> d = Send(c, *n, stop);
    if (!d.ok() && stop.stop_requested()) return;  // abandoned: the row stays as it was
    if (d.ok()) {
      j = Judge(*d);
    } else {
      j.verdict =
          d.status().code() == StatusCode::kInvalidArgument ? Verdict::kFailed : Verdict::kRetry;
      j.error = d.status().message();
    }
  }

  // Its outcome, in the store first, then in the metrics and the log.
  Unsaved u{OutboxState::kPending, DeliveryOutcome{row.id, clock.NowMs(), j.error, j.status, 0}};
  milliseconds delay{0};
  if (j.verdict == Verdict::kDelivered) {
    u.to = OutboxState::kDelivered;
  } else if (j.verdict == Verdict::kFailed) {
    u.to = n.ok() ? OutboxState::kFailed : OutboxState::kDead;
  } else if (attempt >= max_attempts) {
    u.to = OutboxState::kDead;
  } else {
    delay = RetryDelay(j, attempt);
    u.outcome.next_attempt_ms = u.outcome.at_ms + delay.count();
  }
  if (Status saved = Save(u); !saved.ok()) {
    log->error(
        "outbox update failed channel={} delivery={} error={}: the attempt's outcome is "
        "kept in memory and saved again later; a restart meanwhile may send it twice",
        c.name, row.id, saved.ToString());
    unsaved.emplace(row.id, u);
  }

  switch (u.to) {
    case OutboxState::kDelivered:
      c.sent->Inc();
      log->info(
          "notification delivered channel={} delivery={} notification={} attempt={} "
          "status={}",
          c.name, row.id, row.notification_id, attempt, j.status);
      break;
    case OutboxState::kPending:
      c.retried->Inc();
      log->warn(
          "notification delivery failed, will retry channel={} delivery={} attempt={}/{} "
          "retry_in_ms={} error={}",
          c.name, row.id, attempt, max_attempts, delay.count(), j.error);
      break;
    case OutboxState::kFailed:
      c.failed->Inc();
      log->warn(
          "notification refused, not retried channel={} target={} delivery={} error={}: "
          "check the channel's URL, key and addresses",
          c.name, c.display, row.id, j.error);
      break;
    case OutboxState::kDead:
      c.dead->Inc();
      log->error(
          "notification dead-lettered channel={} target={} delivery={} notification={} "
          "attempts={} error={}: it will not be sent; `mann alert list` shows it",
          c.name, c.display, row.id, row.notification_id, attempt, j.error);
      break;
  }
}

void Pager::Impl::Work(Channel& c, std::stop_token stop) {
  std::map<std::string, Unsaved> unsaved;  // outcomes the store refused, by row id
  TimestampMs last_error_log_ms = 0;
  std::int64_t errors_since_log = 0;

  while (!stop.stop_requested()) {
    MaybePrune();
    milliseconds wait = options.policy.poll_interval;

    // Outcomes the store refused earlier go first; their rows are left alone until saved.
    for (auto it = unsaved.begin(); it != unsaved.end();) {
      it = Save(it->second).ok() ? unsaved.erase(it) : std::next(it);
    }

    // Due rows, earliest first; the first one not yet due tells how long to sleep.
    const TimestampMs now = clock.NowMs();
    Result<std::vector<OutboxDelivery>> rows =
        store.DueDeliveries(c.name, kForever, options.policy.batch + unsaved.size());
    bool attempted = false;
    if (!rows.ok()) {
      ++errors_since_log;
      if (now - last_error_log_ms >= kStoreErrorLogEvery.count()) {
        log->error(
            "outbox read failed channel={} error={} (failures since last report: {}): "
            "notifications wait until the store is readable",
            c.name, rows.status().ToString(), errors_since_log);
        last_error_log_ms = now;
        errors_since_log = 0;
      }
    } else {
      for (const OutboxDelivery& row : *rows) {
        if (stop.stop_requested()) return;
        if (unsaved.contains(row.id)) continue;
        if (row.next_attempt_ms > clock.NowMs()) {
          wait = std::min(wait, milliseconds(row.next_attempt_ms - clock.NowMs()));
          break;
        }
        Attempt(c, row, stop, unsaved);
        attempted = true;
      }
    }
    if (attempted) continue;  // more may have fallen due meanwhile

    std::unique_lock lock(mu);
    cv.wait_for(lock, stop, wait, [&c] { return c.wake; });
    c.wake = false;
  }
}

// --- health ---

DeliveryHealth Pager::Impl::Health() const {
  const DeliveryPolicy& p = options.policy;
  const TimestampMs now = clock.NowMs();
  Result<std::vector<store::OutboxChannelStats>> stats =
      store.OutboxStats(now - p.dead_letter_window.count());
  if (!stats.ok()) {
    return DeliveryHealth{false, "cannot read the pager outbox: " + stats.status().message()};
  }
  std::vector<std::string> problems;
  for (const store::OutboxChannelStats& s : *stats) {
    const TimestampMs age = now - s.oldest_pending_created_ms;
    if (s.pending > 0 && age > p.stale_after.count()) {
      problems.push_back(
          fmt::format("channel {}: {} notification(s) pending, the oldest for {} s (limit {} s)",
                      s.channel, s.pending, age / 1000, p.stale_after.count() / 1000));
    }
    if (s.dead_since > 0) {
      problems.push_back(
          fmt::format("channel {}: {} notification(s) dead-lettered in the last {} min", s.channel,
                      s.dead_since, p.dead_letter_window.count() / 60'000));
    }
  }
  if (problems.empty()) return DeliveryHealth{};
  return DeliveryHealth{false, fmt::format("{}", fmt::join(problems, "; "))};
}

// --- Pager ---

Status Pager::Validate(const PagerOptions& options) {
  MANN_RETURN_IF_ERROR(pager::Validate(options.policy));
  std::set<std::string> names;
  for (const ChannelConfig& c : options.channels) {
    MANN_RETURN_IF_ERROR(ValidateChannel(c, options.policy));
    if (!names.insert(NameOf(c)).second) {
      return InvalidArgumentError(fmt::format(
          "pager channel name '{}' is used twice; give each channel its own name", NameOf(c)));
    }
  }
  return Status::Ok();
}

Result<std::unique_ptr<Pager>> Pager::Create(PagerOptions options, store::Store& store) {
  MANN_RETURN_IF_ERROR(Validate(options));
  MANN_RETURN_IF_ERROR(internal::InitCurl());
  auto impl = std::make_unique<Impl>(std::move(options), store);
  MANN_RETURN_IF_ERROR(impl->Init());
  return std::unique_ptr<Pager>(new Pager(std::move(impl)));
}

Pager::Pager(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Pager::~Pager() { Stop(); }

Status Pager::Start() { return impl_->Start(); }

void Pager::Stop() { impl_->Stop(); }

Status Pager::Notify(const Notification& notification) { return impl_->Notify(notification); }

Result<Delivery> Pager::SendNow(std::string_view channel, const Notification& notification) {
  for (auto& c : impl_->channels) {
    if (c->name == channel) return impl_->SendNow(*c, notification);
  }
  return NotFoundError(fmt::format("no pager channel is named '{}'; configured: {}",
                                   ClipToOneLine(channel, 64), fmt::join(ChannelNames(), ", ")));
}

Result<Delivery> Pager::SendNow(ChannelKind kind, const Notification& notification) {
  for (auto& c : impl_->channels) {
    if (c->config.kind == kind) return impl_->SendNow(*c, notification);
  }
  return NotFoundError(
      fmt::format("no {} channel is configured for the pager", ChannelKindName(kind)));
}

DeliveryHealth Pager::Health() const { return impl_->Health(); }

Result<std::vector<store::OutboxDelivery>> Pager::Recent(std::size_t limit) const {
  return impl_->store.RecentDeliveries(limit);
}

std::vector<std::string> Pager::ChannelNames() const {
  std::vector<std::string> names;
  for (const auto& c : impl_->channels) names.push_back(c->name);
  return names;
}

bool Pager::running() const {
  std::lock_guard lock(impl_->mu);
  return impl_->state == Impl::State::kRunning;
}

}  // namespace mann::pager
