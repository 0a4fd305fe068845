#include "cache_metrics.h"

#include <mann/core/log.h>

namespace mann::cache::internal {

metrics::Registry& RegistryOrDefault(metrics::Registry* registry) {
  return registry != nullptr ? *registry : metrics::Registry::Default();
}

LookupCounters RegisterLookupCounters(metrics::Registry* registry, std::string_view cache) {
  metrics::Registry& r = RegistryOrDefault(registry);
  LookupCounters counters;
  auto family = r.AddCounter(kRequestsFamily, kRequestsHelp, {"cache", "result"});
  if (family.ok()) {
    counters.hits = &(*family)->WithLabels({cache, "hit"});
    counters.misses = &(*family)->WithLabels({cache, "miss"});
  } else {
    log::Get("cache")->error("lookups of cache {} will not be counted: {}", cache,
                             family.status().ToString());
  }
  counters.bypassed = RegisterCacheCounter(r, kBypassedFamily, kBypassedHelp, cache);
  return counters;
}

metrics::Counter* RegisterCacheCounter(metrics::Registry& registry, std::string_view name,
                                       std::string_view help, std::string_view cache) {
  auto family = registry.AddCounter(name, help, {"cache"});
  if (!family.ok()) {
    log::Get("cache")->error("{} will not be counted for cache {}: {}", name, cache,
                             family.status().ToString());
    return nullptr;
  }
  return &(*family)->WithLabels({cache});
}

}  // namespace mann::cache::internal
