// Entry ids: UUIDv7 (RFC 9562) in the canonical 36-character text form.
//
// The first 48 bits are the Unix time in milliseconds, so ids sort by creation time as plain
// strings; within one millisecond a generator keeps a monotonic counter in the random bits, so
// ids made by one generator are strictly increasing.
//
// Thread-safety: IdGenerator is safe to call from any thread.
#pragma once

#include <cstdint>
#include <mutex>
#include <random>
#include <string>
#include <string_view>

#include <mann/core/clock.h>

namespace mann {

class IdGenerator {
 public:
  // `seed` 0 draws one from std::random_device; tests pass a fixed seed.
  explicit IdGenerator(const Clock& clock, std::uint64_t seed = 0);

  std::string Next();

 private:
  const Clock& clock_;
  std::mutex mu_;
  std::mt19937_64 rng_;            // guarded by mu_
  TimestampMs last_ms_ = 0;        // guarded by mu_
  std::uint64_t last_rand_a_ = 0;  // guarded by mu_; the 12-bit rand_a field of the last id
  std::uint64_t last_rand_b_ = 0;  // guarded by mu_; the 62-bit rand_b field of the last id
};

// True for the canonical lower- or upper-case 8-4-4-4-12 hex form of any UUID.
bool IsUuid(std::string_view text);

}  // namespace mann
