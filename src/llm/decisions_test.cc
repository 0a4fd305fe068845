#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <mann/llm/decisions.h>

namespace mann::llm {
namespace {

const std::vector<ShownMemory> kShown = {{"id-1", "I live in Hanoi"}, {"id-2", "I like tea"}};

TEST(ParseDecisions, AcceptsEveryActionWhenWellFormed) {
  auto d = ParseDecisions(R"({"decisions": [
      {"action": "ADD", "content": "I have a cat", "reason": "new"},
      {"action": "UPDATE", "memory_id": "id-1", "content": "I live in Da Nang"},
      {"action": "DELETE", "memory_id": "id-2", "reason": null},
      {"action": "NOOP"}]})",
                          kShown);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  ASSERT_EQ(d->size(), 4u);
  EXPECT_EQ((*d)[0].action, WriteAction::kAdd);
  EXPECT_EQ((*d)[0].content, "I have a cat");
  EXPECT_EQ((*d)[0].reason, "new");
  EXPECT_EQ((*d)[1].action, WriteAction::kUpdate);
  EXPECT_EQ((*d)[1].memory_id, "id-1");
  EXPECT_EQ((*d)[2].action, WriteAction::kDelete);
  EXPECT_EQ((*d)[3].action, WriteAction::kNoop);
  EXPECT_TRUE(ParseDecisions(R"({"decisions": []})", kShown).ok());
}

TEST(ParseDecisions, RefusesAnythingMalformed) {
  struct Case {
    const char* answer;
    const char* names;  // a part of the error message
  };
  const Case cases[] = {
      {"not json", "not one JSON document"},
      {"Sure! {\"decisions\": []}", "not one JSON document"},
      {"[]", "not a JSON object"},
      {R"({"decisions": {}})", "not an array"},
      {R"({"decisions": [], "extra": 1})", "unknown key \"extra\""},
      {R"({"decisions": [1]})", "decisions[0]: not an object"},
      {R"({"decisions": [{"action": "add", "content": "x"}]})", "not ADD, UPDATE"},
      {R"({"decisions": [{"action": "ADD"}]})", "needs a non-empty content"},
      {R"({"decisions": [{"action": "ADD", "content": "  "}]})", "needs a non-empty content"},
      {R"({"decisions": [{"action": "ADD", "content": "x", "memory_id": "id-1"}]})",
       "must not name a memory_id"},
      {R"({"decisions": [{"action": "UPDATE", "content": "x"}]})", "needs a memory_id"},
      {R"({"decisions": [{"action": "DELETE", "memory_id": "id-9"}]})",
       "not one of the memories shown"},
      {R"({"decisions": [{"action": "DELETE", "memory_id": 3}]})", "not a string"},
      {R"({"decisions": [{"action": "DELETE", "memory_id": "id-1"},
                         {"action": "NOOP", "memory_id": "id-1"}]})",
       "has two decisions"},
      {R"({"decisions": [{"action": "NOOP", "confidence": 0.9}]})", "unknown key"},
  };
  for (const Case& c : cases) {
    auto d = ParseDecisions(c.answer, kShown);
    ASSERT_FALSE(d.ok()) << c.answer;
    EXPECT_EQ(d.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(d.status().message().find(c.names), std::string::npos)
        << c.answer << " -> " << d.status().message();
  }
}

TEST(ParseDecisions, BoundsCountAndSize) {
  std::string many = R"({"decisions": [)";
  for (int i = 0; i < 9; ++i) many += std::string(i ? "," : "") + R"({"action": "NOOP"})";
  many += "]}";
  EXPECT_FALSE(ParseDecisions(many, kShown).ok());
  const std::string big =
      R"({"decisions": [{"action": "ADD", "content": ")" + std::string(5000, 'x') + "\"}]}";
  EXPECT_FALSE(ParseDecisions(big, kShown).ok());
}

TEST(DecisionPrompt, ListsTheShownIds) {
  const auto messages = DecisionPrompt("I moved to Da Nang", kShown, text::Language::kEnglish);
  ASSERT_EQ(messages.size(), 2u);
  EXPECT_NE(messages[0].content.find("id id-1: I live in Hanoi"), std::string::npos);
  EXPECT_EQ(messages[1].content, "I moved to Da Nang");
}

}  // namespace
}  // namespace mann::llm
