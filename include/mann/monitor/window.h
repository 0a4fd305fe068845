// RequestWindow: the outcomes of the HTTP requests of the last W seconds (default 300), for the
// error-rate and processing-time alert rules.
//
//   monitor::RequestWindow window(clock);
//   router.Use(monitor::RecordingMiddleware(window));
//   ...
//   monitor::WindowSnapshot s = window.Snapshot();  // s.count, s.error_rate, s.p95, ...
//
// Layout. One slot per second of the window, in a ring; a slot holds its request and error
// counts, the smallest and largest duration, and a histogram of durations with fixed
// logarithmic buckets: 20 per decade from 100 us to 100 s (each bucket's upper bound is
// 10^(1/20) = 1.122 times its lower one), plus one below 100 us and one above 100 s. Memory is
// fixed at about W x 0.5 KiB (150 KiB for 300 s) whatever the traffic, and recording is a few
// relaxed atomic additions with no lock, except once per second when the first request of a
// new second clears its slot under a mutex.
//
// Why buckets rather than a ring of raw durations: a ring that covers 300 s at a few thousand
// requests a second would need millions of entries, and one that does not cover the window
// silently shortens it under load. Buckets keep percentiles of every request at a bounded cost.
//
// Percentile error. Snapshot finds the bucket holding the nearest-rank percentile (the
// ceil(q * count)-th smallest duration) exactly, and reports the bucket's geometric midpoint,
// clamped to the smallest and largest duration seen in the window. Between 100 us and 100 s the
// reported value is therefore within a factor of sqrt(1.122) of the true one: at most 5.9% off
// (and exact for a window of one request, or of identical durations). Below 100 us the report
// is at most 100 us; above 100 s it is the largest duration of the window.
//
// Window. The window is the W whole seconds ending with the current one, so it spans between
// W - 1 and W seconds of the past. Time comes from the injected Clock (wall time): a clock
// stepped back leaves the seconds "in the future" out of snapshots until they are reused; a
// step of more than W seconds in either direction simply starts a fresh window.
//
// Thread-safety: Record and Snapshot are safe to call concurrently from any number of threads.
// A snapshot taken during recording may miss requests recorded meanwhile; its count, error
// count and percentiles come from the same slots and stay consistent within a request or two.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include <mann/core/clock.h>
#include <mann/server/router.h>

namespace mann::monitor {

// What the window saw. Percentiles are in seconds, 0 when count is 0.
struct WindowSnapshot {
  std::uint64_t count = 0;
  std::uint64_t errors = 0;
  double error_rate = 0.0;  // errors / count; 0 when count is 0
  double p50 = 0.0;
  double p95 = 0.0;
  double p99 = 0.0;
};

class RequestWindow {
 public:
  static constexpr double kLowestBoundSeconds = 1e-4;  // 100 us
  static constexpr int kBucketsPerDecade = 20;
  static constexpr int kDecades = 6;  // up to 100 s
  // Below the lowest bound, the decades, above the highest bound.
  static constexpr int kBuckets = kDecades * kBucketsPerDecade + 2;

  static constexpr std::chrono::seconds kDefaultWindow{300};
  static constexpr std::chrono::seconds kMaxWindow{3600};

  // `window` is clamped to 1 s .. kMaxWindow. The clock must outlive the window.
  explicit RequestWindow(const Clock& clock, std::chrono::seconds window = kDefaultWindow);
  ~RequestWindow();
  RequestWindow(const RequestWindow&) = delete;
  RequestWindow& operator=(const RequestWindow&) = delete;

  // Counts one request answered at the clock's current time after `duration`. A negative or NaN
  // duration counts as 0.
  void Record(std::chrono::duration<double> duration, bool error);

  // The requests of the window ending at `now` (default: the clock's time).
  WindowSnapshot Snapshot() const;
  WindowSnapshot Snapshot(TimestampMs now) const;

  std::chrono::seconds window() const { return std::chrono::seconds(slot_count_); }

  // The bucket a duration of `seconds` falls in (0 .. kBuckets - 1), and a bucket's bounds;
  // public for tests.
  static int BucketOf(double seconds);
  static double BucketLowerBound(int bucket);
  static double BucketUpperBound(int bucket);

 private:
  struct Slot;

  // Clears `slot` for `second` unless another thread already did.
  void Rotate(Slot& slot, std::int64_t second);

  const Clock& clock_;
  const std::int64_t slot_count_;
  std::unique_ptr<Slot[]> slots_;
  std::mutex rotate_mu_;  // serializes clearing a slot for a new second
};

struct RecordingOptions {
  // Routes (templates, as Request::route) left out of the window: the probes and scrapes that
  // arrive every few seconds, answer in microseconds and would hide real traffic's latency.
  std::vector<std::string> excluded_routes = {"/health", "/ready", "/metrics"};
};

// A middleware that times the rest of the chain (with the steady clock) and records each
// request in `window`, counting a status of 500 or above as an error; an exception thrown by a
// later stage counts as an error and is rethrown. Place it outermost, so the time of the other
// middleware is included. The window must outlive the router.
server::Middleware RecordingMiddleware(RequestWindow& window, RecordingOptions options = {});

}  // namespace mann::monitor
