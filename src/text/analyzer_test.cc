#include <algorithm>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <mann/text/analyzer.h>

namespace mann::text {
namespace {

using ::testing::AllOf;
using ::testing::Contains;
using ::testing::ElementsAre;
using ::testing::IsEmpty;
using ::testing::Not;

struct StringCase {
  std::string input;
  std::string expected;
};

bool HasTerm(const std::vector<std::string>& terms, const std::string& term) {
  return std::find(terms.begin(), terms.end(), term) != terms.end();
}

TEST(NormalizeNfc, ComposesTrimsAndRepairs) {
  const StringCase cases[] = {
      {"", ""},
      {"   ", ""},
      {"  Lan  ", "Lan"},
      {"Tie\xcc\x82\xcc\x81ng Vie\xcc\xa3\xcc\x82t", "Tiếng Việt"},  // NFD input
      {"\xe3\x80\x80H\xc3\xa0 N\xe1\xbb\x99i\n", "Hà Nội"},          // ideographic space
      {"ab\xff"
       "cd",
       "ab\xef\xbf\xbd"
       "cd"},                    // invalid byte -> U+FFFD
      {"\xc3", "\xef\xbf\xbd"},  // truncated sequence
  };
  for (const auto& c : cases) {
    const std::string out = NormalizeNfc(c.input);
    EXPECT_EQ(out, c.expected) << "input: " << c.input;
    EXPECT_TRUE(IsValidUtf8(out)) << "input: " << c.input;
  }
}

TEST(IsValidUtf8, AcceptsWellFormedAndRejectsEveryIllFormedKind) {
  const struct {
    std::string input;
    bool valid;
  } cases[] = {
      {"", true},
      {"plain ascii", true},
      {"Hà Nội", true},
      {"\xf0\x9f\x98\x80", true},      // U+1F600
      {"\xf4\x8f\xbf\xbf", true},      // U+10FFFF
      {"\x80", false},                 // lone continuation byte
      {"\xc3", false},                 // truncated
      {"\xc0\xaf", false},             // overlong
      {"\xe0\x80\xaf", false},         // overlong, three bytes
      {"\xed\xa0\x80", false},         // surrogate U+D800
      {"\xf4\x90\x80\x80", false},     // above U+10FFFF
      {"\xe1\xbb", false},             // truncated three-byte sequence
      {"ok\xe1\xbbzz", false},         // bad continuation
      {std::string("a\0b", 3), true},  // NUL is a valid character
  };
  for (const auto& c : cases) EXPECT_EQ(IsValidUtf8(c.input), c.valid) << c.input;
}

TEST(FoldForSearch, RemovesCaseAccentsAndExtraSpace) {
  const StringCase cases[] = {
      {"Tôi TÊN là  Lan", "toi ten la lan"},
      {"Đà Nẵng", "da nang"},
      {"Hà Nội", "ha noi"},
      {"HÀ NỘI", "ha noi"},
      {"Tie\xcc\x82\xcc\x81ng", "tieng"},  // NFD input
      {"\t Lan\n\nHoa  ", "lan hoa"},
      {"Ｌａｎ", "lan"},      // full-width, NFKC
      {"ﬁle", "file"},        // ligature, NFKC
      {"Straße", "strasse"},  // full case folding
      {"don’t", "don't"},     // typographic apostrophe
      {"Ưu tiên", "uu tien"},
      {"", ""},
  };
  for (const auto& c : cases) EXPECT_EQ(FoldForSearch(c.input), c.expected) << c.input;
}

TEST(FoldForSearch, KeepsMarksThatCarryMeaningInOtherScripts) {
  // Japanese voiced kana decompose into a base and U+3099; stripping it would merge が and か.
  EXPECT_EQ(FoldForSearch("が"), "が");
  EXPECT_EQ(FoldForSearch("한국어"), "한국어");  // Hangul recomposes after NFD
  EXPECT_EQ(FoldForSearch("ภาษาไทย"), "ภาษาไทย");
}

TEST(FoldForSearch, InvalidUtf8BecomesReplacementCharacter) {
  const std::string out = FoldForSearch(
      "AB\xff\xfe"
      "C");
  EXPECT_TRUE(IsValidUtf8(out));
  EXPECT_EQ(out,
            "ab\xef\xbf\xbd\xef\xbf\xbd"
            "c");
}

TEST(ContentKey, IgnoresCaseAccentsSpacingAndPunctuation) {
  const std::string key = ContentKey("Tôi tên là Lan.");
  EXPECT_EQ(key.size(), 64u);
  EXPECT_EQ(key.find_first_not_of("0123456789abcdef"), std::string::npos);
  for (const char* variant :
       {"toi ten la lan", "  TOI  TÊN, là Lan!!", "Tôi tên là Lan", "toi ten la lan ."}) {
    EXPECT_EQ(ContentKey(variant), key) << variant;
  }
  EXPECT_NE(ContentKey("toi ten la Hoa"), key);
  EXPECT_NE(ContentKey("toitenlalan"), key);
  EXPECT_EQ(ContentKey("don't"), ContentKey("dont"));
}

TEST(Sha256Hex, MatchesKnownVectors) {
  EXPECT_EQ(Sha256Hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(Sha256Hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(LanguageCode, RoundTripsAndAcceptsRegionTags) {
  for (Language l : {Language::kEnglish, Language::kVietnamese, Language::kUnknown}) {
    EXPECT_EQ(ParseLanguageCode(LanguageCode(l)), l);
  }
  EXPECT_EQ(LanguageCode(Language::kUnknown), "und");
  EXPECT_EQ(ParseLanguageCode("en-US"), Language::kEnglish);
  EXPECT_EQ(ParseLanguageCode("VI_vn"), Language::kVietnamese);
  EXPECT_EQ(ParseLanguageCode("fr"), Language::kUnknown);
  EXPECT_EQ(ParseLanguageCode(""), Language::kUnknown);
}

TEST(DetectLanguage, GuessesFromLettersAndCommonWords) {
  const struct {
    std::string text;
    Language expected;
  } cases[] = {
      {"", Language::kUnknown},
      {"   ...  ", Language::kUnknown},
      {"12345", Language::kUnknown},
      {"toi ten la Lan", Language::kVietnamese},
      {"ban ten gi", Language::kVietnamese},
      {"tôi sống ở Hà Nội", Language::kVietnamese},
      {"Tôi tên là Lan", Language::kVietnamese},
      {"Đà Nẵng", Language::kVietnamese},
      {"I live in Hanoi", Language::kEnglish},
      {"where do I live", Language::kEnglish},
      {"I can ban a song", Language::kEnglish},  // Vietnamese-looking English words
      {"ten songs", Language::kEnglish},
      {"Lan", Language::kEnglish},
      // Typed without diacritics, with few of the common syllables: told by spelling.
      {"chi gai toi lam bac si o benh vien Cho Ray", Language::kVietnamese},
      {"toi ghet mua mua vi duong hay bi ngap", Language::kVietnamese},
      {"toi lam them nghe day piano cho tre em vao chu nhat", Language::kVietnamese},
      {"ngoai gio hanh chinh minh kiem them tien bang cach nao", Language::kVietnamese},
      // English of short words that Vietnamese could spell, or with a listed syllable or two.
      {"I can do it", Language::kEnglish},
      {"the man ran to a bank", Language::kEnglish},
      {"my sister Linh lives in Da Nang", Language::kEnglish},
      {"Ban the bomb", Language::kEnglish},
      {"Toi toi toi", Language::kVietnamese},
      {"我喜欢北京", Language::kUnknown},
      {"Привет мир", Language::kUnknown},
      {"😀😀", Language::kUnknown},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(LanguageCode(DetectLanguage(c.text)), LanguageCode(c.expected)) << c.text;
  }
}

TEST(Words, KeepsWordLikeSegmentsWithCaseAndAccents) {
  const struct {
    std::string text;
    std::vector<std::string> expected;
  } cases[] = {
      {"", {}},
      {"  ,.!? ", {}},
      {"Hello, world! 😀", {"Hello", "world"}},
      {"I don't know", {"I", "don't", "know"}},
      {"Tôi sống ở Hà Nội.", {"Tôi", "sống", "ở", "Hà", "Nội"}},
      {"I have 2 cats and 3.5 dogs", {"I", "have", "2", "cats", "and", "3.5", "dogs"}},
      {"e-mail", {"e", "mail"}},
  };
  for (const auto& c : cases) EXPECT_EQ(Words(c.text), c.expected) << c.text;
}

TEST(Words, SegmentsCjkWithoutLosingCharacters) {
  const std::vector<std::string> words = Words("我喜欢北京。");
  ASSERT_FALSE(words.empty());
  std::string joined;
  for (const auto& w : words) joined += w;
  EXPECT_EQ(joined, "我喜欢北京");
}

TEST(Words, InvalidUtf8NeverLeaksIntoWords) {
  const std::vector<std::string> words = Words("ab\xff\xc0 cd\xed\xa0\x80");
  for (const auto& w : words) EXPECT_TRUE(IsValidUtf8(w)) << w;
  EXPECT_THAT(words, Contains("cd"));
}

TEST(AnalyzerTerms, VietnameseWithAndWithoutDiacriticsShareFoldedTerms) {
  Analyzer analyzer;
  const auto plain = analyzer.Terms("toi ten la Lan");
  const auto accented = analyzer.Terms("Tôi tên là Lan");
  for (const char* term : {"toi", "ten", "lan", "toi_ten", "ten_la", "la_lan"}) {
    EXPECT_TRUE(HasTerm(plain, term)) << term;
    EXPECT_TRUE(HasTerm(accented, term)) << term;
  }
  // The accented forms rank exact matches higher; "là" is a stopword in both spellings.
  EXPECT_THAT(accented, AllOf(Contains("tôi"), Contains("tên"), Not(Contains("là"))));
  EXPECT_THAT(plain, Not(Contains("la")));
  EXPECT_THAT(plain, Not(Contains("tôi")));
}

TEST(AnalyzerTerms, EnglishIsStemmedSoInflectionsMatch) {
  Analyzer analyzer;
  const auto doc = analyzer.Terms("I am living in Hanoi");
  const auto query = analyzer.Terms("where do I live");
  EXPECT_THAT(doc, Contains("live"));
  EXPECT_THAT(query, ElementsAre("live"));  // where, do, i are stopwords
  EXPECT_THAT(doc, Contains("hanoi"));
  EXPECT_THAT(doc, Not(Contains("i")));
  EXPECT_THAT(doc, Not(Contains("in")));
}

TEST(AnalyzerTerms, VietnameseContentWordsSurviveStopwordRemoval) {
  Analyzer analyzer;
  const auto terms = analyzer.Terms("tôi sống ở Hà Nội và tôi không thích cửa của nhà");
  for (const char* term : {"song", "sống", "khong", "không", "cua", "cửa", "ha", "noi"}) {
    EXPECT_TRUE(HasTerm(terms, term)) << term;
  }
  EXPECT_THAT(terms, AllOf(Not(Contains("của")), Not(Contains("và")), Not(Contains("va"))));
  // "cua" appears once: from "cửa", not from the stopword "của".
  EXPECT_EQ(std::count(terms.begin(), terms.end(), "cua"), 1);
}

TEST(AnalyzerTerms, BigramsKeepPlaceNamesAndStopAtPunctuation) {
  Analyzer analyzer;
  const auto terms = analyzer.Terms("Tôi ở Đà Nẵng. Lan ở Hà Nội");
  EXPECT_THAT(terms, AllOf(Contains("da_nang"), Contains("ha_noi"), Contains("đà")));
  EXPECT_THAT(terms, Not(Contains("nang_lan")));
}

TEST(AnalyzerTerms, NumbersAreTerms) {
  Analyzer analyzer;
  EXPECT_THAT(analyzer.Terms("I have 2 cats born in 2019"),
              AllOf(Contains("2"), Contains("2019"), Contains("cat")));
}

TEST(AnalyzerTerms, OptionsTurnStagesOff) {
  Analyzer plain({.stem_english = false, .drop_stopwords = false, .vietnamese_bigrams = false});
  EXPECT_THAT(plain.Terms("I am living in Hanoi"), ElementsAre("i", "am", "living", "in", "hanoi"));
  EXPECT_THAT(plain.Terms("toi ten la Lan"), ElementsAre("toi", "ten", "la", "lan"));
}

TEST(AnalyzerTerms, ExplicitLanguageOverridesDetection) {
  Analyzer analyzer;
  EXPECT_THAT(analyzer.Terms("running dogs", Language::kVietnamese),
              ElementsAre("running", "running_dogs", "dogs"));
  EXPECT_THAT(analyzer.Terms("running dogs", Language::kEnglish), ElementsAre("run", "dog"));
}

TEST(AnalyzerTerms, HostileInputGivesValidTermsWithoutWhiteSpace) {
  Analyzer analyzer;
  const std::string inputs[] = {
      "",
      "😀🎉 !!! ...",
      "\xff\xfe\xfd garbage \xc0\xaf bytes",
      "我喜欢北京",
      "\xef\xb7\xba",  // U+FDFA, which NFKC expands into several words
      std::string("nul\0byte", 8),
  };
  for (const auto& input : inputs) {
    for (const auto& term : analyzer.Terms(input)) {
      EXPECT_TRUE(IsValidUtf8(term)) << term;
      EXPECT_FALSE(term.empty());
      EXPECT_EQ(term.find_first_of(" \t\n"), std::string::npos) << term;
    }
  }
  EXPECT_THAT(analyzer.Terms(""), IsEmpty());
  EXPECT_THAT(analyzer.Terms("😀🎉 !!!"), IsEmpty());
}

TEST(AnalyzerTerms, HandlesHundredKilobyteInput) {
  const std::string sentence = "Tôi sống ở Hà Nội và làm việc ở Đà Nẵng. ";
  std::string text;
  long sentences = 0;
  for (; text.size() < 100 * 1024; ++sentences) text += sentence;
  Analyzer analyzer;
  const auto terms = analyzer.Terms(text);
  EXPECT_EQ(std::count(terms.begin(), terms.end(), "da_nang"), sentences);
  EXPECT_EQ(std::count(terms.begin(), terms.end(), "sống"), sentences);
}

TEST(AnalyzerTerms, ConcurrentCallsAgreeWithSerialOnes) {
  Analyzer analyzer;
  const std::vector<std::string> texts = {"I am living in Hanoi", "toi ten la Lan",
                                          "Tôi sống ở Hà Nội", "where do I live", "我喜欢北京"};
  std::vector<std::vector<std::string>> expected;
  for (const auto& t : texts) expected.push_back(analyzer.Terms(t));

  std::vector<int> mismatches(4, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 200; ++round) {
        for (std::size_t i = 0; i < texts.size(); ++i) {
          if (analyzer.Terms(texts[i]) != expected[i]) ++mismatches[t];
        }
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_THAT(mismatches, ElementsAre(0, 0, 0, 0));
}

}  // namespace
}  // namespace mann::text
