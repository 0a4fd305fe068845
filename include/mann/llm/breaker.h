// CircuitBreaker: stops calling a model server that keeps failing, and tries it again later.
//
//   closed     calls go through; `failure_threshold` consecutive failures -> open
//   open       calls are refused (the caller falls back at once) until `open_duration` has
//              passed since opening -> half-open
//   half-open  exactly one call (the probe) goes through; others are refused meanwhile.
//              The probe succeeding -> closed; failing -> open again, for another open_duration
//
// A success in the closed state resets the failure count. Callers pair every Allow() that
// returned true with one Record(success).
//
// Thread-safety: every member is safe to call concurrently.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string_view>

namespace mann::llm {

enum class BreakerState { kClosed = 0, kOpen = 1, kHalfOpen = 2 };

// "closed", "open", "half_open".
std::string_view BreakerStateName(BreakerState state);

struct BreakerOptions {
  int failure_threshold = 5;  // consecutive failures that open the breaker; >= 1
  std::chrono::milliseconds open_duration{30'000};
};

class CircuitBreaker {
 public:
  using Now = std::function<std::chrono::steady_clock::time_point()>;

  // `now` is injectable for tests; by default the steady clock.
  explicit CircuitBreaker(BreakerOptions options, Now now = {});

  // True when a call may go out now. In the open state, the first call after open_duration
  // moves the breaker to half-open and is the probe.
  bool Allow();

  // The outcome of a call that Allow() let through.
  void Record(bool success);

  BreakerState state() const;
  // Times the breaker opened (closed or half-open -> open), since construction.
  std::uint64_t opened_count() const;

 private:
  const BreakerOptions options_;
  const Now now_;
  mutable std::mutex mu_;
  BreakerState state_ = BreakerState::kClosed;         // guarded by mu_
  int consecutive_failures_ = 0;                       // guarded by mu_
  std::chrono::steady_clock::time_point opened_at_{};  // guarded by mu_
  std::uint64_t opened_count_ = 0;                     // guarded by mu_
};

}  // namespace mann::llm
