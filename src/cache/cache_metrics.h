// The metric families every cache of this module reports in, so that one query covers the
// search answers, the in-process embeddings and the shared embedding tier. A registry finds a
// family again only when its name, labels and help are the same, hence one definition here.
#pragma once

#include <string_view>

#include <mann/cache/lookup_counters.h>
#include <mann/metrics/registry.h>

namespace mann::cache::internal {

inline constexpr std::string_view kRequestsFamily = "mann_cache_requests_total";
inline constexpr std::string_view kRequestsHelp =
    "Cache lookups, by cache and result (hit or miss).";
inline constexpr std::string_view kBypassedFamily = "mann_cache_bypassed_total";
inline constexpr std::string_view kBypassedHelp =
    "Cache lookups that skipped the shared cache because Redis was down.";

// `registry`, or the default registry when it is null (the caches' options say so).
metrics::Registry& RegistryOrDefault(metrics::Registry* registry);

// The lookup series of `cache`, in kRequestsFamily and kBypassedFamily of `registry` (or the
// default registry). A member stays null, with an error logged, when its family cannot be
// registered: a cache must work even when it cannot be counted.
LookupCounters RegisterLookupCounters(metrics::Registry* registry, std::string_view cache);

// The series of `cache` in the family `name` (labelled by cache only); null, with an error
// logged, when the family cannot be registered.
metrics::Counter* RegisterCacheCounter(metrics::Registry& registry, std::string_view name,
                                       std::string_view help, std::string_view cache);

}  // namespace mann::cache::internal
