// Test support: a fake procfs tree (and a data directory) in a temporary directory, for the
// probe and monitor tests. Header-only and included only by *_test.cc files, since CMake
// compiles every src/monitor/*.cc into the library.
#pragma once

#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

namespace mann::monitor::testing {

class FakeProc {
 public:
  // A tree that SystemProbe reads without errors: 150 CPU ticks, VmRSS 2048 kB, memory 75% used,
  // 4 open descriptors of 1024.
  FakeProc() {
    std::string pattern =
        (std::filesystem::path(::testing::TempDir()) / "mann-monitor-XXXXXX").string();
    if (::mkdtemp(pattern.data()) == nullptr) ADD_FAILURE() << "mkdtemp failed";
    dir_ = pattern;
    std::filesystem::create_directories(dir_ / "data");
    WriteStat(100, 50);
    WriteStatus(2048);
    WriteMeminfo(1'000'000, 250'000);
    WriteLimits("1024");
    SetOpenFds(4);
  }
  ~FakeProc() { std::filesystem::remove_all(dir_); }
  FakeProc(const FakeProc&) = delete;
  FakeProc& operator=(const FakeProc&) = delete;

  std::string root() const { return (dir_ / "proc").string(); }
  std::string data_dir() const { return (dir_ / "data").string(); }

  void Write(const std::string& relative, const std::string& text) const {
    const std::filesystem::path path = dir_ / "proc" / relative;
    std::filesystem::create_directories(path.parent_path());
    std::ofstream(path) << text;
  }
  void Remove(const std::string& relative) const {
    std::filesystem::remove_all(dir_ / "proc" / relative);
  }

  // /proc/self/stat in the kernel's layout, with a command name that contains ") (".
  void WriteStat(std::uint64_t utime, std::uint64_t stime) const {
    std::vector<std::string> fields(53, "0");
    fields[1] = "4242";
    fields[2] = "(mann) (serve)";
    fields[3] = "S";
    fields[14] = std::to_string(utime);
    fields[15] = std::to_string(stime);
    fields[24] = "512";
    std::string line;
    for (std::size_t i = 1; i < fields.size(); ++i) line += (i > 1 ? " " : "") + fields[i];
    Write("self/stat", line + "\n");
  }
  void WriteStatus(std::uint64_t rss_kb) const {
    Write("self/status", "Name:\tmann\nState:\tS (sleeping)\nVmPeak:\t  999999 kB\nVmRSS:\t  " +
                             std::to_string(rss_kb) + " kB\nThreads:\t4\n");
  }
  void WriteMeminfo(std::uint64_t total_kb, std::uint64_t available_kb) const {
    Write("meminfo", "MemTotal:       " + std::to_string(total_kb) +
                         " kB\nMemFree:          100000 kB\nMemAvailable:   " +
                         std::to_string(available_kb) + " kB\nBuffers:           1000 kB\n");
  }
  void WriteLimits(const std::string& soft) const {
    Write("self/limits",
          "Limit                     Soft Limit           Hard Limit           Units     \n"
          "Max cpu time              unlimited            unlimited            seconds   \n"
          "Max open files            " +
              soft +
              "                 1048576              files     \n"
              "Max locked memory         8388608              8388608              bytes     \n");
  }
  void SetOpenFds(int n) const {
    Remove("self/fd");
    std::filesystem::create_directories(dir_ / "proc" / "self" / "fd");
    for (int i = 0; i < n; ++i) Write("self/fd/" + std::to_string(i), "");
  }

 private:
  std::filesystem::path dir_;
};

}  // namespace mann::monitor::testing
