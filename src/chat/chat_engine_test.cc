#include <filesystem>

#include <gtest/gtest.h>

#include <mann/chat/chat_engine.h>
#include <mann/encode/hashed_encoder.h>
#include <mann/store/sqlite_store.h>

namespace mann::chat {
namespace {

namespace fs = std::filesystem;

// A chat engine over a real SQLite file in a fresh temporary directory.
class ChatEngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fs::path(::testing::TempDir()) /
           ("chat_engine_" + std::to_string(::getpid()) + "_" +
            ::testing::UnitTest::GetInstance()->current_test_info()->name());
    fs::remove_all(dir_);
    fs::create_directories(dir_);
    Open();
  }

  void TearDown() override {
    Close();
    fs::remove_all(dir_);
  }

  void Open() {
    auto store = store::SqliteStore::Open({.path = (dir_ / "mann.db").string()});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    auto bank = MemoryBank::Open(BankOptions{}, *store_, encoder_, analyzer_, clock_);
    ASSERT_TRUE(bank.ok()) << bank.status().ToString();
    bank_ = std::move(bank).value();
    engine_ = std::make_unique<ChatEngine>(*bank_, *store_, responder_, clock_);
  }

  void Close() {
    engine_.reset();
    bank_.reset();
    store_.reset();
  }

  std::string Say(const std::string& message, const std::string& ns = "default") {
    auto turn = engine_->Turn(ns, session_, message);
    EXPECT_TRUE(turn.ok()) << turn.status().ToString();
    if (!turn.ok()) return "";
    session_ = turn->session_id;
    return turn->reply;
  }

  fs::path dir_;
  FakeClock clock_{1'796'292'000'000};  // 2026-12-03T10:00:00Z
  text::Analyzer analyzer_;
  encode::HashedEncoder encoder_;
  GroundedResponder responder_;
  std::unique_ptr<store::SqliteStore> store_;
  std::unique_ptr<MemoryBank> bank_;
  std::unique_ptr<ChatEngine> engine_;
  std::string session_;
};

TEST_F(ChatEngineTest, RemembersAFactAcrossARestartAndAnswersFromIt) {
  EXPECT_EQ(Say("I live in Hanoi"), "Got it, I'll remember that.");
  EXPECT_EQ(Say("My name is Alice"), "Got it, I'll remember that.");
  Close();
  Open();
  session_.clear();
  clock_.AdvanceMs(86'400'000);
  EXPECT_EQ(Say("where do I live?"), "You told me on 3 Dec: I live in Hanoi.");
  EXPECT_NE(Say("what is my name?").find("Alice"), std::string::npos);
}

TEST_F(ChatEngineTest, VietnameseWithoutDiacriticsFindsTheAccentedFact) {
  EXPECT_EQ(Say("tôi tên là Lan"), "Đã ghi nhớ.");
  const std::string reply = Say("toi ten la gi");
  EXPECT_NE(reply.find("tôi tên là Lan"), std::string::npos) << reply;
  EXPECT_EQ(reply.rfind("Bạn đã nói với tôi", 0), 0u) << reply;
}

TEST_F(ChatEngineTest, SaysItKnowsNothingRelevantInsteadOfQuotingNoise) {
  Say("I live in Hanoi");
  const std::string reply = Say("what is my favourite colour?");
  EXPECT_NE(reply.find("don't know"), std::string::npos) << reply;
  EXPECT_EQ(reply.find("Hanoi"), std::string::npos) << reply;
}

TEST_F(ChatEngineTest, QuestionsAreNotStoredAndRepeatsAreRecognised) {
  Say("I live in Hanoi");
  Say("where do I live?");
  EXPECT_EQ(Say("I live in Hanoi"), "I already knew that.");
  EXPECT_EQ(bank_->TotalCount(), 1u);
}

TEST_F(ChatEngineTest, ForgetRequestRemovesTheMemory) {
  Say("I live in Hanoi");
  EXPECT_EQ(Say("forget that I live in Hanoi"), "Done, I've forgotten that.");
  EXPECT_EQ(bank_->TotalCount(), 0u);
  EXPECT_NE(Say("where do I live?").find("don't know"), std::string::npos);
}

TEST_F(ChatEngineTest, PersistsBothSidesOfEveryTurn) {
  Say("I live in Hanoi");
  Say("where do I live?");
  auto turns = store_->RecentTurns(session_, 10);
  ASSERT_TRUE(turns.ok());
  ASSERT_EQ(turns->size(), 4u);
  EXPECT_EQ((*turns)[0].role, "user");
  EXPECT_EQ((*turns)[0].text, "I live in Hanoi");
  EXPECT_EQ((*turns)[1].role, "assistant");
  EXPECT_EQ((*turns)[3].seq, 4);
}

TEST_F(ChatEngineTest, SessionsAreBoundToTheirNamespace) {
  Say("I live in Hanoi", "alice");
  auto other = engine_->Turn("bob", session_, "where do I live?");
  ASSERT_FALSE(other.ok());
  EXPECT_EQ(other.status().code(), StatusCode::kNotFound);
  // Bob's own session knows nothing of Alice's memories.
  auto fresh = engine_->Turn("bob", "", "where do I live?");
  ASSERT_TRUE(fresh.ok());
  EXPECT_NE(fresh->reply.find("don't know"), std::string::npos);
}

TEST_F(ChatEngineTest, TextSinkReceivesTheWholeReplyOfANonStreamingResponder) {
  std::string streamed;
  auto turn = engine_->Turn("default", "", "I live in Hanoi", true,
                            [&](std::string_view piece) { streamed += piece; });
  ASSERT_TRUE(turn.ok()) << turn.status().ToString();
  EXPECT_EQ(streamed, turn->reply);
}

// A decider that answers from a script and remembers what it was shown.
class ScriptedDecider : public MemoryDecider {
 public:
  std::optional<std::vector<llm::Decision>> answer;
  std::vector<llm::ShownMemory> shown;

  std::optional<std::vector<llm::Decision>> Decide(
      std::string_view, text::Language, const std::vector<llm::ShownMemory>& memories) override {
    shown = memories;
    return answer;
  }
};

TEST_F(ChatEngineTest, DecidedWritesAreAppliedWithSourceLlm) {
  Say("I live in Hanoi");
  const std::string id = bank_->List({}).value().entries.at(0).id;
  ScriptedDecider decider;
  decider.answer =
      std::vector<llm::Decision>{{WriteAction::kUpdate, id, "I live in Da Nang", "moved"},
                                 {WriteAction::kAdd, "", "The user moved in 2026", ""}};
  engine_->SetMemoryDecider(&decider);
  Say("I moved from Hanoi to Da Nang in 2026");

  ASSERT_FALSE(decider.shown.empty());
  EXPECT_EQ(decider.shown[0].id, id);
  EXPECT_EQ(bank_->Get("default", id).value().content, "I live in Da Nang");
  EXPECT_EQ(bank_->History("default", id).value().back().source, "llm");
  EXPECT_EQ(bank_->TotalCount(), 2u);
}

TEST_F(ChatEngineTest, ADecidedNoopIsKeptInTheMemorysHistoryAndChangesNothing) {
  Say("I live in Hanoi");
  const std::string id = bank_->List({}).value().entries.at(0).id;
  const std::size_t rows_before = bank_->History("default", id).value().size();
  ScriptedDecider decider;
  decider.answer = std::vector<llm::Decision>{{WriteAction::kNoop, id, "", "already known"}};
  engine_->SetMemoryDecider(&decider);
  Say("I live in Hanoi, as I said");

  const auto history = bank_->History("default", id).value();
  ASSERT_EQ(history.size(), rows_before + 1);
  EXPECT_EQ(history.back().action, HistoryAction::kNoop);
  EXPECT_EQ(history.back().source, "llm");
  EXPECT_EQ(history.back().reason, "model: already known");
  EXPECT_EQ(bank_->Get("default", id).value().content, "I live in Hanoi");
  EXPECT_EQ(bank_->TotalCount(), 1u);
}

TEST_F(ChatEngineTest, DeclinedDecisionsLeaveTheSimilarityRulesToDecide) {
  ScriptedDecider decider;  // answers nullopt
  engine_->SetMemoryDecider(&decider);
  Say("I live in Hanoi");
  const auto entries = bank_->List({}).value().entries;
  ASSERT_EQ(entries.size(), 1u);
  EXPECT_EQ(bank_->History("default", entries[0].id).value().front().source, "similarity");
}

TEST_F(ChatEngineTest, EmptyMessageIsAnError) {
  auto turn = engine_->Turn("default", "", "   ");
  ASSERT_FALSE(turn.ok());
  EXPECT_EQ(turn.status().code(), StatusCode::kInvalidArgument);
}

}  // namespace
}  // namespace mann::chat
