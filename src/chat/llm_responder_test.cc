#include <chrono>
#include <string>

#include <gtest/gtest.h>

#include <mann/chat/llm_responder.h>

#include "../pager/testing_receiver.h"

namespace mann::chat {
namespace {

using namespace std::chrono_literals;
using pager::test_support::Answer;
using pager::test_support::Receiver;

Answer Stream(std::vector<std::string> pieces, bool done = true) {
  std::string body;
  for (const std::string& p : pieces) {
    body += R"(data: {"choices":[{"delta":{"content":")" + p + "\"}}]}\n\n";
  }
  if (done) body += "data: [DONE]\n\n";
  Answer a = Answer::Status(200, body);
  a.headers.emplace_back("Content-Type", "text/event-stream");
  return a;
}

// A responder that always says the same, standing in for the memory-only one.
class FixedResponder : public Responder {
 public:
  Result<std::string> Reply(const ResponderInput&) override { return std::string("from memory"); }
};

class LlmResponderTest : public ::testing::Test {
 protected:
  void SetUp() override {
    llm::ClientOptions o;
    o.base_url = receiver_.Url("/v1");
    o.model = "m";
    o.timeout = 2s;
    auto client = llm::ChatClient::Create(o);
    ASSERT_TRUE(client.ok());
    LlmResponderOptions options;
    options.breaker = {.failure_threshold = 2, .open_duration = 1h};
    auto made = LlmResponder::Create(std::move(client).value(), fallback_, options);
    ASSERT_TRUE(made.ok()) << made.status().ToString();
    responder_ = std::move(made).value();
  }

  std::string Ask(std::vector<std::string>* pieces = nullptr) {
    ResponderInput in;
    in.message = "where do I live?";
    in.intent = Intent::kQuestion;
    if (pieces != nullptr) {
      in.on_text = [pieces](std::string_view p) { pieces->emplace_back(p); };
    }
    auto reply = responder_->Reply(in);
    EXPECT_TRUE(reply.ok());
    return reply.ok() ? *reply : "";
  }

  Receiver receiver_;
  FixedResponder fallback_;
  std::unique_ptr<LlmResponder> responder_;
};

TEST_F(LlmResponderTest, StreamsTheModelsReply) {
  receiver_.Script({Stream({"You live", " in Hanoi."})});
  std::vector<std::string> pieces;
  EXPECT_EQ(Ask(&pieces), "You live in Hanoi.");
  EXPECT_EQ(pieces, (std::vector<std::string>{"You live", " in Hanoi."}));
}

TEST_F(LlmResponderTest, CutStreamFallsBackAfterWhatWasShown) {
  receiver_.Script({Stream({"You live"}, /*done=*/false)});
  std::vector<std::string> pieces;
  const std::string reply = Ask(&pieces);
  EXPECT_EQ(reply, "You live\n\nfrom memory");
  EXPECT_EQ(pieces, (std::vector<std::string>{"You live"}));
}

TEST_F(LlmResponderTest, BreakerOpensAndStopsCalling) {
  receiver_.Script({Answer::Status(500), Answer::Status(500)}, Answer::Status(500));
  EXPECT_EQ(Ask(), "from memory");
  EXPECT_EQ(Ask(), "from memory");
  EXPECT_EQ(responder_->breaker().state(), llm::BreakerState::kOpen);
  EXPECT_EQ(Ask(), "from memory");
  EXPECT_EQ(receiver_.request_count(), 2u);
}

TEST_F(LlmResponderTest, InvalidDecisionsAreDeclined) {
  Answer bad = Answer::Status(200, R"({"choices":[{"message":{"content":"{\"decisions\": 3}"}}]})");
  bad.headers.emplace_back("Content-Type", "application/json");
  receiver_.Script({bad});
  EXPECT_FALSE(responder_->Decide("I live in Hanoi", text::Language::kEnglish, {}).has_value());

  Answer good = Answer::Status(
      200, R"({"choices":[{"message":{"content":"{\"decisions\": [{\"action\": \"ADD\", )"
           R"(\"content\": \"lives in Hanoi\"}]}"}}]})");
  good.headers.emplace_back("Content-Type", "application/json");
  receiver_.Script({good});
  auto decided = responder_->Decide("I live in Hanoi", text::Language::kEnglish, {});
  ASSERT_TRUE(decided.has_value());
  ASSERT_EQ(decided->size(), 1u);
  EXPECT_EQ((*decided)[0].content, "lives in Hanoi");
}

}  // namespace
}  // namespace mann::chat
