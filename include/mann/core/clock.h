// Clock: the source of wall-clock time for everything that stores or compares times.
//
// Production code takes a `const Clock&` instead of calling the system clock, so tests can
// inject a FakeClock and move time by hand. Times are milliseconds since the Unix epoch (UTC),
// the resolution UUIDv7 ids and the store use.
//
// Thread-safety: SystemClock is stateless; FakeClock is safe to read and advance concurrently.
#pragma once

#include <atomic>
#include <cstdint>

namespace mann {

using TimestampMs = std::int64_t;

class Clock {
 public:
  virtual ~Clock() = default;
  virtual TimestampMs NowMs() const = 0;
};

class SystemClock final : public Clock {
 public:
  TimestampMs NowMs() const override;
  // A process-wide instance for code that has no clock injected.
  static const SystemClock& Instance();
};

class FakeClock final : public Clock {
 public:
  explicit FakeClock(TimestampMs start_ms = 1'764'720'000'000) : now_(start_ms) {}
  TimestampMs NowMs() const override { return now_.load(); }
  void Set(TimestampMs ms) { now_.store(ms); }
  void AdvanceMs(TimestampMs delta) { now_.fetch_add(delta); }

 private:
  std::atomic<TimestampMs> now_;
};

}  // namespace mann
