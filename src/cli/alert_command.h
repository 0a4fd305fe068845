// `mann alert test` and `mann alert list`: try a pager channel end to end, and see what the
// monitor watches and what the pager delivered.
//
// Neither needs the memory bank: both open only the store of the data directory (creating it
// as any command would), so they run beside a `mann serve` of the same directory.
//
//   mann alert test --channel slack     sends a test notification (level info) through the
//                                       channel now, bypassing the outbox and its retries, and
//                                       prints the receiver's answer: its status, the start of
//                                       its body and how long it took
//   mann alert list                     the alert rules in force, the re-notification floors,
//                                       the channels, and the outbox's latest deliveries
//
// Exit codes of `alert test`: 0 the receiver accepted the notification; 1 it refused it or
// could not be reached; 2 the channel is not configured (the message names the setting) or the
// configuration is invalid. Secrets (webhook URLs, routing keys, the SMTP password) are never
// printed; a receiver's answer is scrubbed of them by the pager.
#pragma once

#include <cstddef>
#include <string>

#include <mann/config/config.h>

#include "context.h"

namespace mann::cli {

struct AlertTestArgs {
  std::string channel;  // slack, pagerduty, email or webhook
  bool json = false;    // one JSON document instead of text
};
int RunAlertTest(const config::LoadedConfig& loaded, const AlertTestArgs& args, Io& io);

struct AlertListArgs {
  std::size_t limit = 20;  // deliveries shown, newest first
  bool json = false;
};
int RunAlertList(const config::LoadedConfig& loaded, const AlertListArgs& args, Io& io);

}  // namespace mann::cli
