#include <cmath>
#include <limits>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/statvfs.h>

#include <mann/monitor/probes.h>

#include "fake_proc_testing.h"

namespace mann::monitor {
namespace {

using testing::FakeProc;
using ::testing::HasSubstr;

constexpr TimestampMs kT0 = 1'764'720'000'000;

SystemProbeOptions OptionsFor(const FakeProc& proc) {
  return {
      .proc_root = proc.root(), .data_dir = proc.data_dir(), .cpu_count = 2, .clock_ticks = 100};
}

TEST(ProbeSystem, ReadsEveryFieldFromAFakeTree) {
  FakeProc proc;
  SystemProbe probe(OptionsFor(proc));
  const ProbeReading reading = probe.Read(kT0);
  ASSERT_TRUE(reading.errors.empty()) << reading.errors.front().status.ToString();
  const SystemSample& s = reading.sample;
  EXPECT_EQ(s.cpu_percent, 0.0);  // no earlier reading to measure against
  EXPECT_EQ(s.resident_bytes, 2048.0 * 1024);
  EXPECT_DOUBLE_EQ(s.system_memory_used_ratio, 0.75);
  EXPECT_EQ(s.open_fds, 4.0);
  EXPECT_EQ(s.max_fds, 1024.0);

  struct statvfs fs {};
  ASSERT_EQ(statvfs(proc.data_dir().c_str(), &fs), 0);
  const double expected = 1.0 - static_cast<double>(fs.f_bavail) / static_cast<double>(fs.f_blocks);
  EXPECT_NEAR(s.disk_used_ratio, expected, 0.01);  // other tests may write meanwhile
  EXPECT_GE(s.disk_used_ratio, 0.0);
  EXPECT_LE(s.disk_used_ratio, 1.0);
}

TEST(ProbeSystem, CpuPercentIsProcessTimeOverWallTimeTimesCores) {
  FakeProc proc;
  SystemProbe probe(OptionsFor(proc));  // 2 cores, 100 ticks a second
  ASSERT_EQ(probe.Read(kT0).sample.cpu_percent, 0.0);

  // 100 ticks (1 s of CPU) in 1 s of wall time on 2 cores: half the machine.
  proc.WriteStat(180, 70);
  EXPECT_DOUBLE_EQ(probe.Read(kT0 + 1000).sample.cpu_percent, 50.0);
  // No time passed: the last figure again, and the mark stays where it was.
  EXPECT_DOUBLE_EQ(probe.Read(kT0 + 1000).sample.cpu_percent, 50.0);
  // 2 s without CPU.
  EXPECT_DOUBLE_EQ(probe.Read(kT0 + 3000).sample.cpu_percent, 0.0);
  // 50 ticks in 2 s: a quarter of one core, 12.5% of two.
  proc.WriteStat(210, 90);
  EXPECT_DOUBLE_EQ(probe.Read(kT0 + 5000).sample.cpu_percent, 12.5);
  // More CPU than the machine has (a wrong core count) is clamped to 100.
  proc.WriteStat(1210, 90);
  EXPECT_DOUBLE_EQ(probe.Read(kT0 + 6000).sample.cpu_percent, 100.0);
}

TEST(ProbeSystem, UnlimitedDescriptorsAndNoDataDirectory) {
  FakeProc proc;
  proc.WriteLimits("unlimited");
  SystemProbe probe({.proc_root = proc.root(), .data_dir = ""});
  const ProbeReading reading = probe.Read(kT0);
  EXPECT_TRUE(reading.errors.empty());
  EXPECT_EQ(reading.sample.max_fds, std::numeric_limits<double>::infinity());
  EXPECT_TRUE(std::isnan(reading.sample.disk_used_ratio));  // not measured, not an error
}

TEST(ProbeSystem, EachFailingSourceIsNamedAndLeavesTheOthers) {
  struct Case {
    std::string name;
    std::function<void(const FakeProc&)> break_it;
    std::string source;
    std::string message;  // in the status
    double SystemSample::*field;
  };
  const Case cases[] = {
      {"stat missing", [](const FakeProc& p) { p.Remove("self/stat"); }, "cpu", "/self/stat",
       &SystemSample::cpu_percent},
      {"stat truncated", [](const FakeProc& p) { p.Write("self/stat", "4242 (mann) S 1 2\n"); },
       "cpu", "/self/stat: process stat has", &SystemSample::cpu_percent},
      {"status without VmRSS", [](const FakeProc& p) { p.Write("self/status", "Name:\tmann\n"); },
       "resident_memory", "/self/status: no VmRSS line", &SystemSample::resident_bytes},
      {"meminfo missing", [](const FakeProc& p) { p.Remove("meminfo"); }, "system_memory",
       "/meminfo", &SystemSample::system_memory_used_ratio},
      {"meminfo without MemAvailable",
       [](const FakeProc& p) { p.Write("meminfo", "MemTotal: 1000 kB\n"); }, "system_memory",
       "/meminfo: no MemAvailable line", &SystemSample::system_memory_used_ratio},
      {"meminfo garbage",
       [](const FakeProc& p) { p.Write("meminfo", "MemTotal: lots kB\nMemAvailable: 1 kB\n"); },
       "system_memory", "MemTotal is 'lots kB', expected a number of kB",
       &SystemSample::system_memory_used_ratio},
      {"limits garbage", [](const FakeProc& p) { p.WriteLimits("many"); }, "max_fds",
       "/self/limits: 'Max open files' soft limit is 'many'", &SystemSample::max_fds},
      {"fd directory missing", [](const FakeProc& p) { p.Remove("self/fd"); }, "open_fds",
       "cannot list", &SystemSample::open_fds},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    FakeProc proc;
    c.break_it(proc);
    SystemProbe probe(OptionsFor(proc));
    const ProbeReading reading = probe.Read(kT0);
    ASSERT_EQ(reading.errors.size(), 1u);
    EXPECT_EQ(reading.errors[0].source, c.source);
    const std::string text = reading.errors[0].status.ToString();
    EXPECT_THAT(text, HasSubstr(proc.root()));  // the file is named in full
    EXPECT_THAT(text, HasSubstr(c.message));
    EXPECT_TRUE(std::isnan(reading.sample.*c.field));
    // The other sources were read.
    EXPECT_FALSE(std::isnan(reading.sample.disk_used_ratio));
    if (c.source != "open_fds") {
      EXPECT_EQ(reading.sample.open_fds, 4.0);
    }
  }
}

TEST(ProbeSystem, DataDirectoryThatDoesNotExistIsADiskError) {
  FakeProc proc;
  SystemProbe probe({.proc_root = proc.root(), .data_dir = proc.data_dir() + "/nowhere"});
  const ProbeReading reading = probe.Read(kT0);
  ASSERT_EQ(reading.errors.size(), 1u);
  EXPECT_EQ(reading.errors[0].source, "disk");
  EXPECT_THAT(reading.errors[0].status.message(), HasSubstr(proc.data_dir() + "/nowhere"));
  EXPECT_TRUE(std::isnan(reading.sample.disk_used_ratio));
}

TEST(ProbeSystem, SampleIsAllOrNothing) {
  FakeProc proc;
  SystemProbe probe(OptionsFor(proc));
  Result<SystemSample> ok = probe.Sample(kT0);
  ASSERT_TRUE(ok.ok()) << ok.status().ToString();
  EXPECT_DOUBLE_EQ(ok->system_memory_used_ratio, 0.75);

  proc.Remove("self/status");
  Result<SystemSample> broken = probe.Sample(kT0 + 1000);
  ASSERT_FALSE(broken.ok());
  EXPECT_THAT(broken.status().message(), HasSubstr(proc.root() + "/self/status"));
}

TEST(ProbeParsers, ParseTheKernelFormats) {
  EXPECT_EQ(*ParseMaxOpenFiles("Max open files            unlimited            unlimited  files\n"),
            std::numeric_limits<double>::infinity());
  EXPECT_EQ(*ParseMaxOpenFiles("Max open files 65536 65536 files"), 65536.0);
  EXPECT_FALSE(ParseMaxOpenFiles("Max processes 100 100 processes\n").ok());
  EXPECT_EQ(*ParseResidentBytes("VmRSS:\t     10 kB\n"), 10240.0);
  EXPECT_DOUBLE_EQ(*ParseMemoryUsedRatio("MemTotal: 100 kB\nMemAvailable: 100 kB\n"), 0.0);
  EXPECT_THAT(ParseMemoryUsedRatio("MemTotal: 0 kB\nMemAvailable: 0 kB\n").status().message(),
              HasSubstr("MemTotal is 0"));
  // A key that is a prefix of another is not confused with it.
  EXPECT_FALSE(ParseResidentBytes("VmRSSx: 10 kB\n").ok());
}

TEST(ProbeSystem, ReadsTheRealProc) {
  SystemProbe probe({.data_dir = ::testing::TempDir()});
  const ProbeReading reading = probe.Read(kT0);
  for (const ProbeError& e : reading.errors) ADD_FAILURE() << e.status.ToString();
  const SystemSample& s = reading.sample;
  EXPECT_GT(s.resident_bytes, 1e6);
  EXPECT_GT(s.system_memory_used_ratio, 0.0);
  EXPECT_LT(s.system_memory_used_ratio, 1.0);
  EXPECT_GE(s.open_fds, 3.0);
  EXPECT_GT(s.max_fds, s.open_fds);
}

}  // namespace
}  // namespace mann::monitor
