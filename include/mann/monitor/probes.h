// SystemProbe: one reading of the process's and the machine's resources, for the monitor's
// alert rules and health checks.
//
//   monitor::SystemProbe probe({.data_dir = "/var/lib/mann"});
//   monitor::ProbeReading reading = probe.Read(clock.NowMs());
//   for (const monitor::ProbeError& e : reading.errors) log->warn(...);
//   double disk = reading.sample.disk_used_ratio;  // NaN when it could not be measured
//
// Sources (proc(5), statvfs(3)):
//   cpu_percent               /proc/self/stat utime + stime, between two readings
//   resident_bytes            /proc/self/status VmRSS
//   system_memory_used_ratio  /proc/meminfo: 1 - MemAvailable / MemTotal
//   open_fds                  entries of /proc/self/fd (the one listing it included)
//   max_fds                   /proc/self/limits "Max open files", soft limit (+Inf: unlimited)
//   disk_used_ratio           statvfs(data_dir): 1 - f_bavail / f_blocks, so blocks reserved for
//                             root count as used, as they are for this unprivileged service
//
// Errors: each source is read on its own; one that cannot be read or parsed leaves its fields
// NaN and adds a ProbeError whose status names the file (or directory) and what was wrong, so
// one broken source never hides the others.
//
// Thread-safety: Read and Sample may be called from any thread, but the CPU percentage is
// measured between consecutive calls by anyone, so one owner (the Monitor) should do the
// reading and share the sample.
#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/clock.h>
#include <mann/core/status.h>

namespace mann::monitor {

// A field is NaN when its source could not be read (see ProbeReading::errors), and
// disk_used_ratio is NaN when no data directory was given.
struct SystemSample {
  // CPU time the process used (user + system) between the previous reading and this one, over
  // the wall time between them times the number of cores: a percentage of the machine's whole
  // capacity, 0..100. 50 on a 2-core machine is one core kept busy. The first reading has no
  // predecessor and reports 0.
  double cpu_percent = 0.0;
  double resident_bytes = 0.0;            // resident set size of the process
  double system_memory_used_ratio = 0.0;  // 0..1, memory not available to new allocations
  double disk_used_ratio = 0.0;           // 0..1, of the file system holding the data directory
  double open_fds = 0.0;
  double max_fds = 0.0;  // soft RLIMIT_NOFILE; +Inf when unlimited
};

// Which source failed, and why.
struct ProbeError {
  // "cpu", "resident_memory", "system_memory", "open_fds", "max_fds" or "disk": a fixed set, so
  // it may be used as a metric label or a rate-limiting key.
  std::string source;
  Status status;  // names the file or directory
};

struct ProbeReading {
  SystemSample sample;
  std::vector<ProbeError> errors;  // empty when every source was read
};

struct SystemProbeOptions {
  // Where procfs is mounted; tests point it at a tree of their own.
  std::string proc_root = "/proc";
  // The directory whose file system's usage disk_used_ratio reports; empty: not measured.
  std::string data_dir;
  // Cores the CPU percentage is measured against; 0: the cores online
  // (sysconf(_SC_NPROCESSORS_ONLN)). A container limited by a CPU quota sees every core of the
  // host there; set the quota here to get percentages of what the service may actually use.
  int cpu_count = 0;
  // Clock ticks per second of /proc/self/stat; 0: sysconf(_SC_CLK_TCK).
  long clock_ticks = 0;
};

class SystemProbe {
 public:
  explicit SystemProbe(SystemProbeOptions options = {});

  // Reads every source; `now` (the monitor's clock) times the CPU measurement. A `now` not later
  // than the previous reading's repeats the previous CPU percentage rather than divide by zero.
  ProbeReading Read(TimestampMs now);

  // All or nothing: the sample when every source could be read, else the first error.
  Result<SystemSample> Sample(TimestampMs now);

  const SystemProbeOptions& options() const { return options_; }

 private:
  // The CPU percentage since the previous mark, given the process's CPU time now.
  double CpuPercent(TimestampMs now, double cpu_seconds);

  struct CpuMark {
    TimestampMs at;
    double cpu_seconds;
  };

  SystemProbeOptions options_;
  std::mutex mu_;
  std::optional<CpuMark> last_cpu_;  // guarded by mu_
  double last_cpu_percent_ = 0.0;    // guarded by mu_
};

// Parsers of the files above, public for tests. Each returns InvalidArgument saying which
// field is missing or malformed; the caller adds the file's path.

// The soft "Max open files" limit of a /proc/<pid>/limits text; +Inf for "unlimited".
Result<double> ParseMaxOpenFiles(std::string_view limits_text);
// 1 - MemAvailable / MemTotal of a /proc/meminfo text.
Result<double> ParseMemoryUsedRatio(std::string_view meminfo_text);
// VmRSS of a /proc/<pid>/status text, in bytes.
Result<double> ParseResidentBytes(std::string_view status_text);

}  // namespace mann::monitor
