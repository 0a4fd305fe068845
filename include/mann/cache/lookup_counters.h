// The series every cache of this module keeps for its lookups, registered together (by
// src/cache/cache_metrics.h) so that the caches report them alike:
//   mann_cache_requests_total{cache,result="hit"|"miss"}
//   mann_cache_bypassed_total{cache}   lookups that skipped the shared tier because Redis was down
// A null member means its family could not be registered; the cache then works uncounted.
#pragma once

#include <mann/metrics/registry.h>

namespace mann::cache {

struct LookupCounters {
  metrics::Counter* hits = nullptr;
  metrics::Counter* misses = nullptr;
  metrics::Counter* bypassed = nullptr;
};

}  // namespace mann::cache
