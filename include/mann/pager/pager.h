// Pager: delivers notifications to the configured channels through a durable outbox.
//
//   PagerOptions options;
//   options.channels.push_back({.name = "ops", .kind = ChannelKind::kSlack, .url = webhook});
//   MANN_ASSIGN_OR_RETURN(auto pager, Pager::Create(std::move(options), store));
//   MANN_RETURN_IF_ERROR(pager->Start());  // resumes what a previous process left
//   MANN_RETURN_IF_ERROR(pager->Notify(notification));  // durable on return; no network I/O
//   ...
//   pager->Stop();
//
// Notify() writes one outbox row per enabled channel whose min_level the notification reaches,
// in one durable transaction, and wakes the workers; it never touches the network, so a
// monitor thread is never held up by a slow receiver. Each channel has a worker thread of its
// own (a stalled Slack does not delay PagerDuty) that sends its due rows oldest first and
// records each attempt in the store:
//
//   answer                                  row becomes           metric (label channel)
//   2xx (mail accepted)                     delivered             ..._sent_total
//   429 or 503 with Retry-After             retried after it      ..._retried_total
//   408, 429, 5xx, timeout, transport error retried with backoff  ..._retried_total
//   other 4xx, redirect, permanent failure  failed (logged warn)  ..._failed_total
//   (no STARTTLS, login refused, SMTP 5xx)
//   a retry when max_attempts are used up   dead (logged error)   ..._dead_lettered_total
//
// Backoff: retry n waits min(max_backoff, initial_backoff * 2^(n-1)), scaled by a uniform draw
// from [0, 1) under full jitter. A Retry-After is honoured up to max_retry_after. 408 is retried
// although it is a 4xx: it says the receiver timed out waiting, not that the request is wrong.
//
// Delivery is at least once: a row whose send succeeded but whose "delivered" mark did not
// reach the disk (a crash in between) is sent again by the next process. PagerDuty deduplicates
// on dedup_key, and the email Message-ID and the webhook's X-Mann-Notification-Id header are
// stable across retries, so receivers can deduplicate too.
//
// Start() resumes the rows a previous process left pending, in due order. Rows of a channel
// that is no longer configured (or is disabled) cannot be delivered: Start() dead-letters them
// with a reason naming the channel. Finished rows older than policy.retention are pruned.
//
// Metrics (PagerOptions::registry): mann_pager_notifications_{sent,retried,failed,
// dead_lettered}_total{channel} and the gauge mann_pager_queue_depth{channel} (pending rows,
// read from the store at scrape time).
//
// Secrets (routing keys, SMTP passwords, webhook URLs and header values) stay out of the
// outbox, the logs, error messages and metrics; channels appear as their name and DisplayUrl.
//
// Thread-safety: Notify, SendNow, Health and the accessors may be called from any thread at
// any time between Create() and destruction. Start and Stop are for one controlling thread.
// The store and the registry must outlive the Pager.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/clock.h>
#include <mann/core/status.h>
#include <mann/pager/http_sender.h>
#include <mann/pager/notification.h>
#include <mann/pager/payloads.h>
#include <mann/pager/smtp_sender.h>
#include <mann/store/store.h>

namespace mann::metrics {
class Registry;
}

namespace mann::pager {

enum class ChannelKind { kSlack, kPagerDuty, kEmail, kWebhook };

// "slack", "pagerduty", "email", "webhook".
std::string_view ChannelKindName(ChannelKind kind);
std::optional<ChannelKind> ParseChannelKind(std::string_view name);

// Where PagerDuty channels send when their url is empty.
inline constexpr std::string_view kPagerDutyEventsUrl = "https://events.pagerduty.com/v2/enqueue";

struct ChannelConfig {
  // Names the channel in outbox rows, metrics and logs; [a-z0-9_-], unique among the channels.
  // Empty: the kind's name. Renaming a channel orphans its pending rows (see Start()).
  std::string name;
  ChannelKind kind = ChannelKind::kWebhook;
  bool enabled = true;
  Level min_level = Level::kInfo;  // lower notifications, resolves included, skip this channel

  // Slack: the incoming-webhook URL. Webhook: the URL. PagerDuty: empty for
  // kPagerDutyEventsUrl. All are secrets: they are never logged whole.
  std::string url;
  std::string routing_key;  // PagerDuty: the integration's routing key (secret)
  HeaderList headers;       // webhook: extra headers, e.g. Authorization (values are secrets)

  SmtpOptions smtp;       // email: the server; its timeouts come from the policy
  EmailAddressing email;  // email: From and To (also the envelope)
};

enum class Jitter { kNone, kFull };

struct DeliveryPolicy {
  int max_attempts = 8;  // attempts per row, the first included
  std::chrono::milliseconds initial_backoff{1000};
  std::chrono::milliseconds max_backoff{300'000};
  Jitter jitter = Jitter::kFull;
  std::chrono::milliseconds request_timeout{10'000};  // one HTTP request (SMTP: three times it)
  std::chrono::milliseconds connect_timeout{5'000};
  std::chrono::milliseconds max_retry_after{3'600'000};  // a longer Retry-After is cut to this
  // The longest a worker sleeps before looking at the outbox again; it also wakes when a row
  // falls due and on Notify().
  std::chrono::milliseconds poll_interval{1000};
  std::size_t batch = 16;  // rows a worker reads at once
  // Health(): degraded when a pending row is older than stale_after, or a row was
  // dead-lettered within dead_letter_window.
  std::chrono::milliseconds stale_after{600'000};
  std::chrono::milliseconds dead_letter_window{3'600'000};
  std::chrono::milliseconds retention{7LL * 24 * 3'600'000};  // final rows older are pruned
  std::uint64_t seed = 0;  // the jitter's random source; 0 draws one from std::random_device
};

// InvalidArgument naming the field unless max_attempts >= 1, the durations are positive,
// initial_backoff <= max_backoff and batch >= 1.
Status Validate(const DeliveryPolicy& policy);

// The wait before retry number `retry` (1 after the first failed attempt), given a uniform draw
// `u` in [0, 1) that full jitter multiplies the exponential delay by.
std::chrono::milliseconds Backoff(const DeliveryPolicy& policy, int retry, double u);

struct DeliveryHealth {
  bool ok = true;
  std::string reason;  // empty when ok; otherwise every problem found, separated by "; "
};

struct PagerOptions {
  std::vector<ChannelConfig> channels;
  DeliveryPolicy policy;
  std::string service;                    // fills Notification::service; empty: "mann@<host>"
  const Clock* clock = nullptr;           // nullptr: SystemClock::Instance()
  metrics::Registry* registry = nullptr;  // nullptr: metrics::Registry::Default()
};

class Pager {
 public:
  // InvalidArgument naming the channel and field: a bad or duplicate name, a URL that is not
  // http(s) (Slack and webhook need one), a PagerDuty channel without routing_key, an email
  // channel without valid from/to or SMTP URL, a header with CR/LF; or a bad policy. Disabled
  // channels are checked too, so enabling one later cannot surprise.
  static Status Validate(const PagerOptions& options);

  // Validates and registers the metrics (errors as Registry returns them). Sends nothing and
  // starts no thread.
  static Result<std::unique_ptr<Pager>> Create(PagerOptions options, store::Store& store);

  ~Pager();  // Stop()
  Pager(const Pager&) = delete;
  Pager& operator=(const Pager&) = delete;

  // Dead-letters rows of unknown channels, prunes, then starts one worker per enabled channel.
  // FailedPrecondition when already started; a store error reading the outbox is returned.
  Status Start();

  // Stops the workers promptly: a transfer in progress is abandoned (its row stays pending, with
  // no attempt counted, and goes out after the next Start). Idempotent.
  void Stop();

  // Fills an empty id (UUIDv7), a zero time (the clock's now) and an empty service, repairs
  // bad UTF-8, validates (InvalidArgument), then enqueues durably: when this returns OK the
  // notification survives a crash. Returns what the store returns (AlreadyExists when this id
  // was enqueued before). OK with nothing written when no enabled channel takes the level.
  Status Notify(const Notification& notification);

  // Sends `notification` to one channel now, on the caller's thread, bypassing the outbox and
  // its retries, and returns the receiver's answer: for `mann alert test`. Works whether or not
  // the channel is enabled and whether or not Start() ran. NotFound when no channel has that
  // name (or kind: the first configured channel of the kind); InvalidArgument as Notify.
  Result<Delivery> SendNow(std::string_view channel, const Notification& notification);
  Result<Delivery> SendNow(ChannelKind kind, const Notification& notification);

  // Degraded (with the reasons) when a pending row is older than policy.stale_after, when a row
  // was dead-lettered within policy.dead_letter_window, or when the outbox cannot be read.
  DeliveryHealth Health() const;

  // The outbox's newest rows, for `mann alert list`.
  Result<std::vector<store::OutboxDelivery>> Recent(std::size_t limit) const;

  // Names of the configured channels, enabled or not, in configuration order.
  std::vector<std::string> ChannelNames() const;

  // True between Start() and Stop().
  bool running() const;

 private:
  struct Impl;
  explicit Pager(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mann::pager
