// Word segmentation with ICU word break rules.

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <unicode/brkiter.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/uscript.h>

#include <mann/core/log.h>
#include <mann/text/analyzer.h>

#include "text_internal.h"

namespace mann::text {
namespace internal {
namespace {

// ICU break iterators keep iteration state, so each thread owns one. Creating it costs tens
// of microseconds; a thread pays that once. Null when ICU's break data is missing.
icu::BreakIterator* ThreadWordBreaker() {
  thread_local std::unique_ptr<icu::BreakIterator> breaker = [] {
    UErrorCode status = U_ZERO_ERROR;
    std::unique_ptr<icu::BreakIterator> created(
        icu::BreakIterator::createWordInstance(icu::Locale::getRoot(), status));
    if (U_FAILURE(status)) {
      log::Get("text")->error(
          "icu word break iterator unavailable error={}: words are split on letters and "
          "digits only; check the libicu data package",
          u_errorName(status));
      created.reset();
    }
    return created;
  }();
  return breaker.get();
}

// Letters used only by Vietnamese among Latin-script languages: ă đ ĩ ũ ơ ư and the Latin
// Extended Additional block of Vietnamese vowels with tone marks (ạ ả ấ ... ỹ).
bool IsVietnameseLetter(UChar32 c) {
  switch (c) {
    case 0x0102:
    case 0x0103:  // Ă ă
    case 0x0110:
    case 0x0111:  // Đ đ
    case 0x0128:
    case 0x0129:  // Ĩ ĩ
    case 0x0168:
    case 0x0169:  // Ũ ũ
    case 0x01A0:
    case 0x01A1:  // Ơ ơ
    case 0x01AF:
    case 0x01B0:  // Ư ư
      return true;
    default:
      return c >= 0x1EA0 && c <= 0x1EF9;
  }
}

// Accented letters Vietnamese shares with French, Portuguese and others: à á â ã è é ê ì í ò ó
// ô õ ù ú ý in either case.
bool IsSharedAccent(UChar32 c) {
  const UChar32 lower = (c >= 0xC0 && c <= 0xDD) ? c + 0x20 : c;
  switch (lower) {
    case 0xE0:
    case 0xE1:
    case 0xE2:
    case 0xE3:
    case 0xE8:
    case 0xE9:
    case 0xEA:
    case 0xEC:
    case 0xED:
    case 0xF2:
    case 0xF3:
    case 0xF4:
    case 0xF5:
    case 0xF9:
    case 0xFA:
    case 0xFD:
      return true;
    default:
      return false;
  }
}

bool IsAsciiLetter(UChar32 c) { return (c | 0x20) >= 'a' && (c | 0x20) <= 'z'; }

// Counts the letters of one word by script and marks whether it has any.
void CountLetters(const icu::UnicodeString& text, int32_t begin, int32_t end, Word* word,
                  Segmented* out) {
  for (int32_t i = begin; i < end;) {
    const UChar32 c = text.char32At(i);
    i += U16_LENGTH(c);
    if (c < 0x80) {
      if (IsAsciiLetter(c)) {
        ++out->latin_letters;
        word->has_letter = true;
      }
      continue;
    }
    if (!u_isalpha(c)) continue;
    word->has_letter = true;
    UErrorCode status = U_ZERO_ERROR;
    if (uscript_getScript(c, &status) != USCRIPT_LATIN) {
      ++out->other_letters;
      continue;
    }
    ++out->latin_letters;
    if (IsVietnameseLetter(c)) ++out->vietnamese_letters;
    if (IsSharedAccent(c)) ++out->shared_accents;
  }
}

void AddWord(const icu::UnicodeString& text, int32_t begin, int32_t end, bool follows_space,
             bool fold, Segmented* out) {
  Word& word = out->words.emplace_back();
  word.follows_space = follows_space;
  const icu::UnicodeString piece = text.tempSubStringBetween(begin, end);
  piece.toUTF8String(word.text);
  CountLetters(text, begin, end, &word, out);
  if (fold) Fold(piece, &word.lower, &word.folded);
}

bool IsAllWhiteSpace(const icu::UnicodeString& text, int32_t begin, int32_t end) {
  for (int32_t i = begin; i < end;) {
    const UChar32 c = text.char32At(i);
    if (!u_isUWhiteSpace(c)) return false;
    i += U16_LENGTH(c);
  }
  return true;
}

// Used only when ICU has no break data: runs of letters, digits and marks are words.
void SegmentFallback(const icu::UnicodeString& text, bool fold, Segmented* out) {
  int32_t begin = -1;
  int32_t gap_begin = 0;
  for (int32_t i = 0; i <= text.length();) {
    const UChar32 c = i < text.length() ? text.char32At(i) : U_SENTINEL;
    const bool in_word = c != U_SENTINEL && (u_isalnum(c) || u_getCombiningClass(c) != 0 ||
                                             u_charType(c) == U_NON_SPACING_MARK);
    if (in_word && begin < 0) begin = i;
    if (!in_word && begin >= 0) {
      AddWord(text, begin, i, IsAllWhiteSpace(text, gap_begin, begin), fold, out);
      begin = -1;
      gap_begin = i;
    }
    i += c == U_SENTINEL ? 1 : U16_LENGTH(c);
  }
}

}  // namespace

Segmented Segment(std::string_view text, bool fold) {
  Segmented out;
  icu::UnicodeString unicode = FromUtf8(text);
  UErrorCode status = U_ZERO_ERROR;
  const icu::Normalizer2* nfc = icu::Normalizer2::getNFCInstance(status);
  if (U_SUCCESS(status) && !nfc->isNormalized(unicode, status) && U_SUCCESS(status)) {
    unicode = nfc->normalize(unicode, status);
  }

  icu::BreakIterator* breaker = ThreadWordBreaker();
  if (breaker == nullptr) {
    SegmentFallback(unicode, fold, &out);
    return out;
  }
  // The iterator keeps a pointer to `unicode`; it is re-pointed before every later use, so the
  // dangling pointer left behind on return is never read.
  breaker->setText(unicode);
  bool follows_space = false;  // the first word follows nothing
  int32_t begin = breaker->first();
  for (int32_t end = breaker->next(); end != icu::BreakIterator::DONE;
       begin = end, end = breaker->next()) {
    // UBRK_WORD_NONE covers spaces, punctuation and symbols (emoji included); every status
    // from UBRK_WORD_NONE_LIMIT up is a number, letter, kana or ideograph run.
    if (breaker->getRuleStatus() >= UBRK_WORD_NONE_LIMIT) {
      AddWord(unicode, begin, end, follows_space, fold, &out);
      follows_space = true;
    } else if (!IsAllWhiteSpace(unicode, begin, end)) {
      follows_space = false;
    }
  }
  return out;
}

}  // namespace internal

std::vector<std::string> Words(std::string_view text) {
  internal::Segmented segmented = internal::Segment(text, /*fold=*/false);
  std::vector<std::string> words;
  words.reserve(segmented.words.size());
  for (internal::Word& word : segmented.words) words.push_back(std::move(word.text));
  return words;
}

}  // namespace mann::text
