// Test support for the store tests (SQLite and PostgreSQL alike): a typical entry and history
// record, and small readers over the Store interface, so both suites build their data the same way.
//
// Header-only and included only by *_test.cc files.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <gtest/gtest.h>

#include <mann/store/store.h>

namespace mann::store {

// A live entry of `ns` with fixed times, English terms, and a two-float embedding.
inline StoredEntry MakeEntry(const std::string& id, const std::string& ns = "default",
                             const std::string& content = "likes green tea") {
  StoredEntry s;
  s.entry.id = id;
  s.entry.ns = ns;
  s.entry.content = content;
  s.entry.context = "chat";
  s.entry.created_ms = 1000;
  s.entry.updated_ms = 1000;
  s.entry.version = 1;
  s.entry.language = "en";
  s.terms = {"like", "green", "tea"};
  s.encoder_id = "hashed-test";
  s.embedding = {0.5f, -0.25f};
  return s;
}

// A history record of entry `id` at `version`, its content "v<version>".
inline HistoryRecord MakeHistory(const std::string& id, HistoryAction action,
                                 std::int64_t version) {
  HistoryRecord h;
  h.entry_id = id;
  h.ns = "default";
  h.action = action;
  h.version = version;
  h.content = "v" + std::to_string(version);
  h.at_ms = 1000 + version;
  h.source = "api";
  h.reason = "test";
  return h;
}

inline Mutation Upsert(StoredEntry e) {
  Mutation m;
  m.upserts.push_back(std::move(e));
  return m;
}

// Every entry Load() streams, in its order; a failed load is a test failure.
inline std::vector<StoredEntry> LoadAll(Store& store) {
  std::vector<StoredEntry> out;
  const Status s = store.Load([&](StoredEntry&& e) {
    out.push_back(std::move(e));
    return Status::Ok();
  });
  EXPECT_TRUE(s.ok()) << s.ToString();
  return out;
}

inline std::vector<std::string> Ids(const std::vector<StoredEntry>& entries) {
  std::vector<std::string> out;
  for (const StoredEntry& e : entries) out.push_back(e.entry.id);
  return out;
}

inline bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace mann::store
