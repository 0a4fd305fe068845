#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <fmt/format.h>
#include <fmt/ranges.h>
#include <gtest/gtest.h>
#include <libpq-fe.h>
#include <unistd.h>

#include <mann/store/backup.h>
#include <mann/store/sqlite_store.h>

#include "../core/testing_services.h"
#include "database_lock.h"

namespace mann::store {
namespace {

namespace fs = std::filesystem;
using internal::DatabaseLock;

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

StoredEntry MakeEntry(const std::string& id) {
  StoredEntry s;
  s.entry.id = id;
  s.entry.ns = "default";
  s.entry.content = "remembers " + id;
  s.entry.context = "test";
  s.entry.created_ms = 1000;
  s.entry.updated_ms = 1000;
  s.entry.language = "en";
  s.terms = {"remember", id};
  return s;
}

Mutation Upsert(const std::string& id) {
  Mutation m;
  m.upserts.push_back(MakeEntry(id));
  return m;
}

void WriteFile(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

std::string ReadFile(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

std::set<std::string> Names(const fs::path& dir) {
  std::set<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

class BackupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "mann_backup_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    root_ = pattern;
    fs::create_directories(root_ / "data");
    db_ = (root_ / "data" / "mann.db").string();
    backups_ = (root_ / "backups").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::remove_all(root_, ec);
  }

  std::unique_ptr<SqliteStore> OpenStore(const std::string& path, int busy_timeout_ms = 5000) {
    auto store = SqliteStore::Open({.path = path, .busy_timeout_ms = busy_timeout_ms});
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }

  // A database holding `ids`, closed again.
  void Populate(const std::string& path, const std::vector<std::string>& ids) {
    auto store = OpenStore(path);
    ASSERT_NE(store, nullptr);
    for (const std::string& id : ids) ASSERT_TRUE(store->Commit(Upsert(id)).ok());
  }

  BackupResult BackupOrDie(TimestampMs at_ms = 1'764'720'000'000) {
    FakeClock clock(at_ms);
    Result<BackupResult> made =
        MakeBackup({.backend = "sqlite", .database_path = db_, .dir = backups_, .clock = &clock});
    EXPECT_TRUE(made.ok()) << made.status().ToString();
    return made.ok() ? *made : BackupResult{};
  }

  std::vector<std::string> LoadIds(const std::string& path) {
    auto store = OpenStore(path);
    std::vector<std::string> ids;
    if (store == nullptr) return ids;
    Status st = store->Load([&](StoredEntry&& e) {
      ids.push_back(e.entry.id);
      return Status::Ok();
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return ids;
  }

  fs::path root_;
  std::string db_;
  std::string backups_;
};

// ---- names -----------------------------------------------------------------------------------

TEST(BackupNames, StemIsFixedWidthAndSortsByTime) {
  EXPECT_EQ(BackupStem(1'764'797'280'123), "mann-20251203T212800.123Z");
  EXPECT_LT(BackupStem(999), BackupStem(1000));
  EXPECT_LT(BackupStem(1'764'797'280'123), BackupStem(1'764'797'281'000));
  EXPECT_EQ(BackupStem(5).size(), BackupStem(4'000'000'000'000).size());
}

TEST(BackupNames, OnlyOurExactNamesCarryAStamp) {
  const TimestampMs at = 1'764'797'280'123;
  const std::string stem = BackupStem(at);
  struct Case {
    std::string name;
    bool ours;
  };
  const Case cases[] = {
      {stem + ".db", true},
      {stem + ".pgdump", true},
      {stem + ".manifest.json", true},
      {stem + ".db.partial", true},
      {stem + ".manifest.json.partial", true},
      {stem + ".txt", false},
      {stem, false},
      {stem + ".db.bak", false},
      {"x" + stem + ".db", false},
      {"mann-2025120XT212800.123Z.db", false},
      {"mann-20251203T212800.123.db", false},
      {"mann-20251303T212800.123Z.db", false},
      {"notes.txt", false},
      {"mann.db", false},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const std::optional<TimestampMs> stamp = StampOfBackupName(c.name);
    EXPECT_EQ(stamp.has_value(), c.ours);
    if (c.ours && stamp) {
      EXPECT_EQ(*stamp, at);
    }
  }
}

// ---- manifest --------------------------------------------------------------------------------

TEST_F(BackupTest, ManifestRoundTripsThroughItsFile) {
  fs::create_directories(backups_);
  BackupManifest m;
  m.backend = "sqlite";
  m.created_ms = 1'764'797'280'123;
  m.mann_version = "0.1.0";
  m.schema_version = 2;
  m.entry_count = 42;
  m.files.push_back({"mann-x.db", 4096, std::string(64, 'a')});
  ASSERT_TRUE(WriteManifest(backups_, "m.manifest.json", m).ok());
  EXPECT_EQ(Names(backups_), std::set<std::string>{"m.manifest.json"}) << "no temporary left";

  Result<BackupManifest> read = ReadManifest((fs::path(backups_) / "m.manifest.json").string());
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_EQ(read->backend, "sqlite");
  EXPECT_EQ(read->created_ms, m.created_ms);
  EXPECT_EQ(read->schema_version, 2);
  EXPECT_EQ(read->entry_count, 42);
  ASSERT_EQ(read->files.size(), 1u);
  EXPECT_EQ(read->files[0].name, "mann-x.db");
  EXPECT_EQ(read->files[0].size, 4096u);
  const auto doc = boost::json::parse(ReadFile(fs::path(backups_) / "m.manifest.json"));
  EXPECT_EQ(doc.at("created"), "2025-12-03T21:28:00.123Z");
}

TEST(BackupManifestParse, RefusesWhatIsNotAManifestNamingTheFile) {
  const std::string good_file = R"("files":[{"name":"a.db","size":1,"sha256":"00"}])";
  struct Case {
    std::string text;
    StatusCode code;
    std::string says;
  };
  const Case cases[] = {
      {"not json", StatusCode::kDataLoss, "not a JSON object"},
      {"{}", StatusCode::kDataLoss, "format"},
      {R"({"format":9,"backend":"sqlite"})", StatusCode::kFailedPrecondition, "format 9"},
      {R"({"format":1,"backend":"mysql","created_ms":1,"schema_version":1,"entry_count":0,)" +
           good_file + "}",
       StatusCode::kDataLoss, "backend"},
      {R"({"format":1,"backend":"sqlite","created_ms":1,"schema_version":1,"entry_count":0,)"
       R"("files":[]})",
       StatusCode::kDataLoss, "files"},
      {R"({"format":1,"backend":"sqlite","created_ms":1,"schema_version":1,"entry_count":0,)"
       R"("files":[{"name":"../etc/passwd","size":1,"sha256":"00"}]})",
       StatusCode::kDataLoss, "plain file name"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    Result<BackupManifest> m = ParseManifest(c.text, "/b/x.manifest.json");
    ASSERT_FALSE(m.ok());
    EXPECT_EQ(m.status().code(), c.code) << m.status().ToString();
    EXPECT_TRUE(Contains(m.status().message(), c.says)) << m.status().ToString();
    EXPECT_TRUE(Contains(m.status().message(), "/b/x.manifest.json")) << m.status().ToString();
  }
}

TEST_F(BackupTest, VerifyNamesTheFileWhoseChecksumDiffers) {
  fs::create_directories(backups_);
  WriteFile(fs::path(backups_) / "a.db", "hello");
  BackupManifest m;
  m.backend = "sqlite";
  m.files.push_back(
      {"a.db", 5, "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"});
  EXPECT_TRUE(VerifyBackupFiles(m, backups_).ok());

  WriteFile(fs::path(backups_) / "a.db", "jello");
  Status st = VerifyBackupFiles(m, backups_);
  EXPECT_EQ(st.code(), StatusCode::kDataLoss) << st.ToString();
  EXPECT_TRUE(Contains(st.message(), "checksum mismatch")) << st.ToString();
  EXPECT_TRUE(Contains(st.message(), (fs::path(backups_) / "a.db").string())) << st.ToString();

  fs::remove(fs::path(backups_) / "a.db");
  st = VerifyBackupFiles(m, backups_);
  EXPECT_EQ(st.code(), StatusCode::kNotFound) << st.ToString();
  EXPECT_TRUE(Contains(st.message(), "a.db")) << st.ToString();
}

// ---- retention -------------------------------------------------------------------------------

TEST_F(BackupTest, PruneRemovesOnlyOurOldFilesAndNeverTheNewBackup) {
  fs::create_directories(backups_);
  const TimestampMs now = 1'764'797'280'000;
  const TimestampMs day = 86'400'000;
  const std::string old_stem = BackupStem(now - 10 * day);
  const std::string recent_stem = BackupStem(now - 2 * day);
  const std::string current_stem = BackupStem(now - 30 * day);  // "just made", with an old clock
  const std::vector<std::string> ours_old = {old_stem + ".db", old_stem + ".manifest.json",
                                             old_stem + ".db.partial"};
  const std::vector<std::string> kept = {recent_stem + ".db", recent_stem + ".manifest.json",
                                         current_stem + ".db", current_stem + ".manifest.json",
                                         // Not ours, however old they look.
                                         "notes.txt", "mann.db", old_stem + ".db.bak",
                                         "other-" + old_stem + ".db"};
  for (const std::string& n : ours_old) WriteFile(fs::path(backups_) / n, "x");
  for (const std::string& n : kept) WriteFile(fs::path(backups_) / n, "x");
  fs::create_directories(fs::path(backups_) / (old_stem + ".pgdump"));  // a directory: not ours

  Result<PruneResult> pruned = PruneBackups(backups_, 7, now, current_stem);
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  std::vector<std::string> expected_removed = ours_old;
  std::sort(expected_removed.begin(), expected_removed.end());
  EXPECT_EQ(pruned->removed, expected_removed);
  std::set<std::string> left(kept.begin(), kept.end());
  left.insert(old_stem + ".pgdump");
  EXPECT_EQ(Names(backups_), left);
}

TEST_F(BackupTest, PruneWithRetentionZeroKeepsEverything) {
  fs::create_directories(backups_);
  const std::string ancient = BackupStem(1000) + ".db";
  WriteFile(fs::path(backups_) / ancient, "x");
  Result<PruneResult> pruned = PruneBackups(backups_, 0, 1'764'797'280'000, "");
  ASSERT_TRUE(pruned.ok());
  EXPECT_TRUE(pruned->removed.empty());
  EXPECT_TRUE(fs::exists(fs::path(backups_) / ancient));
}

// ---- making backups --------------------------------------------------------------------------

TEST_F(BackupTest, BackupOfALiveStoreIsCheckedPublishedAndDescribed) {
  auto store = OpenStore(db_);
  ASSERT_NE(store, nullptr);
  for (int i = 0; i < 20; ++i) ASSERT_TRUE(store->Commit(Upsert("e" + std::to_string(i))).ok());

  const BackupResult made = BackupOrDie(1'764'797'280'123);
  EXPECT_EQ(made.data_path, backups_ + "/mann-20251203T212800.123Z.db");
  EXPECT_EQ(made.manifest_path, backups_ + "/mann-20251203T212800.123Z.manifest.json");
  EXPECT_EQ(Names(backups_), (std::set<std::string>{"mann-20251203T212800.123Z.db",
                                                    "mann-20251203T212800.123Z.manifest.json"}));
  EXPECT_EQ(made.manifest.entry_count, 20);
  EXPECT_EQ(made.manifest.schema_version, SqliteStore::SchemaVersion());
  EXPECT_EQ(fs::status(backups_).permissions() & fs::perms::all, fs::perms::owner_all);

  Result<BackupManifest> read = ReadManifest(made.manifest_path);
  ASSERT_TRUE(read.ok()) << read.status().ToString();
  EXPECT_TRUE(VerifyBackupFiles(*read, backups_).ok());
  EXPECT_EQ(read->files[0].size, fs::file_size(made.data_path));
  // The copy stands alone: no WAL beside it, and the store opens it with every entry.
  EXPECT_FALSE(fs::exists(made.data_path + "-wal"));
  store.reset();
  EXPECT_EQ(LoadIds(made.data_path).size(), 20u);
}

TEST_F(BackupTest, BackupWhileWritingHoldsEverythingCommittedBeforeIt) {
  auto store = OpenStore(db_);
  ASSERT_NE(store, nullptr);
  std::atomic<int> committed{0};
  std::atomic<bool> stop{false};
  std::thread writer([&] {
    for (int i = 0; i < 100'000 && !stop.load(); ++i) {
      if (!store->Commit(Upsert(fmt::format("w{:06d}", i))).ok()) break;
      committed.store(i + 1);
    }
  });
  while (committed.load() < 50) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  const int before = committed.load();
  const BackupResult made = BackupOrDie();
  stop.store(true);
  writer.join();

  EXPECT_GE(made.manifest.entry_count, before);
  const std::vector<std::string> ids = LoadIds(made.data_path);
  EXPECT_EQ(static_cast<std::int64_t>(ids.size()), made.manifest.entry_count);
  std::set<std::string> in_copy(ids.begin(), ids.end());
  for (int i = 0; i < before; ++i) {
    ASSERT_TRUE(in_copy.contains(fmt::format("w{:06d}", i))) << "acknowledged write " << i;
  }
}

TEST_F(BackupTest, TwoBackupsInOneMillisecondGetDistinctNames) {
  Populate(db_, {"a"});
  const BackupResult first = BackupOrDie(5000);
  const BackupResult second = BackupOrDie(5000);
  EXPECT_NE(first.data_path, second.data_path);
  EXPECT_LT(first.data_path, second.data_path);
}

TEST_F(BackupTest, BackupOfAMissingDatabaseIsNotFoundAndLeavesNothing) {
  Result<BackupResult> made =
      MakeBackup({.backend = "sqlite", .database_path = db_, .dir = backups_});
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(made.status().message(), db_)) << made.status().ToString();
  EXPECT_TRUE(Names(backups_).empty());
}

// ---- restore ---------------------------------------------------------------------------------

TEST_F(BackupTest, RestoreIntoAnEmptyDirectoryBringsEveryEntryBack) {
  Populate(db_, {"a", "b", "c"});
  const BackupResult made = BackupOrDie();
  const std::string target = (root_ / "fresh" / "mann.db").string();
  Result<RestoreResult> restored =
      RestoreBackup({.backup = made.data_path, .database_path = target});
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();
  EXPECT_TRUE(restored->moved_aside.empty());
  EXPECT_EQ(LoadIds(target), (std::vector<std::string>{"a", "b", "c"}));
}

TEST_F(BackupTest, RestoreRefusesADatabaseInUse) {
  Populate(db_, {"a"});
  const BackupResult made = BackupOrDie();
  const std::string target = (root_ / "other" / "mann.db").string();
  fs::create_directories(root_ / "other");
  auto live = OpenStore(target);  // empty, but open: a running mann
  ASSERT_NE(live, nullptr);
  Result<RestoreResult> restored =
      RestoreBackup({.backup = made.manifest_path, .database_path = target, .replace = true});
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(restored.status().message(), "in use")) << restored.status().ToString();
  live.reset();
  EXPECT_TRUE(RestoreBackup({.backup = made.manifest_path, .database_path = target}).ok())
      << "an empty database nobody uses may be replaced";
}

TEST_F(BackupTest, RestoreRefusesADatabaseWithDataUnlessToldAndThenKeepsItAside) {
  Populate(db_, {"old"});
  const std::string source = (root_ / "src" / "mann.db").string();
  fs::create_directories(root_ / "src");
  Populate(source, {"new1", "new2"});
  FakeClock clock(1'764'797'280'000);
  Result<BackupResult> made =
      MakeBackup({.backend = "sqlite", .database_path = source, .dir = backups_, .clock = &clock});
  ASSERT_TRUE(made.ok()) << made.status().ToString();

  Result<RestoreResult> refused =
      RestoreBackup({.backup = made->manifest_path, .database_path = db_});
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(refused.status().message(), "--force")) << refused.status().ToString();
  EXPECT_EQ(LoadIds(db_), std::vector<std::string>{"old"}) << "untouched";

  Result<RestoreResult> replaced = RestoreBackup(
      {.backup = made->manifest_path, .database_path = db_, .replace = true, .clock = &clock});
  ASSERT_TRUE(replaced.ok()) << replaced.status().ToString();
  EXPECT_EQ(LoadIds(db_), (std::vector<std::string>{"new1", "new2"}));
  ASSERT_FALSE(replaced->moved_aside.empty());
  EXPECT_EQ(replaced->moved_aside[0], db_ + ".replaced-20251203T212800.000Z");
  EXPECT_EQ(LoadIds(replaced->moved_aside[0]), std::vector<std::string>{"old"});
}

TEST_F(BackupTest, RestoreOfACorruptBackupNamesTheChecksumAndTouchesNothing) {
  Populate(db_, {"a"});
  const BackupResult made = BackupOrDie();
  std::string bytes = ReadFile(made.data_path);
  bytes[bytes.size() / 2] ^= 0x01;
  WriteFile(made.data_path, bytes);
  const std::string target = (root_ / "fresh" / "mann.db").string();
  Result<RestoreResult> restored =
      RestoreBackup({.backup = made.manifest_path, .database_path = target});
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.status().code(), StatusCode::kDataLoss);
  EXPECT_TRUE(Contains(restored.status().message(), "checksum mismatch"));
  EXPECT_TRUE(Contains(restored.status().message(), made.data_path));
  EXPECT_FALSE(fs::exists(target));
}

TEST_F(BackupTest, RestoreOfAMissingBackupIsNotFound) {
  Result<RestoreResult> restored =
      RestoreBackup({.backup = backups_ + "/mann-20251203T212800.000Z.db", .database_path = db_});
  ASSERT_FALSE(restored.ok());
  EXPECT_EQ(restored.status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(Contains(restored.status().message(), "mann-20251203T212800.000Z.manifest.json"))
      << restored.status().ToString();
}

// ---- the lock --------------------------------------------------------------------------------

TEST_F(BackupTest, AStoreHoldsItsLockForItsLifetime) {
  Result<bool> in_use = DatabaseInUse(db_);
  ASSERT_TRUE(in_use.ok());
  EXPECT_FALSE(*in_use);
  {
    auto store = OpenStore(db_);
    ASSERT_NE(store, nullptr);
    auto reader = SqliteStore::Open({.path = db_, .read_only = true});
    ASSERT_TRUE(reader.ok()) << "shared: readers and writers coexist";
    in_use = DatabaseInUse(db_);
    ASSERT_TRUE(in_use.ok());
    EXPECT_TRUE(*in_use);
  }
  in_use = DatabaseInUse(db_);
  ASSERT_TRUE(in_use.ok());
  EXPECT_FALSE(*in_use);
}

TEST_F(BackupTest, AStoreWaitsForARestoreThenGivesUpNamingIt) {
  Result<DatabaseLock> restoring = DatabaseLock::Acquire(db_, DatabaseLock::Mode::kExclusive);
  ASSERT_TRUE(restoring.ok()) << restoring.status().ToString();
  const auto started = std::chrono::steady_clock::now();
  auto store = SqliteStore::Open({.path = db_, .busy_timeout_ms = 100});
  EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::milliseconds(90));
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable);
  EXPECT_TRUE(Contains(store.status().message(), "being restored")) << store.status().ToString();
  EXPECT_FALSE(fs::exists(db_)) << "no connection was opened";

  *restoring = DatabaseLock();
  EXPECT_TRUE(SqliteStore::Open({.path = db_}).ok());
}

// ---- running commands ------------------------------------------------------------------------

TEST(BackupCommandLine, SplitsLikeAShellWithoutExpanding) {
  struct Case {
    std::string text;
    std::vector<std::string> words;
  };
  const Case cases[] = {
      {"upload", {"upload"}},
      {"  upload  --to  bucket ", {"upload", "--to", "bucket"}},
      {R"(up "a b" 'c d')", {"up", "a b", "c d"}},
      {R"(up a\ b "x\"y" 'it''s')", {"up", "a b", "x\"y", "its"}},
      {R"(up "$HOME" '$(rm -rf /)' ;)", {"up", "$HOME", "$(rm -rf /)", ";"}},
      {R"(up "")", {"up", ""}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.text);
    Result<std::vector<std::string>> words = SplitCommandLine(c.text);
    ASSERT_TRUE(words.ok()) << words.status().ToString();
    EXPECT_EQ(*words, c.words);
  }
  EXPECT_EQ(SplitCommandLine("up 'open").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(SplitCommandLine("   ").status().code(), StatusCode::kInvalidArgument);
}

TEST_F(BackupTest, RunProcessPassesArgumentsVerbatimAndReportsTheExitCode) {
  const std::string out = (root_ / "argv").string();
  Result<ProcessOutcome> ran =
      RunProcess({"sh", "-c", "printf '%s\\n' \"$@\" > \"$0\"", out, "a b", "$(touch x)", "c'd"});
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  EXPECT_EQ(ran->exit_code, 0);
  EXPECT_EQ(ReadFile(out), "a b\n$(touch x)\nc'd\n");
  EXPECT_FALSE(fs::exists("x"));

  ran = RunProcess({"sh", "-c", "echo oops >&2; exit 3"}, {}, /*capture_stderr=*/true);
  ASSERT_TRUE(ran.ok());
  EXPECT_EQ(ran->exit_code, 3);
  EXPECT_EQ(ran->stderr_tail, "oops\n");

  ran = RunProcess({"/no/such/program"});
  ASSERT_FALSE(ran.ok());
  EXPECT_TRUE(Contains(ran.status().message(), "/no/such/program"));
}

// `state` of /proc/<pid>/stat: 'Z' for a zombie; 0 when the process is gone.
char ProcessState(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(in, line)) return 0;
  const std::size_t paren = line.rfind(')');
  return paren == std::string::npos || paren + 2 >= line.size() ? 0 : line[paren + 2];
}

double SecondsSince(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

TEST_F(BackupTest, RunProcessWithinItsLimitReportsTheExitCode) {
  const ProcessLimits limits{.time_limit = std::chrono::seconds(10)};
  Result<ProcessOutcome> ran =
      RunProcess({"sh", "-c", "echo done >&2; exit 4"}, {}, /*capture_stderr=*/true, limits);
  ASSERT_TRUE(ran.ok()) << ran.status().ToString();
  EXPECT_EQ(ran->exit_code, 4);
  EXPECT_EQ(ran->stderr_tail, "done\n");
  EXPECT_EQ(RunProcess({"true"}, {}, false, {.time_limit = std::chrono::milliseconds(-1)})
                .status()
                .code(),
            StatusCode::kInvalidArgument);
}

TEST_F(BackupTest, RunProcessStopsAProgramPastItsLimitWithSigterm) {
  // What a stalled upload command looks like.
  const ProcessLimits limits{.time_limit = std::chrono::seconds(1),
                             .limit_key = "backup.command_timeout"};
  const auto start = std::chrono::steady_clock::now();
  Result<ProcessOutcome> ran = RunProcess({"sleep", "60"}, {}, /*capture_stderr=*/false, limits);
  const double took = SecondsSince(start);
  ASSERT_FALSE(ran.ok());
  EXPECT_EQ(ran.status().code(), StatusCode::kUnavailable);
  const std::string message = ran.status().message();
  EXPECT_TRUE(Contains(message, "sleep did not finish within 1 s (backup.command_timeout)"))
      << message;
  EXPECT_TRUE(Contains(message, "stopped with SIGTERM")) << message;
  EXPECT_GE(took, 1.0);
  EXPECT_LT(took, 5.0) << "SIGTERM ends sleep at once";
}

TEST_F(BackupTest, RunProcessKillsAProgramThatIgnoresSigtermAndWhatItStarted) {
  // The shell and the sleep it starts both ignore SIGTERM; the sleep holds the stderr pipe.
  const std::string pid_file = (root_ / "sleep.pid").string();
  const ProcessLimits limits{.time_limit = std::chrono::seconds(1),
                             .grace = std::chrono::seconds(1),
                             .limit_key = "backup.command_timeout"};
  const auto start = std::chrono::steady_clock::now();
  Result<ProcessOutcome> ran = RunProcess(
      {"sh", "-c", "trap '' TERM; echo starting >&2; sleep 60 & echo $! > \"$0\"; wait", pid_file},
      {}, /*capture_stderr=*/true, limits);
  const double took = SecondsSince(start);
  ASSERT_FALSE(ran.ok());
  EXPECT_EQ(ran.status().code(), StatusCode::kUnavailable);
  const std::string message = ran.status().message();
  EXPECT_TRUE(Contains(message, "sh did not finish within 1 s (backup.command_timeout)"))
      << message;
  EXPECT_TRUE(Contains(message, "SIGKILL, 1 s after a SIGTERM it ignored")) << message;
  EXPECT_TRUE(Contains(message, "starting")) << "its last words are kept: " << message;
  EXPECT_GE(took, 2.0);
  EXPECT_LT(took, 6.0);

  // The sleep was in the shell's process group, so it got the SIGKILL too: gone, or a zombie
  // waiting for init to reap it, but not sleeping on.
  std::ifstream in(pid_file);
  pid_t sleeper = 0;
  ASSERT_TRUE(in >> sleeper) << "the shell wrote no pid";
  char state = ProcessState(sleeper);
  for (int i = 0; i < 50 && state != 0 && state != 'Z'; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    state = ProcessState(sleeper);
  }
  EXPECT_TRUE(state == 0 || state == 'Z') << "the sleep is still in state " << state;
}

// ---- PostgreSQL ------------------------------------------------------------------------------

// A database of its own on the test server, dropped at the end.
class ScratchDatabase {
 public:
  ScratchDatabase(const std::string& server_url, const std::string& name)
      : server_url_(server_url), name_(name) {
    Exec(server_url_, "DROP DATABASE IF EXISTS " + name_);
    ok_ = Exec(server_url_, "CREATE DATABASE " + name_);
  }
  ~ScratchDatabase() { Exec(server_url_, "DROP DATABASE IF EXISTS " + name_ + " WITH (FORCE)"); }

  bool ok() const { return ok_; }
  // The server URL with the database name replaced.
  std::string url() const {
    const auto slash = server_url_.rfind('/');
    const auto query = server_url_.find('?', slash);
    return server_url_.substr(0, slash + 1) + name_ +
           (query == std::string::npos ? "" : server_url_.substr(query));
  }

  static bool Exec(const std::string& url, const std::string& sql) {
    PGconn* conn = PQconnectdb(url.c_str());
    bool ok = PQstatus(conn) == CONNECTION_OK;
    if (ok) {
      PGresult* r = PQexec(conn, sql.c_str());
      ok = PQresultStatus(r) == PGRES_COMMAND_OK || PQresultStatus(r) == PGRES_TUPLES_OK;
      if (!ok) ADD_FAILURE() << sql << ": " << PQerrorMessage(conn);
      PQclear(r);
    }
    PQfinish(conn);
    return ok;
  }

 private:
  std::string server_url_;
  std::string name_;
  bool ok_ = false;
};

TEST_F(BackupTest, PostgresDumpRestoresIntoAnEmptyDatabaseOnly) {
  std::string server;
  MANN_TEST_SERVICE_URL_OR_RETURN(server, "MANN_TEST_POSTGRES_URL");
  const std::string suffix = std::to_string(::getpid());
  ScratchDatabase source(server, "mann_backup_src_" + suffix);
  ScratchDatabase target(server, "mann_backup_dst_" + suffix);
  ASSERT_TRUE(source.ok() && target.ok());
  // The tables the PostgreSQL store keeps memories in, as far as a backup looks at them.
  ASSERT_TRUE(ScratchDatabase::Exec(
      source.url(),
      "CREATE TABLE entries (id text PRIMARY KEY, content text NOT NULL);"
      "INSERT INTO entries SELECT 'e' || g, 'memory ' || g FROM generate_series(1, 25) g;"));

  Result<BackupResult> made =
      MakeBackup({.backend = "postgres", .postgres_url = source.url(), .dir = backups_});
  ASSERT_TRUE(made.ok()) << made.status().ToString();
  EXPECT_TRUE(made->data_path.ends_with(".pgdump"));
  EXPECT_EQ(made->manifest.entry_count, 25);
  EXPECT_EQ(made->manifest.backend, "postgres");
  EXPECT_EQ(ReadFile(made->data_path).substr(0, 5), "PGDMP") << "pg_dump's custom format";

  Result<RestoreResult> restored =
      RestoreBackup({.backup = made->manifest_path, .postgres_url = target.url()});
  ASSERT_TRUE(restored.ok()) << restored.status().ToString();

  Result<RestoreResult> again =
      RestoreBackup({.backup = made->manifest_path, .postgres_url = target.url()});
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(again.status().message(), "not empty")) << again.status().ToString();
}

TEST_F(BackupTest, AStalledPgDumpIsStoppedAtTheLimitAndLeavesNoBackup) {
  std::string server;
  MANN_TEST_SERVICE_URL_OR_RETURN(server, "MANN_TEST_POSTGRES_URL");
  ScratchDatabase source(server, "mann_backup_stall_" + std::to_string(::getpid()));
  ASSERT_TRUE(source.ok());
  ASSERT_TRUE(
      ScratchDatabase::Exec(source.url(),
                            "CREATE TABLE entries (id text PRIMARY KEY, content text NOT NULL);"
                            "INSERT INTO entries VALUES ('e1', 'one memory');"
                            "CREATE TABLE held (id int);"));
  // Another session holds a lock pg_dump waits for (it dumps `held`, which the entry count does
  // not read): pg_dump stalls on a real server, as behind a long migration.
  PGconn* holder = PQconnectdb(source.url().c_str());
  ASSERT_EQ(PQstatus(holder), CONNECTION_OK) << PQerrorMessage(holder);
  PGresult* locked = PQexec(holder, "BEGIN; LOCK TABLE held IN ACCESS EXCLUSIVE MODE");
  ASSERT_EQ(PQresultStatus(locked), PGRES_COMMAND_OK) << PQerrorMessage(holder);
  PQclear(locked);

  const auto start = std::chrono::steady_clock::now();
  Result<BackupResult> made = MakeBackup({.backend = "postgres",
                                          .postgres_url = source.url(),
                                          .tool_limits = {.time_limit = std::chrono::seconds(2),
                                                          .grace = std::chrono::seconds(2),
                                                          .limit_key = "backup.command_timeout"},
                                          .dir = backups_});
  const double took = SecondsSince(start);
  PQfinish(holder);
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), StatusCode::kUnavailable) << made.status().ToString();
  EXPECT_TRUE(Contains(made.status().message(),
                       "pg_dump did not finish within 2 s (backup.command_timeout)"))
      << made.status().ToString();
  EXPECT_LT(took, 10.0);
  std::vector<std::string> left;
  std::error_code ec;
  for (const auto& f : fs::directory_iterator(backups_, ec)) left.push_back(f.path().string());
  EXPECT_TRUE(left.empty()) << "left behind: " << fmt::format("{}", fmt::join(left, ", "));
}

TEST(BackupPostgres, UnreachableServerIsUnavailableWithoutThePassword) {
  const std::string url = "postgresql://mann:s3cret@127.0.0.1:1/none?connect_timeout=2";
  Result<BackupResult> made =
      MakeBackup({.backend = "postgres",
                  .postgres_url = url,
                  .dir = ::testing::TempDir() + "mann_backup_pg_unreachable"});
  ASSERT_FALSE(made.ok());
  EXPECT_EQ(made.status().code(), StatusCode::kUnavailable) << made.status().ToString();
  EXPECT_FALSE(Contains(made.status().message(), "s3cret")) << made.status().ToString();
  std::error_code ec;
  fs::remove_all(::testing::TempDir() + "mann_backup_pg_unreachable", ec);
}

}  // namespace
}  // namespace mann::store
