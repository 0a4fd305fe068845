#include <string>
#include <vector>

#include <gtest/gtest.h>

#include <mann/llm/sse.h>

namespace mann::llm {
namespace {

std::vector<std::string> ParseInPieces(std::string_view stream, std::size_t piece) {
  std::vector<std::string> events;
  SseParser parser([&](std::string_view data) {
    events.emplace_back(data);
    return true;
  });
  for (std::size_t i = 0; i < stream.size(); i += piece) {
    EXPECT_TRUE(parser.Feed(stream.substr(i, piece)));
  }
  return events;
}

TEST(SseParser, EventsArriveWholeWhateverTheReadSizes) {
  const std::string stream =
      ": comment\r\n\r\n"
      "data: {\"a\":1}\r\n\r\n"
      "event: message\nid: 7\ndata: second\n\n"
      "data:no-space\r\r"
      "data: [DONE]\n\n";
  const std::vector<std::string> want = {"{\"a\":1}", "second", "no-space", "[DONE]"};
  // Every piece size, 1 byte included, so CRLF pairs and lines split at every position.
  for (std::size_t piece = 1; piece <= stream.size(); ++piece) {
    EXPECT_EQ(ParseInPieces(stream, piece), want) << "piece size " << piece;
  }
}

TEST(SseParser, MultiLineDataJoinsWithNewlines) {
  EXPECT_EQ(ParseInPieces("data: one\ndata: two\n\n", 100), (std::vector<std::string>{"one\ntwo"}));
}

TEST(SseParser, EventWithoutBlankLineIsNotDelivered) {
  std::vector<std::string> events;
  SseParser parser([&](std::string_view data) {
    events.emplace_back(data);
    return true;
  });
  EXPECT_TRUE(parser.Feed("data: whole\n\ndata: cut off"));
  EXPECT_EQ(events, (std::vector<std::string>{"whole"}));
  EXPECT_FALSE(parser.Finish());
}

TEST(SseParser, SinkCanStopTheParse) {
  int seen = 0;
  SseParser parser([&](std::string_view) { return ++seen < 2; });
  EXPECT_FALSE(parser.Feed("data: 1\n\ndata: 2\n\ndata: 3\n\n"));
  EXPECT_EQ(seen, 2);
  EXPECT_FALSE(parser.Feed("data: 4\n\n"));
  EXPECT_EQ(seen, 2);
}

TEST(SseParser, OverlongLineStopsWithOverflow) {
  SseParser parser([](std::string_view) { return true; }, 16);
  EXPECT_FALSE(parser.Feed("data: " + std::string(64, 'x')));
  EXPECT_TRUE(parser.overflowed());
}

}  // namespace
}  // namespace mann::llm
