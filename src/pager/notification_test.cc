#include <chrono>
#include <string>

#include <boost/json.hpp>
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/pager/notification.h>

namespace mann::pager {
namespace {

namespace json = boost::json;
using ::testing::HasSubstr;

Notification Sample() {
  Notification n;
  n.id = "01938a6e-7c00-7abc-8def-0123456789ab";
  n.dedup_key = "memory_utilization:default";
  n.kind = Kind::kRenotify;
  n.level = Level::kCritical;
  n.title = "Memory utilization above 95%";
  n.message = "default is at 97% of memory_size.\nEviction starts at 100%.";
  n.time = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'764'720'000'123));
  n.service = "mann@db1";
  n.metadata = {{"namespace", "default"}, {"value", "0.97"}, {"threshold", "0.95"}};
  return n;
}

TEST(Notification, JsonRoundTripsEveryField) {
  const Notification n = Sample();
  const json::object o = ToJson(n);
  EXPECT_EQ(o.at("kind"), "renotify");
  EXPECT_EQ(o.at("level"), "critical");
  EXPECT_EQ(o.at("time"), "2025-12-03T00:00:00.123Z");
  // Metadata is an object that keeps its order.
  const json::object& metadata = o.at("metadata").as_object();
  ASSERT_EQ(metadata.size(), 3u);
  EXPECT_EQ(metadata.begin()->key(), "namespace");

  Result<Notification> back = FromJsonText(json::serialize(o));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(*back, n);
}

TEST(Notification, EveryKindAndLevelRoundTrips) {
  for (Kind kind : {Kind::kTrigger, Kind::kRenotify, Kind::kResolve, Kind::kTest}) {
    for (Level level : {Level::kInfo, Level::kWarning, Level::kError, Level::kCritical}) {
      Notification n = Sample();
      n.kind = kind;
      n.level = level;
      Result<Notification> back = FromJson(ToJson(n));
      ASSERT_TRUE(back.ok()) << back.status().ToString();
      EXPECT_EQ(back->kind, kind);
      EXPECT_EQ(back->level, level);
      EXPECT_EQ(ParseKind(KindName(kind)), kind);
      EXPECT_EQ(ParseLevel(LevelName(level)), level);
    }
  }
  EXPECT_EQ(ParseLevel("WARNING"), std::nullopt) << "names are lower case";
  EXPECT_EQ(ParseKind("fire"), std::nullopt);
}

TEST(Notification, MalformedJsonNamesTheField) {
  struct Case {
    const char* json;
    const char* fragment;
  };
  const Case cases[] = {
      {R"([1, 2])", "must be an object"},
      {R"({"kind": "trigger", "level": "info", "title": "t", "time": "2025-12-03"})", "\"id\""},
      {R"({"id": 7, "kind": "trigger", "level": "info", "title": "t", "time": "2025-12-03"})",
       "\"id\" must be a string"},
      {R"({"id": "x", "kind": "explode", "level": "info", "title": "t", "time": "2025-12-03"})",
       "kind \"explode\""},
      {R"({"id": "x", "kind": "trigger", "level": "loud", "title": "t", "time": "2025-12-03"})",
       "level \"loud\""},
      {R"({"id": "x", "kind": "trigger", "level": "info", "title": "t", "time": "yesterday"})",
       "time"},
      {R"({"id": "x", "kind": "trigger", "level": "info", "title": "t", "time": "2025-12-03",
           "metadata": {"n": 1}})",
       "metadata \"n\" must be a string"},
      {R"({"id": "x", "kind": "trigger", )", "does not parse"},
  };
  for (const Case& c : cases) {
    Result<Notification> n = FromJsonText(c.json);
    ASSERT_FALSE(n.ok()) << c.json;
    EXPECT_EQ(n.status().code(), StatusCode::kInvalidArgument);
    EXPECT_THAT(n.status().message(), HasSubstr(c.fragment)) << c.json;
  }
}

TEST(Notification, UnknownFieldsAreIgnoredAndOptionalOnesDefault) {
  Result<Notification> n = FromJsonText(
      R"({"id": "x", "kind": "resolve", "level": "warning", "title": "t",
          "time": "2025-12-03T10:00:00Z", "added_by_a_newer_mann": true})");
  ASSERT_TRUE(n.ok()) << n.status().ToString();
  EXPECT_EQ(n->kind, Kind::kResolve);
  EXPECT_EQ(n->message, "");
  EXPECT_TRUE(n->metadata.empty());
}

TEST(Notification, ValidateRequiresATitleAShortDedupKeyAndUniqueMetadataKeys) {
  EXPECT_TRUE(Validate(Sample()).ok());

  Notification n = Sample();
  n.title.clear();
  EXPECT_THAT(Validate(n).message(), HasSubstr("title"));

  n = Sample();
  n.dedup_key = std::string(256, 'k');
  EXPECT_THAT(Validate(n).message(), HasSubstr("dedup_key is 256 bytes"));
  n.dedup_key = std::string(255, 'k');
  EXPECT_TRUE(Validate(n).ok());

  n = Sample();
  n.metadata.emplace_back("value", "again");
  EXPECT_THAT(Validate(n).message(), HasSubstr("\"value\" appears twice"));

  n = Sample();
  n.metadata.emplace_back("", "no key");
  EXPECT_EQ(Validate(n).code(), StatusCode::kInvalidArgument);
}

TEST(Notification, InvalidUtf8IsReplacedSoTheJsonStaysParseable) {
  Notification n = Sample();
  n.title = "disk \xff full";
  n.metadata = {{"path", "/var/\xc3"}};  // a sequence cut short
  n = WithValidUtf8(n);
  EXPECT_EQ(n.title, "disk \xEF\xBF\xBD full");
  EXPECT_EQ(n.metadata[0].second, "/var/\xEF\xBF\xBD");
  Result<Notification> back = FromJsonText(json::serialize(ToJson(n)));
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_EQ(back->title, n.title);

  Notification vietnamese = Sample();
  vietnamese.title = "Bộ nhớ gần đầy";
  EXPECT_EQ(WithValidUtf8(vietnamese).title, vietnamese.title) << "valid text is untouched";
}

TEST(Notification, TimeFormatsAsIsoAndEpochSeconds) {
  const Notification n = Sample();
  EXPECT_EQ(FormatTime(n), "2025-12-03T00:00:00.123Z");
  EXPECT_EQ(EpochSeconds(n), 1'764'720'000);
}

}  // namespace
}  // namespace mann::pager
