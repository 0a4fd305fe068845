// The metric families every cache of this module reports in, so that one query covers the
// search answers, the in-process embeddings and the shared embedding tier. A registry finds a
// family again only when its name, labels and help are the same, hence one definition here.
#pragma once

#include <string_view>

#include <mann/metrics/registry.h>

namespace mann::cache::internal {

inline constexpr std::string_view kRequestsFamily = "mann_cache_requests_total";
inline constexpr std::string_view kRequestsHelp =
    "Cache lookups, by cache and result (hit or miss).";
inline constexpr std::string_view kBypassedFamily = "mann_cache_bypassed_total";
inline constexpr std::string_view kBypassedHelp =
    "Cache lookups that skipped the shared cache because Redis was down.";

// The hit and miss series of `cache` in kRequestsFamily. Both null, with an error logged, when
// the family cannot be registered: a cache must work even when it cannot be counted.
struct RequestCounters {
  metrics::Counter* hits = nullptr;
  metrics::Counter* misses = nullptr;
};
RequestCounters RegisterRequestCounters(metrics::Registry& registry, std::string_view cache);

// The series of `cache` in the family `name` (labelled by cache only); null, with an error
// logged, when the family cannot be registered.
metrics::Counter* RegisterCacheCounter(metrics::Registry& registry, std::string_view name,
                                       std::string_view help, std::string_view cache);

}  // namespace mann::cache::internal
