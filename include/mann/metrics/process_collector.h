// ProcessCollector: the standard process_* metrics, read from /proc at scrape time.
//
//   process_cpu_seconds_total       user + system CPU time (/proc/self/stat utime + stime)
//   process_resident_memory_bytes   resident set size (/proc/self/stat rss, in pages)
//   process_virtual_memory_bytes    virtual memory size (/proc/self/stat vsize)
//   process_start_time_seconds      start time since the Unix epoch (/proc/stat btime plus
//                                   /proc/self/stat starttime)
//   process_open_fds                entries in /proc/self/fd
//   process_max_fds                 the RLIMIT_NOFILE soft limit (+Inf when unlimited)
//
// These are the names and meanings every Prometheus client library uses, so dashboards and alert
// rules written for other services work unchanged.
//
// Errors: a file that cannot be read or parsed leaves its metrics out of that scrape and is logged
// at debug level; nothing throws and a scrape never fails because of /proc.
//
// Thread-safety: the callbacks may run concurrently. The collector's metrics stay registered
// while it lives; destroy it before its registry.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/status.h>
#include <mann/metrics/registry.h>

namespace mann::metrics {

struct ProcessCollectorOptions {
  // Where procfs is mounted; tests point it at a directory of their own.
  std::string proc_root = "/proc";
};

// The fields of /proc/<pid>/stat that the collector uses (see proc(5)).
struct ProcStat {
  std::uint64_t utime_ticks = 0;      // field 14
  std::uint64_t stime_ticks = 0;      // field 15
  std::uint64_t starttime_ticks = 0;  // field 22, since boot
  std::uint64_t vsize_bytes = 0;      // field 23
  std::int64_t rss_pages = 0;         // field 24
};

// Parses the text of /proc/<pid>/stat. The command name (field 2) may contain spaces and
// parentheses, so fields are counted from its last ')'. InvalidArgument when fields are missing.
Result<ProcStat> ParseProcStat(std::string_view text);

// The `btime` line of /proc/stat: boot time in seconds since the Unix epoch. InvalidArgument when
// there is none.
Result<std::int64_t> ParseBootTime(std::string_view text);

class ProcessCollector {
 public:
  // Registers the process metrics in `registry`. Errors: AlreadyExists when one of the names is
  // registered with another shape.
  static Result<ProcessCollector> Register(Registry& registry,
                                           ProcessCollectorOptions options = {});

  ProcessCollector(ProcessCollector&&) = default;
  ProcessCollector& operator=(ProcessCollector&&) = default;

 private:
  ProcessCollector() = default;

  std::vector<CallbackHandle> handles_;
};

}  // namespace mann::metrics
