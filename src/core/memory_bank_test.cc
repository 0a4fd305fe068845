#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <pqxx/pqxx>
#include <stdlib.h>
#include <unistd.h>

#include <mann/core/clock.h>
#include <mann/core/id.h>
#include <mann/core/memory_bank.h>
#include <mann/encode/hashed_encoder.h>
#include <mann/encode/router.h>
#include <mann/store/postgres_store.h>
#include <mann/store/sqlite_store.h>
#include <mann/text/analyzer.h>
#include <mann/text/gloss.h>

namespace mann {
namespace {

namespace fs = std::filesystem;

constexpr TimestampMs kDayMs = 86'400'000;

std::vector<std::string> Ids(const std::vector<SearchHit>& hits) {
  std::vector<std::string> out;
  for (const auto& h : hits) out.push_back(h.entry.id);
  return out;
}

std::vector<std::string> Ids(const std::vector<MemoryEntry>& entries) {
  std::vector<std::string> out;
  for (const auto& e : entries) out.push_back(e.id);
  return out;
}

// A real SqliteStore in a fresh temporary directory, the real Analyzer and HashedEncoder, and a
// FakeClock; the bank and store can be closed and reopened on the same file.
class BankFixture : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string pattern = (fs::path(::testing::TempDir()) / "mann-bank-XXXXXX").string();
    ASSERT_NE(mkdtemp(pattern.data()), nullptr) << "mkdtemp failed for " << pattern;
    dir_ = pattern;
    encoder_ = std::make_unique<encode::HashedEncoder>();
    ASSERT_NO_FATAL_FAILURE(OpenStore());
    ASSERT_NO_FATAL_FAILURE(OpenBank());
  }

  void TearDown() override {
    bank_.reset();
    store_.reset();
    std::error_code ec;
    fs::remove_all(dir_, ec);
  }

  void OpenStore() {
    store::SqliteOptions so;
    so.path = (fs::path(dir_) / "mann.db").string();
    so.max_page_count = max_page_count_;
    auto store = store::SqliteStore::Open(so);
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
  }

  // (Re)opens the bank on the current store with `options_`.
  void OpenBank() {
    bank_.reset();
    auto bank = MemoryBank::Open(options_, *store_, *encoder_, analyzer_, clock_);
    ASSERT_TRUE(bank.ok()) << bank.status().ToString();
    bank_ = std::move(bank).value();
  }

  void OpenBank(const BankOptions& options) {
    options_ = options;
    OpenBank();
  }

  // Closes bank and store, then opens both again on the same file.
  void Reopen() {
    bank_.reset();
    store_.reset();
    ASSERT_NO_FATAL_FAILURE(OpenStore());
    ASSERT_NO_FATAL_FAILURE(OpenBank());
  }

  static AddRequest Req(std::string content, double importance = 1.0,
                        std::vector<std::string> tags = {}, std::string ns = "default") {
    AddRequest r;
    r.ns = std::move(ns);
    r.content = std::move(content);
    r.importance = importance;
    r.tags = std::move(tags);
    return r;
  }

  // Adds with the write head bypassed: always a new entry. Returns its id ("" on failure).
  std::string MustAdd(AddRequest r) {
    r.use_write_head = false;
    auto out = bank_->Add(r);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    if (!out.ok()) return "";
    EXPECT_EQ(out->action, WriteAction::kAdd);
    return out->memory_id;
  }
  std::string MustAdd(std::string content, double importance = 1.0,
                      std::vector<std::string> tags = {}, std::string ns = "default") {
    return MustAdd(Req(std::move(content), importance, std::move(tags), std::move(ns)));
  }

  WriteOutcome MustWrite(const AddRequest& r) {
    auto out = bank_->Add(r);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    return out.ok() ? *out : WriteOutcome{};
  }

  std::vector<SearchHit> MustSearch(std::string query, std::size_t top_k = 5,
                                    std::string ns = "default", bool touch = true) {
    SearchRequest r;
    r.ns = std::move(ns);
    r.query = std::move(query);
    r.top_k = top_k;
    r.touch = touch;
    auto hits = bank_->Search(r);
    EXPECT_TRUE(hits.ok()) << hits.status().ToString();
    return hits.ok() ? *hits : std::vector<SearchHit>{};
  }

  MemoryEntry MustPeek(const std::string& id, const std::string& ns = "default") {
    auto e = bank_->Get(ns, id, /*touch=*/false);
    EXPECT_TRUE(e.ok()) << e.status().ToString();
    return e.ok() ? *e : MemoryEntry{};
  }

  std::vector<HistoryRecord> MustHistory(const std::string& id, const std::string& ns = "default") {
    auto h = bank_->History(ns, id);
    EXPECT_TRUE(h.ok()) << h.status().ToString();
    return h.ok() ? *h : std::vector<HistoryRecord>{};
  }

  // Every entry of a namespace, newest first, through List pagination.
  std::vector<MemoryEntry> ListAll(const std::string& ns = "default") {
    std::vector<MemoryEntry> out;
    ListQuery q;
    q.ns = ns;
    q.limit = 1000;
    for (;;) {
      auto page = bank_->List(q);
      EXPECT_TRUE(page.ok()) << page.status().ToString();
      if (!page.ok()) return out;
      out.insert(out.end(), page->entries.begin(), page->entries.end());
      if (page->next_cursor.empty()) return out;
      q.cursor = page->next_cursor;
    }
  }

  std::string dir_;
  std::int64_t max_page_count_ = 0;  // > 0 makes the store's disk "full" at that many pages
  BankOptions options_;
  FakeClock clock_;
  text::Analyzer analyzer_;
  std::unique_ptr<encode::HashedEncoder> encoder_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<MemoryBank> bank_;
};

// ---- round trips -------------------------------------------------------------------------------

using MemoryBankCrud = BankFixture;

TEST_F(MemoryBankCrud, AddThenGetReturnsWhatWasStored) {
  AddRequest r = Req("  I live in Hanoi  ", 2.5, {"home", "city", "home"});
  r.context = "chat";
  r.metadata["city"] = "Hanoi";
  auto out = bank_->Add(r);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->action, WriteAction::kAdd);
  EXPECT_TRUE(IsUuid(out->memory_id));
  EXPECT_EQ(out->version, 1);
  EXPECT_TRUE(out->evicted_ids.empty());

  const MemoryEntry e = MustPeek(out->memory_id);
  EXPECT_EQ(e.id, out->memory_id);
  EXPECT_EQ(e.ns, "default");
  EXPECT_EQ(e.content, "I live in Hanoi");
  EXPECT_EQ(e.context, "chat");
  EXPECT_EQ(e.tags, (std::vector<std::string>{"city", "home"}));
  EXPECT_EQ(e.metadata.at("city"), "Hanoi");
  EXPECT_DOUBLE_EQ(e.importance, 2.5);
  EXPECT_EQ(e.usage_count, 0);
  EXPECT_EQ(e.version, 1);
  EXPECT_EQ(e.created_ms, clock_.NowMs());
  EXPECT_EQ(e.updated_ms, clock_.NowMs());
  EXPECT_EQ(e.content_hash, text::ContentKey("I live in Hanoi"));
  EXPECT_EQ(e.language, "en");
  EXPECT_EQ(bank_->TotalCount(), 1u);

  const auto history = MustHistory(e.id);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].action, HistoryAction::kCreate);
  EXPECT_EQ(history[0].version, 1);
  EXPECT_EQ(history[0].source, "api");
}

TEST_F(MemoryBankCrud, UpdateIncrementsVersionAndHistoryKeepsTheOldVersion) {
  const std::string id = MustAdd("I live in Hanoi", 1.0, {"home"});
  clock_.AdvanceMs(1000);

  UpdateRequest u;
  u.id = id;
  u.content = "I live in Da Nang";
  u.tags = std::vector<std::string>{"moved"};
  u.importance = 2.0;
  u.source = "cli";
  auto out = bank_->Update(u);
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->action, WriteAction::kUpdate);
  EXPECT_EQ(out->memory_id, id);
  EXPECT_EQ(out->version, 2);

  MemoryEntry e = MustPeek(id);
  EXPECT_EQ(e.content, "I live in Da Nang");
  EXPECT_EQ(e.tags, std::vector<std::string>{"moved"});
  EXPECT_DOUBLE_EQ(e.importance, 2.0);
  EXPECT_EQ(e.version, 2);
  EXPECT_EQ(e.updated_ms, clock_.NowMs());
  EXPECT_LT(e.created_ms, e.updated_ms);
  EXPECT_EQ(e.content_hash, text::ContentKey("I live in Da Nang"));

  // The new text is what search finds now.
  const auto hits = MustSearch("Da Nang");
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].entry.id, id);

  u = UpdateRequest{};
  u.id = id;
  u.importance = 0.5;
  ASSERT_TRUE(bank_->Update(u).ok());
  EXPECT_EQ(MustPeek(id).version, 3);
  EXPECT_EQ(MustPeek(id).content, "I live in Da Nang");

  const auto history = MustHistory(id);
  ASSERT_EQ(history.size(), 3u);
  EXPECT_EQ(history[0].action, HistoryAction::kCreate);
  EXPECT_EQ(history[0].content, "I live in Hanoi");
  EXPECT_EQ(history[0].tags, std::vector<std::string>{"home"});
  EXPECT_EQ(history[0].version, 1);
  EXPECT_EQ(history[1].action, HistoryAction::kUpdate);
  EXPECT_EQ(history[1].content, "I live in Da Nang");
  EXPECT_EQ(history[1].version, 2);
  EXPECT_EQ(history[1].source, "cli");
  EXPECT_EQ(history[2].version, 3);
  EXPECT_DOUBLE_EQ(history[2].importance, 0.5);
  EXPECT_LT(history[0].seq, history[1].seq);
  EXPECT_LT(history[1].seq, history[2].seq);
}

TEST_F(MemoryBankCrud, DeleteRemovesTheEntryButKeepsItsHistory) {
  const std::string id = MustAdd("I live in Hanoi");
  ASSERT_TRUE(bank_->Delete("default", id, "cli").ok());

  EXPECT_EQ(bank_->Get("default", id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->TotalCount(), 0u);
  EXPECT_TRUE(MustSearch("Hanoi").empty());
  EXPECT_EQ(bank_->Delete("default", id).code(), StatusCode::kNotFound);

  const auto history = MustHistory(id);
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[1].action, HistoryAction::kDelete);
  EXPECT_EQ(history[1].content, "I live in Hanoi");
  EXPECT_EQ(history[1].source, "cli");
}

TEST_F(MemoryBankCrud, RecordNoopAddsAHistoryRowAndLeavesTheEntryAlone) {
  const std::string id = MustAdd("I live in Hanoi");
  const MemoryEntry before = bank_->Get("default", id).value();
  ASSERT_TRUE(bank_->RecordNoop("default", id, "llm", "already known").ok());

  const MemoryEntry after = bank_->Get("default", id).value();
  EXPECT_EQ(after.content, before.content);
  EXPECT_EQ(after.version, before.version);
  const auto history = MustHistory(id);
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[1].action, HistoryAction::kNoop);
  EXPECT_EQ(history[1].source, "llm");
  EXPECT_EQ(history[1].reason, "already known");
  EXPECT_EQ(bank_->RecordNoop("default", "no-such-id", "llm", "x").code(), StatusCode::kNotFound);

  ASSERT_NO_FATAL_FAILURE(Reopen());  // durable, like every other history row
  EXPECT_EQ(MustHistory(id).size(), 2u);
}

TEST_F(MemoryBankCrud, ForgetPurgesTheEntryAndItsHistory) {
  const std::string id = MustAdd("I live in Hanoi");
  const std::string other = MustAdd("My favourite colour is blue");
  ASSERT_TRUE(bank_->Forget("default", id).ok());

  EXPECT_EQ(bank_->Get("default", id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->History("default", id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->Forget("default", id).code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->TotalCount(), 1u);
  EXPECT_EQ(MustHistory(other).size(), 1u);

  // Also gone for good from the store.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(bank_->Get("default", id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->History("default", id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->TotalCount(), 1u);
}

TEST_F(MemoryBankCrud, DeletedEntryCanStillBeForgotten) {
  const std::string id = MustAdd("I live in Hanoi");
  ASSERT_TRUE(bank_->Delete("default", id).ok());
  ASSERT_EQ(MustHistory(id).size(), 2u);

  ASSERT_TRUE(bank_->Forget("default", id).ok());
  EXPECT_EQ(bank_->History("default", id).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->Forget("default", id).code(), StatusCode::kNotFound);
}

TEST_F(MemoryBankCrud, UnknownIdIsNotFoundForEveryOperation) {
  MustAdd("I live in Hanoi");
  IdGenerator ids(clock_, 99);
  const std::string unknown = ids.Next();
  EXPECT_EQ(bank_->Get("default", unknown).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->Get("default", unknown, false).status().code(), StatusCode::kNotFound);
  UpdateRequest u;
  u.id = unknown;
  u.importance = 1.0;
  EXPECT_EQ(bank_->Update(u).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->Delete("default", unknown).code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->Forget("default", unknown).code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->History("default", unknown).status().code(), StatusCode::kNotFound);
}

// ---- validation --------------------------------------------------------------------------------

using MemoryBankValidation = BankFixture;

TEST_F(MemoryBankValidation, ImportanceOutsideZeroToThreeIsRejected) {
  struct Case {
    double importance;
    bool ok;
  };
  const Case cases[] = {
      {-0.1, false},
      {3.01, false},
      {std::numeric_limits<double>::quiet_NaN(), false},
      {std::numeric_limits<double>::infinity(), false},
      {0.0, true},
      {3.0, true},
  };
  int n = 0;
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "importance " << c.importance);
    auto out = bank_->Add(Req("fact number " + std::to_string(n++), c.importance));
    if (c.ok) {
      ASSERT_TRUE(out.ok()) << out.status().ToString();
      EXPECT_DOUBLE_EQ(MustPeek(out->memory_id).importance, c.importance);
    } else {
      ASSERT_FALSE(out.ok());
      EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
      EXPECT_NE(out.status().message().find("importance_weight"), std::string::npos)
          << out.status().message();
    }
  }
  EXPECT_EQ(bank_->TotalCount(), 2u);

  // Update applies the same rule.
  const std::string id = MustAdd("I live in Hanoi");
  UpdateRequest u;
  u.id = id;
  u.importance = 3.5;
  auto out = bank_->Update(u);
  EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(out.status().message().find("importance_weight"), std::string::npos);
  EXPECT_DOUBLE_EQ(MustPeek(id).importance, 1.0);
}

TEST_F(MemoryBankValidation, BadContentTagsAndNamespacesAreRejected) {
  BankOptions o;
  o.max_content_bytes = 100;
  ASSERT_NO_FATAL_FAILURE(OpenBank(o));

  struct Case {
    const char* what;
    AddRequest request;
    const char* message_names;
  };
  auto with_ns = [](std::string ns) {
    AddRequest r = Req("I live in Hanoi");
    r.ns = std::move(ns);
    return r;
  };
  const Case cases[] = {
      {"empty content", Req(""), "content"},
      {"white space content", Req(" \t\n "), "content"},
      {"content over the limit", Req(std::string(101, 'a')), "content"},
      {"empty tag", Req("I live in Hanoi", 1.0, {"home", ""}), "tag"},
      {"white space tag", Req("I live in Hanoi", 1.0, {"  "}), "tag"},
      {"empty namespace", with_ns(""), "namespace"},
      {"namespace with a tab", with_ns("user\t1"), "namespace"},
      {"namespace with a newline", with_ns("user\n1"), "namespace"},
      {"namespace with a NUL",
       with_ns(std::string("user\0"
                           "1",
                           6)),
       "namespace"},
      {"namespace with DEL", with_ns("user\x7f"), "namespace"},
      {"namespace too long", with_ns(std::string(129, 'u')), "namespace"},
      {"namespace not UTF-8", with_ns("user\xff"), "namespace"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto out = bank_->Add(c.request);
    ASSERT_FALSE(out.ok());
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(out.status().message().find(c.message_names), std::string::npos)
        << out.status().message();
  }
  EXPECT_EQ(bank_->TotalCount(), 0u);

  // The limits themselves are accepted.
  EXPECT_TRUE(bank_->Add(Req(std::string(100, 'a'))).ok());
  EXPECT_TRUE(bank_->Add(with_ns(std::string(128, 'u'))).ok());
  EXPECT_TRUE(bank_->Add(with_ns("người dùng 1")).ok());
  EXPECT_EQ(bank_->TotalCount(), 3u);

  // Every namespace-taking call validates the name.
  const std::string bad = "a\nb";
  EXPECT_EQ(bank_->Get(bad, "x").status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bank_->Delete(bad, "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bank_->Forget(bad, "x").code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(bank_->History(bad, "x").status().code(), StatusCode::kInvalidArgument);
  SearchRequest s;
  s.ns = bad;
  s.query = "Hanoi";
  EXPECT_EQ(bank_->Search(s).status().code(), StatusCode::kInvalidArgument);
  ListQuery l;
  l.ns = "";
  EXPECT_EQ(bank_->List(l).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(MemoryBankValidation, UpdateRejectsEmptyRequestsAndBadContent) {
  const std::string id = MustAdd("I live in Hanoi");
  UpdateRequest u;
  u.id = id;
  EXPECT_EQ(bank_->Update(u).status().code(), StatusCode::kInvalidArgument);
  u.content = "   ";
  EXPECT_EQ(bank_->Update(u).status().code(), StatusCode::kInvalidArgument);
  u.content.reset();
  u.tags = std::vector<std::string>{""};
  EXPECT_EQ(bank_->Update(u).status().code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(MustPeek(id).version, 1);
  EXPECT_EQ(MustHistory(id).size(), 1u);
}

TEST_F(MemoryBankValidation, SearchRejectsTopKAndMinSimilarityOutOfRange) {
  MustAdd("I live in Hanoi");
  struct Case {
    std::size_t top_k;
    double min_similarity;
    bool ok;
    const char* message_names;
  };
  const Case cases[] = {
      {0, 0.0, false, "top_k"},
      {51, 0.0, false, "top_k"},
      {5, -0.1, false, "min_similarity"},
      {5, 1.1, false, "min_similarity"},
      {5, std::numeric_limits<double>::quiet_NaN(), false, "min_similarity"},
      {1, 0.0, true, ""},
      {50, 1.0, true, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "top_k " << c.top_k << " min " << c.min_similarity);
    SearchRequest r;
    r.query = "Hanoi";
    r.top_k = c.top_k;
    r.min_similarity = c.min_similarity;
    auto hits = bank_->Search(r);
    if (c.ok) {
      EXPECT_TRUE(hits.ok()) << hits.status().ToString();
    } else {
      ASSERT_FALSE(hits.ok());
      EXPECT_EQ(hits.status().code(), StatusCode::kInvalidArgument);
      EXPECT_NE(hits.status().message().find(c.message_names), std::string::npos)
          << hits.status().message();
    }
  }
  SearchRequest empty;
  empty.query = "  ";
  EXPECT_EQ(bank_->Search(empty).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(MemoryBankValidation, ListRejectsLimitOutOfRangeAndBadCursors) {
  MustAdd("I live in Hanoi");
  struct Case {
    std::size_t limit;
    std::string cursor;
    bool ok;
    const char* message_names;
  };
  const Case cases[] = {
      {0, "", false, "limit"},
      {1001, "", false, "limit"},
      {10, "not-a-cursor", false, "cursor"},
      {10, "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5", false, "cursor"},
      {1, "", true, ""},
      {1000, "", true, ""},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(testing::Message() << "limit " << c.limit << " cursor '" << c.cursor << "'");
    ListQuery q;
    q.limit = c.limit;
    q.cursor = c.cursor;
    auto page = bank_->List(q);
    if (c.ok) {
      ASSERT_TRUE(page.ok()) << page.status().ToString();
      EXPECT_EQ(page->entries.size(), 1u);
    } else {
      ASSERT_FALSE(page.ok());
      EXPECT_EQ(page.status().code(), StatusCode::kInvalidArgument);
      EXPECT_NE(page.status().message().find(c.message_names), std::string::npos)
          << page.status().message();
    }
  }
  ListQuery value_without_key;
  value_without_key.metadata_value = boost::json::value("Hanoi");
  EXPECT_EQ(bank_->List(value_without_key).status().code(), StatusCode::kInvalidArgument);
}

TEST_F(MemoryBankValidation, OpenRejectsInconsistentOptions) {
  struct Case {
    const char* what;
    BankOptions options;
    const char* message_names;
  };
  std::vector<Case> cases;
  BankOptions o;
  o.memory_size = 0;
  cases.push_back({"memory_size 0", o, "memory_size"});
  o = {};
  o.memory_size = 10;
  o.max_memory_capacity = 5;
  cases.push_back({"capacity below size", o, "max_memory_capacity"});
  o = {};
  o.update_threshold = 0.9;
  o.duplicate_threshold = 0.8;
  cases.push_back({"duplicate below update", o, "duplicate_threshold"});
  o = {};
  o.recency_weight = 1.5;
  cases.push_back({"recency_weight above 1", o, "recency_weight"});
  o = {};
  o.fusion.dense_weight = std::numeric_limits<float>::quiet_NaN();
  cases.push_back({"NaN fusion weight", o, "fusion weights"});
  o = {};
  o.fusion.dense_weight = 0;
  o.fusion.lexical_weight = 0;
  cases.push_back({"both fusion weights zero", o, "fusion weights"});
  o = {};
  o.fusion.rrf_k = -1;
  cases.push_back({"negative rrf_k", o, "rrf_k"});
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    auto bank = MemoryBank::Open(c.options, *store_, *encoder_, analyzer_, clock_);
    ASSERT_FALSE(bank.ok());
    EXPECT_EQ(bank.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(bank.status().message().find(c.message_names), std::string::npos)
        << bank.status().message();
  }
}

// ---- write head --------------------------------------------------------------------------------

class MemoryBankWriteHead : public BankFixture {
 protected:
  void SetUp() override {
    BankFixture::SetUp();
    // Hashed vectors of "... my cat" and "... my two cats" have cosine about 0.82: a
    // deterministic near duplicate between these thresholds.
    BankOptions o;
    o.update_threshold = 0.5;
    o.duplicate_threshold = 0.99;
    ASSERT_NO_FATAL_FAILURE(OpenBank(o));
  }
};

TEST_F(MemoryBankWriteHead, ExactDuplicateIsNoopWithTheOriginalId) {
  const WriteOutcome first = MustWrite(Req("I live in Hanoi with my cat."));
  ASSERT_EQ(first.action, WriteAction::kAdd);

  const char* variants[] = {"I live in Hanoi with my cat.", "i LIVE in hanoi with my CAT",
                            "I live  in Hanoi,   with my cat!!"};
  for (const char* text : variants) {
    SCOPED_TRACE(text);
    AddRequest r = Req(text);
    r.source = "chat";
    const WriteOutcome out = MustWrite(r);
    EXPECT_EQ(out.action, WriteAction::kNoop);
    EXPECT_EQ(out.memory_id, first.memory_id);
    EXPECT_DOUBLE_EQ(out.similarity, 1.0);
    EXPECT_EQ(out.version, 1);
    EXPECT_FALSE(out.reason.empty());
  }
  EXPECT_EQ(bank_->TotalCount(), 1u);
  EXPECT_EQ(MustPeek(first.memory_id).content, "I live in Hanoi with my cat.");

  const auto history = MustHistory(first.memory_id);
  ASSERT_EQ(history.size(), 4u);
  for (std::size_t i = 1; i < history.size(); ++i) {
    EXPECT_EQ(history[i].action, HistoryAction::kNoop);
    EXPECT_EQ(history[i].source, "chat");
    EXPECT_FALSE(history[i].reason.empty());
  }
}

TEST_F(MemoryBankWriteHead, NearDuplicateIsMergedIntoTheExistingEntry) {
  struct Case {
    double first_importance, second_importance, merged_importance;
  };
  const Case cases[] = {{1.0, 2.0, 2.0}, {2.0, 0.5, 2.0}};
  int n = 0;
  for (const Case& c : cases) {
    const std::string ns = "user" + std::to_string(n++);
    SCOPED_TRACE(ns);
    AddRequest a = Req("I live in Hanoi with my cat", c.first_importance, {"home"}, ns);
    a.metadata["since"] = 2019;
    a.metadata["pet"] = "cat";
    const WriteOutcome first = MustWrite(a);
    ASSERT_EQ(first.action, WriteAction::kAdd);
    clock_.AdvanceMs(5000);

    AddRequest b = Req("I live in Hanoi with my two cats", c.second_importance, {"pets"}, ns);
    b.metadata["pet"] = "two cats";
    const WriteOutcome out = MustWrite(b);
    EXPECT_EQ(out.action, WriteAction::kUpdate);
    EXPECT_EQ(out.memory_id, first.memory_id);
    EXPECT_GE(out.similarity, 0.5);
    EXPECT_LT(out.similarity, 0.99);
    EXPECT_EQ(out.version, 2);
    EXPECT_NE(out.reason.find("similarity"), std::string::npos) << out.reason;

    const MemoryEntry e = MustPeek(first.memory_id, ns);
    EXPECT_EQ(e.content, "I live in Hanoi with my two cats");
    EXPECT_EQ(e.content_hash, text::ContentKey("I live in Hanoi with my two cats"));
    EXPECT_EQ(e.tags, (std::vector<std::string>{"home", "pets"}));
    EXPECT_DOUBLE_EQ(e.importance, c.merged_importance);
    EXPECT_EQ(e.metadata.at("since"), 2019);
    EXPECT_EQ(e.metadata.at("pet"), "two cats");
    EXPECT_EQ(e.version, 2);
    EXPECT_EQ(e.updated_ms, clock_.NowMs());
    EXPECT_EQ(ListAll(ns).size(), 1u);

    const auto history = MustHistory(first.memory_id, ns);
    ASSERT_EQ(history.size(), 2u);
    EXPECT_EQ(history[0].content, "I live in Hanoi with my cat");
    EXPECT_EQ(history[1].action, HistoryAction::kUpdate);
    EXPECT_EQ(history[1].version, 2);
    EXPECT_EQ(history[1].content, "I live in Hanoi with my two cats");
    EXPECT_FALSE(history[1].source.empty());
    EXPECT_EQ(history[1].reason, out.reason);

    // The exact text of the old version is no longer an exact duplicate of anything.
    EXPECT_EQ(MustSearch("two cats", 5, ns)[0].entry.id, first.memory_id);
  }
}

TEST_F(MemoryBankWriteHead, NearDuplicateAboveTheDuplicateThresholdIsNoop) {
  BankOptions o;
  o.update_threshold = 0.5;
  o.duplicate_threshold = 0.8;  // below the pair's cosine of about 0.82
  ASSERT_NO_FATAL_FAILURE(OpenBank(o));
  const WriteOutcome first = MustWrite(Req("I live in Hanoi with my cat", 1.0, {"home"}));
  const WriteOutcome out = MustWrite(Req("I live in Hanoi with my two cats", 3.0, {"pets"}));
  EXPECT_EQ(out.action, WriteAction::kNoop);
  EXPECT_EQ(out.memory_id, first.memory_id);
  EXPECT_GE(out.similarity, 0.8);
  EXPECT_LT(out.similarity, 1.0);
  EXPECT_NE(out.reason.find("duplicate"), std::string::npos) << out.reason;

  const MemoryEntry e = MustPeek(first.memory_id);
  EXPECT_EQ(e.content, "I live in Hanoi with my cat");
  EXPECT_EQ(e.tags, std::vector<std::string>{"home"});
  EXPECT_DOUBLE_EQ(e.importance, 1.0);
  EXPECT_EQ(e.version, 1);
  const auto history = MustHistory(first.memory_id);
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[1].action, HistoryAction::kNoop);
  EXPECT_EQ(history[1].reason, out.reason);
}

TEST_F(MemoryBankWriteHead, UnrelatedTextIsAdded) {
  const WriteOutcome a = MustWrite(Req("I live in Hanoi with my cat"));
  const WriteOutcome b = MustWrite(Req("My favourite colour is blue"));
  EXPECT_EQ(a.action, WriteAction::kAdd);
  EXPECT_EQ(b.action, WriteAction::kAdd);
  EXPECT_NE(a.memory_id, b.memory_id);
  EXPECT_DOUBLE_EQ(b.similarity, 0.0);
  EXPECT_EQ(b.version, 1);
  EXPECT_FALSE(b.reason.empty());
  EXPECT_EQ(bank_->TotalCount(), 2u);
}

TEST_F(MemoryBankWriteHead, ForgetRequestDeletesTheMatchingEntry) {
  const std::string hanoi = MustWrite(Req("I live in Hanoi")).memory_id;
  const std::string blue = MustWrite(Req("My favourite colour is blue")).memory_id;

  AddRequest r = Req("Forget that I live in Hanoi");
  r.source = "chat";
  const WriteOutcome out = MustWrite(r);
  EXPECT_EQ(out.action, WriteAction::kDelete);
  EXPECT_EQ(out.memory_id, hanoi);
  EXPECT_GE(out.similarity, options_.forget_threshold);
  EXPECT_EQ(out.version, 0);

  EXPECT_EQ(bank_->Get("default", hanoi).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->TotalCount(), 1u);
  for (const auto& h : MustSearch("I live in Hanoi", 50)) EXPECT_NE(h.entry.id, hanoi);
  EXPECT_EQ(MustPeek(blue).content, "My favourite colour is blue");

  const auto history = MustHistory(hanoi);
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[1].action, HistoryAction::kDelete);
  EXPECT_EQ(history[1].source, "chat");
  EXPECT_EQ(history[1].reason, out.reason);
  EXPECT_FALSE(out.reason.empty());
}

TEST_F(MemoryBankWriteHead, ForgetRequestMatchingNothingIsNoop) {
  // On an empty bank, and on a bank holding only unrelated entries.
  WriteOutcome out = MustWrite(Req("forget that I own a boat"));
  EXPECT_EQ(out.action, WriteAction::kNoop);
  EXPECT_TRUE(out.memory_id.empty());
  EXPECT_FALSE(out.reason.empty());

  const std::string blue = MustWrite(Req("My favourite colour is blue")).memory_id;
  out = MustWrite(Req("please forget my phone number"));
  EXPECT_EQ(out.action, WriteAction::kNoop);
  EXPECT_TRUE(out.memory_id.empty());
  EXPECT_EQ(out.version, 0);
  EXPECT_EQ(bank_->TotalCount(), 1u);
  EXPECT_EQ(MustHistory(blue).size(), 1u);
}

TEST_F(MemoryBankWriteHead, BypassAlwaysAdds) {
  AddRequest r = Req("I live in Hanoi with my cat");
  r.use_write_head = false;
  r.source = "import";
  const WriteOutcome a = MustWrite(r);
  const WriteOutcome b = MustWrite(r);
  r.content = "I live in Hanoi with my two cats";
  const WriteOutcome c = MustWrite(r);
  r.content = "forget that I live in Hanoi with my cat";
  const WriteOutcome d = MustWrite(r);
  for (const WriteOutcome* o : {&a, &b, &c, &d}) EXPECT_EQ(o->action, WriteAction::kAdd);
  EXPECT_EQ(std::set<std::string>({a.memory_id, b.memory_id, c.memory_id, d.memory_id}).size(), 4u);
  EXPECT_EQ(bank_->TotalCount(), 4u);
  EXPECT_EQ(MustHistory(b.memory_id)[0].source, "import");
}

TEST_F(MemoryBankWriteHead, DecisionsAreCountedPerAction) {
  MustWrite(Req("I live in Hanoi with my cat"));              // ADD
  MustWrite(Req("I live in Hanoi with my two cats"));         // UPDATE
  MustWrite(Req("i live in hanoi with my two cats!"));        // NOOP
  MustWrite(Req("My favourite colour is blue"));              // ADD
  MustWrite(Req("forget that my favourite colour is blue"));  // DELETE
  MustWrite(Req("forget that I own a boat"));                 // NOOP
  const BankStats stats = bank_->Stats();
  EXPECT_EQ(stats.write_decisions[static_cast<int>(WriteAction::kAdd)], 2);
  EXPECT_EQ(stats.write_decisions[static_cast<int>(WriteAction::kUpdate)], 1);
  EXPECT_EQ(stats.write_decisions[static_cast<int>(WriteAction::kDelete)], 1);
  EXPECT_EQ(stats.write_decisions[static_cast<int>(WriteAction::kNoop)], 2);
  EXPECT_EQ(bank_->TotalCount(), 1u);
}

// ---- namespaces --------------------------------------------------------------------------------

using MemoryBankNamespaces = BankFixture;

TEST_F(MemoryBankNamespaces, NamespaceNeverSeesAnotherNamespacesEntries) {
  const std::string a = MustAdd("I live in Hanoi", 1.0, {"home"}, "alice");
  const std::string a_deleted = MustAdd("My cat is called Miu", 1.0, {}, "alice");
  ASSERT_TRUE(bank_->Delete("alice", a_deleted).ok());

  EXPECT_TRUE(MustSearch("I live in Hanoi", 50, "bob").empty());
  ListQuery q;
  q.ns = "bob";
  auto page = bank_->List(q);
  ASSERT_TRUE(page.ok());
  EXPECT_TRUE(page->entries.empty());
  EXPECT_EQ(bank_->Get("bob", a).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->Get("bob", a, false).status().code(), StatusCode::kNotFound);
  UpdateRequest u;
  u.ns = "bob";
  u.id = a;
  u.content = "hijacked";
  EXPECT_EQ(bank_->Update(u).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->Delete("bob", a).code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->History("bob", a).status().code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->Forget("bob", a).code(), StatusCode::kNotFound);
  EXPECT_EQ(bank_->Forget("bob", a_deleted).code(), StatusCode::kNotFound);

  // The write head of bob compares only with bob's entries.
  const WriteOutcome dup = MustWrite(Req("I live in Hanoi", 1.0, {}, "bob"));
  EXPECT_EQ(dup.action, WriteAction::kAdd);
  EXPECT_NE(dup.memory_id, a);
  const WriteOutcome forget = MustWrite(Req("forget that my cat is called Miu", 1.0, {}, "bob"));
  EXPECT_EQ(forget.action, WriteAction::kNoop);

  // Alice is untouched.
  const MemoryEntry e = MustPeek(a, "alice");
  EXPECT_EQ(e.content, "I live in Hanoi");
  EXPECT_EQ(e.version, 1);
  EXPECT_EQ(MustHistory(a, "alice").size(), 1u);
  EXPECT_EQ(MustHistory(a_deleted, "alice").size(), 2u);
  const auto hits = MustSearch("Hanoi", 50, "alice");
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].entry.id, a);
  EXPECT_EQ(bank_->TotalCount(), 2u);
}

// ---- capacity ----------------------------------------------------------------------------------

class MemoryBankCapacity : public BankFixture {
 protected:
  void SetUp() override {
    BankFixture::SetUp();
    BankOptions o;
    o.memory_size = 3;
    o.max_memory_capacity = 3;
    ASSERT_NO_FATAL_FAILURE(OpenBank(o));
  }
};

TEST_F(MemoryBankCapacity, EvictsLowestImportancePerUse) {
  const std::string a = MustAdd("I live in Hanoi", 1.0);
  const std::string b = MustAdd("My favourite colour is blue", 0.8);
  const std::string c = MustAdd("I work as a nurse", 3.0);
  // One read halves a's value to 1.0 / (1 + 1) = 0.5, below b's 0.8.
  ASSERT_TRUE(bank_->Get("default", a).ok());

  auto out = bank_->Add(Req("My brother plays the guitar", 1.0));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->action, WriteAction::kAdd);
  EXPECT_EQ(out->evicted_ids, std::vector<std::string>{a});
  EXPECT_EQ(bank_->TotalCount(), 3u);
  EXPECT_EQ(bank_->Get("default", a).status().code(), StatusCode::kNotFound);
  EXPECT_TRUE(bank_->Get("default", b, false).ok());
  EXPECT_TRUE(bank_->Get("default", c, false).ok());

  const auto history = MustHistory(a);
  ASSERT_EQ(history.size(), 2u);
  EXPECT_EQ(history[1].action, HistoryAction::kEvict);
  EXPECT_EQ(history[1].source, "capacity");
  EXPECT_FALSE(history[1].reason.empty());

  BankStats stats = bank_->Stats();
  EXPECT_EQ(stats.overall.evictions, 1);
  ASSERT_EQ(stats.namespaces.size(), 1u);
  EXPECT_EQ(stats.namespaces[0].evictions, 1);

  // However many more come, the namespace never holds more than the limit.
  for (int i = 0; i < 10; ++i) {
    ASSERT_FALSE(MustAdd("filler " + std::to_string(i)).empty());
    EXPECT_LE(bank_->TotalCount(), 3u);
    EXPECT_LE(ListAll().size(), 3u);
  }
  stats = bank_->Stats();
  EXPECT_EQ(stats.overall.total_memories, 3u);
  EXPECT_EQ(stats.overall.evictions, 11);
  EXPECT_DOUBLE_EQ(stats.overall.utilization, 1.0);
}

TEST_F(MemoryBankCapacity, TiesEvictTheLeastRecentlyUsed) {
  const std::string a = MustAdd("I live in Hanoi");
  const std::string b = MustAdd("My favourite colour is blue");
  const std::string c = MustAdd("I work as a nurse");
  // Equal importance and one read each, at different times: b was read longest ago.
  clock_.AdvanceMs(1000);
  ASSERT_TRUE(bank_->Get("default", b).ok());
  clock_.AdvanceMs(1000);
  ASSERT_TRUE(bank_->Get("default", a).ok());
  clock_.AdvanceMs(1000);
  ASSERT_TRUE(bank_->Get("default", c).ok());
  // Peeking is no use and must not count.
  ASSERT_TRUE(bank_->Get("default", b, false).ok());

  auto out = bank_->Add(Req("My brother plays the guitar"));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->evicted_ids, std::vector<std::string>{b});
}

TEST_F(MemoryBankCapacity, NamespacesHaveTheirOwnLimit) {
  for (const char* ns : {"alice", "bob"}) {
    for (int i = 0; i < 3; ++i) {
      MustAdd("fact " + std::to_string(i) + " of " + ns, 1.0, {}, ns);
    }
  }
  EXPECT_EQ(bank_->TotalCount(), 6u);
  EXPECT_EQ(bank_->Stats().overall.evictions, 0);
}

// ---- read head ---------------------------------------------------------------------------------

using MemoryBankReadHead = BankFixture;

TEST_F(MemoryBankReadHead, SearchAndGetBumpUsageButListAndPeekDoNot) {
  const std::string id = MustAdd("I live in Hanoi");
  const TimestampMs added = clock_.NowMs();

  clock_.AdvanceMs(1000);
  const auto hits = MustSearch("Hanoi");
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].entry.usage_count, 1);
  EXPECT_EQ(hits[0].entry.last_access_ms, clock_.NowMs());
  EXPECT_EQ(MustPeek(id).usage_count, 1);
  EXPECT_EQ(MustPeek(id).last_access_ms, added + 1000);

  clock_.AdvanceMs(1000);
  EXPECT_EQ(ListAll().at(0).usage_count, 1);
  MustSearch("Hanoi", 5, "default", /*touch=*/false);
  EXPECT_EQ(MustPeek(id).usage_count, 1);
  EXPECT_EQ(MustPeek(id).last_access_ms, added + 1000);

  clock_.AdvanceMs(1000);
  auto got = bank_->Get("default", id);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(got->usage_count, 2);
  EXPECT_EQ(got->last_access_ms, added + 3000);
  EXPECT_EQ(MustPeek(id).usage_count, 2);

  // A search that finds nothing reads nothing.
  MustSearch("quantum chromodynamics");
  EXPECT_EQ(MustPeek(id).usage_count, 2);
}

TEST_F(MemoryBankReadHead, AttentionSumsToOneAndFollowsScores) {
  for (const char* text :
       {"I have a black cat", "My cat sleeps all day", "Cats are my favourite animals",
        "The cat next door is loud", "I bought cat food", "I like green tea"}) {
    MustAdd(text);
  }
  const auto hits = MustSearch("my cat", 10);
  ASSERT_GE(hits.size(), 4u);
  double sum = 0;
  for (std::size_t i = 0; i < hits.size(); ++i) {
    sum += hits[i].attention;
    EXPECT_GT(hits[i].attention, 0.0);
    EXPECT_GE(hits[i].similarity, 0.0);
    EXPECT_LE(hits[i].similarity, 1.0);
    if (i > 0) {
      EXPECT_GE(hits[i - 1].score, hits[i].score);
      EXPECT_GE(hits[i - 1].attention, hits[i].attention);
      if (hits[i - 1].score > hits[i].score) {
        EXPECT_GT(hits[i - 1].attention, hits[i].attention);
      }
    }
  }
  EXPECT_NEAR(sum, 1.0, 1e-9);
}

TEST_F(MemoryBankReadHead, TopKAndMinSimilarityLimitTheHits) {
  for (int i = 0; i < 12; ++i) MustAdd("coffee note " + std::to_string(i));
  MustAdd("I drink coffee every morning with milk");
  MustAdd("Green tea is healthy");

  EXPECT_EQ(MustSearch("coffee", 3).size(), 3u);
  EXPECT_EQ(MustSearch("coffee", 1).size(), 1u);
  const auto all = MustSearch("coffee morning", 50);
  ASSERT_GE(all.size(), 3u);

  // A threshold between the best and the worst similarity keeps exactly those at or above it.
  double lo = 1, hi = 0;
  for (const auto& h : all) {
    lo = std::min(lo, h.similarity);
    hi = std::max(hi, h.similarity);
  }
  ASSERT_LT(lo, hi);
  const double threshold = (lo + hi) / 2;
  std::size_t expected = 0;
  for (const auto& h : all) expected += h.similarity >= threshold ? 1 : 0;
  SearchRequest r;
  r.query = "coffee morning";
  r.top_k = 50;
  r.min_similarity = threshold;
  auto filtered = bank_->Search(r);
  ASSERT_TRUE(filtered.ok());
  EXPECT_EQ(filtered->size(), expected);
  EXPECT_LT(filtered->size(), all.size());
  for (const auto& h : *filtered) EXPECT_GE(h.similarity, threshold);
}

TEST_F(MemoryBankReadHead, ImportanceBoostReordersEquallySimilarEntries) {
  const std::string low = MustAdd("I drink green tea every morning", 1.0);
  const std::string high = MustAdd("I drink green tea every morning", 3.0);
  const auto hits = MustSearch("green tea", 5, "default", false);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(Ids(hits), (std::vector<std::string>{high, low}));
  EXPECT_DOUBLE_EQ(hits[0].similarity, hits[1].similarity);
  // Factor 1 + 0.1 * (3 - 1) against 1 + 0.1 * (1 - 1).
  EXPECT_NEAR(hits[0].score / hits[1].score, 1.2, 1e-9);
}

TEST_F(MemoryBankReadHead, RecencyWeightRanksStaleEntriesLower) {
  BankOptions o;
  o.recency_weight = 1.0;
  ASSERT_NO_FATAL_FAILURE(OpenBank(o));
  const std::string stale = MustAdd("I drink green tea every morning");
  clock_.AdvanceMs(90 * kDayMs);
  const std::string fresh = MustAdd("I drink green tea every morning");

  auto hits = MustSearch("green tea", 5, "default", false);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(Ids(hits), (std::vector<std::string>{fresh, stale}));
  EXPECT_DOUBLE_EQ(hits[0].similarity, hits[1].similarity);
  // Three half-lives of 30 days.
  EXPECT_NEAR(hits[1].score / hits[0].score, 0.125, 1e-9);

  // Without recency the tie falls back to the older id: recency made the difference.
  o.recency_weight = 0.0;
  ASSERT_NO_FATAL_FAILURE(OpenBank(o));
  hits = MustSearch("green tea", 5, "default", false);
  ASSERT_EQ(hits.size(), 2u);
  EXPECT_EQ(Ids(hits), (std::vector<std::string>{stale, fresh}));
  EXPECT_DOUBLE_EQ(hits[0].score, hits[1].score);
}

TEST_F(MemoryBankReadHead, UnaccentedVietnameseFindsAccentedEntry) {
  const std::string lan = MustAdd("Tôi tên là Lan");
  for (const char* text : {"Tôi thích uống cà phê sữa đá", "Hôm nay trời mưa to",
                           "Em trai tôi học ở Huế", "My name is John", "Tôi sống ở Hà Nội"}) {
    MustAdd(text);
  }
  const auto hits = MustSearch("toi ten la Lan");
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].entry.id, lan);
  EXPECT_EQ(hits[0].entry.content, "Tôi tên là Lan");
  EXPECT_EQ(hits[0].entry.language, "vi");
}

TEST_F(MemoryBankReadHead, EnglishStemmingMatchesInflectedWords) {
  const std::string living = MustAdd("I am living in Hanoi");
  for (const char* text :
       {"I like green tea", "My sister works as a doctor", "The meeting is on Friday",
        "I play football on weekends", "My phone number changed last year"}) {
    MustAdd(text);
  }
  const auto hits = MustSearch("where do I live");
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].entry.id, living);
  EXPECT_GT(hits[0].lexical, 0.0);
}

TEST_F(MemoryBankReadHead, SearchOfAnEmptyNamespaceFindsNothing) {
  EXPECT_TRUE(MustSearch("anything", 5, "nobody").empty());
}

// ---- persistence -------------------------------------------------------------------------------

class MemoryBankPersistence : public BankFixture {
 protected:
  void SetUp() override {
    BankFixture::SetUp();
    BankOptions o;
    o.memory_size = 3;
    o.max_memory_capacity = 3;
    ASSERT_NO_FATAL_FAILURE(OpenBank(o));
  }
};

TEST_F(MemoryBankPersistence, ReopenRestoresEntriesCountersAndHistory) {
  AddRequest r = Req("I live in Hanoi", 2.0, {"home"}, "alice");
  r.context = "chat";
  r.metadata["city"] = "Hanoi";
  const std::string a = MustAdd(r);
  const std::string b = MustAdd("My favourite colour is blue", 0.5, {}, "alice");
  const std::string c = MustAdd("I work as a nurse", 1.0, {}, "bob");
  clock_.AdvanceMs(1000);
  UpdateRequest u;
  u.ns = "bob";
  u.id = c;
  u.content = "I work as a doctor";
  ASSERT_TRUE(bank_->Update(u).ok());
  ASSERT_TRUE(bank_->Get("alice", a).ok());
  ASSERT_EQ(Ids(MustSearch("Hanoi", 1, "alice")), std::vector<std::string>{a});
  MustAdd("My cat is called Miu", 1.0, {}, "alice");
  // A fourth entry in alice evicts b, the lowest importance per use (0.5 / 1).
  auto out = bank_->Add(Req("My brother plays the guitar", 1.0, {}, "alice"));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  ASSERT_EQ(out->evicted_ids, std::vector<std::string>{b});
  const std::string evicted = b;
  ASSERT_TRUE(bank_->Flush().ok());

  const BankStats before = bank_->Stats();
  const auto alice_before = ListAll("alice");
  const auto bob_before = ListAll("bob");
  const auto history_a = MustHistory(a, "alice");
  const auto history_b = MustHistory(evicted, "alice");
  ASSERT_EQ(before.overall.evictions, 1);

  ASSERT_NO_FATAL_FAILURE(Reopen());

  const auto alice_after = ListAll("alice");
  ASSERT_EQ(Ids(alice_after), Ids(alice_before));
  for (std::size_t i = 0; i < alice_after.size(); ++i) {
    const MemoryEntry& x = alice_before[i];
    const MemoryEntry& y = alice_after[i];
    SCOPED_TRACE(x.content);
    EXPECT_EQ(y.content, x.content);
    EXPECT_EQ(y.context, x.context);
    EXPECT_EQ(y.tags, x.tags);
    EXPECT_EQ(y.metadata, x.metadata);
    EXPECT_DOUBLE_EQ(y.importance, x.importance);
    EXPECT_EQ(y.usage_count, x.usage_count);
    EXPECT_EQ(y.last_access_ms, x.last_access_ms);
    EXPECT_EQ(y.created_ms, x.created_ms);
    EXPECT_EQ(y.updated_ms, x.updated_ms);
    EXPECT_EQ(y.version, x.version);
    EXPECT_EQ(y.content_hash, x.content_hash);
    EXPECT_EQ(y.language, x.language);
  }
  EXPECT_EQ(MustPeek(a, "alice").usage_count, 2);
  const auto bob_after = ListAll("bob");
  ASSERT_EQ(bob_after.size(), 1u);
  EXPECT_EQ(bob_after[0].content, "I work as a doctor");
  EXPECT_EQ(bob_after[0].version, bob_before[0].version);

  const BankStats after = bank_->Stats();
  ASSERT_EQ(after.namespaces.size(), before.namespaces.size());
  for (std::size_t i = 0; i < after.namespaces.size(); ++i) {
    SCOPED_TRACE(before.namespaces[i].ns);
    EXPECT_EQ(after.namespaces[i].ns, before.namespaces[i].ns);
    EXPECT_EQ(after.namespaces[i].total_memories, before.namespaces[i].total_memories);
    EXPECT_EQ(after.namespaces[i].reads, before.namespaces[i].reads);
    EXPECT_EQ(after.namespaces[i].writes, before.namespaces[i].writes);
    EXPECT_EQ(after.namespaces[i].evictions, before.namespaces[i].evictions);
  }
  EXPECT_EQ(after.overall.reads, 2);
  EXPECT_EQ(after.overall.evictions, 1);

  const auto history_a_after = MustHistory(a, "alice");
  const auto history_b_after = MustHistory(evicted, "alice");
  ASSERT_EQ(history_a_after.size(), history_a.size());
  ASSERT_EQ(history_b_after.size(), history_b.size());
  EXPECT_EQ(history_b_after.back().action, HistoryAction::kEvict);
  for (std::size_t i = 0; i < history_a.size(); ++i) {
    EXPECT_EQ(history_a_after[i].seq, history_a[i].seq);
    EXPECT_EQ(history_a_after[i].action, history_a[i].action);
    EXPECT_EQ(history_a_after[i].content, history_a[i].content);
    EXPECT_EQ(history_a_after[i].source, history_a[i].source);
    EXPECT_EQ(history_a_after[i].reason, history_a[i].reason);
  }

  // The indexes were rebuilt, and the write head sees the old entries.
  auto hits = MustSearch("Hanoi", 5, "alice");
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].entry.id, a);
  hits = MustSearch("doctor", 5, "bob");
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].entry.id, c);
  const WriteOutcome dup = MustWrite(Req("i live in HANOI", 1.0, {}, "alice"));
  EXPECT_EQ(dup.action, WriteAction::kNoop);
  EXPECT_EQ(dup.memory_id, a);
}

TEST_F(MemoryBankPersistence, EncoderChangeReEmbedsOnceAndWritesBack) {
  auto stored_encoders = [&] {
    std::vector<std::pair<std::string, std::size_t>> out;
    Status st = store_->Load([&](store::StoredEntry&& se) {
      out.emplace_back(se.encoder_id, se.embedding.size());
      return Status::Ok();
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  };
  auto reopen_with = [&](std::size_t dimension) -> std::uint64_t {
    bank_.reset();
    store_.reset();
    encode::HashedEncoderOptions eo;
    eo.dimension = dimension;
    encoder_ = std::make_unique<encode::HashedEncoder>(eo);
    OpenStore();
    const std::uint64_t before = store_->Stats().transactions;
    OpenBank();
    return store_->Stats().transactions - before;
  };

  reopen_with(64);
  const std::string hanoi = MustAdd("I live in Hanoi");
  const std::string blue = MustAdd("My favourite colour is blue");
  const std::string nurse = MustAdd("I work as a nurse");
  ASSERT_TRUE(bank_->Flush().ok());
  const std::string id64 = encoder_->Id();
  for (const auto& [id, dim] : stored_encoders()) {
    EXPECT_EQ(id, id64);
    EXPECT_EQ(dim, 64u);
  }

  // A new encoder: every vector is recomputed and written back.
  EXPECT_GT(reopen_with(128), 0u);
  const std::string id128 = encoder_->Id();
  ASSERT_NE(id128, id64);
  const auto after = stored_encoders();
  ASSERT_EQ(after.size(), 3u);
  for (const auto& [id, dim] : after) {
    EXPECT_EQ(id, id128);
    EXPECT_EQ(dim, 128u);
  }
  auto hits = MustSearch("my favourite colour");
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].entry.id, blue);
  EXPECT_GT(hits[0].dense, 0.5);
  // The write head compares against the new vectors too.
  EXPECT_EQ(MustWrite(Req("I live in hanoi!")).memory_id, hanoi);

  // The same encoder again: nothing to re-embed, nothing written while opening.
  EXPECT_EQ(reopen_with(128), 0u);
  hits = MustSearch("nurse");
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].entry.id, nurse);
}

// ---- routing: one space per encoder -------------------------------------------------------------

// The bank over a two-space router, as the runtime builds it for use-lite: English and glossed
// Vietnamese in the first space, other scripts in the second. Two hashed encoders of different
// lengths stand in for the sentence and fallback encoders, so the spaces are told apart by
// dimension as well as by id.
class MemoryBankRouting : public BankFixture {
 protected:
  void SetUp() override {
    BankFixture::SetUp();
    encode::HashedEncoderOptions a;
    a.dimension = 128;
    sentence_ = std::make_unique<encode::HashedEncoder>(a);
    encode::HashedEncoderOptions b;
    b.dimension = 64;
    fallback_ = std::make_unique<encode::HashedEncoder>(b);
    ASSERT_NO_FATAL_FAILURE(UseLexicon("tôi\tI\nsống\tlive\nở\tin\n"));
    ASSERT_NO_FATAL_FAILURE(OpenRouted());
  }

  void UseLexicon(const std::string& tsv) {
    auto g = text::Glosser::Parse(tsv, "test.tsv");
    ASSERT_TRUE(g.ok()) << g.status().ToString();
    gloss_ = std::make_unique<text::Glosser>(std::move(g).value());
  }

  void OpenRouted(OpenOptions open = {}) {
    bank_.reset();
    router_ = encode::Router::Sentence(*sentence_, gloss_.get(), *fallback_);
    auto bank = MemoryBank::Open(options_, *store_, *router_, analyzer_, clock_, std::move(open));
    ASSERT_TRUE(bank.ok()) << bank.status().ToString();
    bank_ = std::move(bank).value();
  }

  // encoder id and vector length of each stored entry, by content.
  std::map<std::string, std::pair<std::string, std::size_t>> Stored() {
    EXPECT_TRUE(bank_->Flush().ok());
    std::map<std::string, std::pair<std::string, std::size_t>> out;
    Status st = store_->Load([&](store::StoredEntry&& se) {
      out[se.entry.content] = {se.encoder_id, se.embedding.size()};
      return Status::Ok();
    });
    EXPECT_TRUE(st.ok()) << st.ToString();
    return out;
  }

  std::unique_ptr<encode::HashedEncoder> sentence_;
  std::unique_ptr<encode::HashedEncoder> fallback_;
  std::unique_ptr<text::Glosser> gloss_;
  std::unique_ptr<encode::Router> router_;
};

TEST_F(MemoryBankRouting, EachLanguageIsStoredThroughItsLane) {
  MustAdd("I live in Hanoi");
  MustAdd("tôi sống ở Huế");
  MustAdd("我住在北京");
  const auto stored = Stored();
  ASSERT_EQ(stored.size(), 3u);
  EXPECT_EQ(stored.at("I live in Hanoi"), std::make_pair(sentence_->Id(), std::size_t{128}));
  EXPECT_EQ(
      stored.at("tôi sống ở Huế"),
      std::make_pair(sentence_->Id() + "+gloss-vi-" + gloss_->fingerprint(), std::size_t{128}));
  EXPECT_EQ(stored.at("我住在北京"), std::make_pair(fallback_->Id(), std::size_t{64}));
}

TEST_F(MemoryBankRouting, QueriesReachEverySpaceThatReadsThem) {
  const std::string hanoi = MustAdd("I live in Hanoi");
  const std::string hue = MustAdd("tôi sống ở Huế");
  const std::string beijing = MustAdd("我住在北京");
  // The glossed Vietnamese memory sits in the English space: an English query finds it densely.
  auto hits = MustSearch("I live in Hue", 5, "default", false);
  ASSERT_GE(hits.size(), 2u);
  EXPECT_EQ(hits[0].entry.id, hue);
  EXPECT_GT(hits[0].dense, 0.5);
  // A query in another script reads only the fallback space, and finds what is there.
  hits = MustSearch("北京", 5, "default", false);
  ASSERT_FALSE(hits.empty());
  EXPECT_EQ(hits[0].entry.id, beijing);
  EXPECT_GT(hits[0].dense, 0.0);
  for (const SearchHit& h : hits) EXPECT_NE(h.entry.id, hanoi);
}

TEST_F(MemoryBankRouting, AnUpdateInAnotherLanguageMovesTheEntryToThatSpace) {
  const std::string id = MustAdd("I live in Hanoi");
  UpdateRequest u;
  u.id = id;
  u.content = "我住在北京";
  ASSERT_TRUE(bank_->Update(u).ok());
  EXPECT_EQ(Stored().at("我住在北京").first, fallback_->Id());
  auto hits = MustSearch("北京", 5, "default", false);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].entry.id, id);
  EXPECT_GT(hits[0].dense, 0.0);
  // Nothing is left behind in the space the entry came from.
  EXPECT_TRUE(MustSearch("I live in Hanoi", 5, "default", false).empty());
}

TEST_F(MemoryBankRouting, ANewLexiconReEmbedsOnlyTheGlossedMemories) {
  MustAdd("I live in Hanoi");
  MustAdd("tôi sống ở Huế");
  MustAdd("我住在北京");
  ASSERT_TRUE(bank_->Flush().ok());
  ASSERT_NO_FATAL_FAILURE(OpenRouted());
  EXPECT_EQ(bank_->reembedded_at_open(), 0u);

  ASSERT_NO_FATAL_FAILURE(UseLexicon("tôi\tI\nsống\tlive\nở\tat\n"));
  ASSERT_NO_FATAL_FAILURE(OpenRouted());
  EXPECT_EQ(bank_->reembedded_at_open(), 1u);
  EXPECT_EQ(Stored().at("tôi sống ở Huế").first,
            sentence_->Id() + "+gloss-vi-" + gloss_->fingerprint());
}

TEST_F(MemoryBankRouting, ReembedAllReportsProgressAndWriteBackCanBeHeld) {
  for (int i = 0; i < 40; ++i) MustAdd(fmt::format("fact number {} about the garden", i));
  ASSERT_TRUE(bank_->Flush().ok());

  std::vector<std::pair<std::size_t, std::size_t>> seen;
  OpenOptions all;
  all.reembed_all = true;
  all.progress = [&](std::size_t done, std::size_t total) { seen.emplace_back(done, total); };
  ASSERT_NO_FATAL_FAILURE(OpenRouted(all));
  EXPECT_EQ(bank_->reembedded_at_open(), 40u);
  ASSERT_GE(seen.size(), 2u);  // batches of 32
  EXPECT_EQ(seen.back(), std::make_pair(std::size_t{40}, std::size_t{40}));
  for (std::size_t i = 1; i < seen.size(); ++i) EXPECT_GT(seen[i].first, seen[i - 1].first);

  // A stand-in router (the sentence encoder missing): vectors are re-made in memory only.
  bank_.reset();
  router_ = encode::Router::Single(*fallback_);
  OpenOptions hold;
  hold.write_back = false;
  auto bank = MemoryBank::Open(options_, *store_, *router_, analyzer_, clock_, hold);
  ASSERT_TRUE(bank.ok()) << bank.status().ToString();
  bank_ = std::move(bank).value();
  EXPECT_EQ(bank_->reembedded_at_open(), 40u);
  EXPECT_FALSE(MustSearch("garden", 5, "default", false).empty());
  for (const auto& [content, stored] : Stored()) {
    EXPECT_EQ(stored.first, sentence_->Id()) << content;
  }
}

// ---- durability --------------------------------------------------------------------------------

using MemoryBankDurability = BankFixture;

TEST_F(MemoryBankDurability, FailedCommitLeavesNoTraceInMemory) {
  max_page_count_ = 24;
  ASSERT_NO_FATAL_FAILURE(Reopen());
  std::vector<std::string> stored;
  std::string refused;
  Status failure;
  for (int i = 0; i < 500 && failure.ok(); ++i) {
    std::string content = "bulky note " + std::to_string(i) + " ";
    for (int w = 0; w < 150; ++w) content += "w" + std::to_string(i * 1000 + w) + " ";
    AddRequest r = Req(content);
    r.use_write_head = false;
    auto out = bank_->Add(r);
    if (out.ok()) {
      stored.push_back(out->memory_id);
    } else {
      failure = out.status();
      refused = "w" + std::to_string(i * 1000);
    }
  }
  ASSERT_FALSE(failure.ok()) << "the page limit was never reached";
  EXPECT_EQ(failure.code(), StatusCode::kResourceExhausted) << failure.ToString();
  ASSERT_FALSE(stored.empty());

  // Memory holds exactly what the store accepted.
  EXPECT_EQ(bank_->TotalCount(), stored.size());
  std::vector<std::string> listed = Ids(ListAll());
  std::reverse(listed.begin(), listed.end());
  EXPECT_EQ(listed, stored);
  for (const auto& h : MustSearch(refused, 50, "default", false)) {
    EXPECT_EQ(h.entry.content.find(refused + " "), std::string::npos);
  }
  EXPECT_EQ(bank_->Stats().overall.writes, static_cast<std::int64_t>(stored.size()));

  max_page_count_ = 0;
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(bank_->TotalCount(), stored.size());
  EXPECT_FALSE(MustAdd("I live in Hanoi").empty());
}

// ---- list --------------------------------------------------------------------------------------

using MemoryBankList = BankFixture;

TEST_F(MemoryBankList, NewestFirstWithFilters) {
  const TimestampMs t0 = clock_.NowMs();
  AddRequest r = Req("entry zero", 1.0, {"a", "b"});
  r.metadata["city"] = "Hanoi";
  const std::string e0 = MustAdd(r);
  clock_.AdvanceMs(1000);
  r = Req("entry one", 1.0, {"a"});
  r.metadata["city"] = "Hue";
  r.metadata["floor"] = 3;
  const std::string e1 = MustAdd(r);
  clock_.AdvanceMs(1000);
  const std::string e2 = MustAdd("entry two", 1.0, {"b"});
  clock_.AdvanceMs(1000);
  const std::string e3 = MustAdd("entry three");

  using V = std::vector<std::string>;
  struct Case {
    const char* what;
    std::function<void(ListQuery&)> filter;
    V expected;
  };
  const Case cases[] = {
      {"no filter", [](ListQuery&) {}, {e3, e2, e1, e0}},
      {"tag a", [](ListQuery& q) { q.tags = {"a"}; }, {e1, e0}},
      {"tags a and b",
       [](ListQuery& q) {
         q.tags = {"b", "a"};
       },
       {e0}},
      {"unknown tag", [](ListQuery& q) { q.tags = {"c"}; }, {}},
      {"created in [t0+1s, t0+3s)",
       [&](ListQuery& q) {
         q.created_from = t0 + 1000;
         q.created_until = t0 + 3000;
       },
       {e2, e1}},
      {"created from t0+3s", [&](ListQuery& q) { q.created_from = t0 + 3000; }, {e3}},
      {"created until t0+1ms", [&](ListQuery& q) { q.created_until = t0 + 1; }, {e0}},
      {"has city", [](ListQuery& q) { q.metadata_key = "city"; }, {e1, e0}},
      {"city is Hue",
       [](ListQuery& q) {
         q.metadata_key = "city";
         q.metadata_value = boost::json::value("Hue");
       },
       {e1}},
      {"floor is 3",
       [](ListQuery& q) {
         q.metadata_key = "floor";
         q.metadata_value = boost::json::value(3);
       },
       {e1}},
      {"city is Hoi An",
       [](ListQuery& q) {
         q.metadata_key = "city";
         q.metadata_value = boost::json::value("Hoi An");
       },
       {}},
      {"tag a and has floor",
       [](ListQuery& q) {
         q.tags = {"a"};
         q.metadata_key = "floor";
       },
       {e1}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.what);
    ListQuery q;
    c.filter(q);
    auto page = bank_->List(q);
    ASSERT_TRUE(page.ok()) << page.status().ToString();
    EXPECT_EQ(Ids(page->entries), c.expected);
    EXPECT_TRUE(page->next_cursor.empty());
  }
}

TEST_F(MemoryBankList, CursorPaginationReturnsEachEntryOnce) {
  struct Case {
    int entries;
    std::size_t limit;
    std::size_t pages;
  };
  const Case cases[] = {{25, 7, 4}, {14, 7, 2}, {1, 7, 1}, {0, 7, 1}};
  for (const Case& c : cases) {
    const std::string ns = "p" + std::to_string(c.entries);
    SCOPED_TRACE(ns);
    std::vector<std::string> added;
    for (int i = 0; i < c.entries; ++i) {
      added.push_back(MustAdd("paged entry " + std::to_string(i), 1.0, {}, ns));
      clock_.AdvanceMs(i % 2);  // some share a millisecond
    }
    std::vector<std::string> seen;
    ListQuery q;
    q.ns = ns;
    q.limit = c.limit;
    std::size_t pages = 0;
    for (;;) {
      auto page = bank_->List(q);
      ASSERT_TRUE(page.ok()) << page.status().ToString();
      ++pages;
      ASSERT_LE(page->entries.size(), c.limit);
      for (const auto& e : page->entries) seen.push_back(e.id);
      if (page->next_cursor.empty()) break;
      ASSERT_EQ(page->entries.size(), c.limit);
      ASSERT_LT(pages, 100u);
      q.cursor = page->next_cursor;
    }
    EXPECT_EQ(pages, c.pages);
    std::reverse(added.begin(), added.end());
    EXPECT_EQ(seen, added);
  }
}

// ---- stats -------------------------------------------------------------------------------------

using MemoryBankStats = BankFixture;

TEST_F(MemoryBankStats, PerNamespaceAndOverallTotals) {
  BankOptions o;
  o.memory_size = 4;
  o.max_memory_capacity = 10;
  ASSERT_NO_FATAL_FAILURE(OpenBank(o));
  const std::string a1 = MustAdd("I live in Hanoi", 1.0, {}, "alice");
  MustAdd("I work as a nurse", 3.0, {}, "alice");
  MustAdd("My favourite colour is blue", 2.0, {}, "bob");
  ASSERT_TRUE(bank_->Get("alice", a1).ok());
  ASSERT_TRUE(bank_->Get("alice", a1).ok());
  MustSearch("blue", 5, "bob");

  const BankStats s = bank_->Stats();
  EXPECT_EQ(s.memory_size, 4u);
  EXPECT_EQ(s.max_memory_capacity, 10u);
  ASSERT_EQ(s.namespaces.size(), 2u);
  const NamespaceStats& alice = s.namespaces[0];
  const NamespaceStats& bob = s.namespaces[1];
  EXPECT_EQ(alice.ns, "alice");
  EXPECT_EQ(bob.ns, "bob");
  EXPECT_EQ(alice.total_memories, 2u);
  EXPECT_DOUBLE_EQ(alice.utilization, 0.5);
  EXPECT_EQ(alice.reads, 2);
  EXPECT_EQ(alice.writes, 2);
  EXPECT_DOUBLE_EQ(alice.importance.min, 1.0);
  EXPECT_DOUBLE_EQ(alice.importance.mean, 2.0);
  EXPECT_DOUBLE_EQ(alice.importance.max, 3.0);
  EXPECT_DOUBLE_EQ(alice.usage.min, 0.0);
  EXPECT_DOUBLE_EQ(alice.usage.mean, 1.0);
  EXPECT_DOUBLE_EQ(alice.usage.max, 2.0);
  EXPECT_EQ(bob.total_memories, 1u);
  EXPECT_DOUBLE_EQ(bob.utilization, 0.25);
  EXPECT_EQ(bob.reads, 1);
  EXPECT_EQ(bob.writes, 1);
  EXPECT_DOUBLE_EQ(bob.usage.max, 1.0);

  EXPECT_EQ(s.overall.ns, "*");
  EXPECT_EQ(s.overall.total_memories, 3u);
  EXPECT_DOUBLE_EQ(s.overall.utilization, 0.5);  // the fuller namespace
  EXPECT_EQ(s.overall.reads, 3);
  EXPECT_EQ(s.overall.writes, 3);
  EXPECT_EQ(s.overall.evictions, 0);
  EXPECT_DOUBLE_EQ(s.overall.importance.min, 1.0);
  EXPECT_DOUBLE_EQ(s.overall.importance.mean, 2.0);
  EXPECT_DOUBLE_EQ(s.overall.importance.max, 3.0);
  EXPECT_DOUBLE_EQ(s.overall.usage.mean, 1.0);
  EXPECT_DOUBLE_EQ(s.overall.usage.max, 2.0);
  EXPECT_EQ(s.write_decisions[static_cast<int>(WriteAction::kAdd)], 3);
  EXPECT_EQ(bank_->TotalCount(), 3u);
}

TEST_F(MemoryBankStats, ForgettingADeletedEntryCountsAsOneWriteThatPersists) {
  const std::string id = MustAdd("I live in Hanoi");
  ASSERT_TRUE(bank_->Delete("default", id).ok());
  ASSERT_TRUE(bank_->Forget("default", id).ok());
  const std::int64_t writes = bank_->Stats().overall.writes;
  EXPECT_EQ(writes, 3);
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(bank_->Stats().overall.writes, writes);
}

TEST_F(MemoryBankStats, EmptyBankHasZeroes) {
  const BankStats s = bank_->Stats();
  EXPECT_EQ(s.overall.total_memories, 0u);
  EXPECT_DOUBLE_EQ(s.overall.utilization, 0.0);
  EXPECT_DOUBLE_EQ(s.overall.importance.mean, 0.0);
  EXPECT_TRUE(s.namespaces.empty());
}

// ---- concurrency -------------------------------------------------------------------------------

using MemoryBankConcurrency = BankFixture;

TEST_F(MemoryBankConcurrency, ConcurrentWritersAndReadersLoseNothing) {
  // Only an exact vector match may merge, so every distinct text must become its own entry while
  // the write head still runs its checks under contention.
  BankOptions o;
  o.update_threshold = 1.0;
  o.duplicate_threshold = 1.0;
  ASSERT_NO_FATAL_FAILURE(OpenBank(o));

  constexpr int kWriters = 8;
  constexpr int kPerWriter = 100;
  std::atomic<int> failures{0};
  std::atomic<int> writers_left{kWriters};
  std::atomic<int> searches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < kWriters; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerWriter; ++i) {
        AddRequest r = Req("writer" + std::to_string(t) + " remembers item" + std::to_string(i) +
                           " number" + std::to_string(t * kPerWriter + i));
        auto out = bank_->Add(r);
        if (!out.ok() || out->action != WriteAction::kAdd) failures.fetch_add(1);
      }
      writers_left.fetch_sub(1);
    });
  }
  for (int t = 0; t < 2; ++t) {
    threads.emplace_back([&, t] {
      do {
        SearchRequest r;
        r.query = "writer" + std::to_string(t) + " remembers";
        r.top_k = 10;
        auto hits = bank_->Search(r);
        if (!hits.ok()) failures.fetch_add(1);
        searches.fetch_add(1);
      } while (writers_left.load() > 0);
    });
  }
  for (auto& th : threads) th.join();

  EXPECT_EQ(failures.load(), 0);
  EXPECT_GT(searches.load(), 0);
  EXPECT_EQ(bank_->TotalCount(), static_cast<std::size_t>(kWriters * kPerWriter));
  const auto all = ListAll();
  EXPECT_EQ(all.size(), static_cast<std::size_t>(kWriters * kPerWriter));
  std::set<std::string> contents;
  for (const auto& e : all) contents.insert(e.content);
  EXPECT_EQ(contents.size(), all.size());
  const auto hits = MustSearch("writer7 remembers item99 number799", 1);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].entry.content, "writer7 remembers item99 number799");

  ASSERT_TRUE(bank_->Flush().ok());
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(bank_->TotalCount(), static_cast<std::size_t>(kWriters * kPerWriter));
}

}  // namespace
}  // namespace mann

// ---- restore -----------------------------------------------------------------------------------

namespace mann {
namespace {

using MemoryBankRestore = BankFixture;

MemoryEntry Exported(std::string id, std::string content, std::string ns = "default") {
  MemoryEntry e;
  e.id = std::move(id);
  e.ns = std::move(ns);
  e.content = std::move(content);
  e.tags = {"home", "city"};
  e.importance = 2.5;
  e.usage_count = 7;
  e.version = 3;
  e.created_ms = 1'700'000'000'000;
  e.updated_ms = 1'700'000'100'000;
  e.last_access_ms = 1'700'000'200'000;
  return e;
}

TEST_F(MemoryBankRestore, KeepsIdTimesUsageAndVersionAndIsSearchable) {
  const std::string id = "01900000-0000-7000-8000-000000000001";
  auto out = bank_->Restore(Exported(id, "I live in Hanoi"));
  ASSERT_TRUE(out.ok()) << out.status().ToString();
  EXPECT_EQ(out->memory_id, id);

  const MemoryEntry e = MustPeek(id);
  EXPECT_EQ(e.version, 3);
  EXPECT_EQ(e.usage_count, 7);
  EXPECT_EQ(e.created_ms, 1'700'000'000'000);
  EXPECT_EQ(e.last_access_ms, 1'700'000'200'000);
  EXPECT_EQ(e.tags, (std::vector<std::string>{"city", "home"}));
  EXPECT_EQ(e.content_hash, text::ContentKey("I live in Hanoi"));

  const auto hits = MustSearch("Hanoi", 1, "default", /*touch=*/false);
  ASSERT_EQ(hits.size(), 1u);
  EXPECT_EQ(hits[0].entry.id, id);
  const auto history = MustHistory(id);
  ASSERT_EQ(history.size(), 1u);
  EXPECT_EQ(history[0].source, "import");

  // Durable: it comes back after a restart.
  ASSERT_NO_FATAL_FAILURE(Reopen());
  EXPECT_EQ(MustPeek(id).version, 3);
}

TEST_F(MemoryBankRestore, AnIdLiveInAnyNamespaceIsAlreadyExists) {
  const std::string id = MustAdd("I live in Hanoi", 1.0, {}, "alice");
  auto again = bank_->Restore(Exported(id, "something else", "bob"));
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.status().code(), StatusCode::kAlreadyExists);
  EXPECT_EQ(bank_->TotalCount(), 1u);
}

TEST_F(MemoryBankRestore, RejectsBadFieldsNamingThem) {
  struct Case {
    std::function<void(MemoryEntry&)> spoil;
    const char* field;
  };
  const Case cases[] = {
      {[](MemoryEntry& e) { e.id = "not-a-uuid"; }, "id"},
      {[](MemoryEntry& e) { e.importance = 3.5; }, "importance_weight"},
      {[](MemoryEntry& e) { e.content = "  "; }, "content"},
      {[](MemoryEntry& e) { e.tags = {""}; }, "tags"},
      {[](MemoryEntry& e) { e.version = 0; }, "version"},
  };
  for (const Case& c : cases) {
    MemoryEntry e = Exported("01900000-0000-7000-8000-000000000002", "I live in Hanoi");
    c.spoil(e);
    auto out = bank_->Restore(e);
    ASSERT_FALSE(out.ok()) << c.field;
    EXPECT_EQ(out.status().code(), StatusCode::kInvalidArgument) << c.field;
    EXPECT_NE(out.status().message().find(c.field), std::string::npos) << out.status().message();
  }
  EXPECT_EQ(bank_->TotalCount(), 0u);
}

TEST_F(MemoryBankRestore, NeverEvictsAtCapacity) {
  BankOptions o;
  o.memory_size = 1;
  o.max_memory_capacity = 1;
  ASSERT_NO_FATAL_FAILURE(OpenBank(o));
  const std::string kept = MustAdd("I live in Hanoi");
  auto out = bank_->Restore(Exported("01900000-0000-7000-8000-000000000003", "I like tea"));
  ASSERT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kResourceExhausted);
  EXPECT_EQ(MustPeek(kept).content, "I live in Hanoi");
}

// ---- reload while the store is unreachable -----------------------------------------------------

// Two banks on one real PostgreSQL database, as two replicas are. The database is made
// unreachable the way an outage looks to a client (new connections refused, open ones closed),
// then reachable again.
class MemoryBankReload : public ::testing::Test {
 protected:
  // (The helpers of src/store/testing_postgres.h declare a namespace mann::testing, which would
  // hide ::testing from the gtest macros this file uses inside namespace mann.)
  void SetUp() override {
    const char* admin = std::getenv("MANN_TEST_POSTGRES_URL");
    if (admin == nullptr || *admin == '\0') {
      const char* required = std::getenv("MANN_REQUIRE_SERVICES");
      if (required != nullptr && std::string(required) == "1") {
        FAIL() << "MANN_TEST_POSTGRES_URL is unset although MANN_REQUIRE_SERVICES=1";
      }
      GTEST_SKIP() << "MANN_TEST_POSTGRES_URL is unset; scripts/services.sh start DIR provides it";
    }
    admin_url_ = admin;
    database_ = fmt::format("mann_bank_reload_{}", ::getpid());
    AdminExec(fmt::format("DROP DATABASE IF EXISTS {} WITH (FORCE)", database_));
    AdminExec(fmt::format("CREATE DATABASE {}", database_));
    created_ = true;
    for (auto* slot : {&store_, &other_store_}) {
      store::PostgresOptions o;
      o.url = DatabaseUrl();
      o.connect_timeout = std::chrono::seconds(1);
      auto store = store::PostgresStore::Open(o);
      ASSERT_TRUE(store.ok()) << store.status().ToString();
      *slot = std::move(store).value();
    }
    for (auto [store, slot] :
         {std::pair{store_.get(), &bank_}, std::pair{other_store_.get(), &other_bank_}}) {
      auto bank = MemoryBank::Open(BankOptions{}, *store, encoder_, analyzer_, clock_);
      ASSERT_TRUE(bank.ok()) << bank.status().ToString();
      *slot = std::move(bank).value();
    }
  }

  void TearDown() override {
    bank_.reset();
    other_bank_.reset();
    store_.reset();
    other_store_.reset();
    if (created_) AdminExec(fmt::format("DROP DATABASE IF EXISTS {} WITH (FORCE)", database_));
  }

  // Runs `sql` on the server's admin database.
  void AdminExec(const std::string& sql) {
    try {
      pqxx::connection admin(admin_url_);
      pqxx::nontransaction tx(admin);
      tx.exec(sql);
    } catch (const std::exception& e) {
      ADD_FAILURE() << sql << ": " << e.what();
    }
  }

  // The admin URL with the test database in place of its own.
  std::string DatabaseUrl() const {
    const std::size_t slash = admin_url_.find('/', admin_url_.find("://") + 3);
    const std::size_t query = admin_url_.find('?');
    return admin_url_.substr(0, slash) + "/" + database_ +
           (query == std::string::npos ? "" : admin_url_.substr(query));
  }

  // Refuses (or allows again) connections to the test database; refusing also closes the open
  // ones, so every call of the stores fails as it would with the server down.
  void SetReachable(bool reachable) {
    AdminExec(fmt::format("ALTER DATABASE {} ALLOW_CONNECTIONS {}", database_,
                          reachable ? "true" : "false"));
    if (!reachable) {
      AdminExec(
          fmt::format("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = '{}'",
                      database_));
    }
  }

  static std::string Add(MemoryBank& bank, std::string content) {
    AddRequest r;
    r.content = std::move(content);
    r.use_write_head = false;
    auto out = bank.Add(r);
    EXPECT_TRUE(out.ok()) << out.status().ToString();
    return out.ok() ? out->memory_id : "";
  }

  // The id of the first hit of `query`, or "".
  static std::string Top(MemoryBank& bank, std::string query) {
    SearchRequest r;
    r.query = std::move(query);
    r.top_k = 1;
    r.touch = false;
    auto hits = bank.Search(r);
    EXPECT_TRUE(hits.ok()) << hits.status().ToString();
    return hits.ok() && !hits->empty() ? hits->front().entry.id : "";
  }

  std::string admin_url_;
  std::string database_;
  bool created_ = false;
  FakeClock clock_;
  text::Analyzer analyzer_;
  encode::HashedEncoder encoder_;
  std::unique_ptr<store::PostgresStore> store_;
  std::unique_ptr<store::PostgresStore> other_store_;
  std::unique_ptr<MemoryBank> bank_;
  std::unique_ptr<MemoryBank> other_bank_;
};

TEST_F(MemoryBankReload, AFailedReloadKeepsServingWhatMemoryHeld) {
  const std::string tram = Add(*bank_, "The night tram leaves the harbour at midnight");
  const std::string violin = Add(*bank_, "Her violin lessons are on Thursday evenings");
  const std::string garden = Add(*other_bank_, "The roof garden grows basil and mint");
  ASSERT_FALSE(tram.empty() || violin.empty() || garden.empty());

  ASSERT_NO_FATAL_FAILURE(SetReachable(false));
  const Status failed = bank_->Reload();
  EXPECT_EQ(failed.code(), StatusCode::kUnavailable) << failed.ToString();
  EXPECT_NE(failed.message().find("PostgreSQL"), std::string::npos) << failed.ToString();
  EXPECT_TRUE(bank_->NeedsReload());
  EXPECT_EQ(bank_->TotalCount(), 2u);
  EXPECT_EQ(Top(*bank_, "night tram harbour"), tram);
  EXPECT_EQ(Top(*bank_, "violin lessons"), violin);
  auto peek = bank_->Get("default", violin, /*touch=*/false);
  EXPECT_TRUE(peek.ok()) << peek.status().ToString();

  // A write refused by the store: its reload after the failed commit fails as well, and memory
  // still answers with what it held.
  AddRequest refused;
  refused.content = "The lighthouse keeper feeds seven cats";
  refused.use_write_head = false;
  auto out = bank_->Add(refused);
  EXPECT_FALSE(out.ok());
  EXPECT_EQ(out.status().code(), StatusCode::kUnavailable) << out.status().ToString();
  EXPECT_TRUE(bank_->NeedsReload());
  EXPECT_EQ(Top(*bank_, "night tram harbour"), tram);
  EXPECT_EQ(Top(*bank_, "violin lessons"), violin);

  // Reachable again: a reload brings the store's state, the other bank's write included and
  // the refused one gone.
  ASSERT_NO_FATAL_FAILURE(SetReachable(true));
  const Status reloaded = bank_->Reload();
  ASSERT_TRUE(reloaded.ok()) << reloaded.ToString();
  EXPECT_FALSE(bank_->NeedsReload());
  EXPECT_EQ(bank_->TotalCount(), 3u);
  EXPECT_EQ(Top(*bank_, "roof garden basil"), garden);
  EXPECT_EQ(Top(*bank_, "night tram harbour"), tram);
  EXPECT_NE(Top(*bank_, "lighthouse keeper cats"), out.ok() ? out->memory_id : "refused");
  EXPECT_EQ(bank_->Stats().overall.total_memories, 3u);
}

TEST_F(MemoryBankReload, AReloadNamesTheNamespacesItFoundGone) {
  AddRequest trip;
  trip.ns = "trip";
  trip.content = "The ferry to the island leaves at seven";
  trip.use_write_head = false;
  ASSERT_TRUE(bank_->Add(trip).ok());
  ASSERT_FALSE(Add(*bank_, "The bakery opens at six").empty());
  EXPECT_TRUE(bank_->TakeNamespacesDroppedByReload().empty()) << "nothing was reloaded yet";

  // The namespace leaves the store entirely (an administrator's purge, a restore).
  {
    pqxx::connection c(DatabaseUrl());
    pqxx::work tx(c);
    tx.exec("DELETE FROM entries WHERE ns = 'trip'");
    tx.exec("DELETE FROM counters WHERE ns = 'trip'");
    tx.commit();
  }
  // A failed reload changes nothing, so it drops nothing.
  ASSERT_NO_FATAL_FAILURE(SetReachable(false));
  EXPECT_FALSE(bank_->Reload().ok());
  EXPECT_TRUE(bank_->TakeNamespacesDroppedByReload().empty());
  ASSERT_NO_FATAL_FAILURE(SetReachable(true));

  ASSERT_TRUE(bank_->Reload().ok());
  EXPECT_EQ(bank_->TakeNamespacesDroppedByReload(), std::vector<std::string>{"trip"});
  EXPECT_TRUE(bank_->TakeNamespacesDroppedByReload().empty()) << "each is named once";
  for (const NamespaceStats& ns : bank_->Stats().namespaces) EXPECT_NE(ns.ns, "trip");
  EXPECT_EQ(bank_->TotalCount(), 1u);
}

}  // namespace
}  // namespace mann
