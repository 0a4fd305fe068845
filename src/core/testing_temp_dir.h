// Test support: a private directory under the test framework's temporary directory, removed with
// everything in it when the object goes (also when the test fails).
//
//   mann::testing::TempDir dir("mann-config");
//   const std::string file = dir.Write("mann.toml", "[server]\nport = 9000\n");
//   ... dir.path() / "data" ...
//
// Header-only and included only by *_test.cc files.
#pragma once

#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <system_error>

#include <gtest/gtest.h>
#include <stdlib.h>

namespace mann::testing {

class TempDir {
 public:
  // `prefix` names the directory (prefix-XXXXXX), so a leftover one says which test made it.
  explicit TempDir(std::string_view prefix) {
    std::string pattern =
        (std::filesystem::path(::testing::TempDir()) / (std::string(prefix) + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed for " << pattern;
      return;
    }
    path_ = pattern;
  }
  ~TempDir() {
    if (path_.empty()) return;
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  // Empty when the directory could not be made (the test has failed already).
  const std::filesystem::path& path() const { return path_; }

  // Writes `content` to `relative` (parent directories made as needed); returns its full path.
  std::string Write(const std::string& relative, const std::string& content) const {
    const std::filesystem::path file = path_ / relative;
    std::filesystem::create_directories(file.parent_path());
    std::ofstream(file) << content;
    return file.string();
  }

 private:
  std::filesystem::path path_;
};

}  // namespace mann::testing
