#include <mann/core/log.h>
#include <mann/llm/breaker.h>

namespace mann::llm {

std::string_view BreakerStateName(BreakerState state) {
  switch (state) {
    case BreakerState::kClosed:
      return "closed";
    case BreakerState::kOpen:
      return "open";
    case BreakerState::kHalfOpen:
      return "half_open";
  }
  return "closed";
}

CircuitBreaker::CircuitBreaker(BreakerOptions options, Now now)
    : options_(options),
      now_(now ? std::move(now) : Now([] { return std::chrono::steady_clock::now(); })) {}

bool CircuitBreaker::Allow() {
  std::lock_guard lock(mu_);
  switch (state_) {
    case BreakerState::kClosed:
      return true;
    case BreakerState::kOpen:
      if (now_() - opened_at_ < options_.open_duration) return false;
      state_ = BreakerState::kHalfOpen;
      log::Get("llm")->info("llm breaker half-open: probing the model server");
      return true;
    case BreakerState::kHalfOpen:
      return false;  // the probe is out; everyone else falls back until it returns
  }
  return false;
}

void CircuitBreaker::Record(bool success) {
  std::lock_guard lock(mu_);
  if (success) {
    if (state_ != BreakerState::kClosed) {
      log::Get("llm")->info("llm breaker closed: the model server answers again");
    }
    state_ = BreakerState::kClosed;
    consecutive_failures_ = 0;
    return;
  }
  ++consecutive_failures_;
  const bool open =
      state_ == BreakerState::kHalfOpen ||
      (state_ == BreakerState::kClosed && consecutive_failures_ >= options_.failure_threshold);
  if (!open) return;
  state_ = BreakerState::kOpen;
  opened_at_ = now_();
  ++opened_count_;
  log::Get("llm")->warn(
      "llm breaker open after {} consecutive failures: replies come from memory alone for {} s; "
      "check the model server",
      consecutive_failures_, std::chrono::duration<double>(options_.open_duration).count());
}

BreakerState CircuitBreaker::state() const {
  std::lock_guard lock(mu_);
  return state_;
}

std::uint64_t CircuitBreaker::opened_count() const {
  std::lock_guard lock(mu_);
  return opened_count_;
}

}  // namespace mann::llm
