#include <gtest/gtest.h>

#include <mann/chat/responder.h>

namespace mann::chat {
namespace {

using text::Language;

struct ClassifyCase {
  const char* message;
  Intent intent;
};

class ClassifyTest : public ::testing::TestWithParam<ClassifyCase> {};

TEST_P(ClassifyTest, RecognisesTheFormOfTheMessage) {
  EXPECT_EQ(Classify(GetParam().message), GetParam().intent) << GetParam().message;
}

INSTANTIATE_TEST_SUITE_P(
    EnglishAndVietnamese, ClassifyTest,
    ::testing::Values(ClassifyCase{"where do I live?", Intent::kQuestion},
                      ClassifyCase{"where do I live", Intent::kQuestion},
                      ClassifyCase{"What is my name", Intent::kQuestion},
                      ClassifyCase{"I live in Hanoi", Intent::kStatement},
                      ClassifyCase{"My name is Alice.", Intent::kStatement},
                      ClassifyCase{"forget that I live in Hanoi", Intent::kForget},
                      ClassifyCase{"hello", Intent::kGreeting},
                      ClassifyCase{"thanks!", Intent::kThanks},
                      ClassifyCase{"tôi sống ở đâu", Intent::kQuestion},
                      ClassifyCase{"toi song o dau", Intent::kQuestion},
                      ClassifyCase{"tên tôi là gì?", Intent::kQuestion},
                      ClassifyCase{"bạn có nhớ tôi không", Intent::kQuestion},
                      ClassifyCase{"tôi không thích cà phê", Intent::kStatement},
                      ClassifyCase{"tôi thích phở bò", Intent::kStatement},
                      ClassifyCase{"toi lam viec o Da Nang", Intent::kStatement},
                      ClassifyCase{"tôi có một cái máy tính mới", Intent::kStatement},
                      ClassifyCase{"quên rằng tôi thích mèo", Intent::kForget},
                      ClassifyCase{"xin chào", Intent::kGreeting}));

SearchHit Hit(std::string content, TimestampMs created_ms, double similarity) {
  SearchHit h;
  h.entry.id = "0190";
  h.entry.content = std::move(content);
  h.entry.created_ms = created_ms;
  h.similarity = similarity;
  return h;
}

// 2026-12-03T10:00:00Z
constexpr TimestampMs kDec3 = 1'796'292'000'000;

TEST(FormatDay, PrintsDayAndMonthPerLanguage) {
  EXPECT_EQ(FormatDay(kDec3, Language::kEnglish, 0), "3 Dec");
  EXPECT_EQ(FormatDay(kDec3, Language::kVietnamese, 0), "3/12");
  // 10:00 UTC is already the next day 15 hours east.
  EXPECT_EQ(FormatDay(kDec3, Language::kEnglish, 15 * 60), "4 Dec");
}

TEST(GroundedResponder, AnswersAQuestionByQuotingTheMemoryWithItsDay) {
  GroundedResponder responder;
  SearchHit hit = Hit("I live in Hanoi.", kDec3, 0.7);
  ResponderInput in;
  in.message = "where do I live?";
  in.intent = Intent::kQuestion;
  in.relevant = {&hit};
  auto reply = responder.Reply(in);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(*reply, "You told me on 3 Dec: I live in Hanoi.");
}

TEST(GroundedResponder, AnswersInVietnameseWhenAskedInVietnamese) {
  GroundedResponder responder;
  SearchHit hit = Hit("tôi thích phở bò", kDec3, 0.7);
  ResponderInput in;
  in.message = "tôi thích gì";
  in.intent = Intent::kQuestion;
  in.language = Language::kVietnamese;
  in.relevant = {&hit};
  auto reply = responder.Reply(in);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(*reply, "Bạn đã nói với tôi vào ngày 3/12: tôi thích phở bò.");
}

TEST(GroundedResponder, SaysPlainlyWhenNothingRelevantIsKnown) {
  GroundedResponder responder;
  ResponderInput in;
  in.message = "what is my favourite colour?";
  in.intent = Intent::kQuestion;
  auto en = responder.Reply(in);
  ASSERT_TRUE(en.ok());
  EXPECT_NE(en->find("don't know"), std::string::npos);
  in.language = Language::kVietnamese;
  auto vi = responder.Reply(in);
  ASSERT_TRUE(vi.ok());
  EXPECT_NE(vi->find("chưa biết"), std::string::npos);
}

TEST(GroundedResponder, QuotesAtMostMaxQuotedMemories) {
  GroundedResponder responder(GroundedOptions{.max_quoted = 2, .utc_offset_minutes = 0});
  SearchHit a = Hit("I live in Hanoi", kDec3, 0.9);
  SearchHit b = Hit("I work in Da Nang", kDec3, 0.85);
  SearchHit c = Hit("I was born in Hue", kDec3, 0.8);
  ResponderInput in;
  in.intent = Intent::kQuestion;
  in.relevant = {&a, &b, &c};
  auto reply = responder.Reply(in);
  ASSERT_TRUE(reply.ok());
  EXPECT_NE(reply->find("Hanoi"), std::string::npos);
  EXPECT_NE(reply->find("Da Nang"), std::string::npos);
  EXPECT_EQ(reply->find("Hue"), std::string::npos);
}

TEST(GroundedResponder, LeavesOutAWeakRunnerUp) {
  GroundedResponder responder;
  SearchHit a = Hit("My name is Alice", kDec3, 0.8);
  SearchHit b = Hit("I have two cats named Miso and Tofu", kDec3, 0.4);
  ResponderInput in;
  in.intent = Intent::kQuestion;
  in.relevant = {&a, &b};
  auto reply = responder.Reply(in);
  ASSERT_TRUE(reply.ok());
  EXPECT_EQ(*reply, "You told me on 3 Dec: My name is Alice.");
}

TEST(GroundedResponder, AcknowledgesEachWriteDecision) {
  GroundedResponder responder;
  struct Case {
    WriteAction action;
    Language language;
    const char* expected;
  };
  const Case cases[] = {
      {WriteAction::kAdd, Language::kEnglish, "Got it, I'll remember that."},
      {WriteAction::kUpdate, Language::kEnglish, "Noted, I've updated what I knew."},
      {WriteAction::kNoop, Language::kEnglish, "I already knew that."},
      {WriteAction::kAdd, Language::kVietnamese, "Đã ghi nhớ."},
      {WriteAction::kNoop, Language::kVietnamese, "Tôi đã biết điều đó rồi."},
  };
  for (const Case& c : cases) {
    ResponderInput in;
    in.intent = Intent::kStatement;
    in.language = c.language;
    WriteOutcome w;
    w.action = c.action;
    in.writes = {w};
    auto reply = responder.Reply(in);
    ASSERT_TRUE(reply.ok());
    EXPECT_EQ(*reply, c.expected);
  }
}

TEST(GroundedResponder, ConfirmsOrDeniesAForget) {
  GroundedResponder responder;
  ResponderInput in;
  in.intent = Intent::kForget;
  WriteOutcome deleted;
  deleted.action = WriteAction::kDelete;
  in.writes = {deleted};
  EXPECT_EQ(*responder.Reply(in), "Done, I've forgotten that.");
  in.writes[0].action = WriteAction::kNoop;
  EXPECT_EQ(*responder.Reply(in), "I had nothing like that to forget.");
}

}  // namespace
}  // namespace mann::chat
