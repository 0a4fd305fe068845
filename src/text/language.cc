// Language guess: English or Vietnamese, from letters and common words.

#include <iterator>
#include <string_view>
#include <unordered_map>
#include <unordered_set>

#include <mann/text/analyzer.h>

#include "text_internal.h"

namespace mann::text {
namespace internal {
namespace {

// Common Vietnamese syllables as typed without diacritics. Those that are also everyday English
// words (ban, ten, song, an, ...) count half, so "I can ban a song" stays English while
// "toi ten la Lan" becomes Vietnamese.
struct Syllable {
  std::string_view text;
  bool also_english;
};

constexpr Syllable kVietnameseSyllables[] = {
    {"toi", false},   {"ban", true},    {"la", false},    {"cua", false},  {"khong", false},
    {"co", true},     {"nguoi", false}, {"minh", false},  {"ten", true},   {"song", true},
    {"o", false},     {"va", false},    {"nhung", false}, {"duoc", false}, {"lam", false},
    {"gi", false},    {"dau", false},   {"nao", false},   {"sao", false},  {"thich", false},
    {"an", true},     {"nha", false},   {"em", true},     {"anh", false},  {"chi", true},
    {"hom", false},   {"nay", false},   {"mai", false},   {"qua", false},  {"roi", false},
    {"chua", false},  {"se", false},    {"da", false},    {"dang", false}, {"cho", false},
    {"voi", false},   {"tu", false},    {"den", true},    {"di", false},   {"ve", false},
    {"biet", false},  {"muon", false},  {"can", true},    {"phai", false}, {"rat", true},
    {"nhieu", false}, {"thi", false},   {"ma", true},     {"mot", false},  {"hai", false},
    {"nam", false},   {"ngay", false},  {"thang", false}, {"viet", false}, {"noi", false},
    {"hoc", false},   {"viec", false},  {"cong", false},  {"yeu", false},  {"ai", false},
    {"bao", false},   {"nhu", false},   {"the", true},    {"vay", false},  {"cac", false},
    {"nhe", false},   {"oi", false},    {"cung", false},  {"rang", false}, {"thay", false},
};

// English function words; when they are at least as frequent as Vietnamese syllables, the
// text is English.
constexpr std::string_view kEnglishFunctionWords[] = {
    "i",    "you",  "he",   "she",  "it",   "we",  "they", "the",   "a",   "an",   "is",
    "am",   "are",  "was",  "were", "be",   "of",  "to",   "in",    "on",  "at",   "and",
    "or",   "my",   "your", "do",   "does", "did", "what", "where", "who", "how",  "this",
    "that", "with", "for",  "have", "has",  "not", "can",  "will",  "me",  "from", "by",
};

// 0, 1 (half a word) or 2 (a whole word), so the arithmetic stays integral.
int VietnameseWeight(std::string_view folded) {
  static const auto* const weights = [] {
    auto* map = new std::unordered_map<std::string_view, int>;
    for (const Syllable& s : kVietnameseSyllables) map->emplace(s.text, s.also_english ? 1 : 2);
    return map;
  }();
  const auto it = weights->find(folded);
  return it == weights->end() ? 0 : it->second;
}

bool IsEnglishFunctionWord(std::string_view folded) {
  static const auto* const words = new std::unordered_set<std::string_view>(
      std::begin(kEnglishFunctionWords), std::end(kEnglishFunctionWords));
  return words->contains(folded);
}

}  // namespace

Language DetectFromSegments(const Segmented& segmented) {
  if (segmented.vietnamese_letters > 0) return Language::kVietnamese;
  if (segmented.latin_letters == 0 || segmented.other_letters > segmented.latin_letters) {
    return Language::kUnknown;
  }

  int words = 0;
  int vietnamese = 0;  // in half words
  int english = 0;
  for (const Word& word : segmented.words) {
    if (!word.has_letter) continue;
    ++words;
    vietnamese += VietnameseWeight(word.folded);
    if (IsEnglishFunctionWord(word.folded)) english += 2;
  }
  // Accents that Vietnamese shares with French ("tôi tên là") make one known syllable enough.
  const int min_vietnamese = segmented.shared_accents > 0 ? 2 : 4;
  if (vietnamese >= min_vietnamese && vietnamese >= words && vietnamese > english) {
    return Language::kVietnamese;
  }
  return Language::kEnglish;
}

}  // namespace internal

Language DetectLanguage(std::string_view text) {
  return internal::DetectFromSegments(internal::Segment(text, /*fold=*/true));
}

}  // namespace mann::text
