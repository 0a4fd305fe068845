// Test support: the configuration of a runtime that keeps everything in one test directory.
//
// Header-only and included only by *_test.cc files.
#pragma once

#include <filesystem>

#include <mann/config/config.h>

namespace mann::testing {

// Defaults, with HOME and the data directory under `root`, the hashed encoder (so no model files
// are needed) and warnings only in the log.
inline config::Config TestRuntimeConfig(const std::filesystem::path& root) {
  config::Config c = config::DefaultConfig({{"HOME", root.string()}});
  c.storage.data_dir = (root / "data").string();
  c.encoder.kind = "hashed";
  c.log.level = "warn";
  return c;
}

}  // namespace mann::testing
