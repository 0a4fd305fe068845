// Language guess: English or Vietnamese, from letters and common words.

#include <algorithm>
#include <cctype>
#include <iterator>
#include <span>
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

// Whether `folded` (lower case, diacritics removed) could be one Vietnamese syllable: an
// optional initial consonant, a vowel group, and an optional final consonant, as Vietnamese
// spelling allows them. Most English words cannot ("live", "home", "from", "is"), while every
// Vietnamese word typed without diacritics can, which is what tells "toi ghet mua mua" from
// English when too few of its syllables are common enough to be listed above.
bool IsPossibleVietnameseSyllable(std::string_view folded) {
  // Longest first, so that "ngh" is not read as "n" + "gh".
  static constexpr std::string_view kInitials[] = {
      "ngh", "ng", "nh", "ch", "gh", "gi", "kh", "ph", "qu", "th", "tr", "b", "c", "d",
      "g",   "h",  "k",  "l",  "m",  "n",  "p",  "r",  "s",  "t",  "v",  "x", ""};
  // Vowel groups with their diacritics folded away (ươ -> uo, ưu -> uu, uyê -> uye, ...).
  // Those ending in a glide (i, y, o, u) take no final consonant.
  static constexpr std::string_view kOpenGroups[] = {
      "a",  "e",  "i",   "o",   "u",   "y",   "ia",  "ie",  "oa",  "oe",  "oo",  "ua",  "ue", "uo",
      "uy", "ye", "uya", "uye", "oai", "oay", "uay", "uoi", "uou", "oeo", "ieu", "yeu", "uyu"};
  static constexpr std::string_view kGlideGroups[] = {"ai", "ao", "au", "ay", "eo",
                                                      "eu", "iu", "oi", "ui", "uu"};
  static constexpr std::string_view kFinals[] = {"ch", "ng", "nh", "c", "m", "n", "p", "t", ""};
  auto one_of = [](std::string_view s, std::span<const std::string_view> set) {
    return std::find(set.begin(), set.end(), s) != set.end();
  };
  if (folded.empty() || folded.size() > 7) return false;
  for (std::string_view initial : kInitials) {
    if (!folded.starts_with(initial)) continue;
    const std::string_view rest = folded.substr(initial.size());
    for (std::string_view final : kFinals) {
      if (rest.size() <= final.size() || !rest.ends_with(final)) continue;
      const std::string_view group = rest.substr(0, rest.size() - final.size());
      if (one_of(group, kOpenGroups)) return true;
      if (final.empty() && one_of(group, kGlideGroups)) return true;
    }
  }
  return false;
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
  int impossible = 0;  // words no Vietnamese syllable is spelt like, names aside
  bool first = true;
  for (const Word& word : segmented.words) {
    if (!word.has_letter) continue;
    ++words;
    vietnamese += VietnameseWeight(word.folded);
    if (IsEnglishFunctionWord(word.folded)) english += 2;
    // A capitalised word after the first is taken for a name ("Cho Ray", "Vision"), which
    // says nothing of the sentence's language.
    const bool name = !first && std::isupper(static_cast<unsigned char>(word.text[0]));
    if (!name && !IsPossibleVietnameseSyllable(word.folded)) ++impossible;
    first = false;
  }
  if (vietnamese <= english) return Language::kEnglish;
  // Accents that Vietnamese shares with French ("tôi tên là") make one known syllable enough.
  const int min_vietnamese = segmented.shared_accents > 0 ? 2 : 4;
  if (vietnamese >= min_vietnamese && vietnamese >= words) return Language::kVietnamese;
  // Fewer common syllables, but three or more words nearly all spelt as Vietnamese syllables,
  // listed ones worth a whole word among them: a loan word or a typo ("piano") may stand among
  // them, one word in five at most.
  if (words >= 3 && vietnamese >= 2 && impossible * 5 <= words) return Language::kVietnamese;
  return Language::kEnglish;
}

}  // namespace internal

Language DetectLanguage(std::string_view text) {
  return internal::DetectFromSegments(internal::Segment(text, /*fold=*/true));
}

}  // namespace mann::text
