#include <cctype>
#include <limits>

#include <mann/core/id.h>

namespace mann {
namespace {

// rand_b's 62 bits; within one millisecond it is the low part of a counter that carries into
// rand_a, so ids from one generator are strictly increasing.
constexpr std::uint64_t kRandMask = (std::uint64_t{1} << 62) - 1;

}  // namespace

IdGenerator::IdGenerator(const Clock& clock, std::uint64_t seed)
    : clock_(clock), rng_(seed != 0 ? seed : std::random_device{}()) {}

std::string IdGenerator::Next() {
  std::uint64_t ms;
  std::uint64_t rand_a;  // 12 bits
  std::uint64_t rand_b;  // 62 bits
  {
    std::lock_guard lock(mu_);
    TimestampMs now = clock_.NowMs();
    if (now <= last_ms_) {
      // Same (or an earlier, if the clock stepped back) millisecond: count up from the last id
      // so ids stay strictly increasing; rand_b carries into rand_a.
      now = last_ms_;
      if (++last_rand_b_ > kRandMask) {
        last_rand_b_ = 0;
        if (++last_rand_a_ > 0xfff) {  // counter exhausted: borrow the next millisecond
          ++now;
          last_rand_a_ = rng_() & 0x7ff;
          last_rand_b_ = rng_() & kRandMask;
        }
      }
    } else {
      // Clearing the top bit of rand_a leaves headroom for the counter.
      last_rand_a_ = rng_() & 0x7ff;
      last_rand_b_ = rng_() & kRandMask;
    }
    last_ms_ = now;
    ms = static_cast<std::uint64_t>(now);
    rand_a = last_rand_a_;
    rand_b = last_rand_b_;
  }

  const std::uint64_t hi = (ms << 16) | (std::uint64_t{7} << 12) | rand_a;
  const std::uint64_t lo = (std::uint64_t{2} << 62) | rand_b;
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (int i = 15; i >= 0; --i) {
    out.push_back(kHex[(hi >> (i * 4)) & 0xf]);
    if (i == 8 || i == 4) out.push_back('-');
  }
  out.push_back('-');
  for (int i = 15; i >= 0; --i) {
    out.push_back(kHex[(lo >> (i * 4)) & 0xf]);
    if (i == 12) out.push_back('-');
  }
  return out;
}

bool IsUuid(std::string_view text) {
  if (text.size() != 36) return false;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (c != '-') return false;
    } else if (!std::isxdigit(static_cast<unsigned char>(c))) {
      return false;
    }
  }
  return true;
}

}  // namespace mann
