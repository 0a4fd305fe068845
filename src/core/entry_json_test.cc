#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <mann/core/entry_json.h>

namespace mann {
namespace {

namespace json = boost::json;

TEST(FormatTimestamp, WritesUtcWithMilliseconds) {
  EXPECT_EQ(FormatTimestamp(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(FormatTimestamp(1'764'720'000'000), "2025-12-03T00:00:00.000Z");
  EXPECT_EQ(FormatTimestamp(1'764'757'845'500), "2025-12-03T10:30:45.500Z");
  EXPECT_EQ(FormatTimestamp(1'709'164'800'007), "2024-02-29T00:00:00.007Z");
}

TEST(ParseTimestamp, AcceptsEveryDocumentedForm) {
  struct Case {
    const char* text;
    TimestampMs want;
  };
  const Case cases[] = {
      {"1764720000000", 1'764'720'000'000},
      {"0", 0},
      {"2025-12-03", 1'764'720'000'000},
      {"2025-12-03T10:30", 1'764'757'800'000},
      {"2025-12-03 10:30:45", 1'764'757'845'000},
      {"2025-12-03T10:30:45.5Z", 1'764'757'845'500},
      {"2025-12-03T10:30:45.500123Z", 1'764'757'845'500},
      {"2025-12-03T17:30:45.5+07:00", 1'764'757'845'500},
      {"2025-12-03T05:30:45.5-0500", 1'764'757'845'500},
      {"2024-02-29", 1'709'164'800'000},
  };
  for (const Case& c : cases) {
    auto got = ParseTimestamp(c.text, "--since");
    ASSERT_TRUE(got.ok()) << c.text << ": " << got.status().ToString();
    EXPECT_EQ(*got, c.want) << c.text;
  }
}

TEST(ParseTimestamp, RejectsMalformedTextNamingTheOption) {
  for (const char* text : {"", "yesterday", "2025-13-01", "2025-02-30", "2025-12-03T25:00",
                           "2025-12-03T10:30Q", "2025-12-03T10:30:45.", "2025-12-3",
                           "2025-12-03T10:30+7", "-5", "99999999999999999999999"}) {
    auto got = ParseTimestamp(text, "--until");
    ASSERT_FALSE(got.ok()) << text;
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(got.status().message().find("--until"), std::string::npos) << text;
  }
}

TEST(ParseTimestamp, InvertsFormatTimestamp) {
  for (TimestampMs ms : {TimestampMs{0}, TimestampMs{1}, TimestampMs{951'782'400'999},
                         TimestampMs{1'764'757'845'123}, TimestampMs{4'102'444'799'999}}) {
    auto back = ParseTimestamp(FormatTimestamp(ms), "t");
    ASSERT_TRUE(back.ok()) << ms;
    EXPECT_EQ(*back, ms);
  }
}

MemoryEntry SampleEntry() {
  MemoryEntry e;
  e.id = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
  e.ns = "alice";
  e.content = "tôi thích phở bò";
  e.context = "breakfast";
  e.tags = {"food", "vi"};
  e.metadata = {{"spicy", false}, {"n", 3}};
  e.importance = 2.5;
  e.usage_count = 7;
  e.last_access_ms = 1'764'757'845'500;
  e.created_ms = 1'764'720'000'000;
  e.updated_ms = 1'764'730'000'001;
  e.version = 4;
  e.content_hash = "abc";
  e.language = "vi";
  return e;
}

TEST(EntryJson, RoundTripsEveryField) {
  const MemoryEntry e = SampleEntry();
  // Through text, as an export line is.
  const json::value line = json::parse(json::serialize(EntryToJson(e)));
  auto back = EntryFromJson(line);
  ASSERT_TRUE(back.ok()) << back.status().ToString();
  EXPECT_TRUE(back->has_id);
  EXPECT_TRUE(back->has_namespace);
  const MemoryEntry& b = back->entry;
  EXPECT_EQ(b.id, e.id);
  EXPECT_EQ(b.ns, e.ns);
  EXPECT_EQ(b.content, e.content);
  EXPECT_EQ(b.context, e.context);
  EXPECT_EQ(b.tags, e.tags);
  EXPECT_EQ(b.metadata, e.metadata);
  EXPECT_EQ(b.importance, e.importance);
  EXPECT_EQ(b.usage_count, e.usage_count);
  EXPECT_EQ(b.last_access_ms, e.last_access_ms);
  EXPECT_EQ(b.created_ms, e.created_ms);
  EXPECT_EQ(b.updated_ms, e.updated_ms);
  EXPECT_EQ(b.version, e.version);
  EXPECT_EQ(b.content_hash, e.content_hash);
  EXPECT_EQ(b.language, e.language);
}

TEST(EntryJson, MinimalLineNeedsOnlyContent) {
  auto got = EntryFromJson(json::parse(R"({"content": "hello", "user_id": "bob",
                                           "importance": 2, "created_at": 1764720000000})"));
  ASSERT_TRUE(got.ok()) << got.status().ToString();
  EXPECT_FALSE(got->has_id);
  EXPECT_TRUE(got->has_namespace);
  EXPECT_EQ(got->entry.ns, "bob");
  EXPECT_EQ(got->entry.importance, 2.0);
  EXPECT_EQ(got->entry.created_ms, 1'764'720'000'000);
  EXPECT_EQ(got->entry.version, 1);
  EXPECT_EQ(got->entry.updated_ms, 0);
}

TEST(EntryJson, RejectsWrongTypesNamingTheField) {
  struct Case {
    const char* line;
    const char* field;
  };
  const Case cases[] = {
      {R"([1, 2])", "JSON object"},
      {R"({"id": "x"})", "content"},
      {R"({"content": 5})", "content"},
      {R"({"content": "a", "tags": "food"})", "tags"},
      {R"({"content": "a", "tags": [1]})", "tags"},
      {R"({"content": "a", "metadata": [1]})", "metadata"},
      {R"({"content": "a", "importance_weight": "high"})", "importance_weight"},
      {R"({"content": "a", "usage_count": -1})", "usage_count"},
      {R"({"content": "a", "version": 0})", "version"},
      {R"({"content": "a", "version": 1.5})", "version"},
      {R"({"content": "a", "created_at": "last week"})", "created_at"},
      {R"({"content": "a", "namespace": 3})", "namespace"},
  };
  for (const Case& c : cases) {
    auto got = EntryFromJson(json::parse(c.line));
    ASSERT_FALSE(got.ok()) << c.line;
    EXPECT_EQ(got.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(got.status().message().find(c.field), std::string::npos)
        << c.line << " -> " << got.status().message();
  }
}

TEST(ParseJson, ReportsWhatWasBeingParsed) {
  auto got = ParseJson("{nope", "--metadata");
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("--metadata"), std::string::npos);
  EXPECT_TRUE(ParseJson(R"({"a": [1]})", "x").ok());
}

TEST(OneLine, CutsAtCodePointsAndFlattensNewlines) {
  EXPECT_EQ(OneLine("short", 10), "short");
  EXPECT_EQ(OneLine("two\nlines", 20), "two lines");
  EXPECT_EQ(OneLine("abcdefgh", 5), "abcd…");
  // Each of these is two bytes; a byte-based cut would split one.
  EXPECT_EQ(OneLine("ởởởởởở", 4), "ởởở…");
  EXPECT_EQ(OneLine("ởởởở", 4), "ởởởở");
}

TEST(EntryJson, OutcomeAndStatsCarryTheirNames) {
  WriteOutcome w;
  w.action = WriteAction::kUpdate;
  w.memory_id = "id1";
  w.version = 2;
  w.evicted_ids = {"old"};
  const json::object o = OutcomeToJson(w);
  EXPECT_EQ(o.at("action"), "UPDATE");
  EXPECT_EQ(o.at("id"), "id1");
  EXPECT_EQ(o.at("evicted_ids").as_array().size(), 1u);

  BankStats s;
  s.write_decisions[static_cast<int>(WriteAction::kNoop)] = 3;
  NamespaceStats a;
  a.ns = "a";
  a.total_memories = 2;
  s.namespaces.push_back(a);
  const json::object st = StatsToJson(s);
  EXPECT_EQ(st.at("write_decisions").at("NOOP"), 3);
  EXPECT_EQ(st.at("namespaces").as_array()[0].at("total_memories"), 2u);
}

}  // namespace
}  // namespace mann
