// Pieces shared by the text module's sources; not part of the public API.
//
// Segment() does the expensive work once (UTF-8 repair, NFC, ICU word breaks, folding) so that
// Words(), DetectLanguage() and Analyzer::Terms() do not repeat it for the same input.
//
// Thread-safety: every function is safe to call concurrently; ICU break iterators live in
// thread_local storage because ICU does not allow sharing one between threads.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <unicode/unistr.h>

#include <mann/text/analyzer.h>

namespace mann::text::internal {

struct Word {
  std::string text;    // as written (NFC), case and accents kept
  std::string lower;   // NFKC + case fold, accents kept
  std::string folded;  // FoldForSearch() of the word
  bool has_letter = false;
  bool follows_space = false;  // only white space separates it from the previous word
};

struct Segmented {
  std::vector<Word> words;
  int latin_letters = 0;
  int other_letters = 0;       // letters of any other script
  int vietnamese_letters = 0;  // letters only Vietnamese uses (ă đ ơ ư ĩ ũ, U+1EA0..U+1EF9)
  int shared_accents = 0;      // accented letters Vietnamese shares with French etc. (â é ô ...)
};

// Valid UTF-16 from arbitrary bytes: ill-formed sequences become U+FFFD.
icu::UnicodeString FromUtf8(std::string_view text);
std::string ToUtf8(const icu::UnicodeString& text);

// FoldForSearch of UTF-16 input; `lower`, when non-null, receives the NFKC case-folded form
// with accents kept. Both outputs have white space collapsed to single spaces and trimmed.
void Fold(const icu::UnicodeString& text, std::string* lower, std::string* folded);

// Word-like segments of `text`; when `fold` is false, Word::lower and Word::folded stay empty.
Segmented Segment(std::string_view text, bool fold);

Language DetectFromSegments(const Segmented& segmented);

}  // namespace mann::text::internal
