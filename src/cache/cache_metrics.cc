#include "cache_metrics.h"

#include <mann/core/log.h>

namespace mann::cache::internal {

RequestCounters RegisterRequestCounters(metrics::Registry& registry, std::string_view cache) {
  auto family = registry.AddCounter(kRequestsFamily, kRequestsHelp, {"cache", "result"});
  if (!family.ok()) {
    log::Get("cache")->error("lookups of cache {} will not be counted: {}", cache,
                             family.status().ToString());
    return {};
  }
  return {.hits = &(*family)->WithLabels({cache, "hit"}),
          .misses = &(*family)->WithLabels({cache, "miss"})};
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
