#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <mann/metrics/process_collector.h>
#include <mann/metrics/registry.h>

#include "../core/testing_temp_dir.h"

namespace mann::metrics {
namespace {

namespace fs = std::filesystem;
using ::testing::HasSubstr;

// Sample lines of an exposition by series (name and labels), values parsed.
std::map<std::string, double> Samples(const std::string& exposition) {
  std::map<std::string, double> samples;
  std::istringstream lines(exposition);
  for (std::string line; std::getline(lines, line);) {
    if (line.empty() || line[0] == '#') continue;
    const std::size_t space = line.rfind(' ');
    samples[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return samples;
}

double NowSeconds() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// A /proc/self/stat line in the kernel's layout: pid, (comm), then fields 3 to 52.
std::string StatLine(const std::string& comm, const std::string& utime, const std::string& stime,
                     const std::string& starttime, const std::string& vsize,
                     const std::string& rss) {
  std::vector<std::string> fields(53, "0");
  fields[1] = "4242";
  fields[2] = "(" + comm + ")";
  fields[3] = "S";
  fields[14] = utime;
  fields[15] = stime;
  fields[22] = starttime;
  fields[23] = vsize;
  fields[24] = rss;
  std::string line;
  for (std::size_t i = 1; i < fields.size(); ++i) line += (i > 1 ? " " : "") + fields[i];
  return line + "\n";
}

TEST(ProcessCollector, ParsesStatWithAwkwardCommandName) {
  const auto stat = ParseProcStat(StatLine("my prog) (x", "150", "50", "500", "123456789", "1000"));
  ASSERT_TRUE(stat.ok()) << stat.status().ToString();
  EXPECT_EQ(stat->utime_ticks, 150u);
  EXPECT_EQ(stat->stime_ticks, 50u);
  EXPECT_EQ(stat->starttime_ticks, 500u);
  EXPECT_EQ(stat->vsize_bytes, 123456789u);
  EXPECT_EQ(stat->rss_pages, 1000);
}

TEST(ProcessCollector, RejectsBrokenStat) {
  EXPECT_THAT(ParseProcStat("4242 no parenthesis 1 2 3").status().message(), HasSubstr("no ')'"));
  EXPECT_THAT(ParseProcStat("4242 (short) S 1 2 3\n").status().message(),
              HasSubstr("fields after the command name"));
  EXPECT_THAT(ParseProcStat(StatLine("x", "15o", "0", "0", "0", "0")).status().message(),
              HasSubstr("field 14 is '15o'"));
  EXPECT_THAT(ParseProcStat(StatLine("x", "1", "1", "1", "1", "-")).status().message(),
              HasSubstr("field 24 is '-'"));
}

TEST(ProcessCollector, ParsesBootTime) {
  EXPECT_EQ(ParseBootTime("cpu  1 2 3\nintr 5\nbtime 1700000000\nprocesses 9\n").value(),
            1700000000);
  EXPECT_THAT(ParseBootTime("cpu 1 2 3\n").status().message(), HasSubstr("no btime"));
  EXPECT_THAT(ParseBootTime("btime soon\n").status().message(), HasSubstr("'soon'"));
}

TEST(ProcessCollector, ComputesValuesFromProcFiles) {
  testing::TempDir proc("mann-proc");
  proc.Write("self/stat", StatLine("mann", "150", "50", "500", "123456789", "1000"));
  proc.Write("stat", "cpu  1 2 3 4\nbtime 1700000000\n");
  for (const char* fd : {"0", "1", "2"}) proc.Write(std::string("self/fd/") + fd, "");

  Registry registry;
  ProcessCollector collector =
      ProcessCollector::Register(registry, {.proc_root = proc.path().string()}).value();
  const auto samples = Samples(registry.Render());

  const double ticks = static_cast<double>(sysconf(_SC_CLK_TCK));
  const double page = static_cast<double>(sysconf(_SC_PAGESIZE));
  EXPECT_DOUBLE_EQ(samples.at("process_cpu_seconds_total"), 200 / ticks);
  EXPECT_EQ(samples.at("process_resident_memory_bytes"), 1000 * page);
  EXPECT_EQ(samples.at("process_virtual_memory_bytes"), 123456789);
  EXPECT_DOUBLE_EQ(samples.at("process_start_time_seconds"), 1700000000 + 500 / ticks);
  EXPECT_EQ(samples.at("process_open_fds"), 3);
  EXPECT_GT(samples.at("process_max_fds"), 0);
}

TEST(ProcessCollector, UnreadableFilesLeaveTheirMetricsOut) {
  testing::TempDir proc("mann-proc");
  proc.Write("self/stat", "garbage without the command name\n");  // no /proc/stat, no fd dir

  Registry registry;
  ProcessCollector collector =
      ProcessCollector::Register(registry, {.proc_root = proc.path().string()}).value();
  const std::string text = registry.Render();
  const auto samples = Samples(text);
  EXPECT_EQ(samples.size(), 1u) << text;
  EXPECT_EQ(samples.count("process_max_fds"), 1u) << text;
  // The families are still declared.
  EXPECT_THAT(text, HasSubstr("# TYPE process_open_fds gauge\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE process_cpu_seconds_total counter\n"));
}

TEST(ProcessCollector, RealProcessValuesArePlausible) {
  Registry registry;
  ProcessCollector collector = ProcessCollector::Register(registry).value();
  auto samples = Samples(registry.Render());
  for (const char* name : {"process_cpu_seconds_total", "process_resident_memory_bytes",
                           "process_virtual_memory_bytes", "process_start_time_seconds",
                           "process_open_fds", "process_max_fds"}) {
    ASSERT_EQ(samples.count(name), 1u) << name;
  }
  EXPECT_GT(samples["process_resident_memory_bytes"], 0);
  EXPECT_GE(samples["process_virtual_memory_bytes"], samples["process_resident_memory_bytes"]);
  EXPECT_GE(samples["process_open_fds"], 3);  // stdin, stdout, stderr
  EXPECT_GE(samples["process_max_fds"], samples["process_open_fds"]);
  EXPECT_GE(samples["process_cpu_seconds_total"], 0);
  // btime has whole-second resolution and the wall clock may have been stepped since boot, so
  // allow two seconds either way of "started before now".
  const double now = NowSeconds();
  EXPECT_LE(samples["process_start_time_seconds"], now + 2);
  EXPECT_GE(samples["process_start_time_seconds"], now - 24 * 3600);
}

TEST(ProcessCollector, OpenFdsAndCpuTimeFollowTheProcess) {
  Registry registry;
  ProcessCollector collector = ProcessCollector::Register(registry).value();
  const auto before = Samples(registry.Render());

  std::vector<int> fds;
  for (int i = 0; i < 10; ++i) fds.push_back(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  const auto opened = Samples(registry.Render());
  for (int fd : fds) ::close(fd);
  EXPECT_EQ(opened.at("process_open_fds"), before.at("process_open_fds") + 10);

  // Burn CPU until the counter moves (it ticks every 1/CLK_TCK s), for at most 5 s.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(5);
  volatile double sink = 0;
  double cpu = before.at("process_cpu_seconds_total");
  while (cpu <= before.at("process_cpu_seconds_total") &&
         std::chrono::steady_clock::now() < deadline) {
    for (int i = 0; i < 1'000'000; ++i) sink = sink + i;
    cpu = Samples(registry.Render()).at("process_cpu_seconds_total");
  }
  EXPECT_GT(cpu, before.at("process_cpu_seconds_total"));
}

TEST(ProcessCollector, SecondCollectorDoesNotDuplicateSeries) {
  Registry registry;
  ProcessCollector first = ProcessCollector::Register(registry).value();
  ProcessCollector second = ProcessCollector::Register(registry).value();
  const std::string text = registry.Render();
  std::size_t count = 0;
  for (std::size_t pos = text.find("\nprocess_open_fds "); pos != std::string::npos;
       pos = text.find("\nprocess_open_fds ", pos + 1)) {
    ++count;
  }
  EXPECT_EQ(count, 1u) << text;
}

TEST(ProcessCollector, ConflictingRegistrationFails) {
  Registry registry;
  ASSERT_TRUE(registry.AddGauge("process_open_fds", "Something else.").ok());
  auto collector = ProcessCollector::Register(registry);
  EXPECT_EQ(collector.status().code(), StatusCode::kAlreadyExists);
  EXPECT_THAT(collector.status().message(), HasSubstr("process_open_fds"));
}

TEST(ProcessCollector, MetricsLeaveWithTheCollector) {
  Registry registry;
  {
    ProcessCollector collector = ProcessCollector::Register(registry).value();
    EXPECT_EQ(Samples(registry.Render()).size(), 6u);
  }
  EXPECT_EQ(Samples(registry.Render()).size(), 0u);
}

}  // namespace
}  // namespace mann::metrics
