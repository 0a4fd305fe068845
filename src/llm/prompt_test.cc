#include <string>

#include <gtest/gtest.h>

#include <mann/llm/prompt.h>

namespace mann::llm {
namespace {

TEST(EstimateTokens, AsciiByFourBytesOtherByCodePoint) {
  EXPECT_EQ(EstimateTokens(""), 0u);
  EXPECT_EQ(EstimateTokens("abcd"), 1u);
  EXPECT_EQ(EstimateTokens("abcde"), 2u);
  // "phở": p, h ASCII (1 token) and ở one code point (1 token).
  EXPECT_EQ(EstimateTokens("phở"), 2u);
  EXPECT_EQ(EstimateTokens("tôi thích"), 2u + 2u);  // 7 ASCII bytes, 2 accented letters
}

PromptInput Conversation(std::size_t turns, std::size_t budget) {
  PromptInput in;
  in.memories = {{"I live in Hanoi", 1'796'292'000'000, 2.0}, {"My name is Alice", 0, 1.0}};
  for (std::size_t i = 0; i < turns; ++i) {
    in.recent_turns.push_back({i % 2 == 0 ? "user" : "assistant",
                               "turn " + std::to_string(i) + " " + std::string(200, 'x')});
  }
  in.message = "where do I live?";
  in.max_prompt_tokens = budget;
  return in;
}

TEST(BuildPrompt, SystemMemoriesTurnsThenMessage) {
  const Prompt p = BuildPrompt(Conversation(2, 3000));
  ASSERT_EQ(p.messages.size(), 4u);
  EXPECT_EQ(p.messages[0].role, "system");
  EXPECT_NE(p.messages[0].content.find("- [2026-12-03, importance 2.0] I live in Hanoi"),
            std::string::npos)
      << p.messages[0].content;
  EXPECT_NE(p.messages[0].content.find("My name is Alice"), std::string::npos);
  EXPECT_NE(p.messages[0].content.find("Reply in English"), std::string::npos);
  EXPECT_EQ(p.messages[1].role, "user");
  EXPECT_EQ(p.messages[2].role, "assistant");
  EXPECT_EQ(p.messages[3].content, "where do I live?");
  EXPECT_EQ(p.estimated_tokens, EstimateTokens(p.messages));
  EXPECT_EQ(p.turns_dropped, 0u);
}

TEST(BuildPrompt, OldestTurnsGoFirstToFitTheBudget) {
  const std::size_t budget = 400;
  const Prompt p = BuildPrompt(Conversation(10, budget));
  EXPECT_LE(p.estimated_tokens, budget);
  EXPECT_EQ(p.estimated_tokens, EstimateTokens(p.messages));
  EXPECT_GT(p.turns_dropped, 0u);
  EXPECT_GT(p.turns_sent, 0u);
  EXPECT_EQ(p.turns_sent + p.turns_dropped, 10u);
  // The newest turn is kept, right before the message; the memories are all there.
  EXPECT_EQ(p.messages[p.messages.size() - 2].content.substr(0, 6), "turn 9");
  EXPECT_NE(p.messages[0].content.find("I live in Hanoi"), std::string::npos);
  EXPECT_FALSE(p.over_budget);
}

TEST(BuildPrompt, MemoriesAreNeverCutEvenOverBudget) {
  PromptInput in = Conversation(4, 300);
  in.memories.push_back({std::string(2000, 'm'), 0, 1.0});
  const Prompt p = BuildPrompt(in);
  EXPECT_TRUE(p.over_budget);
  EXPECT_EQ(p.turns_sent, 0u);
  ASSERT_EQ(p.messages.size(), 2u);
  EXPECT_NE(p.messages[0].content.find(std::string(2000, 'm')), std::string::npos);
}

TEST(BuildPrompt, AsksForTheUsersLanguage) {
  PromptInput in = Conversation(0, 3000);
  in.language = text::Language::kVietnamese;
  EXPECT_NE(BuildPrompt(in).messages[0].content.find("Vietnamese"), std::string::npos);
  in.memories.clear();
  EXPECT_NE(BuildPrompt(in).messages[0].content.find("remember nothing relevant"),
            std::string::npos);
}

}  // namespace
}  // namespace mann::llm
