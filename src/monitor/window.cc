#include <algorithm>
#include <array>
#include <atomic>
#include <cmath>
#include <exception>
#include <limits>
#include <utility>

#include <mann/monitor/window.h>

namespace mann::monitor {
namespace {

constexpr double kInfinity = std::numeric_limits<double>::infinity();

void AtomicMin(std::atomic<double>& a, double value) {
  double current = a.load(std::memory_order_relaxed);
  while (value < current && !a.compare_exchange_weak(current, value, std::memory_order_relaxed)) {
  }
}

void AtomicMax(std::atomic<double>& a, double value) {
  double current = a.load(std::memory_order_relaxed);
  while (value > current && !a.compare_exchange_weak(current, value, std::memory_order_relaxed)) {
  }
}

std::int64_t SecondOf(TimestampMs ms) {
  return ms >= 0 ? ms / 1000 : -((-ms + 999) / 1000);  // floor, also before the epoch
}

}  // namespace

// One second of the window. `second` is published (release) only after the counters are
// cleared, so a recorder that sees its own second (acquire) adds to clean counters.
struct RequestWindow::Slot {
  std::atomic<std::int64_t> second{std::numeric_limits<std::int64_t>::min()};
  std::atomic<std::uint32_t> errors{0};
  std::atomic<double> min_seconds{kInfinity};
  std::atomic<double> max_seconds{0.0};
  std::array<std::atomic<std::uint32_t>, kBuckets> buckets{};
};

RequestWindow::RequestWindow(const Clock& clock, std::chrono::seconds window)
    : clock_(clock),
      slot_count_(std::clamp<std::int64_t>(window.count(), 1, kMaxWindow.count())),
      slots_(std::make_unique<Slot[]>(static_cast<std::size_t>(slot_count_))) {}

RequestWindow::~RequestWindow() = default;

int RequestWindow::BucketOf(double seconds) {
  if (!(seconds >= kLowestBoundSeconds)) return 0;  // also NaN
  const double position = std::log10(seconds / kLowestBoundSeconds) * kBucketsPerDecade;
  if (!(position < kDecades * kBucketsPerDecade)) return kBuckets - 1;  // also +Inf
  return static_cast<int>(position) + 1;
}

double RequestWindow::BucketLowerBound(int bucket) {
  if (bucket <= 0) return 0.0;
  return kLowestBoundSeconds * std::pow(10.0, static_cast<double>(bucket - 1) / kBucketsPerDecade);
}

double RequestWindow::BucketUpperBound(int bucket) {
  if (bucket >= kBuckets - 1) return kInfinity;
  return kLowestBoundSeconds * std::pow(10.0, static_cast<double>(bucket) / kBucketsPerDecade);
}

void RequestWindow::Rotate(Slot& slot, std::int64_t second) {
  std::lock_guard lock(rotate_mu_);
  if (slot.second.load(std::memory_order_relaxed) == second) return;
  slot.errors.store(0, std::memory_order_relaxed);
  slot.min_seconds.store(kInfinity, std::memory_order_relaxed);
  slot.max_seconds.store(0.0, std::memory_order_relaxed);
  for (auto& bucket : slot.buckets) bucket.store(0, std::memory_order_relaxed);
  slot.second.store(second, std::memory_order_release);
}

void RequestWindow::Record(std::chrono::duration<double> duration, bool error) {
  double seconds = duration.count();
  if (!(seconds >= 0.0)) seconds = 0.0;
  const int bucket = BucketOf(seconds);

  const std::int64_t second = SecondOf(clock_.NowMs());
  const auto index = static_cast<std::size_t>(((second % slot_count_) + slot_count_) % slot_count_);
  Slot& slot = slots_[index];
  if (slot.second.load(std::memory_order_acquire) != second) Rotate(slot, second);

  slot.buckets[static_cast<std::size_t>(bucket)].fetch_add(1, std::memory_order_relaxed);
  if (error) slot.errors.fetch_add(1, std::memory_order_relaxed);
  AtomicMin(slot.min_seconds, seconds);
  AtomicMax(slot.max_seconds, seconds);
}

WindowSnapshot RequestWindow::Snapshot() const { return Snapshot(clock_.NowMs()); }

WindowSnapshot RequestWindow::Snapshot(TimestampMs now) const {
  // Merge the slots of the seconds (now - W, now].
  const std::int64_t newest = SecondOf(now);
  std::array<std::uint64_t, kBuckets> merged{};
  std::uint64_t errors = 0;
  double min_seconds = kInfinity;
  double max_seconds = 0.0;
  for (std::int64_t i = 0; i < slot_count_; ++i) {
    const Slot& slot = slots_[static_cast<std::size_t>(i)];
    const std::int64_t second = slot.second.load(std::memory_order_acquire);
    if (second > newest || second <= newest - slot_count_) continue;
    for (std::size_t b = 0; b < merged.size(); ++b) {
      merged[b] += slot.buckets[b].load(std::memory_order_relaxed);
    }
    errors += slot.errors.load(std::memory_order_relaxed);
    min_seconds = std::min(min_seconds, slot.min_seconds.load(std::memory_order_relaxed));
    max_seconds = std::max(max_seconds, slot.max_seconds.load(std::memory_order_relaxed));
  }

  WindowSnapshot snapshot;
  for (std::uint64_t n : merged) snapshot.count += n;
  if (snapshot.count == 0) return snapshot;
  // A recorder between its bucket and its error increment can make errors run ahead.
  snapshot.errors = std::min(errors, snapshot.count);
  snapshot.error_rate = static_cast<double>(snapshot.errors) / static_cast<double>(snapshot.count);

  // The nearest-rank percentile's bucket, reported as its geometric midpoint within the extremes.
  auto percentile = [&](double q) {
    const auto rank = static_cast<std::uint64_t>(
        std::max(1.0, std::ceil(q * static_cast<double>(snapshot.count))));
    std::uint64_t seen = 0;
    int bucket = kBuckets - 1;
    for (int b = 0; b < kBuckets; ++b) {
      seen += merged[static_cast<std::size_t>(b)];
      if (seen >= rank) {
        bucket = b;
        break;
      }
    }
    double estimate;
    if (bucket == 0) {
      estimate = kLowestBoundSeconds / 2;
    } else if (bucket == kBuckets - 1) {
      estimate = max_seconds;
    } else {
      estimate = std::sqrt(BucketLowerBound(bucket) * BucketUpperBound(bucket));
    }
    return std::clamp(estimate, std::min(min_seconds, max_seconds), max_seconds);
  };
  snapshot.p50 = percentile(0.50);
  snapshot.p95 = percentile(0.95);
  snapshot.p99 = percentile(0.99);
  return snapshot;
}

server::Middleware RecordingMiddleware(RequestWindow& window, RecordingOptions options) {
  return [&window, excluded = std::move(options.excluded_routes)](
             server::Request& request, const server::Next& next) -> server::Response {
    if (std::find(excluded.begin(), excluded.end(), request.route) != excluded.end()) {
      return next(request);
    }
    const auto start = std::chrono::steady_clock::now();
    auto elapsed = [&] { return std::chrono::steady_clock::now() - start; };
    try {
      server::Response response = next(request);
      window.Record(elapsed(), response.status >= 500);
      return response;
    } catch (...) {
      window.Record(elapsed(), true);  // the router answers it 500
      throw;
    }
  };
}

}  // namespace mann::monitor
