#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include <mann/core/log.h>
#include <mann/runtime/replica_follower.h>

namespace mann::runtime {
namespace {

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace

struct ReplicaFollower::Impl {
  Impl(store::Store& s, MemoryBank& b, std::int64_t start, FollowerOptions o)
      : store(s), bank(b), options(std::move(o)), last(start), log(log::Get("replica")) {}

  store::Store& store;
  MemoryBank& bank;
  const FollowerOptions options;
  std::atomic<std::int64_t> last;
  std::atomic<std::uint64_t> applied{0}, failures{0};
  std::shared_ptr<spdlog::logger> log;

  metrics::Counter* applied_metric = nullptr;
  metrics::Counter* errors_metric = nullptr;
  metrics::Counter* reloads_metric = nullptr;
  metrics::Gauge* lag_metric = nullptr;

  std::mutex hook_mu;
  std::function<void(const std::string&)> on_applied;  // guarded by hook_mu

  mutable std::mutex mu;
  mutable std::condition_variable cv;  // wakes the backoff sleep and WaitForSeq()
  bool stopping = false;               // guarded by mu
  std::thread thread;

  Status RegisterMetrics() {
    if (options.registry == nullptr) return Status::Ok();
    metrics::Registry& r = *options.registry;
    MANN_ASSIGN_OR_RETURN(auto* applied_family,
                          r.AddCounter("mann_replica_changes_applied_total",
                                       "Changes read from the shared change log and applied "
                                       "to memory (this replica's own come back as no-ops)."));
    applied_metric = &applied_family->WithLabels();
    MANN_ASSIGN_OR_RETURN(auto* errors_family,
                          r.AddCounter("mann_replica_errors_total",
                                       "Failed rounds of replica catch-up (each is retried)."));
    errors_metric = &errors_family->WithLabels();
    MANN_ASSIGN_OR_RETURN(auto* reloads_family,
                          r.AddCounter("mann_replica_reloads_total",
                                       "Full reloads of memory from the shared store."));
    reloads_metric = &reloads_family->WithLabels();
    MANN_ASSIGN_OR_RETURN(auto* lag_family,
                          r.AddGauge("mann_replica_lag_seconds",
                                     "Age of the newest change when this replica applied it "
                                     "(0 once caught up); by the database's clock."));
    lag_metric = &lag_family->WithLabels();
    return Status::Ok();
  }

  void Notify(const std::string& ns) {
    std::lock_guard lock(hook_mu);
    if (on_applied) on_applied(ns);
  }

  // Reads the seq first, then reloads: a change committed meanwhile is applied again later.
  Status ReloadAll() {
    MANN_ASSIGN_OR_RETURN(std::int64_t seq, store.LastChangeSeq());
    MANN_RETURN_IF_ERROR(bank.Reload());
    Advance(seq);
    if (reloads_metric != nullptr) reloads_metric->Inc();
    Notify("");
    return Status::Ok();
  }

  void Advance(std::int64_t seq) {
    {
      std::lock_guard lock(mu);
      last.store(seq);
    }
    cv.notify_all();
  }

  // Applies everything logged after `last`, in batches, then returns.
  Status CatchUp() {
    if (bank.NeedsReload()) MANN_RETURN_IF_ERROR(ReloadAll());
    for (;;) {
      Result<std::vector<store::Change>> read = store.ChangesSince(last.load(), options.batch);
      if (!read.ok() && read.status().code() == StatusCode::kFailedPrecondition) {
        log->warn("change log pruned past this replica's position seq={}; reloading memory: {}",
                  last.load(), read.status().message());
        return ReloadAll();
      }
      MANN_RETURN_IF_ERROR(read.status());
      std::vector<store::Change> changes = std::move(read).value();
      if (changes.empty()) {
        if (lag_metric != nullptr) lag_metric->Set(0);
        return Status::Ok();
      }
      const std::size_t count = changes.size();
      const std::int64_t newest = changes.back().seq;
      const TimestampMs newest_at = changes.back().at_ms;
      MANN_ASSIGN_OR_RETURN(std::vector<std::string> touched,
                            bank.ApplyReplicated(std::move(changes)));
      Advance(newest);
      applied.fetch_add(count);
      if (applied_metric != nullptr) applied_metric->Inc(static_cast<double>(count));
      if (lag_metric != nullptr) {
        lag_metric->Set(std::max(0.0, NowSeconds() - static_cast<double>(newest_at) / 1000.0));
      }
      for (const std::string& ns : touched) Notify(ns);
      if (count < options.batch) return Status::Ok();
    }
  }

  // Sleeps `d` unless stopped first; false when stopping.
  bool SleepFor(std::chrono::milliseconds d) {
    std::unique_lock lock(mu);
    return !cv.wait_for(lock, d, [this] { return stopping; });
  }

  bool Stopping() {
    std::lock_guard lock(mu);
    return stopping;
  }

  void Loop() {
    auto backoff = options.initial_backoff;
    bool failing = false;
    while (!Stopping()) {
      Status round = CatchUp();
      if (round.ok()) round = store.WaitForChanges(options.poll_interval);
      if (round.ok()) {
        if (failing) log->info("replica catch-up resumed seq={}", last.load());
        failing = false;
        backoff = options.initial_backoff;
        continue;
      }

      // One warning per outage; the retries in between are debug noise.
      failures.fetch_add(1);
      if (errors_metric != nullptr) errors_metric->Inc();
      if (!failing) {
        log->warn("replica catch-up failed seq={}; retrying with backoff up to {} ms: {}",
                  last.load(), options.max_backoff.count(), round.ToString());
      } else {
        log->debug("replica catch-up still failing seq={}: {}", last.load(), round.ToString());
      }
      failing = true;
      if (!SleepFor(backoff)) return;
      backoff = std::min(options.max_backoff, backoff * 2);
    }
  }
};

ReplicaFollower::ReplicaFollower(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

ReplicaFollower::~ReplicaFollower() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->cv.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

Result<std::unique_ptr<ReplicaFollower>> ReplicaFollower::Start(store::Store& store,
                                                                MemoryBank& bank,
                                                                std::int64_t start_seq,
                                                                FollowerOptions options) {
  if (options.batch == 0) return InvalidArgumentError("follower batch must be at least 1");
  if (options.poll_interval.count() <= 0 || options.initial_backoff.count() <= 0 ||
      options.max_backoff < options.initial_backoff) {
    return InvalidArgumentError(
        "follower poll_interval and initial_backoff must be positive, max_backoff >= "
        "initial_backoff");
  }
  auto impl = std::make_unique<Impl>(store, bank, start_seq, std::move(options));
  MANN_RETURN_IF_ERROR(impl->RegisterMetrics());
  impl->thread = std::thread([raw = impl.get()] { raw->Loop(); });
  impl->log->info("following the change log store={} after_seq={}", store.Describe(), start_seq);
  return std::unique_ptr<ReplicaFollower>(new ReplicaFollower(std::move(impl)));
}

void ReplicaFollower::SetOnApplied(std::function<void(const std::string& ns)> on_applied) {
  std::lock_guard lock(impl_->hook_mu);
  impl_->on_applied = std::move(on_applied);
}

std::int64_t ReplicaFollower::last_seq() const { return impl_->last.load(); }
std::uint64_t ReplicaFollower::changes_applied() const { return impl_->applied.load(); }
std::uint64_t ReplicaFollower::errors() const { return impl_->failures.load(); }

bool ReplicaFollower::WaitForSeq(std::int64_t seq, std::chrono::milliseconds timeout) const {
  std::unique_lock lock(impl_->mu);
  return impl_->cv.wait_for(lock, timeout, [&] { return impl_->last.load() >= seq; });
}

ScopedOnApplied::ScopedOnApplied(ReplicaFollower* follower,
                                 std::function<void(const std::string& ns)> hook)
    : follower_(follower) {
  if (follower_ != nullptr) follower_->SetOnApplied(std::move(hook));
}

// SetOnApplied() takes the hook's mutex, so once this returns no call of the hook is running.
ScopedOnApplied::~ScopedOnApplied() {
  if (follower_ != nullptr) follower_->SetOnApplied(nullptr);
}

}  // namespace mann::runtime
