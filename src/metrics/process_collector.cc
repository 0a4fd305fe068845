#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <sys/resource.h>
#include <unistd.h>

#include <mann/core/log.h>
#include <mann/metrics/process_collector.h>

namespace mann::metrics {
namespace {

std::shared_ptr<spdlog::logger> Log() {
  static const std::shared_ptr<spdlog::logger> logger = log::Get("metrics");
  return logger;
}

// The whole of a (proc) file; procfs reports size 0, so read until end of file.
Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(fmt::format("cannot open {}", path));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return DataLossError(fmt::format("cannot read {}", path));
  return text.str();
}

template <typename T>
bool ParseNumber(std::string_view word, T& out) {
  const auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), out);
  return ec == std::errc() && end == word.data() + word.size();
}

// The value, or nothing (the metric is left out of this scrape) with the reason logged.
std::optional<double> OrSkip(std::string_view metric, Result<double> value) {
  if (value.ok()) return *value;
  Log()->debug("process metric skipped metric={} error={}", metric, value.status().ToString());
  return std::nullopt;
}

class ProcReader {
 public:
  explicit ProcReader(std::string root) : root_(std::move(root)) {}

  Result<ProcStat> SelfStat() const {
    const std::string path = root_ + "/self/stat";
    MANN_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    Result<ProcStat> stat = ParseProcStat(text);
    if (!stat.ok()) return stat.status().WithContext(path);
    return stat;
  }

  Result<double> CpuSeconds() const {
    MANN_ASSIGN_OR_RETURN(ProcStat stat, SelfStat());
    return static_cast<double>(stat.utime_ticks + stat.stime_ticks) / ClockTicks();
  }

  Result<double> ResidentBytes() const {
    MANN_ASSIGN_OR_RETURN(ProcStat stat, SelfStat());
    return static_cast<double>(stat.rss_pages) * static_cast<double>(sysconf(_SC_PAGESIZE));
  }

  Result<double> VirtualBytes() const {
    MANN_ASSIGN_OR_RETURN(ProcStat stat, SelfStat());
    return static_cast<double>(stat.vsize_bytes);
  }

  Result<double> StartTimeSeconds() const {
    const std::string path = root_ + "/stat";
    MANN_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
    Result<std::int64_t> boot = ParseBootTime(text);
    if (!boot.ok()) return boot.status().WithContext(path);
    MANN_ASSIGN_OR_RETURN(ProcStat stat, SelfStat());
    return static_cast<double>(*boot) + static_cast<double>(stat.starttime_ticks) / ClockTicks();
  }

  Result<double> OpenFds() const {
    const std::string path = root_ + "/self/fd";
    std::error_code ec;
    std::filesystem::directory_iterator it(path, ec);
    std::size_t count = 0;
    for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) ++count;
    if (ec) return NotFoundError(fmt::format("cannot list {}: {}", path, ec.message()));
    return static_cast<double>(count);
  }

 private:
  static double ClockTicks() { return static_cast<double>(sysconf(_SC_CLK_TCK)); }

  std::string root_;
};

Result<double> MaxFds() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    return InternalError(fmt::format("getrlimit(RLIMIT_NOFILE) failed: {}",
                                     std::error_code(errno, std::generic_category()).message()));
  }
  if (limit.rlim_cur == RLIM_INFINITY) return INFINITY;
  return static_cast<double>(limit.rlim_cur);
}

}  // namespace

Result<ProcStat> ParseProcStat(std::string_view text) {
  const std::size_t close = text.rfind(')');
  if (close == std::string_view::npos) {
    return InvalidArgumentError("process stat has no ')' closing the command name");
  }
  // Field 3 (state) is the first word after the command name.
  std::vector<std::string_view> fields;
  std::size_t pos = close + 1;
  while (pos < text.size()) {
    while (pos < text.size() && (text[pos] == ' ' || text[pos] == '\n')) ++pos;
    const std::size_t end = text.find_first_of(" \n", pos);
    const std::size_t stop = end == std::string_view::npos ? text.size() : end;
    if (stop > pos) fields.push_back(text.substr(pos, stop - pos));
    pos = stop;
  }
  // fields[0] is field 3 of proc(5), so field n is fields[n - 3].
  constexpr std::size_t kLastField = 24;
  if (fields.size() < kLastField - 2) {
    return InvalidArgumentError(
        fmt::format("process stat has {} fields after the command name, expected at least {}",
                    fields.size(), kLastField - 2));
  }
  ProcStat stat;
  const std::pair<std::size_t, std::uint64_t*> unsigned_fields[] = {
      {14, &stat.utime_ticks},
      {15, &stat.stime_ticks},
      {22, &stat.starttime_ticks},
      {23, &stat.vsize_bytes},
  };
  for (const auto& [field, out] : unsigned_fields) {
    if (!ParseNumber(fields[field - 3], *out)) {
      return InvalidArgumentError(fmt::format("process stat field {} is '{}', expected a number",
                                              field, fields[field - 3]));
    }
  }
  if (!ParseNumber(fields[24 - 3], stat.rss_pages)) {
    return InvalidArgumentError(
        fmt::format("process stat field 24 is '{}', expected a number", fields[24 - 3]));
  }
  return stat;
}

Result<std::int64_t> ParseBootTime(std::string_view text) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (line.starts_with("btime ")) {
      std::int64_t seconds = 0;
      std::string_view value = line.substr(6);
      while (!value.empty() && value.back() == ' ') value.remove_suffix(1);
      if (!ParseNumber(value, seconds)) {
        return InvalidArgumentError(fmt::format("btime is '{}', expected a number", value));
      }
      return seconds;
    }
    pos = end + 1;
  }
  return InvalidArgumentError("no btime line");
}

Result<ProcessCollector> ProcessCollector::Register(Registry& registry,
                                                    ProcessCollectorOptions options) {
  auto proc = std::make_shared<const ProcReader>(std::move(options.proc_root));
  ProcessCollector collector;

  // Each metric reads its file afresh: a scrape sees current values, and one unreadable file
  // leaves out only the metrics that depend on it.
  struct Spec {
    std::string_view name;
    std::string_view help;
    bool counter;
    std::function<Result<double>()> read;
  };
  const Spec specs[] = {
      {"process_cpu_seconds_total", "User and system CPU time the process has used, in seconds.",
       true, [proc] { return proc->CpuSeconds(); }},
      {"process_resident_memory_bytes", "Resident set size of the process, in bytes.", false,
       [proc] { return proc->ResidentBytes(); }},
      {"process_virtual_memory_bytes", "Virtual memory size of the process, in bytes.", false,
       [proc] { return proc->VirtualBytes(); }},
      {"process_start_time_seconds", "When the process started, in seconds since the Unix epoch.",
       false, [proc] { return proc->StartTimeSeconds(); }},
      {"process_open_fds", "File descriptors the process has open.", false,
       [proc] { return proc->OpenFds(); }},
      {"process_max_fds", "Soft limit on open file descriptors (RLIMIT_NOFILE).", false,
       [] { return MaxFds(); }},
  };
  for (const Spec& spec : specs) {
    ValueCallback callback = [name = spec.name, read = spec.read] { return OrSkip(name, read()); };
    Result<CallbackHandle> handle =
        spec.counter ? registry.AddCounterCallback(spec.name, spec.help, std::move(callback))
                     : registry.AddGaugeCallback(spec.name, spec.help, std::move(callback));
    if (!handle.ok()) return handle.status();
    collector.handles_.push_back(std::move(handle).value());
  }
  return collector;
}

}  // namespace mann::metrics
