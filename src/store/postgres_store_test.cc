// PostgresStore against a real PostgreSQL cluster (MANN_TEST_POSTGRES_URL); each test works in a
// database of its own, created and dropped by TestDatabase.

#include <atomic>
#include <chrono>
#include <cstring>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <boost/json.hpp>
#include <fmt/format.h>
#include <gtest/gtest.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mann/store/postgres_store.h>

#include "../core/testing_services.h"
#include "testing_postgres.h"
#include "testing_store.h"

namespace mann::store {
namespace {

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

class PostgresStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string admin;
    MANN_TEST_SERVICE_URL_OR_RETURN(admin, "MANN_TEST_POSTGRES_URL");
    ASSERT_NO_FATAL_FAILURE(db_.Create(admin));
  }

  PostgresOptions Options() const {
    PostgresOptions o;
    o.url = db_.url();
    o.connect_timeout = std::chrono::seconds(3);
    return o;
  }

  std::unique_ptr<PostgresStore> OpenOrDie(PostgresOptions o) {
    auto store = PostgresStore::Open(o);
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    return store.ok() ? std::move(store).value() : nullptr;
  }
  std::unique_ptr<PostgresStore> OpenOrDie() { return OpenOrDie(Options()); }

  testing::TestDatabase db_;
};

// A loopback port nothing listens on: bound, then closed.
int ClosedPort() {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = 0;
  socklen_t len = sizeof(addr);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    ::close(fd);
    return 0;
  }
  ::close(fd);
  return ntohs(addr.sin_port);
}

// --- round trips ---

TEST_F(PostgresStoreTest, RoundTripsEveryFieldAcrossReopen) {
  StoredEntry e = MakeEntry("0190a1b2-0000-7000-8000-000000000001", "user-42",
                            "Tôi thích trà xanh 🍵, \"quoted\" and a\nnewline");
  e.entry.context = "ngữ cảnh";
  e.entry.tags = {"drink", "tiếng việt"};
  e.entry.metadata =
      boost::json::parse(R"({"z":1,"a":{"b":[1,2.5,"x",null,true]},"k":"v"})").as_object();
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
    ASSERT_NE(store, nullptr);
    ASSERT_TRUE(store->Commit(Upsert(e)).ok());
  }
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  std::vector<StoredEntry> all = LoadAll(*store);
  ASSERT_EQ(all.size(), 1u);
  const StoredEntry& got = all[0];
  EXPECT_EQ(got.entry.id, e.entry.id);
  EXPECT_EQ(got.entry.ns, e.entry.ns);
  EXPECT_EQ(got.entry.content, e.entry.content);
  EXPECT_EQ(got.entry.context, e.entry.context);
  EXPECT_EQ(got.entry.tags, e.entry.tags);
  EXPECT_EQ(got.entry.metadata, e.entry.metadata);
  EXPECT_EQ(boost::json::serialize(got.entry.metadata), boost::json::serialize(e.entry.metadata))
      << "metadata keeps its key order";
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

TEST_F(PostgresStoreTest, LoadStreamsPagesInNamespaceThenIdOrderAndStopsAtCallbackError) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  // More than one Load page (1000 rows), in two namespaces.
  Mutation m;
  std::vector<std::string> expected;
  for (int i = 0; i < 1203; ++i) {
    const std::string ns = i % 2 == 0 ? "b" : "a";
    m.upserts.push_back(MakeEntry(fmt::format("id-{:05}", i), ns));
  }
  ASSERT_TRUE(store->Commit(std::move(m)).ok());
  for (const char* ns : {"a", "b"}) {
    for (int i = 0; i < 1203; ++i) {
      if ((i % 2 == 0 ? "b" : "a") == std::string(ns))
        expected.push_back(fmt::format("id-{:05}", i));
    }
  }
  EXPECT_EQ(Ids(LoadAll(*store)), expected);

  int seen = 0;
  Status stopped = store->Load(
      [&](StoredEntry&&) { return ++seen == 3 ? InvalidArgumentError("enough") : Status::Ok(); });
  EXPECT_EQ(stopped.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(seen, 3);
}

TEST_F(PostgresStoreTest, LoadCallbackMayReadAndWriteTheStore) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(Upsert(MakeEntry("a"))).ok());
  Status s = store->Load([&](StoredEntry&& e) {
    MANN_RETURN_IF_ERROR(store->History(e.entry.ns, e.entry.id).status());
    e.encoder_id = "re-made";
    return store->Commit(Upsert(std::move(e)));
  });
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_EQ(LoadAll(*store)[0].encoder_id, "re-made");
}

TEST_F(PostgresStoreTest, HistoryDeleteAndForgetFollowSqliteSemantics) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  Mutation m = Upsert(MakeEntry("e1"));
  m.history = {MakeHistory("e1", HistoryAction::kCreate, 1),
               MakeHistory("e1", HistoryAction::kUpdate, 2)};
  m.upserts.push_back(MakeEntry("e2"));
  m.history.push_back(MakeHistory("e2", HistoryAction::kCreate, 1));
  ASSERT_TRUE(store->Commit(std::move(m)).ok());

  auto history = store->History("default", "e1");
  ASSERT_TRUE(history.ok()) << history.status().ToString();
  ASSERT_EQ(history->size(), 2u);
  EXPECT_EQ((*history)[0].action, HistoryAction::kCreate);
  EXPECT_EQ((*history)[1].action, HistoryAction::kUpdate);
  EXPECT_LT((*history)[0].seq, (*history)[1].seq);
  EXPECT_EQ((*history)[1].content, "v2");
  EXPECT_TRUE(store->History("other-ns", "e1")->empty()) << "history is per namespace";

  // Delete keeps history; forget removes both.
  Mutation del;
  del.deletes = {"e1"};
  del.history = {MakeHistory("e1", HistoryAction::kDelete, 2)};
  del.forgets = {"e2"};
  ASSERT_TRUE(store->Commit(std::move(del)).ok());
  EXPECT_TRUE(LoadAll(*store).empty());
  EXPECT_EQ(store->History("default", "e1")->size(), 3u);
  EXPECT_TRUE(store->History("default", "e2")->empty());

  // Forgets run before upserts, so a forget-and-re-add in one mutation keeps the new entry.
  Mutation again = Upsert(MakeEntry("e2"));
  again.forgets = {"e2"};
  ASSERT_TRUE(store->Commit(std::move(again)).ok());
  EXPECT_EQ(Ids(LoadAll(*store)), (std::vector<std::string>{"e2"}));
}

TEST_F(PostgresStoreTest, MutationIsAllOrNothing) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  Mutation m = Upsert(MakeEntry("good"));
  m.history.push_back(MakeHistory("good", HistoryAction::kCreate, 1));
  m.counters.push_back({"default", 0, 1, 0});
  StoredEntry bad = MakeEntry("bad");
  bad.entry.importance = 5;  // violates the CHECK constraint
  m.upserts.push_back(bad);
  Status s = store->Commit(std::move(m));
  EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
  EXPECT_TRUE(LoadAll(*store).empty());
  EXPECT_TRUE(store->History("default", "good")->empty());
  EXPECT_TRUE(store->Counters()->empty());
  EXPECT_EQ(*store->LastChangeSeq(), 0) << "no change row of a failed commit";

  // Validation errors name the field and never reach the database.
  Mutation empty_ns = Upsert(MakeEntry("x", ""));
  EXPECT_EQ(store->Commit(std::move(empty_ns)).code(), StatusCode::kInvalidArgument);
}

TEST_F(PostgresStoreTest, FailingMemberOfAGroupFailsAloneAndNeighboursLand) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  std::vector<std::future<Status>> outcomes;
  for (int i = 0; i < 20; ++i) {
    StoredEntry e = MakeEntry("g" + std::to_string(i));
    if (i == 7) e.entry.importance = -1;
    outcomes.push_back(store->Enqueue(Upsert(std::move(e))));
  }
  for (int i = 0; i < 20; ++i) {
    Status s = outcomes[i].get();
    if (i == 7) {
      EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << s.ToString();
    } else {
      EXPECT_TRUE(s.ok()) << i << ": " << s.ToString();
    }
  }
  EXPECT_EQ(LoadAll(*store).size(), 19u);
  EXPECT_EQ(store->Stats().writes, 19u);
  EXPECT_EQ(store->Stats().failed, 1u);
}

TEST_F(PostgresStoreTest, UsageNeverLowersAndCountersAddUp) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(Upsert(MakeEntry("u"))).ok());
  Mutation bump;
  bump.usage = {{"u", 5, 5000}, {"missing", 9, 9000}};
  bump.counters = {{"default", 2, 1, 0}, {"other", 0, 0, 3}};
  ASSERT_TRUE(store->Commit(std::move(bump)).ok());
  // A replica that saw fewer reads writes a lower count; the stored count stays.
  Mutation lower;
  lower.usage = {{"u", 3, 4000}};
  lower.counters = {{"default", 1, 0, 1}};
  store->CommitLater(std::move(lower));
  ASSERT_TRUE(store->Flush().ok());

  auto all = LoadAll(*store);
  ASSERT_EQ(all.size(), 1u);
  EXPECT_EQ(all[0].entry.usage_count, 5);
  EXPECT_EQ(all[0].entry.last_access_ms, 5000);
  auto counters = store->Counters();
  ASSERT_TRUE(counters.ok());
  ASSERT_EQ(counters->size(), 2u);
  EXPECT_EQ((*counters)[0].ns, "default");
  EXPECT_EQ((*counters)[0].reads, 3);
  EXPECT_EQ((*counters)[0].writes, 1);
  EXPECT_EQ((*counters)[0].evictions, 1);
  EXPECT_EQ((*counters)[1].ns, "other");
  EXPECT_EQ((*counters)[1].evictions, 3);
}

TEST_F(PostgresStoreTest, ConcurrentCommitsFromTwoStoresAllLandInCommitOrder) {
  auto a = OpenOrDie();
  auto b = OpenOrDie();
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  constexpr int kThreads = 4, kEach = 25;
  std::vector<std::thread> threads;
  std::atomic<int> failures{0};
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      PostgresStore& store = t % 2 == 0 ? *a : *b;
      for (int i = 0; i < kEach; ++i) {
        if (!store.Commit(Upsert(MakeEntry(fmt::format("t{}-{}", t, i)))).ok()) ++failures;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(LoadAll(*a).size(), std::size_t{kThreads * kEach});
  auto changes = b->ChangesSince(0, 1000);
  ASSERT_TRUE(changes.ok()) << changes.status().ToString();
  ASSERT_EQ(changes->size(), std::size_t{kThreads * kEach});
  std::set<std::string> ids;
  for (std::size_t i = 0; i < changes->size(); ++i) {
    if (i > 0) {
      EXPECT_LT((*changes)[i - 1].seq, (*changes)[i].seq);
    }
    ids.insert((*changes)[i].entry_id);
  }
  EXPECT_EQ(ids.size(), std::size_t{kThreads * kEach});
  EXPECT_EQ(*a->LastChangeSeq(), changes->back().seq);
}

// --- chat sessions ---

TEST_F(PostgresStoreTest, SessionsAndTurnsRoundTripWithSqliteRules) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->SaveSession({"s1", "user-1", 100, 100}).ok());
  ASSERT_TRUE(store->SaveSession({"s1", "user-1", 999, 150}).ok());  // keeps created_ms
  for (int i = 1; i <= 5; ++i) {
    ASSERT_TRUE(store
                    ->AppendTurn({"s1", i, i % 2 ? "user" : "assistant",
                                  "turn " + std::to_string(i), 200 + i})
                    .ok());
  }
  auto session = store->GetSession("s1");
  ASSERT_TRUE(session.ok() && session->has_value());
  EXPECT_EQ((*session)->ns, "user-1");
  EXPECT_EQ((*session)->created_ms, 100);
  EXPECT_EQ((*session)->updated_ms, 205) << "a turn raises updated_ms";
  EXPECT_FALSE(store->GetSession("nope")->has_value());

  auto turns = store->RecentTurns("s1", 3);
  ASSERT_TRUE(turns.ok());
  ASSERT_EQ(turns->size(), 3u);
  EXPECT_EQ((*turns)[0].seq, 3);
  EXPECT_EQ((*turns)[2].text, "turn 5");
  EXPECT_EQ((*turns)[2].role, "user");

  Status unknown = store->AppendTurn({"ghost", 1, "user", "hi", 1});
  EXPECT_EQ(unknown.code(), StatusCode::kNotFound) << unknown.ToString();
  EXPECT_TRUE(Contains(unknown.message(), "ghost"));
  Status dup = store->AppendTurn({"s1", 2, "user", "again", 1});
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists) << dup.ToString();
  EXPECT_EQ(store->SaveSession({"", "x", 1, 1}).code(), StatusCode::kInvalidArgument);
}

// --- pager outbox ---

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

TEST_F(PostgresStoreTest, OutboxRowsMoveThroughTheirLifecycle) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(
      store
          ->EnqueueDeliveries({MakeDelivery("a", "slack", 1000), MakeDelivery("b", "slack", 1000),
                               MakeDelivery("c", "slack", 1000), MakeDelivery("d", "slack", 1000),
                               MakeDelivery("p", "pagerduty", 3000)})
          .ok());
  auto due = store->DueDeliveries("slack", 2000, 10);
  ASSERT_TRUE(due.ok()) << due.status().ToString();
  EXPECT_EQ(Ids(*due), (std::vector<std::string>{"a", "b", "c", "d"}));
  EXPECT_EQ((*due)[0].notification, R"({"id":"n-a","title":"disk almost full"})");
  EXPECT_EQ((*due)[0].state, OutboxState::kPending);

  ASSERT_TRUE(store->RecordDeliveryAttempt(Outcome("a", 1100, "HTTP 503", 503, 5000)).ok());
  ASSERT_TRUE(store->MarkDelivered(Outcome("b", 1200, "", 200)).ok());
  ASSERT_TRUE(store->MarkFailed(Outcome("c", 1300, "HTTP 400", 400)).ok());
  ASSERT_TRUE(store->MarkDead(Outcome("d", 1400, "timed out", 0)).ok());

  due = store->DueDeliveries("slack", 4999, 10);
  ASSERT_TRUE(due.ok());
  EXPECT_TRUE(due->empty());
  due = store->DueDeliveries("slack", std::numeric_limits<TimestampMs>::max(), 10);
  ASSERT_EQ(Ids(*due), (std::vector<std::string>{"a"}));
  EXPECT_EQ((*due)[0].attempts, 1);
  EXPECT_EQ((*due)[0].last_status, 503);
  EXPECT_EQ((*due)[0].next_attempt_ms, 5000);

  for (const char* id : {"b", "c", "d", "nope"}) {
    Status s = store->MarkDelivered(Outcome(id, 2000));
    EXPECT_EQ(s.code(), StatusCode::kNotFound) << id << ": " << s.ToString();
    EXPECT_TRUE(Contains(s.message(), id));
  }

  // Duplicates are refused all-or-nothing.
  Status dup =
      store->EnqueueDeliveries({MakeDelivery("new", "slack", 1), MakeDelivery("a", "x", 1)});
  EXPECT_EQ(dup.code(), StatusCode::kAlreadyExists) << dup.ToString();
  Status same_pair = store->EnqueueDeliveries({MakeDelivery("other", "slack", 1, "n-a")});
  EXPECT_EQ(same_pair.code(), StatusCode::kAlreadyExists) << same_pair.ToString();
  EXPECT_EQ(store->RecentDeliveries(100)->size(), 5u);
  OutboxDelivery bad = MakeDelivery("z", "", 1);
  EXPECT_EQ(store->EnqueueDeliveries({bad}).code(), StatusCode::kInvalidArgument);

  auto stats = store->OutboxStats(1250);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  ASSERT_EQ(stats->size(), 2u);
  EXPECT_EQ((*stats)[0].channel, "pagerduty");
  EXPECT_EQ((*stats)[0].pending, 1);
  EXPECT_EQ((*stats)[0].next_attempt_ms, 3000);
  const OutboxChannelStats& slack = (*stats)[1];
  EXPECT_EQ(slack.pending, 1);
  EXPECT_EQ(slack.oldest_pending_created_ms, 1000);
  EXPECT_EQ(slack.next_attempt_ms, 5000);
  EXPECT_EQ(slack.delivered_since, 0) << "delivered at 1200, before 1250";
  EXPECT_EQ(slack.failed_since, 1);
  EXPECT_EQ(slack.dead_since, 1);
  EXPECT_EQ(slack.last_dead_ms, 1400);

  auto pruned = store->PruneDeliveries(1350);
  ASSERT_TRUE(pruned.ok());
  EXPECT_EQ(*pruned, 2) << "b and c; d is newer, a and p are pending";
  EXPECT_EQ(Ids(*store->RecentDeliveries(2)).size(), 2u);
}

// --- schema ---

TEST_F(PostgresStoreTest, MigrationsAreIdempotentAndConcurrentOpenersMigrateOnce) {
  std::vector<std::future<Result<std::unique_ptr<PostgresStore>>>> openers;
  for (int i = 0; i < 4; ++i) {
    openers.push_back(
        std::async(std::launch::async, [&] { return PostgresStore::Open(Options()); }));
  }
  for (auto& o : openers) {
    auto store = o.get();
    EXPECT_TRUE(store.ok()) << store.status().ToString();
  }
  EXPECT_EQ(db_.Query("SELECT count(*) FROM schema_version"),
            std::to_string(PostgresStore::SchemaVersion()));
  auto again = OpenOrDie();
  ASSERT_NE(again, nullptr);
  EXPECT_TRUE(again->CheckIntegrity().ok());
  EXPECT_EQ(db_.Query("SELECT max(version) FROM schema_version"),
            std::to_string(PostgresStore::SchemaVersion()));
}

TEST_F(PostgresStoreTest, SchemaNewerThanThisBuildIsRefused) {
  { ASSERT_NE(OpenOrDie(), nullptr); }
  db_.Query("INSERT INTO schema_version (version) VALUES (99) RETURNING version");
  auto store = PostgresStore::Open(Options());
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(store.status().message(), "schema version 99")) << store.status().ToString();
}

// --- the change log ---

TEST_F(PostgresStoreTest, TwoStoresSeeEachOthersChangesThroughTheLog) {
  auto writer = OpenOrDie();
  auto reader = OpenOrDie();
  ASSERT_NE(writer, nullptr);
  ASSERT_NE(reader, nullptr);
  EXPECT_TRUE(reader->SharedByReplicas());
  ASSERT_EQ(*reader->LastChangeSeq(), 0);
  // The first wait connects the listener and returns at once.
  ASSERT_TRUE(reader->WaitForChanges(milliseconds(5000)).ok());

  // A commit wakes the waiting reader through NOTIFY, well before its timeout.
  std::promise<Status> committed;
  std::thread commit([&] {
    std::this_thread::sleep_for(milliseconds(200));
    Mutation m = Upsert(MakeEntry("c1", "ns1"));
    m.usage.push_back({"c1", 1, 1});  // bookkeeping logs nothing
    committed.set_value(writer->Commit(std::move(m)));
  });
  const auto started = SteadyClock::now();
  ASSERT_TRUE(reader->WaitForChanges(milliseconds(10'000)).ok());
  const auto waited = SteadyClock::now() - started;
  commit.join();
  ASSERT_TRUE(committed.get_future().get().ok());
  EXPECT_LT(waited, milliseconds(5000)) << "NOTIFY must end the wait, not the timeout";

  auto changes = reader->ChangesSince(0, 100);
  ASSERT_TRUE(changes.ok()) << changes.status().ToString();
  ASSERT_EQ(changes->size(), 1u);
  const Change& up = (*changes)[0];
  EXPECT_EQ(up.ns, "ns1");
  EXPECT_EQ(up.entry_id, "c1");
  EXPECT_FALSE(up.removed);
  ASSERT_TRUE(up.entry.has_value());
  EXPECT_EQ(up.entry->entry.content, "likes green tea");
  EXPECT_EQ(up.entry->embedding, (std::vector<float>{0.5f, -0.25f}));
  EXPECT_GT(up.at_ms, 0);

  // A delete, an eviction-style delete of a missing id, and a forget: only live entries log.
  ASSERT_TRUE(writer->Commit(Upsert(MakeEntry("c2", "ns1"))).ok());
  Mutation del;
  del.deletes = {"c1", "never-existed"};
  del.forgets = {"c2"};
  ASSERT_TRUE(writer->Commit(std::move(del)).ok());
  changes = reader->ChangesSince(up.seq, 100);
  ASSERT_TRUE(changes.ok());
  ASSERT_EQ(changes->size(), 3u);  // upsert c2, forget c2, delete c1
  for (const Change& c : *changes) {
    EXPECT_TRUE(c.removed) << c.entry_id << ": neither is live now";
    EXPECT_FALSE(c.entry.has_value());
  }
  EXPECT_EQ(*reader->LastChangeSeq(), changes->back().seq);
  EXPECT_TRUE(reader->ChangesSince(changes->back().seq, 100)->empty());
  auto limited = reader->ChangesSince(0, 2);
  ASSERT_TRUE(limited.ok());
  EXPECT_EQ(limited->size(), 2u);
}

TEST_F(PostgresStoreTest, PrunedChangeLogTellsALateReaderToReload) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(Upsert(MakeEntry("p1"))).ok());
  ASSERT_TRUE(store->Commit(Upsert(MakeEntry("p2"))).ok());
  const std::int64_t last = *store->LastChangeSeq();
  EXPECT_TRUE(store->PruneChanges(std::chrono::seconds(3600)).ok());
  EXPECT_EQ(store->ChangesSince(0, 10)->size(), 2u) << "fresh rows survive";

  // -1 s: rows logged up to now are "older" than the cutoff.
  auto pruned = store->PruneChanges(std::chrono::seconds(-1));
  ASSERT_TRUE(pruned.ok()) << pruned.status().ToString();
  EXPECT_EQ(*pruned, 2);
  EXPECT_EQ(*store->LastChangeSeq(), last) << "the position survives pruning";
  auto late = store->ChangesSince(0, 10);
  ASSERT_FALSE(late.ok());
  EXPECT_EQ(late.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(Contains(late.status().message(), "reload")) << late.status().ToString();
  EXPECT_TRUE(store->ChangesSince(last, 10)->empty()) << "a reader at the horizon is fine";
  EXPECT_EQ(store->Stats().pruned_changes, 2u);
}

// --- failures ---

TEST_F(PostgresStoreTest, CallsAfterTheServerDroppedEveryConnectionSucceed) {
  auto store = OpenOrDie();
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(Upsert(MakeEntry("before"))).ok());
  ASSERT_TRUE(store->WaitForChanges(milliseconds(10)).ok());  // connect the listener too
  ASSERT_GE(db_.TerminateConnections(), 1);

  // Pooled connections are now dead; each call notices, reconnects and retries once.
  EXPECT_TRUE(store->Commit(Upsert(MakeEntry("after"))).ok());
  EXPECT_TRUE(store->Counters().ok());
  EXPECT_EQ(LoadAll(*store).size(), 2u);
  // The listener reports the break once, then reconnects.
  Status wait = store->WaitForChanges(milliseconds(100));
  if (!wait.ok()) {
    EXPECT_EQ(wait.code(), StatusCode::kUnavailable) << wait.ToString();
    EXPECT_TRUE(store->WaitForChanges(milliseconds(100)).ok());
  }
  EXPECT_TRUE(store->WaitForChanges(milliseconds(100)).ok());
}

TEST_F(PostgresStoreTest, UnreachableServerIsUnavailableQuicklyAndNamesNoPassword) {
  const int port = ClosedPort();
  ASSERT_NE(port, 0);
  PostgresOptions o;
  o.url = fmt::format("postgresql://mann:hunter2@127.0.0.1:{}/nowhere", port);
  o.connect_timeout = std::chrono::seconds(2);
  const auto started = SteadyClock::now();
  auto store = PostgresStore::Open(o);
  const auto took = SteadyClock::now() - started;
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable) << store.status().ToString();
  EXPECT_TRUE(Contains(store.status().message(), fmt::format("127.0.0.1:{}", port)))
      << store.status().ToString();
  EXPECT_FALSE(Contains(store.status().message(), "hunter2")) << store.status().ToString();
  EXPECT_LT(took, milliseconds(3000));
}

// A loopback socket that listens and never accepts: the kernel completes every handshake, and
// nothing ever answers, like a stopped postmaster. Closed with the object.
class SilentListener {
 public:
  SilentListener() {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) == 0 &&
        ::listen(fd_, 16) == 0 &&
        ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len) == 0) {
      port_ = ntohs(addr.sin_port);
    }
  }
  ~SilentListener() { ::close(fd_); }
  int port() const { return port_; }

 private:
  int fd_ = -1;
  int port_ = 0;
};

// A TCP proxy on loopback in front of the test cluster that can be told to stop forwarding
// (a black hole): its connections stay up and nothing comes back, which is what a client sees
// of a SIGSTOPped server. Every thread ends, and every socket closes, with the object.
class BlackHoleProxy {
 public:
  // `url` is a postgresql:// URL with host:port; the proxy forwards to that address.
  explicit BlackHoleProxy(const std::string& url) {
    const std::size_t at = url.find('@');
    const std::size_t begin = at == std::string::npos ? url.find("://") + 3 : at + 1;
    const std::size_t end = url.find_first_of("/?", begin);
    authority_ = url.substr(begin, end - begin);
    const std::size_t colon = authority_.rfind(':');
    if (colon == std::string::npos) return;
    addrinfo hints{};
    hints.ai_family = AF_INET;
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* found = nullptr;
    if (::getaddrinfo(authority_.substr(0, colon).c_str(), authority_.substr(colon + 1).c_str(),
                      &hints, &found) != 0) {
      return;
    }
    std::memcpy(&upstream_, found->ai_addr, sizeof(upstream_));
    ::freeaddrinfo(found);

    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
        ::listen(listen_fd_, 16) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      return;
    }
    port_ = ntohs(addr.sin_port);
    threads_.emplace_back([this] { AcceptLoop(); });
  }

  ~BlackHoleProxy() {
    stopping_ = true;
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(threads_);
    }
    for (std::thread& t : threads) t.join();
    std::lock_guard lock(mu_);
    for (std::thread& t : threads_) t.join();  // pumps the accept loop started while joining
    if (listen_fd_ >= 0) ::close(listen_fd_);
  }

  int port() const { return port_; }
  // `url` with its host:port pointed at the proxy.
  std::string Route(const std::string& url) const {
    std::string out = url;
    out.replace(url.find(authority_), authority_.size(), fmt::format("127.0.0.1:{}", port_));
    return out;
  }
  void SetForwarding(bool on) { forwarding_ = on; }

 private:
  void AcceptLoop() {
    while (!stopping_) {
      pollfd p{listen_fd_, POLLIN, 0};
      if (::poll(&p, 1, 50) <= 0) continue;
      const int client = ::accept(listen_fd_, nullptr, nullptr);
      if (client < 0) continue;
      const int upstream = ::socket(AF_INET, SOCK_STREAM, 0);
      if (::connect(upstream, reinterpret_cast<const sockaddr*>(&upstream_), sizeof(upstream_)) !=
          0) {
        ::close(upstream);
        ::close(client);
        continue;
      }
      std::lock_guard lock(mu_);
      threads_.emplace_back([this, client, upstream] { Pump(client, upstream); });
    }
  }

  // Copies bytes both ways while forwarding; holds them (reads nothing) while not.
  void Pump(int client, int upstream) {
    char buffer[16384];
    bool open = true;
    while (open && !stopping_) {
      if (!forwarding_) {
        ::poll(nullptr, 0, 20);
        continue;
      }
      pollfd p[2] = {{client, POLLIN, 0}, {upstream, POLLIN, 0}};
      if (::poll(p, 2, 50) <= 0) continue;
      for (int i = 0; i < 2 && open; ++i) {
        if ((p[i].revents & (POLLIN | POLLHUP | POLLERR)) == 0) continue;
        const ssize_t n = ::read(p[i].fd, buffer, sizeof(buffer));
        if (n <= 0) {
          open = false;
          break;
        }
        for (ssize_t sent = 0; sent < n && open;) {
          const ssize_t w = ::send(p[1 - i].fd, buffer + sent, n - sent, MSG_NOSIGNAL);
          if (w <= 0) open = false;
          sent += w;
        }
      }
    }
    ::close(client);
    ::close(upstream);
  }

  std::string authority_;
  sockaddr_in upstream_{};
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> forwarding_{true};
  std::atomic<bool> stopping_{false};
  std::mutex mu_;
  std::vector<std::thread> threads_;  // guarded by mu_
};

TEST(PostgresStoreStallTest, ConnectingToAServerThatNeverAnswersIsUnavailableInTime) {
  SilentListener silent;
  ASSERT_NE(silent.port(), 0);
  PostgresOptions o;
  o.url = fmt::format("postgresql://mann@127.0.0.1:{}/nowhere", silent.port());
  o.connect_timeout = std::chrono::seconds(2);
  const auto started = SteadyClock::now();
  auto store = PostgresStore::Open(o);
  const auto took = SteadyClock::now() - started;
  ASSERT_FALSE(store.ok());
  EXPECT_EQ(store.status().code(), StatusCode::kUnavailable) << store.status().ToString();
  EXPECT_LT(took, milliseconds(3500)) << store.status().ToString();
}

TEST_F(PostgresStoreTest, CallsToAServerThatStoppedAnsweringAreUnavailableWithinTheBound) {
  BlackHoleProxy proxy(db_.url());
  ASSERT_NE(proxy.port(), 0);
  PostgresOptions o = Options();
  o.url = proxy.Route(db_.url());
  o.connect_timeout = std::chrono::seconds(2);
  o.statement_timeout = milliseconds(500);
  const milliseconds bound(2000 + 500 + 1000);  // connect + statement timeouts + slack
  auto store = OpenOrDie(o);
  ASSERT_NE(store, nullptr);
  ASSERT_TRUE(store->Commit(Upsert(MakeEntry("before"))).ok());
  ASSERT_TRUE(store->WaitForChanges(milliseconds(10)).ok());  // connect the listener
  // The writer is idle (it may prune after a batch), so the connection below is the pooled one.
  ASSERT_TRUE(store->Flush().ok());
  ASSERT_TRUE(store->Counters().ok());

  proxy.SetForwarding(false);
  // A read on a pooled connection: cut off by the watchdog, not retried.
  auto started = SteadyClock::now();
  auto counters = store->Counters();
  auto took = SteadyClock::now() - started;
  ASSERT_FALSE(counters.ok());
  EXPECT_EQ(counters.status().code(), StatusCode::kUnavailable) << counters.status().ToString();
  EXPECT_TRUE(Contains(counters.status().message(), "did not answer within 3500 ms"))
      << counters.status().ToString();
  EXPECT_GE(took, bound - milliseconds(100));
  EXPECT_LT(took, bound + milliseconds(1500));
  const auto read_took = std::chrono::duration_cast<milliseconds>(took);

  // A write through the writer thread: its pooled connection is gone, and a new one cannot
  // finish connecting, so it fails within connect_timeout (or the bound, on a pooled one).
  started = SteadyClock::now();
  Status write = store->Commit(Upsert(MakeEntry("during")));
  took = SteadyClock::now() - started;
  EXPECT_EQ(write.code(), StatusCode::kUnavailable) << write.ToString();
  EXPECT_LT(took, bound + milliseconds(1500)) << write.ToString();
  fmt::print("stalled server: read cut off after {} ms, write refused after {} ms (bound {} ms)\n",
             read_took.count(), std::chrono::duration_cast<milliseconds>(took).count(),
             bound.count());

  // Waiting for notifications is bounded by its own timeout on a silent connection.
  started = SteadyClock::now();
  Status wait = store->WaitForChanges(milliseconds(200));
  took = SteadyClock::now() - started;
  EXPECT_LT(took, milliseconds(1500)) << wait.ToString();

  // Back again: the cut-off connections were dropped, not reused, so every call works.
  proxy.SetForwarding(true);
  EXPECT_TRUE(store->Counters().ok());
  EXPECT_TRUE(store->Commit(Upsert(MakeEntry("after"))).ok());
  std::set<std::string> ids;
  for (const StoredEntry& e : LoadAll(*store)) ids.insert(e.entry.id);
  EXPECT_TRUE(ids.count("before") == 1 && ids.count("after") == 1) << ids.size();
  EXPECT_TRUE(store->WaitForChanges(milliseconds(10)).ok() ||
              store->WaitForChanges(milliseconds(10)).ok());
}

TEST_F(PostgresStoreTest, QuickCallsNearTheBoundAreNeverCutOffLater) {
  // Many calls, each far inside its bound, on a small pool: a watch must end with its call,
  // so no later lease of the same connection is shut down by an earlier call's deadline.
  PostgresOptions o = Options();
  o.connect_timeout = std::chrono::seconds(1);
  o.statement_timeout = milliseconds(200);  // bound: 2200 ms, well inside the loop's 3 s
  o.max_connections = 2;
  auto store = OpenOrDie(o);
  ASSERT_NE(store, nullptr);
  const auto until = SteadyClock::now() + milliseconds(3000);
  int calls = 0;
  while (SteadyClock::now() < until && calls < 100'000) {
    auto counters = store->Counters();
    ASSERT_TRUE(counters.ok()) << "call " << calls << ": " << counters.status().ToString();
    ++calls;
  }
  EXPECT_GT(calls, 10);
  EXPECT_EQ(store->Stats().connects, 1u) << "no connection was shut down and replaced";
}

TEST_F(PostgresStoreTest, DescribeAndRedactionNeverShowThePassword) {
  // The test cluster trusts loopback, so the password is sent to no one but must still not show.
  const std::string url = testing::WithDatabase(
      "postgresql://mann:s3cret-pw@" + db_.url().substr(db_.url().find('@') + 1), db_.name());
  PostgresOptions o = Options();
  o.url = url;
  auto store = OpenOrDie(o);
  ASSERT_NE(store, nullptr);
  EXPECT_FALSE(Contains(store->Describe(), "s3cret-pw")) << store->Describe();
  EXPECT_TRUE(Contains(store->Describe(), "postgresql://mann@")) << store->Describe();
  EXPECT_TRUE(Contains(store->Describe(), db_.name())) << store->Describe();

  EXPECT_EQ(RedactPostgresUrl("postgresql://u:p@h:5432/db?sslmode=require&password=x"),
            "postgresql://u@h:5432/db?sslmode=require");
  EXPECT_EQ(RedactPostgresUrl("postgres://h/db"), "postgres://h/db");
  EXPECT_EQ(RedactPostgresUrl("postgresql://u:p:q@h"), "postgresql://u@h");
}

TEST_F(PostgresStoreTest, OpenRejectsBadOptionsNamingTheKey) {
  PostgresOptions o = Options();
  o.url = "";
  EXPECT_TRUE(Contains(PostgresStore::Open(o).status().message(), "storage.postgres_url"));
  o.url = "mysql://u:pw@h/db";
  auto bad = PostgresStore::Open(o);
  EXPECT_EQ(bad.status().code(), StatusCode::kInvalidArgument);
  EXPECT_FALSE(Contains(bad.status().message(), "pw@")) << bad.status().ToString();
  o = Options();
  o.max_connections = 1;
  EXPECT_EQ(PostgresStore::Open(o).status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mann::store
