#include <gtest/gtest.h>

#include <mann/core/utf8.h>

namespace mann {
namespace {

TEST(Utf8, AcceptsWellFormedTextInEveryLength) {
  EXPECT_TRUE(IsValidUtf8(""));
  EXPECT_TRUE(IsValidUtf8("plain ascii"));
  EXPECT_TRUE(IsValidUtf8("Tôi sống ở Hà Nội"));       // two- and three-byte sequences
  EXPECT_TRUE(IsValidUtf8("\xF0\x9F\x98\x80 emoji"));  // U+1F600
  EXPECT_TRUE(IsValidUtf8("\xF4\x8F\xBF\xBF"));        // U+10FFFF, the last code point
}

TEST(Utf8, RefusesMalformedSequences) {
  EXPECT_FALSE(IsValidUtf8("\xFA\xF5"));                 // bytes that never start a sequence
  EXPECT_FALSE(IsValidUtf8("\xC0\xAF"));                 // overlong "/"
  EXPECT_FALSE(IsValidUtf8("\xE0\x80\xAF"));             // overlong, three bytes
  EXPECT_FALSE(IsValidUtf8("\xED\xA0\x80"));             // a UTF-16 surrogate
  EXPECT_FALSE(IsValidUtf8("\xF4\x90\x80\x80"));         // past U+10FFFF
  EXPECT_FALSE(IsValidUtf8("caf\xC3"));                  // cut in the middle
  EXPECT_FALSE(IsValidUtf8("\xE2\x82"));                 // cut in the middle, three bytes
  EXPECT_EQ(Utf8SequenceLength("\xE2\x82\xAC", 0), 3u);  // the euro sign
}

TEST(Utf8, RepairReplacesEachBadByteAndKeepsTheRest) {
  EXPECT_EQ(ToValidUtf8("json\xFA\xF5type"), "json\xEF\xBF\xBD\xEF\xBF\xBDtype");
  EXPECT_EQ(ToValidUtf8("Hà Nội"), "Hà Nội");
  EXPECT_EQ(ToValidUtf8("caf\xC3"), "caf\xEF\xBF\xBD");
  EXPECT_TRUE(IsValidUtf8(ToValidUtf8("\xC0\xAF\xED\xA0\x80\xF4\x90\x80\x80")));
}

TEST(Utf8, PrefixNeverCutsASequence) {
  EXPECT_EQ(Utf8Prefix("Hà Nội", 2), "H");  // "à" is two bytes, at 1 and 2
  EXPECT_EQ(Utf8Prefix("Hà Nội", 3), "Hà");
  EXPECT_EQ(Utf8Prefix("abc", 10), "abc");
  EXPECT_EQ(Utf8Prefix("\xF0\x9F\x98\x80", 3), "");
}

}  // namespace
}  // namespace mann
