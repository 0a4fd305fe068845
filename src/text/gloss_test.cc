#include <string>

#include <gtest/gtest.h>

#include <mann/text/gloss.h>

namespace mann::text {

extern const std::string_view kBuiltInViEnGloss;

namespace {

constexpr std::string_view kLexicon =
    "# a small lexicon for the tests\n"
    "tôi\tI\n"
    "sống\tlive\n"
    "ở\tin\n"
    "thành phố\tcity\n"
    "thành\tcitadel\n"
    "phố\tstreet\n"
    "hà nội\tHanoi\n"
    "bạn\tfriend\n"
    "bàn\ttable\n"
    "nhé\t-\n"
    "\n";

Glosser Small() {
  auto g = Glosser::Parse(kLexicon, "test.tsv");
  EXPECT_TRUE(g.ok()) << g.status().ToString();
  return std::move(g).value();
}

TEST(Glosser, GlossesWordByWordPreferringTheLongestKey) {
  const Glosser g = Small();
  EXPECT_EQ(g.size(), 10u);
  EXPECT_EQ(g.Gloss("Tôi sống ở thành phố Hà Nội."), "I live in city Hanoi");
  EXPECT_EQ(g.Gloss("thành"), "citadel");
}

TEST(Glosser, DiacriticsMustMatchButUnaccentedTextMatchesTheFirstKey) {
  const Glosser g = Small();
  EXPECT_EQ(g.Gloss("bàn"), "table");
  EXPECT_EQ(g.Gloss("bạn"), "friend");
  // Typed without marks: the first key in the file that folds to "ban" wins.
  EXPECT_EQ(g.Gloss("ban"), "friend");
  EXPECT_EQ(g.Gloss("toi song o ha noi"), "I live in Hanoi");
}

TEST(Glosser, UnknownWordsPassThroughWithoutMarksAndDroppedWordsVanish) {
  const Glosser g = Small();
  EXPECT_EQ(g.Gloss("Tôi sống ở Đà Nẵng nhé!"), "I live in Da Nang");
  EXPECT_EQ(g.Gloss("năm 2024"), "nam 2024");
  EXPECT_EQ(g.Gloss(""), "");
  EXPECT_EQ(g.Gloss("!!!"), "");
}

TEST(Glosser, ACapitalisedWordInsideASentenceIsAName) {
  const Glosser g = Small();
  // "Bạn" starts the sentence: a word. Mid-sentence "Bạn" is someone called Bạn.
  EXPECT_EQ(g.Gloss("Bạn sống ở Hà Nội"), "friend live in Hanoi");
  EXPECT_EQ(g.Gloss("tôi sống với Bạn"), "I live voi Ban");
  // After punctuation a capital starts a sentence again.
  EXPECT_EQ(g.Gloss("Tôi sống ở Hà Nội. Bạn thì sao"), "I live in Hanoi friend thi sao");
  // Text mostly in capitals keeps its words.
  EXPECT_EQ(g.Gloss("TÔI SỐNG Ở HÀ NỘI"), "I live in Hanoi");
}

TEST(Glosser, KeysNeverSpanPunctuation) {
  const Glosser g = Small();
  EXPECT_EQ(g.Gloss("thành, phố"), "citadel street");
}

TEST(Glosser, CoverageCountsSyllablesTheLexiconKnew) {
  const Glosser g = Small();
  EXPECT_DOUBLE_EQ(g.Coverage("tôi sống ở Hà Nội"), 1.0);
  EXPECT_DOUBLE_EQ(g.Coverage("tôi sống ở Đà Nẵng"), 0.6);
  EXPECT_DOUBLE_EQ(g.Coverage("123"), 0.0);
}

TEST(Glosser, FingerprintFollowsTheLexiconText) {
  const Glosser a = Small();
  auto b = Glosser::Parse(std::string(kLexicon) + "nhà\thome\n", "test.tsv");
  ASSERT_TRUE(b.ok());
  EXPECT_EQ(a.fingerprint().size(), 12u);
  EXPECT_NE(a.fingerprint(), b->fingerprint());
  EXPECT_EQ(a.fingerprint(), Small().fingerprint());
}

TEST(Glosser, MalformedLinesAreRejectedNamingTheLine) {
  struct Case {
    std::string tsv;
    std::string expect;
  };
  const Case cases[] = {
      {"tôi\tI\nsống live\n", "line 2: expected exactly one tab"},
      {"tôi\tI\tme\n", "line 1: expected exactly one tab"},
      {"\tI\n", "line 1: the Vietnamese key is empty"},
      {"tôi\t\n", "line 1: the English gloss is empty"},
      {"một hai ba bốn năm\tfive words\n", "more than 4 syllables"},
      {"tôi\tI\nTôi\tme\n", "line 2: the key \"tôi\" is listed twice"},
  };
  for (const Case& c : cases) {
    auto g = Glosser::Parse(c.tsv, "lex.tsv");
    ASSERT_FALSE(g.ok()) << c.tsv;
    EXPECT_EQ(g.status().code(), StatusCode::kInvalidArgument);
    EXPECT_NE(g.status().message().find(c.expect), std::string::npos) << g.status().message();
  }
}

TEST(Glosser, TheBuiltInLexiconParsesAndCoversEverydayVietnamese) {
  auto parsed = Glosser::Parse(kBuiltInViEnGloss, "data/vi_en_gloss.tsv");
  ASSERT_TRUE(parsed.ok()) << parsed.status().ToString();
  const Glosser& g = Glosser::BuiltIn();
  EXPECT_GE(g.size(), 2000u);
  EXPECT_EQ(g.fingerprint(), parsed->fingerprint());
  EXPECT_EQ(g.Gloss("tôi"), "I");
  EXPECT_GE(g.Coverage("Hôm nay tôi đi làm bằng xe máy"), 0.8)
      << g.Gloss("Hôm nay tôi đi làm bằng xe máy");
}

}  // namespace
}  // namespace mann::text
