// Text analysis for English and Vietnamese: normalization, folding, language guess, and the
// terms that the lexical index and the hashed encoder see.
//
// Vietnamese is often typed without diacritics ("toi ten la Lan" for "tôi tên là Lan"), so
// matching happens on a *folded* form: NFKC, Unicode case folding, combining marks removed,
// and the letter đ/Đ mapped to d. Words that carried diacritics are additionally indexed in
// their accented (case-folded) form, so a query typed with diacritics ranks exact matches
// above mere folded matches.
//
// Thread-safety: every function and const member here is safe to call concurrently. An
// Analyzer is immutable after construction.
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace mann::text {

enum class Language { kUnknown, kEnglish, kVietnamese };

// "en", "vi", "und".
std::string_view LanguageCode(Language language);
Language ParseLanguageCode(std::string_view code);

// NFC normalization of UTF-8 input. Invalid UTF-8 sequences become U+FFFD; the result is
// always valid UTF-8. Leading and trailing white space is trimmed.
std::string NormalizeNfc(std::string_view text);

// True when `text` is valid UTF-8.
bool IsValidUtf8(std::string_view text);

// NFKC + case fold + diacritics removed + đ -> d, white space collapsed to single spaces.
// FoldForSearch("Tôi TÊN là  Lan") == "toi ten la lan".
std::string FoldForSearch(std::string_view text);

// Lower-case hex SHA-256 of FoldForSearch(text) with punctuation removed: two texts that differ
// only in case, accents, spacing or punctuation share a key. The write head uses it for
// exact-duplicate detection.
std::string ContentKey(std::string_view text);

// Lower-case hex SHA-256 of raw bytes.
std::string Sha256Hex(std::string_view bytes);

// A best guess from letters and common function words. Text with Vietnamese-only letters
// (ă â đ ê ô ơ ư or Vietnamese tone marks) is Vietnamese; unaccented text is Vietnamese when
// enough of its words are common unaccented Vietnamese words ("toi", "la", "cua", "khong", ...);
// Latin-script text otherwise is English; anything else is unknown.
Language DetectLanguage(std::string_view text);

// Word segmentation with ICU word break rules; punctuation and white space are dropped.
// Case and accents are preserved.
std::vector<std::string> Words(std::string_view text);

struct AnalyzerOptions {
  bool stem_english = true;        // Snowball English stemmer on words of English text
  bool drop_stopwords = true;      // a short English and Vietnamese stop list
  bool vietnamese_bigrams = true;  // Vietnamese words are mostly two syllables: index pairs too
};

// Produces index terms. Terms are folded words (stemmed for English text), plus the accented
// form of words that had diacritics, plus "a_b" syllable bigrams for Vietnamese text.
// The same Analyzer must analyse documents and queries.
class Analyzer {
 public:
  explicit Analyzer(AnalyzerOptions options = {});
  ~Analyzer();
  Analyzer(const Analyzer&) = delete;
  Analyzer& operator=(const Analyzer&) = delete;

  // `language` kUnknown means: detect it.
  std::vector<std::string> Terms(std::string_view text,
                                 Language language = Language::kUnknown) const;

  const AnalyzerOptions& options() const { return options_; }

 private:
  struct Impl;
  AnalyzerOptions options_;
  std::unique_ptr<Impl> impl_;
};

}  // namespace mann::text
