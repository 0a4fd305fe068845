#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
#include <system_error>
#include <utility>

#include <fmt/format.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <mann/metrics/process_collector.h>
#include <mann/monitor/probes.h>

namespace mann::monitor {
namespace {

constexpr double kNaN = std::numeric_limits<double>::quiet_NaN();

// The whole of a (proc) file; procfs reports size 0, so read until end of file.
Result<std::string> ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return NotFoundError(fmt::format("cannot open {}", path));
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return DataLossError(fmt::format("cannot read {}", path));
  return text.str();
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) {
    s.remove_suffix(1);
  }
  return s;
}

// The text after "<key>:" on the line that starts with it, trimmed; std::nullopt when no line
// does.
std::optional<std::string_view> FieldOf(std::string_view text, std::string_view key) {
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t end = text.find('\n', pos);
    if (end == std::string_view::npos) end = text.size();
    std::string_view line = text.substr(pos, end - pos);
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ':') {
      return Trim(line.substr(key.size() + 1));
    }
    pos = end + 1;
  }
  return std::nullopt;
}

// A "<number> kB" field of /proc/meminfo or /proc/<pid>/status, in bytes.
Result<double> KilobyteField(std::string_view text, std::string_view key) {
  std::optional<std::string_view> value = FieldOf(text, key);
  if (!value) return InvalidArgumentError(fmt::format("no {} line", key));
  std::string_view number = *value;
  if (number.ends_with("kB")) number = Trim(number.substr(0, number.size() - 2));
  std::uint64_t kilobytes = 0;
  const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), kilobytes);
  if (ec != std::errc() || end != number.data() + number.size()) {
    return InvalidArgumentError(
        fmt::format("{} is '{}', expected a number of kB", key, std::string(*value)));
  }
  return static_cast<double>(kilobytes) * 1024.0;
}

// The file at `path` parsed by `parse`; a parse error is prefixed by the path.
template <typename Parse>
auto ReadParsed(const std::string& path, Parse parse) -> decltype(parse(std::string_view())) {
  MANN_ASSIGN_OR_RETURN(std::string text, ReadFile(path));
  auto parsed = parse(text);
  if (!parsed.ok()) return parsed.status().WithContext(path);
  return parsed;
}

}  // namespace

Result<double> ParseMaxOpenFiles(std::string_view limits_text) {
  // "Max open files            1024                 1048576              files"
  constexpr std::string_view kName = "Max open files";
  std::size_t pos = 0;
  while (pos < limits_text.size()) {
    std::size_t end = limits_text.find('\n', pos);
    if (end == std::string_view::npos) end = limits_text.size();
    std::string_view line = limits_text.substr(pos, end - pos);
    pos = end + 1;
    if (!line.starts_with(kName)) continue;

    std::string_view rest = Trim(line.substr(kName.size()));
    std::string_view soft = rest.substr(0, rest.find_first_of(" \t"));
    if (soft == "unlimited") return std::numeric_limits<double>::infinity();
    std::uint64_t limit = 0;
    const auto [stop, ec] = std::from_chars(soft.data(), soft.data() + soft.size(), limit);
    if (soft.empty() || ec != std::errc() || stop != soft.data() + soft.size()) {
      return InvalidArgumentError(fmt::format(
          "'Max open files' soft limit is '{}', expected a number or 'unlimited'", soft));
    }
    return static_cast<double>(limit);
  }
  return InvalidArgumentError("no 'Max open files' line");
}

Result<double> ParseMemoryUsedRatio(std::string_view meminfo_text) {
  MANN_ASSIGN_OR_RETURN(double total, KilobyteField(meminfo_text, "MemTotal"));
  MANN_ASSIGN_OR_RETURN(double available, KilobyteField(meminfo_text, "MemAvailable"));
  if (total <= 0) return InvalidArgumentError("MemTotal is 0");
  return std::clamp(1.0 - available / total, 0.0, 1.0);
}

Result<double> ParseResidentBytes(std::string_view status_text) {
  return KilobyteField(status_text, "VmRSS");
}

SystemProbe::SystemProbe(SystemProbeOptions options) : options_(std::move(options)) {
  if (options_.cpu_count <= 0) {
    options_.cpu_count = std::max(1, static_cast<int>(sysconf(_SC_NPROCESSORS_ONLN)));
  }
  if (options_.clock_ticks <= 0) {
    options_.clock_ticks = std::max(1L, sysconf(_SC_CLK_TCK));
  }
}

ProbeReading SystemProbe::Read(TimestampMs now) {
  ProbeReading reading;
  SystemSample& s = reading.sample;
  const std::string& root = options_.proc_root;
  auto fail = [&](std::string_view source, Status status, double& field) {
    field = kNaN;
    reading.errors.push_back({std::string(source), std::move(status)});
  };

  // CPU: the process's user + system time, as a share of the capacity elapsed since last time.
  if (Result<metrics::ProcStat> stat = ReadParsed(root + "/self/stat", metrics::ParseProcStat);
      !stat.ok()) {
    fail("cpu", stat.status(), s.cpu_percent);
  } else {
    s.cpu_percent = CpuPercent(now, static_cast<double>(stat->utime_ticks + stat->stime_ticks) /
                                        static_cast<double>(options_.clock_ticks));
  }

  // The fields that are one number parsed out of one file.
  struct FileField {
    std::string_view source;
    std::string path;
    Result<double> (*parse)(std::string_view);
    double* field;
  };
  const FileField file_fields[] = {
      {"resident_memory", root + "/self/status", ParseResidentBytes, &s.resident_bytes},
      {"system_memory", root + "/meminfo", ParseMemoryUsedRatio, &s.system_memory_used_ratio},
      {"max_fds", root + "/self/limits", ParseMaxOpenFiles, &s.max_fds},
  };
  for (const FileField& f : file_fields) {
    Result<double> value = ReadParsed(f.path, f.parse);
    if (value.ok()) {
      *f.field = *value;
    } else {
      fail(f.source, value.status(), *f.field);
    }
  }

  // Open file descriptors.
  {
    const std::string path = root + "/self/fd";
    std::error_code ec;
    std::filesystem::directory_iterator it(path, ec);
    std::size_t count = 0;
    for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) ++count;
    if (ec) {
      fail("open_fds", NotFoundError(fmt::format("cannot list {}: {}", path, ec.message())),
           s.open_fds);
    } else {
      s.open_fds = static_cast<double>(count);
    }
  }

  // The data directory's file system.
  if (options_.data_dir.empty()) {
    s.disk_used_ratio = kNaN;
  } else {
    struct statvfs fs {};
    if (statvfs(options_.data_dir.c_str(), &fs) != 0) {
      const std::error_code ec(errno, std::generic_category());
      fail("disk",
           UnavailableError(fmt::format("cannot statvfs {}: {}", options_.data_dir, ec.message())),
           s.disk_used_ratio);
    } else if (fs.f_blocks == 0) {
      fail("disk",
           FailedPreconditionError(
               fmt::format("statvfs {} reports a file system of 0 blocks", options_.data_dir)),
           s.disk_used_ratio);
    } else {
      s.disk_used_ratio = std::clamp(
          1.0 - static_cast<double>(fs.f_bavail) / static_cast<double>(fs.f_blocks), 0.0, 1.0);
    }
  }
  return reading;
}

double SystemProbe::CpuPercent(TimestampMs now, double cpu_seconds) {
  std::lock_guard lock(mu_);
  if (!last_cpu_) {
    last_cpu_percent_ = 0.0;
  } else if (now > last_cpu_->at) {
    const double wall = static_cast<double>(now - last_cpu_->at) / 1000.0;
    const double used = std::max(0.0, cpu_seconds - last_cpu_->cpu_seconds);
    last_cpu_percent_ = std::clamp(100.0 * used / (wall * options_.cpu_count), 0.0, 100.0);
  } else {
    return last_cpu_percent_;  // no time has passed: keep the mark, repeat the last figure
  }
  last_cpu_ = CpuMark{now, cpu_seconds};
  return last_cpu_percent_;
}

Result<SystemSample> SystemProbe::Sample(TimestampMs now) {
  ProbeReading reading = Read(now);
  if (!reading.errors.empty()) return reading.errors.front().status;
  return reading.sample;
}

}  // namespace mann::monitor
