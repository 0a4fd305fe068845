#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <map>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include <boost/json.hpp>
#include <gtest/gtest.h>
#include <signal.h>
#include <sqlite3.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mann/store/sqlite_store.h>

#include "../core/testing_unprivileged.h"
#include "sqlite_db.h"
#include "testing_store.h"

namespace mann::store {
namespace {

namespace fs = std::filesystem;

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = ::testing::TempDir() + "mann_store_XXXXXX";
    ASSERT_NE(mkdtemp(pattern.data()), nullptr);
    dir_ = pattern;
    path_ = (dir_ / "mann.db").string();
  }
  void TearDown() override {
    std::error_code ec;
    fs::permissions(dir_, fs::perms::owner_all, fs::perm_options::add, ec);
    fs::remove_all(dir_, ec);
  }

  SqliteOptions Options() const {
    SqliteOptions o;
    o.path = path_;
    return o;
  }

  std::unique_ptr<SqliteStore> OpenOrDie(SqliteOptions o) {
    auto store = SqliteStore::Open(o);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }
  std::unique_ptr<SqliteStore> OpenOrDie() { return OpenOrDie(Options()); }

  // Runs SQL on the file through a connection of the test's own.
  void RawExec(const std::string& sql) {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
    char* err = nullptr;
    const int rc = sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err);
    EXPECT_EQ(rc, SQLITE_OK) << (err ? err : "");
    sqlite3_free(err);
    sqlite3_close(db);
  }

  fs::path dir_;
  std::string path_;
};

// --- round trips ---

TEST_F(SqliteStoreTest, RoundTripsEveryFieldAcrossReopen) {
  StoredEntry e = MakeEntry("0190a1b2-0000-7000-8000-000000000001", "user-42",
                            "Tôi thích trà xanh 🍵, \"quoted\" and a\nnewline");
  e.entry.context = "ngữ cảnh";
  e.entry.tags = {"drink", "tiếng việt"};
  e.entry.metadata = boost::json::parse(R"({"a":{"b":[1,2.5,"x",null,true]},"k":"v"})").as_object();
  e.entry.importance = 2.75;
  e.entry.usage_count = 7;
  e.entry.last_access_ms = 1'764'720'000'123;
  e.entry.created_ms = 1'764'720'000'001;
  e.entry.updated_ms = 1'764'720'000'050;
  e.entry.version = 3;
  e.entry.content_hash = std::string(64, 'a');
  e.entry.language = "vi";
  e.terms = {"tôi", "thích", "trà"};
  e.encoder_id = "use-lite-512";
  e.embedding = {0.0f,
                 -0.0f,
                 1.5f,
                 -3.25e-38f,
                 std::numeric_limits<float>::denorm_min(),
                 std::numeric_limits<float>::max(),
                 0.1f};
  {
    auto store = OpenOrDie();
    ASSERT_TRUE(store->Commit(Upsert(e)).ok());
  }
  auto store = OpenOrDie();
  std::vector<StoredEntry> all = LoadAll(*store);
  ASSERT_EQ(all.size(), 1u);
  const StoredEntry& got = all[0];
  EXPECT_EQ(got.entry.id, e.entry.id);
  EXPECT_EQ(got.entry.ns, e.entry.ns);
  EXPECT_EQ(got.entry.content, e.entry.content);
  EXPECT_EQ(got.entry.context, e.entry.context);
  EXPECT_EQ(got.entry.tags, e.entry.tags);
  EXPECT_EQ(got.entry.metadata, e.entry.metadata);
  EXPECT_EQ(got.entry.importance, e.entry.importance);
  EXPECT_EQ(got.entry.usage_count, e.entry.usage_count);
  EXPECT_EQ(got.entry.last_access_ms, e.entry.last_access_ms);
  EXPECT_EQ(got.entry.created_ms, e.entry.created_ms);
  EXPECT_EQ(got.entry.updated_ms, e.entry.updated_ms);
  EXPECT_EQ(got.entry.version, e.entry.version);
  EXPECT_EQ(got.entry.content_hash, e.entry.content_hash);
  EXPECT_EQ(got.entry.language, e.entry.language);
  EXPECT_EQ(got.terms, e.terms);
  EXPECT_EQ(got.encoder_id, e.encoder_id);
  ASSERT_EQ(got.embedding.size(), e.embedding.size());
  EXPECT_EQ(std::memcmp(got.embedding.data(), e.embedding.data(), 4 * e.embedding.size()), 0)
      << "embedding floats must come back bit-exact";
}

TEST_F(SqliteStoreTest, EmbeddingIsStoredAsLittleEndianFloat32) {
  StoredEntry e = MakeEntry("a");
  e.embedding = {1.0f};  // 0x3f800000
  auto store = OpenOrDie();
  ASSERT_TRUE(store->Commit(Upsert(e)).ok());
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  sqlite3_stmt* stmt = nullptr;
  ASSERT_EQ(sqlite3_prepare_v2(db, "SELECT hex(embedding) FROM entries", -1, &stmt, nullptr),
            SQLITE_OK);
  ASSERT_EQ(sqlite3_step(stmt), SQLITE_ROW);
  EXPECT_STREQ(reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0)), "0000803F");
  sqlite3_finalize(stmt);
  sqlite3_close(db);
}

TEST_F(SqliteStoreTest, LoadStreamsInNamespaceThenIdOrderAndStopsAtCallbackError) {
  auto store = OpenOrDie();
  Mutation m;
  for (const auto& [ns, id] : std::vector<std::pair<std::string, std::string>>{
           {"b", "b1"}, {"a", "a3"}, {"a", "a1"}, {"c", "c0"}, {"b", "b0"}}) {
    m.upserts.push_back(MakeEntry(id, ns));
  }
  ASSERT_TRUE(store->Commit(m).ok());

  std::vector<std::string> seen;
  ASSERT_TRUE(store
                  ->Load([&](StoredEntry&& e) {
                    seen.push_back(e.entry.ns + "/" + e.entry.id);
                    return Status::Ok();
                  })
                  .ok());
  EXPECT_EQ(seen, (std::vector<std::string>{"a/a1", "a/a3", "b/b0", "b/b1", "c/c0"}));

  int calls = 0;
  Status stop = store->Load(
      [&](StoredEntry&&) { return ++calls == 2 ? InternalError("enough") : Status::Ok(); });
  EXPECT_EQ(stop, InternalError("enough"));
  EXPECT_EQ(calls, 2);
}

TEST_F(SqliteStoreTest, LoadCallbackMayReadAndWriteTheStore) {
  auto store = OpenOrDie();
  Mutation m = Upsert(MakeEntry("e1"));
  m.history.push_back(MakeHistory("e1", HistoryAction::kCreate, 1));
  ASSERT_TRUE(store->Commit(m).ok());
  std::size_t history_rows = 0;
  Status s = store->Load([&](StoredEntry&& e) {
    MANN_ASSIGN_OR_RETURN(auto history, store->History(e.entry.ns, e.entry.id));
    history_rows += history.size();
    Mutation bump;
    bump.usage.push_back({e.entry.id, 1, 2});
    return store->Commit(std::move(bump));
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(history_rows, 1u);
  EXPECT_EQ(LoadAll(*store).at(0).entry.usage_count, 1);
}

TEST_F(SqliteStoreTest, UpsertReplacesTheEntryWithTheSameId) {
  auto store = OpenOrDie();
  ASSERT_TRUE(store->Commit(Upsert(MakeEntry("x", "default", "first"))).ok());
  StoredEntry second = MakeEntry("x", "default", "second");
  second.entry.version = 2;
  ASSERT_TRUE(store->Commit(Upsert(second)).ok());
  auto all = LoadAll(*store);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].entry.content, "second");
  EXPECT_EQ(all[0].entry.version, 2);
}

// --- history, forget, delete ---

TEST_F(SqliteStoreTest, HistoryIsListedOldestFirstWithStoreAssignedSeq) {
  auto store = OpenOrDie();
  HistoryRecord created = MakeHistory("e1", HistoryAction::kCreate, 1);
  created.tags = {"t"};
  created.metadata["why"] = "because";
  Mutation m = Upsert(MakeEntry("e1"));
  m.history.push_back(created);
  ASSERT_TRUE(store->Commit(m).ok());
  Mutation other;
  other.history.push_back(MakeHistory("e2", HistoryAction::kCreate, 1));
  ASSERT_TRUE(store->Commit(other).ok());
  Mutation update;
  update.history.push_back(MakeHistory("e1", HistoryAction::kUpdate, 2));
  ASSERT_TRUE(store->Commit(update).ok());

  auto history = store->History("default", "e1");
  ASSERT_TRUE(history.ok()) << history.status().ToString();
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0].action, HistoryAction::kCreate);
  EXPECT_EQ((*history)[0].content, "v1");
  EXPECT_EQ((*history)[0].tags, std::vector<std::string>{"t"});
  EXPECT_EQ((*history)[0].metadata.at("why"), "because");
  EXPECT_EQ((*history)[0].source, "api");
  EXPECT_EQ((*history)[0].reason, "test");
  EXPECT_EQ((*history)[0].at_ms, 1001);
  EXPECT_EQ((*history)[1].action, HistoryAction::kUpdate);
  EXPECT_LT((*history)[0].seq, (*history)[1].seq);

  auto other_ns = store->History("someone-else", "e1");
  ASSERT_TRUE(other_ns.ok());
  EXPECT_TRUE(other_ns->empty()) << "history is scoped by namespace";
}

TEST_F(SqliteStoreTest, ForgetRemovesTheEntryAndAllItsHistory) {
  auto store = OpenOrDie();
  Mutation m = Upsert(MakeEntry("e1"));
  m.history.push_back(MakeHistory("e1", HistoryAction::kCreate, 1));
  m.history.push_back(MakeHistory("e1", HistoryAction::kUpdate, 2));
  ASSERT_TRUE(store->Commit(m).ok());
  Mutation forget;
  forget.forgets.push_back("e1");
  ASSERT_TRUE(store->Commit(forget).ok());
  EXPECT_TRUE(LoadAll(*store).empty());
  auto history = store->History("default", "e1");
  ASSERT_TRUE(history.ok());
  EXPECT_TRUE(history->empty());
}

TEST_F(SqliteStoreTest, DeleteRemovesTheEntryButKeepsItsHistory) {
  auto store = OpenOrDie();
  Mutation m = Upsert(MakeEntry("e1"));
  m.history.push_back(MakeHistory("e1", HistoryAction::kCreate, 1));
  ASSERT_TRUE(store->Commit(m).ok());
  Mutation del;
  del.deletes.push_back("e1");
  del.history.push_back(MakeHistory("e1", HistoryAction::kDelete, 1));
  ASSERT_TRUE(store->Commit(del).ok());
  EXPECT_TRUE(LoadAll(*store).empty());
  auto history = store->History("default", "e1");
  ASSERT_TRUE(history.ok());
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ(history->back().action, HistoryAction::kDelete);
}

TEST_F(SqliteStoreTest, MutationAppliesForgetsBeforeUpsertsSoAReAddSurvives) {
  auto store = OpenOrDie();
  ASSERT_TRUE(store->Commit(Upsert(MakeEntry("e1", "default", "old"))).ok());
  Mutation m = Upsert(MakeEntry("e1", "default", "new"));
  m.forgets.push_back("e1");
  m.history.push_back(MakeHistory("e1", HistoryAction::kCreate, 1));
  ASSERT_TRUE(store->Commit(m).ok());
  auto all = LoadAll(*store);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].entry.content, "new");
  auto history = store->History("default", "e1");
  ASSERT_TRUE(history.ok());
  EXPECT_EQ(history->size(), 1u) << "history appended after the forget stays";
}

TEST_F(SqliteStoreTest, UsageUpdatesLiveEntriesAndSkipsMissingOnes) {
  auto store = OpenOrDie();
  ASSERT_TRUE(store->Commit(Upsert(MakeEntry("e1"))).ok());
  Mutation m;
  m.usage.push_back({"e1", 5, 9999});
  m.usage.push_back({"missing", 1, 1});
  ASSERT_TRUE(store->Commit(m).ok());
  auto all = LoadAll(*store);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].entry.usage_count, 5);
  EXPECT_EQ(all[0].entry.last_access_ms, 9999);
}

TEST_F(SqliteStoreTest, CounterDeltasAddUpPerNamespace) {
  auto store = OpenOrDie();
  Mutation a;
  a.counters.push_back({"u1", 1, 2, 3});
  a.counters.push_back({"u2", 10, 0, 0});
  ASSERT_TRUE(store->Commit(a).ok());
  Mutation b;
  b.counters.push_back({"u1", 4, 5, 6});
  ASSERT_TRUE(store->Commit(b).ok());
  auto counters = store->Counters();
  ASSERT_TRUE(counters.ok());
  ASSERT_EQ(counters->size(), 2u);
  EXPECT_EQ((*counters)[0].ns, "u1");
  EXPECT_EQ((*counters)[0].reads, 5);
  EXPECT_EQ((*counters)[0].writes, 7);
  EXPECT_EQ((*counters)[0].evictions, 9);
  EXPECT_EQ((*counters)[1].ns, "u2");
  EXPECT_EQ((*counters)[1].reads, 10);
}

// --- group commit ---

TEST_F(SqliteStoreTest, ConcurrentCommitsAllLandAndAreGrouped) {
  constexpr int kThreads = 8;
  constexpr int kPerThread = 200;
  SqliteStats stats;
  {
    auto store = OpenOrDie();
    std::vector<std::thread> threads;
    std::atomic<int> failures{0};
    for (int t = 0; t < kThreads; ++t) {
      threads.emplace_back([&, t] {
        for (int i = 0; i < kPerThread; ++i) {
          Mutation m = Upsert(MakeEntry(std::to_string(t) + "-" + std::to_string(i)));
          m.counters.push_back({"default", 0, 1, 0});
          if (!store->Commit(std::move(m)).ok()) failures.fetch_add(1);
        }
      });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(failures.load(), 0);
    stats = store->Stats();
  }
  EXPECT_EQ(stats.writes, static_cast<std::uint64_t>(kThreads * kPerThread));
  EXPECT_LT(stats.transactions, stats.writes) << "concurrent commits should share transactions";
  EXPECT_EQ(stats.failed, 0u);

  auto store = OpenOrDie();
  EXPECT_EQ(LoadAll(*store).size(), static_cast<std::size_t>(kThreads * kPerThread));
  auto counters = store->Counters();
  ASSERT_TRUE(counters.ok());
  ASSERT_EQ(counters->size(), 1u);
  EXPECT_EQ((*counters)[0].writes, kThreads * kPerThread);
}

TEST_F(SqliteStoreTest, FailingMemberOfAGroupFailsAloneAndNeighboursLand) {
  SqliteOptions o = Options();
  o.busy_timeout_ms = 10'000;
  auto store = OpenOrDie(o);

  // Hold the write lock so that the next commits pile up in the queue and form one group.
  sqlite3* blocker = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &blocker), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(blocker, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr), SQLITE_OK);

  StoredEntry bad = MakeEntry("bad");
  bad.entry.importance = 7.0;  // outside [0, 3]: the schema refuses it
  // Enqueue (not Commit from threads) makes the grouping deterministic: every mutation is queued
  // before the lock is released, so the bad one always shares a transaction with a good one
  // (the writer may have taken the first alone, blocked on the lock, but then takes the rest).
  std::vector<std::future<Status>> pending;
  for (int i = 0; i < 5; ++i) {
    pending.push_back(store->Enqueue(Upsert(i == 2 ? bad : MakeEntry("good" + std::to_string(i)))));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ASSERT_EQ(sqlite3_exec(blocker, "COMMIT", nullptr, nullptr, nullptr), SQLITE_OK);
  sqlite3_close(blocker);
  std::vector<Status> results;
  for (auto& p : pending) results.push_back(p.get());

  for (int i = 0; i < 5; ++i) {
    if (i == 2) {
      EXPECT_EQ(results[i].code(), StatusCode::kInvalidArgument) << results[i].ToString();
      EXPECT_TRUE(Contains(results[i].message(), "bad")) << results[i].ToString();
    } else {
      EXPECT_TRUE(results[i].ok()) << i << ": " << results[i].ToString();
    }
  }
  EXPECT_EQ(LoadAll(*store).size(), 4u);
  EXPECT_GE(store->Stats().split_groups, 1u);
  EXPECT_EQ(store->Stats().failed, 1u);
}

TEST_F(SqliteStoreTest, EnqueueKeepsQueueOrderAndReportsEachOutcome) {
  auto store = OpenOrDie();
  StoredEntry bad = MakeEntry("bad");
  bad.entry.importance = 3.5;
  std::vector<std::future<Status>> outcomes;
  for (int v = 1; v <= 20; ++v) {
    StoredEntry e = MakeEntry("x", "default", "v" + std::to_string(v));
    e.entry.version = v;
    outcomes.push_back(store->Enqueue(Upsert(e)));
    if (v == 10) outcomes.push_back(store->Enqueue(Upsert(bad)));
  }
  for (std::size_t i = 0; i < outcomes.size(); ++i) {
    Status s = outcomes[i].get();
    if (i == 10) {
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    } else {
      EXPECT_TRUE(s.ok()) << i << ": " << s.ToString();
    }
  }
  auto all = LoadAll(*store);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].entry.content, "v20") << "later mutations win";
}

TEST_F(SqliteStoreTest, CommitLaterIsVisibleAfterFlush) {
  auto store = OpenOrDie();
  for (int i = 0; i < 50; ++i) store->CommitLater(Upsert(MakeEntry("later" + std::to_string(i))));
  ASSERT_TRUE(store->Flush().ok());
  EXPECT_EQ(LoadAll(*store).size(), 50u);
}

TEST_F(SqliteStoreTest, FlushReportsAFailedCommitLaterOnce) {
  auto store = OpenOrDie();
  StoredEntry bad = MakeEntry("bad");
  bad.entry.importance = -1.0;
  store->CommitLater(Upsert(bad));
  Status first = store->Flush();
  EXPECT_EQ(first.code(), StatusCode::kInvalidArgument) << first.ToString();
  EXPECT_TRUE(store->Flush().ok()) << "the error is reported once";
}

TEST_F(SqliteStoreTest, CloseDrainsQueuedWritesSoReopenSeesEverything) {
  {
    auto store = OpenOrDie();
    ASSERT_TRUE(store->Commit(Upsert(MakeEntry("sync"))).ok());
    for (int i = 0; i < 100; ++i) store->CommitLater(Upsert(MakeEntry("q" + std::to_string(i))));
    ChatSession s{"s1", "default", 1, 2};
    ASSERT_TRUE(store->SaveSession(s).ok());
  }
  auto store = OpenOrDie();
  EXPECT_EQ(LoadAll(*store).size(), 101u);
  auto session = store->GetSession("s1");
  ASSERT_TRUE(session.ok());
  EXPECT_TRUE(session->has_value());
}

// --- sessions and turns ---

TEST_F(SqliteStoreTest, SessionsAndTurnsRoundTrip) {
  auto store = OpenOrDie();
  ASSERT_TRUE(store->SaveSession({"s1", "user-1", 100, 100}).ok());
  ASSERT_TRUE(store->AppendTurn({"s1", 1, "user", "xin chào", 150}).ok());
  ASSERT_TRUE(store->AppendTurn({"s1", 2, "assistant", "hello", 160}).ok());

  auto session = store->GetSession("s1");
  ASSERT_TRUE(session.ok());
  ASSERT_TRUE(session->has_value());
  EXPECT_EQ((*session)->ns, "user-1");
  EXPECT_EQ((*session)->created_ms, 100);
  EXPECT_EQ((*session)->updated_ms, 160) << "a turn moves the session's updated_ms";

  auto missing = store->GetSession("nope");
  ASSERT_TRUE(missing.ok());
  EXPECT_FALSE(missing->has_value());

  auto turns = store->RecentTurns("s1", 10);
  ASSERT_TRUE(turns.ok());
  ASSERT_EQ(turns->size(), 2u);
  EXPECT_EQ((*turns)[0].role, "user");
  EXPECT_EQ((*turns)[0].text, "xin chào");
  EXPECT_EQ((*turns)[0].at_ms, 150);
  EXPECT_EQ((*turns)[1].seq, 2);
}

TEST_F(SqliteStoreTest, RecentTurnsReturnsTheLastLimitTurnsOldestFirst) {
  auto store = OpenOrDie();
  ASSERT_TRUE(store->SaveSession({"s", "default", 1, 1}).ok());
  for (int i = 1; i <= 10; ++i) {
    ASSERT_TRUE(
        store->AppendTurn({"s", i, i % 2 ? "user" : "assistant", "t" + std::to_string(i), i}).ok());
  }
  struct Case {
    std::size_t limit;
    std::vector<std::int64_t> seqs;
  };
  for (const Case& c : std::vector<Case>{
           {3, {8, 9, 10}},
           {1, {10}},
           {0, {}},
           {100, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
           {std::numeric_limits<std::size_t>::max(), {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}}}) {
    auto turns = store->RecentTurns("s", c.limit);
    ASSERT_TRUE(turns.ok());
    std::vector<std::int64_t> seqs;
    for (const ChatTurn& t : *turns) seqs.push_back(t.seq);
    EXPECT_EQ(seqs, c.seqs) << "limit " << c.limit;
  }
}

TEST_F(SqliteStoreTest, AppendTurnRejectsUnknownSessionsAndDuplicateSeqs) {
  auto store = OpenOrDie();
  Status unknown = store->AppendTurn({"ghost", 1, "user", "hi", 1});
  EXPECT_EQ(unknown.code(), StatusCode::kNotFound) << unknown.ToString();
  EXPECT_TRUE(Contains(unknown.message(), "ghost"));

  ASSERT_TRUE(store->SaveSession({"s", "default", 1, 1}).ok());
  ASSERT_TRUE(store->AppendTurn({"s", 1, "user", "hi", 1}).ok());
  Status dup = store->AppendTurn({"s", 1, "user", "again", 2});
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists) << dup.ToString();
}

// --- read-only mode ---

TEST_F(SqliteStoreTest, ReadOnlyStoreLoadsButRefusesWrites) {
  { ASSERT_TRUE(OpenOrDie()->Commit(Upsert(MakeEntry("e1"))).ok()); }
  SqliteOptions o = Options();
  o.read_only = true;
  auto store = OpenOrDie(o);
  EXPECT_EQ(LoadAll(*store).size(), 1u);
  EXPECT_EQ(store->Commit(Upsert(MakeEntry("e2"))).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->SaveSession({"s", "default", 1, 1}).code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(store->CheckIntegrity().ok());
  EXPECT_TRUE(Contains(store->Describe(), path_));
}

// --- errors ---

TEST_F(SqliteStoreTest, OpenRejectsInvalidOptions) {
  SqliteOptions empty_path;
  EXPECT_EQ(SqliteStore::Open(empty_path).status().code(), StatusCode::kInvalidArgument);
  SqliteOptions zero_group = Options();
  zero_group.max_group = 0;
  EXPECT_EQ(SqliteStore::Open(zero_group).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(SqliteStoreTest, OpenOfRandomBytesIsDataLoss) {
  std::mt19937 rng(42);
  std::ofstream out(path_, std::ios::binary);
  for (int i = 0; i < 64 * 1024; ++i) out.put(static_cast<char>(rng() & 0xff));
  out.close();
  auto store = SqliteStore::Open(Options());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kDataLoss) << store.status().ToString();
  EXPECT_TRUE(Contains(store.status().message(), path_));
  EXPECT_TRUE(Contains(store.status().message(), "restore a copy from a backup"));
}

TEST_F(SqliteStoreTest, OpenOfTruncatedDatabaseIsDataLoss) {
  {
    auto store = OpenOrDie();
    Mutation m;
    for (int i = 0; i < 300; ++i) {
      StoredEntry e = MakeEntry("e" + std::to_string(i), "default", std::string(500, 'x'));
      e.embedding.assign(64, 0.5f);
      m.upserts.push_back(e);
    }
    ASSERT_TRUE(store->Commit(m).ok());
  }
  ASSERT_FALSE(fs::exists(path_ + "-wal")) << "a clean close checkpoints the WAL away";
  fs::resize_file(path_, fs::file_size(path_) / 2);
  auto store = SqliteStore::Open(Options());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kDataLoss) << store.status().ToString();
}

TEST_F(SqliteStoreTest, CheckIntegrityReportsADamagedPageAsDataLoss) {
  {
    auto store = OpenOrDie();
    Mutation m;
    for (int i = 0; i < 300; ++i) {
      m.upserts.push_back(MakeEntry("e" + std::to_string(i), "default", std::string(500, 'x')));
    }
    ASSERT_TRUE(store->Commit(m).ok());
    EXPECT_TRUE(store->CheckIntegrity().ok());
  }
  {
    // Scribble over one page near the end: the schema on page 1 stays readable.
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(static_cast<std::streamoff>(fs::file_size(path_)) - 3 * 4096);
    const std::string garbage(4096, '\xab');
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  auto store = SqliteStore::Open(Options());
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  Status s = (*store)->CheckIntegrity();
  EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), path_));
}

TEST_F(SqliteStoreTest, UnreadableRowsAreDataLossNamingTheEntry) {
  struct Case {
    const char* name;
    const char* sql;
  };
  for (const Case& c : {Case{"metadata", "UPDATE entries SET metadata = '{not json'"},
                        Case{"tags", "UPDATE entries SET tags = '{\"a\":1}'"},
                        Case{"terms", "UPDATE entries SET terms = '[1, 2]'"},
                        Case{"embedding", "UPDATE entries SET embedding = x'0102030405'"}}) {
    SCOPED_TRACE(c.name);
    fs::remove(path_);
    {
      auto store = OpenOrDie();
      ASSERT_TRUE(store->Commit(Upsert(MakeEntry("victim-1"))).ok());
    }
    RawExec(c.sql);
    auto store = OpenOrDie();
    Status s = store->Load([](StoredEntry&&) { return Status::Ok(); });
    EXPECT_EQ(s.code(), StatusCode::kDataLoss) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "victim-1")) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), c.name)) << s.ToString();
  }
}

TEST_F(SqliteStoreTest, OpenInAMissingDirectoryNamesTheDirectory) {
  SqliteOptions o = Options();
  o.path = (dir_ / "no-such-dir" / "mann.db").string();
  auto store = SqliteStore::Open(o);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(store.status().message(), (dir_ / "no-such-dir").string()))
      << store.status().ToString();
}

// As root these open in a child running as an unprivileged user that owns the directory, since
// root ignores permission bits. Any store the parent opens is closed again before the fork.
TEST_F(SqliteStoreTest, OpenInAReadOnlyDirectoryIsFailedPrecondition) {
  for (bool existing : {false, true}) {
    SCOPED_TRACE(existing ? "existing database" : "new database");
    fs::permissions(dir_, fs::perms::owner_all);
    fs::remove(path_);
    if (existing) OpenOrDie();  // closed again at once, which removes -wal and -shm
    Status given = test_support::GiveToUnprivilegedUser(dir_);
    ASSERT_TRUE(given.ok()) << given.ToString();
    fs::permissions(dir_, fs::perms::owner_read | fs::perms::owner_exec);
    Status s = test_support::RunUnprivileged([&] { return SqliteStore::Open(Options()).status(); });
    ASSERT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), path_)) << s.ToString();
    EXPECT_TRUE(Contains(s.message(), dir_.string())) << s.ToString();
  }
}

TEST_F(SqliteStoreTest, OpenOfAReadOnlyFileForWritingIsFailedPrecondition) {
  { OpenOrDie(); }
  Status given = test_support::GiveToUnprivilegedUser(dir_);
  ASSERT_TRUE(given.ok()) << given.ToString();
  fs::permissions(path_, fs::perms::owner_read);
  Status s = test_support::RunUnprivileged([&] { return SqliteStore::Open(Options()).status(); });
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.code(), StatusCode::kFailedPrecondition) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "permissions")) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), path_)) << s.ToString();
}

TEST_F(SqliteStoreTest, CommitWhileAnotherConnectionHoldsTheLockIsUnavailable) {
  SqliteOptions o = Options();
  o.busy_timeout_ms = 100;
  auto store = OpenOrDie(o);
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(sqlite3_exec(other, "BEGIN EXCLUSIVE", nullptr, nullptr, nullptr), SQLITE_OK);

  const auto start = std::chrono::steady_clock::now();
  Status s = store->Commit(Upsert(MakeEntry("e1")));
  const auto waited = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(s.code(), StatusCode::kUnavailable) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "locked by another process")) << s.ToString();
  EXPECT_GE(waited, std::chrono::milliseconds(90));

  sqlite3_exec(other, "COMMIT", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  EXPECT_TRUE(store->Commit(Upsert(MakeEntry("e1"))).ok()) << "works again once released";
}

TEST_F(SqliteStoreTest, OpenWhileAnotherProcessHoldsAnExclusiveLockIsUnavailable) {
  // A file still in rollback-journal mode, held exclusively, blocks even readers.
  RawExec("CREATE TABLE t (x)");
  sqlite3* other = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &other), SQLITE_OK);
  ASSERT_EQ(
      sqlite3_exec(other, "BEGIN EXCLUSIVE; INSERT INTO t VALUES (1);", nullptr, nullptr, nullptr),
      SQLITE_OK);
  SqliteOptions o = Options();
  o.busy_timeout_ms = 100;
  auto store = SqliteStore::Open(o);
  sqlite3_exec(other, "ROLLBACK", nullptr, nullptr, nullptr);
  sqlite3_close(other);
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable) << store.status().ToString();
  EXPECT_TRUE(Contains(store.status().message(), path_));
}

TEST_F(SqliteStoreTest, DiskFullIsResourceExhaustedAndLeavesNothingBehind) {
  SqliteOptions o = Options();
  // The empty schema takes 17 pages of 4 KiB; 32 leaves room for small entries, not 200 KB.
  o.max_page_count = 32;
  auto store = OpenOrDie(o);
  ASSERT_TRUE(store->Commit(Upsert(MakeEntry("small"))).ok());
  Status s = store->Commit(Upsert(MakeEntry("huge", "default", std::string(200'000, 'z'))));
  EXPECT_EQ(s.code(), StatusCode::kResourceExhausted) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "disk full writing " + path_)) << s.ToString();
  auto all = LoadAll(*store);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].entry.id, "small");
  EXPECT_TRUE(store->Commit(Upsert(MakeEntry("small2"))).ok()) << "small writes still fit";
}

TEST_F(SqliteStoreTest, SchemaVersionNewerThanThisBuildIsRejected) {
  { OpenOrDie(); }
  RawExec("PRAGMA user_version = 99");
  for (bool read_only : {false, true}) {
    SqliteOptions o = Options();
    o.read_only = read_only;
    auto store = SqliteStore::Open(o);
    ASSERT_FALSE(store.ok());
    EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition);
    const std::string msg = store.status().message();
    EXPECT_TRUE(Contains(msg, path_)) << msg;
    EXPECT_TRUE(Contains(msg, "99")) << msg;
    EXPECT_TRUE(Contains(msg, std::to_string(SqliteStore::SchemaVersion()))) << msg;
  }
}

TEST_F(SqliteStoreTest, ForeignSqliteFileIsRejected) {
  RawExec("CREATE TABLE invoices (id INTEGER PRIMARY KEY)");
  auto store = SqliteStore::Open(Options());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition) << store.status().ToString();
  EXPECT_TRUE(Contains(store.status().message(), "another application"));
}

TEST_F(SqliteStoreTest, NewFileIsWalWithSchemaVersionAndApplicationId) {
  { OpenOrDie(); }
  sqlite3* db = nullptr;
  ASSERT_EQ(sqlite3_open(path_.c_str(), &db), SQLITE_OK);
  auto query = [&](const char* sql) {
    sqlite3_stmt* stmt = nullptr;
    EXPECT_EQ(sqlite3_prepare_v2(db, sql, -1, &stmt, nullptr), SQLITE_OK);
    EXPECT_EQ(sqlite3_step(stmt), SQLITE_ROW);
    std::string v = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    return v;
  };
  EXPECT_EQ(query("PRAGMA journal_mode"), "wal");
  EXPECT_EQ(query("PRAGMA user_version"), std::to_string(SqliteStore::SchemaVersion()));
  EXPECT_EQ(query("PRAGMA application_id"), "1835101806");
  sqlite3_close(db);
}

// --- the pager outbox ---

OutboxDelivery MakeDelivery(const std::string& id, const std::string& channel,
                            TimestampMs next_attempt_ms, const std::string& notification_id = "") {
  OutboxDelivery d;
  d.id = id;
  d.channel = channel;
  d.notification_id = notification_id.empty() ? "n-" + id : notification_id;
  d.notification = R"({"id":"n-)" + id + R"(","title":"disk almost full"})";
  d.created_ms = 1000;
  d.next_attempt_ms = next_attempt_ms;
  return d;
}

std::vector<std::string> Ids(const std::vector<OutboxDelivery>& rows) {
  std::vector<std::string> ids;
  for (const OutboxDelivery& d : rows) ids.push_back(d.id);
  return ids;
}

DeliveryOutcome Outcome(const std::string& id, TimestampMs at_ms, std::string error = "",
                        int status = 0, TimestampMs next_attempt_ms = 0) {
  return DeliveryOutcome{id, at_ms, std::move(error), status, next_attempt_ms};
}

TEST_F(SqliteStoreTest, OutboxListsDueRowsOfOneChannelByDueTimeAcrossReopen) {
  {
    auto store = OpenOrDie();
    ASSERT_TRUE(store
                    ->EnqueueDeliveries(
                        {MakeDelivery("d3", "slack", 3000), MakeDelivery("d1", "slack", 1000),
                         MakeDelivery("d2", "slack", 1000), MakeDelivery("p1", "pagerduty", 1000)})
                    .ok());
  }
  auto store = OpenOrDie();
  auto due = store->DueDeliveries("slack", 2000, 10);
  ASSERT_TRUE(due.ok()) << due.status().ToString();
  EXPECT_EQ(Ids(*due), (std::vector<std::string>{"d1", "d2"}));
  const OutboxDelivery& d1 = (*due)[0];
  EXPECT_EQ(d1.channel, "slack");
  EXPECT_EQ(d1.notification_id, "n-d1");
  EXPECT_EQ(d1.notification, R"({"id":"n-d1","title":"disk almost full"})");
  EXPECT_EQ(d1.state, OutboxState::kPending);
  EXPECT_EQ(d1.attempts, 0);
  EXPECT_EQ(d1.created_ms, 1000);
  EXPECT_EQ(d1.updated_ms, 1000);
  EXPECT_EQ(d1.next_attempt_ms, 1000);

  auto all = store->DueDeliveries("slack", std::numeric_limits<TimestampMs>::max(), 10);
  ASSERT_TRUE(all.ok());
  EXPECT_EQ(Ids(*all), (std::vector<std::string>{"d1", "d2", "d3"}));
  auto limited = store->DueDeliveries("slack", std::numeric_limits<TimestampMs>::max(), 1);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(Ids(*limited), (std::vector<std::string>{"d1"}));
}

TEST_F(SqliteStoreTest, OutboxAttemptsMoveRowsThroughTheirLifecycle) {
  auto store = OpenOrDie();
  ASSERT_TRUE(
      store
          ->EnqueueDeliveries({MakeDelivery("a", "slack", 1000), MakeDelivery("b", "slack", 1000),
                               MakeDelivery("c", "slack", 1000), MakeDelivery("d", "slack", 1000)})
          .ok());

  // A retry keeps the row pending, counts the attempt and moves its due time.
  ASSERT_TRUE(store->RecordDeliveryAttempt(Outcome("a", 1100, "HTTP 503", 503, 5000)).ok());
  ASSERT_TRUE(store->MarkDelivered(Outcome("b", 1200, "", 200)).ok());
  ASSERT_TRUE(store->MarkFailed(Outcome("c", 1300, "HTTP 400: invalid_payload", 400)).ok());
  ASSERT_TRUE(store->MarkDead(Outcome("d", 1400, "timed out", 0)).ok());

  auto due = store->DueDeliveries("slack", 4999, 10);
  ASSERT_TRUE(due.ok());
  EXPECT_TRUE(due->empty()) << "a is not due before 5000; b, c and d are final";
  due = store->DueDeliveries("slack", 5000, 10);
  ASSERT_TRUE(due.ok());
  ASSERT_EQ(Ids(*due), (std::vector<std::string>{"a"}));
  EXPECT_EQ((*due)[0].attempts, 1);
  EXPECT_EQ((*due)[0].last_error, "HTTP 503");
  EXPECT_EQ((*due)[0].last_status, 503);
  EXPECT_EQ((*due)[0].updated_ms, 1100);

  auto recent = store->RecentDeliveries(10);
  ASSERT_TRUE(recent.ok());
  ASSERT_EQ(recent->size(), 4u);
  std::map<std::string, OutboxDelivery> by_id;
  for (const OutboxDelivery& d : *recent) by_id[d.id] = d;
  EXPECT_EQ(by_id["b"].state, OutboxState::kDelivered);
  EXPECT_EQ(by_id["b"].attempts, 1);
  EXPECT_EQ(by_id["b"].last_status, 200);
  EXPECT_EQ(by_id["b"].last_error, "");
  EXPECT_EQ(by_id["c"].state, OutboxState::kFailed);
  EXPECT_EQ(by_id["c"].last_error, "HTTP 400: invalid_payload");
  EXPECT_EQ(by_id["d"].state, OutboxState::kDead);
  EXPECT_EQ(by_id["d"].updated_ms, 1400);
  EXPECT_EQ(by_id["d"].next_attempt_ms, 1000) << "a final row keeps its last due time";

  // Final rows take no more attempts; unknown ids are NotFound too.
  for (const char* id : {"b", "c", "d", "nope"}) {
    Status s = store->RecordDeliveryAttempt(Outcome(id, 2000, "again", 500, 3000));
    EXPECT_EQ(s.code(), StatusCode::kNotFound) << id << ": " << s.ToString();
    EXPECT_TRUE(Contains(s.message(), id)) << s.ToString();
    EXPECT_EQ(store->MarkDelivered(Outcome(id, 2000)).code(), StatusCode::kNotFound) << id;
  }
}

TEST_F(SqliteStoreTest, OutboxEnqueueIsAllOrNothingAndRefusesDuplicates) {
  auto store = OpenOrDie();
  ASSERT_TRUE(store->EnqueueDeliveries({MakeDelivery("a", "slack", 1000, "n1")}).ok());

  // The same notification for the same channel again: nothing of the batch lands.
  Status s = store->EnqueueDeliveries(
      {MakeDelivery("b", "email", 1000, "n1"), MakeDelivery("c", "slack", 1000, "n1")});
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << s.ToString();
  EXPECT_TRUE(Contains(s.message(), "n1")) << s.ToString();
  auto email = store->DueDeliveries("email", 5000, 10);
  ASSERT_TRUE(email.ok());
  EXPECT_TRUE(email->empty()) << "the batch's other row was rolled back";

  s = store->EnqueueDeliveries({MakeDelivery("a", "webhook", 1000, "n2")});
  EXPECT_EQ(s.code(), StatusCode::kAlreadyExists) << "the id is taken: " << s.ToString();

  OutboxDelivery no_channel = MakeDelivery("x", "", 1000);
  s = store->EnqueueDeliveries({no_channel});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(Contains(s.message(), "channel")) << s.ToString();
  OutboxDelivery attempted = MakeDelivery("y", "slack", 1000);
  attempted.attempts = 2;
  s = store->EnqueueDeliveries({attempted});
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
}

TEST_F(SqliteStoreTest, OutboxStatsCountPendingAndRecentOutcomesPerChannel) {
  auto store = OpenOrDie();
  std::vector<OutboxDelivery> rows = {
      MakeDelivery("s1", "slack", 4000), MakeDelivery("s2", "slack", 2000),
      MakeDelivery("s3", "slack", 1000), MakeDelivery("e1", "email", 1000),
      MakeDelivery("e2", "email", 1000)};
  rows[1].created_ms = 900;
  ASSERT_TRUE(store->EnqueueDeliveries(rows).ok());
  ASSERT_TRUE(store->MarkDelivered(Outcome("s3", 1500, "", 200)).ok());
  ASSERT_TRUE(store->MarkDead(Outcome("e1", 1000, "gave up")).ok());
  ASSERT_TRUE(store->MarkDead(Outcome("e2", 3000, "gave up")).ok());

  auto stats = store->OutboxStats(2000);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_EQ(stats->size(), 2u);
  const OutboxChannelStats& email = (*stats)[0];
  EXPECT_EQ(email.channel, "email");
  EXPECT_EQ(email.pending, 0);
  EXPECT_EQ(email.oldest_pending_created_ms, 0);
  EXPECT_EQ(email.next_attempt_ms, 0);
  EXPECT_EQ(email.dead_since, 1) << "e1 died before 2000";
  EXPECT_EQ(email.last_dead_ms, 3000);
  const OutboxChannelStats& slack = (*stats)[1];
  EXPECT_EQ(slack.channel, "slack");
  EXPECT_EQ(slack.pending, 2);
  EXPECT_EQ(slack.oldest_pending_created_ms, 900);
  EXPECT_EQ(slack.next_attempt_ms, 2000);
  EXPECT_EQ(slack.delivered_since, 0) << "s3 was delivered at 1500";
  EXPECT_EQ(store->OutboxStats(0)->at(1).delivered_since, 1);
}

TEST_F(SqliteStoreTest, OutboxPruneRemovesOnlyOldFinalRows) {
  auto store = OpenOrDie();
  ASSERT_TRUE(store
                  ->EnqueueDeliveries({MakeDelivery("old", "slack", 1000),
                                       MakeDelivery("new", "slack", 1000),
                                       MakeDelivery("pending", "slack", 1000)})
                  .ok());
  ASSERT_TRUE(store->MarkDelivered(Outcome("old", 2000)).ok());
  ASSERT_TRUE(store->MarkFailed(Outcome("new", 9000, "HTTP 404", 404)).ok());

  auto pruned = store->PruneDeliveries(5000);
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  EXPECT_EQ(*pruned, 1);
  auto left = store->RecentDeliveries(10);
  ASSERT_TRUE(left.ok());
  std::vector<std::string> ids = Ids(*left);
  std::sort(ids.begin(), ids.end());
  EXPECT_EQ(ids, (std::vector<std::string>{"new", "pending"}));
  EXPECT_EQ(*store->PruneDeliveries(std::numeric_limits<TimestampMs>::max()), 1)
      << "the pending row stays whatever its age";
}

TEST_F(SqliteStoreTest, OutboxRecentDeliveriesAreNewestFirstAndLimited) {
  auto store = OpenOrDie();
  std::vector<OutboxDelivery> rows;
  for (int i = 0; i < 5; ++i) {
    rows.push_back(MakeDelivery("d" + std::to_string(i), "slack", 1000));
    rows.back().created_ms = 1000 + i;
  }
  ASSERT_TRUE(store->EnqueueDeliveries(rows).ok());
  auto recent = store->RecentDeliveries(3);
  ASSERT_TRUE(recent.ok());
  EXPECT_EQ(Ids(*recent), (std::vector<std::string>{"d4", "d3", "d2"}));
}

TEST_F(SqliteStoreTest, OutboxWritesAreRefusedReadOnly) {
  { OpenOrDie(); }
  SqliteOptions o = Options();
  o.read_only = true;
  auto store = OpenOrDie(o);
  EXPECT_EQ(store->EnqueueDeliveries({MakeDelivery("a", "slack", 1)}).code(),
            StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->MarkDead(Outcome("a", 1)).code(), StatusCode::kFailedPrecondition);
  EXPECT_EQ(store->PruneDeliveries(1).status().code(), StatusCode::kFailedPrecondition);
  auto due = store->DueDeliveries("slack", 10, 10);
  ASSERT_TRUE(due.ok()) << "reads work read-only: " << due.status().ToString();
}

TEST_F(SqliteStoreTest, OutboxEnqueueSurvivesSigkillRightAfterItReturns) {
  // The child enqueues, tells the parent, and is killed at once; nothing gets a chance to
  // flush or close. No store is open in the parent while it forks.
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  const pid_t child = fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    close(ready[0]);
    auto store = SqliteStore::Open(Options());
    const bool ok =
        store.ok() && (*store)->EnqueueDeliveries({MakeDelivery("survivor", "pagerduty", 1)}).ok();
    const char byte = ok ? '1' : '0';
    if (write(ready[1], &byte, 1) != 1) _exit(2);
    for (;;) pause();
  }
  close(ready[1]);
  char byte = 0;
  const ssize_t n = read(ready[0], &byte, 1);
  kill(child, SIGKILL);
  int status = 0;
  waitpid(child, &status, 0);
  close(ready[0]);
  ASSERT_EQ(n, 1);
  ASSERT_EQ(byte, '1') << "the child could not enqueue";
  EXPECT_TRUE(WIFSIGNALED(status));

  auto store = OpenOrDie();
  auto due = store->DueDeliveries("pagerduty", 10, 10);
  ASSERT_TRUE(due.ok()) << due.status().ToString();
  EXPECT_EQ(Ids(*due), (std::vector<std::string>{"survivor"}));
  EXPECT_TRUE(store->CheckIntegrity().ok());
}

TEST_F(SqliteStoreTest, FileOfSchemaOneGainsTheOutboxAndKeepsItsEntries) {
  {
    auto store = OpenOrDie();
    ASSERT_TRUE(store->Commit(Upsert(MakeEntry("kept"))).ok());
  }
  // What a file written before the outbox existed looks like.
  RawExec("DROP TABLE pager_outbox; PRAGMA user_version = 1;");
  auto store = OpenOrDie();
  auto all = LoadAll(*store);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].entry.id, "kept");
  EXPECT_TRUE(store->EnqueueDeliveries({MakeDelivery("a", "slack", 1)}).ok());
  EXPECT_EQ(Ids(*store->DueDeliveries("slack", 1, 10)), (std::vector<std::string>{"a"}));
}

TEST(OutboxState, NamesRoundTrip) {
  for (OutboxState state :
       {OutboxState::kPending, OutboxState::kDelivered, OutboxState::kFailed, OutboxState::kDead}) {
    EXPECT_EQ(ParseOutboxState(OutboxStateName(state)), state);
  }
  EXPECT_EQ(OutboxStateName(OutboxState::kDead), "dead");
  EXPECT_EQ(ParseOutboxState("retrying"), std::nullopt);
}

// --- the error mapping itself ---

TEST(SqliteError, MapsResultCodesOntoCanonicalStatuses) {
  struct Case {
    int rc;
    StatusCode code;
    const char* fragment;
  };
  const Case cases[] = {
      {SQLITE_BUSY, StatusCode::kUnavailable, "is locked by another process"},
      {SQLITE_BUSY_SNAPSHOT, StatusCode::kUnavailable, "stop the other mann process"},
      {SQLITE_LOCKED, StatusCode::kUnavailable, "locked"},
      {SQLITE_READONLY, StatusCode::kFailedPrecondition, "check permissions"},
      {SQLITE_READONLY_DBMOVED, StatusCode::kFailedPrecondition, "check permissions"},
      {SQLITE_FULL, StatusCode::kResourceExhausted, "disk full writing /d/m.db; free space"},
      {SQLITE_CORRUPT, StatusCode::kDataLoss, "/d/m.db is not a valid mann database"},
      {SQLITE_NOTADB, StatusCode::kDataLoss, "restore a copy from a backup"},
      {SQLITE_CANTOPEN, StatusCode::kFailedPrecondition, "directory /d exists"},
      {SQLITE_IOERR_FSYNC, StatusCode::kUnavailable, "I/O error"},
      {SQLITE_CONSTRAINT_PRIMARYKEY, StatusCode::kAlreadyExists, "op"},
      {SQLITE_CONSTRAINT_CHECK, StatusCode::kInvalidArgument, "op"},
      {SQLITE_MISUSE, StatusCode::kInternal, "unexpected sqlite error"},
  };
  for (const Case& c : cases) {
    Status s = internal::SqliteError(c.rc, "/d/m.db", "op");
    EXPECT_EQ(s.code(), c.code) << c.rc << ": " << s.ToString();
    EXPECT_TRUE(Contains(s.message(), c.fragment)) << c.rc << ": " << s.ToString();
    EXPECT_TRUE(Contains(s.message(), "op: ")) << s.ToString();
  }
}

}  // namespace
}  // namespace mann::store
