#include <chrono>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <mann/llm/client.h>

#include "../pager/testing_receiver.h"

namespace mann::llm {
namespace {

using namespace std::chrono_literals;
using pager::test_support::Answer;
using pager::test_support::Receiver;

constexpr std::string_view kKey = "sk-test-secret-key-123";

Answer Json(std::string body, int status = 200) {
  Answer a = Answer::Status(status, std::move(body));
  a.headers.emplace_back("Content-Type", "application/json");
  return a;
}

Answer Stream(std::string body) {
  Answer a = Answer::Status(200, std::move(body));
  a.headers.emplace_back("Content-Type", "text/event-stream");
  return a;
}

std::string Chunk(std::string_view content) {
  return R"(data: {"choices":[{"index":0,"delta":{"content":")" + std::string(content) +
         "\"}}]}\r\n\r\n";
}

class ChatClientTest : public ::testing::Test {
 protected:
  std::unique_ptr<ChatClient> Client(std::chrono::milliseconds timeout = 5s) {
    ClientOptions o;
    o.base_url = receiver_.Url("/v1/");
    o.model = "fake-model";
    o.api_key = std::string(kKey);
    o.timeout = timeout;
    auto client = ChatClient::Create(o);
    EXPECT_TRUE(client.ok()) << client.status().ToString();
    return std::move(client).value();
  }

  const std::vector<Message> messages_ = {{"system", "be brief"}, {"user", "hi"}};
  Receiver receiver_;
};

TEST_F(ChatClientTest, NonStreamedAnswerAndUsage) {
  receiver_.Script({Json(R"({"choices":[{"message":{"role":"assistant","content":"Hello!"},
      "finish_reason":"stop"}],"usage":{"prompt_tokens":12,"completion_tokens":3}})")});
  const CallOutcome out = Client()->Complete(messages_);
  ASSERT_TRUE(out.ok()) << out.status.ToString();
  EXPECT_EQ(out.text, "Hello!");
  EXPECT_EQ(out.usage.prompt_tokens, 12);
  EXPECT_EQ(out.usage.completion_tokens, 3);
  EXPECT_EQ(out.finish_reason, "stop");

  // What the server received: the protocol's request, with the key only in its header.
  ASSERT_EQ(receiver_.request_count(), 1u);
  const auto request = receiver_.requests()[0];
  EXPECT_EQ(request.target, "/v1/chat/completions");
  EXPECT_EQ(request.Header("authorization"), "Bearer " + std::string(kKey));
  EXPECT_EQ(request.json.at("model").as_string(), "fake-model");
  EXPECT_EQ(request.json.at("stream").as_bool(), false);
  EXPECT_EQ(request.json.at("messages").as_array().size(), 2u);
}

TEST_F(ChatClientTest, StreamedPiecesReachTheSinkInOrder) {
  receiver_.Script({Stream(": hello\n\n" + Chunk("Hel") + Chunk("lo") + Chunk(" there") +
                           R"(data: {"choices":[],"usage":{"prompt_tokens":5,)"
                           R"("completion_tokens":3}})"
                           "\n\ndata: [DONE]\n\n")});
  std::vector<std::string> pieces;
  const CallOutcome out =
      Client()->Complete(messages_, [&](std::string_view piece) { pieces.emplace_back(piece); });
  ASSERT_TRUE(out.ok()) << out.status.ToString();
  EXPECT_EQ(pieces, (std::vector<std::string>{"Hel", "lo", " there"}));
  EXPECT_EQ(out.text, "Hello there");
  EXPECT_TRUE(out.usage.reported);
  EXPECT_EQ(out.usage.completion_tokens, 3);
  EXPECT_EQ(receiver_.requests()[0].json.at("stream").as_bool(), true);
}

TEST_F(ChatClientTest, FailuresAreSortedByKindAndNeverShowTheKey) {
  struct Case {
    Answer answer;
    bool stream;
    FailureKind kind;
  };
  const std::string secret_echo = "{\"error\":{\"message\":\"bad key " + std::string(kKey) + "\"}}";
  const Case cases[] = {
      {Json(R"({"error":{"message":"slow down"}})", 429), false, FailureKind::kRateLimited},
      {Json(secret_echo, 500), false, FailureKind::kServer},
      {Json(secret_echo, 401), false, FailureKind::kHttp},
      {Json("<html>nope</html>"), false, FailureKind::kBadAnswer},
      {Json(R"({"choices":[{"message":{}}]})"), false, FailureKind::kBadAnswer},
      {Stream(Chunk("Hel") + Chunk("lo")), true, FailureKind::kCutStream},
      {Stream(Chunk("Hel") + "data: {not json\n\n"), true, FailureKind::kBadAnswer},
  };
  auto client = Client();
  for (const Case& c : cases) {
    receiver_.Script({c.answer});
    const CallOutcome out = c.stream ? client->Complete(messages_, [](std::string_view) {})
                                     : client->Complete(messages_);
    EXPECT_FALSE(out.ok());
    EXPECT_EQ(out.failure, c.kind) << out.status.ToString();
    EXPECT_EQ(out.status.message().find(kKey), std::string::npos) << out.status.ToString();
  }
}

TEST_F(ChatClientTest, TimeoutAndRefusedConnection) {
  receiver_.Script({Answer::Stall()});
  const CallOutcome slow = Client(300ms)->Complete(messages_);
  EXPECT_EQ(slow.failure, FailureKind::kTimeout) << slow.status.ToString();

  std::string url;
  {
    Receiver gone;
    url = gone.Url("/v1");
  }
  ClientOptions o;
  o.base_url = url;
  o.model = "m";
  auto refused = ChatClient::Create(o);
  ASSERT_TRUE(refused.ok());
  EXPECT_EQ((*refused)->Complete(messages_).failure, FailureKind::kConnect);
}

TEST(ChatClientOptions, RefusedWithTheKeyNamed) {
  ClientOptions o;
  o.model = "m";
  o.base_url = "ftp://example.com";
  EXPECT_NE(ChatClient::Validate(o).message().find("llm.base_url"), std::string::npos);
  o.base_url = "http://127.0.0.1:1/v1";
  o.model = "";
  EXPECT_NE(ChatClient::Validate(o).message().find("llm.model"), std::string::npos);
  o.model = "m";
  o.api_key = "abc\ndef";
  EXPECT_NE(ChatClient::Validate(o).message().find("llm.api_key"), std::string::npos);
}

}  // namespace
}  // namespace mann::llm
