// Normalization, folding, hashing: the parts of analyzer.h that work on whole strings.

#include <algorithm>
#include <array>
#include <climits>
#include <cstdint>
#include <string>
#include <string_view>

#include <openssl/evp.h>
#include <unicode/normalizer2.h>
#include <unicode/uchar.h>
#include <unicode/unistr.h>
#include <unicode/utf8.h>

#include <mann/core/log.h>
#include <mann/text/analyzer.h>

#include "text_internal.h"

namespace mann::text {
namespace {

// ICU hands out process-wide, immutable normalizer singletons; they are safe to share between
// threads. A null pointer means ICU's data is missing, and the caller degrades to the
// un-normalized text rather than failing.
struct Normalizers {
  const icu::Normalizer2* nfc = nullptr;
  const icu::Normalizer2* nfd = nullptr;
  const icu::Normalizer2* nfkc_casefold = nullptr;
};

const Normalizers& GetNormalizers() {
  static const Normalizers normalizers = [] {
    Normalizers n;
    UErrorCode status = U_ZERO_ERROR;
    n.nfc = icu::Normalizer2::getNFCInstance(status);
    if (U_FAILURE(status)) n.nfc = nullptr;
    status = U_ZERO_ERROR;
    n.nfd = icu::Normalizer2::getNFDInstance(status);
    if (U_FAILURE(status)) n.nfd = nullptr;
    status = U_ZERO_ERROR;
    n.nfkc_casefold = icu::Normalizer2::getNFKCCasefoldInstance(status);
    if (U_FAILURE(status)) n.nfkc_casefold = nullptr;
    if (n.nfc == nullptr || n.nfd == nullptr || n.nfkc_casefold == nullptr) {
      log::Get("text")->error(
          "icu normalizer unavailable error={}: text is indexed without normalization; check "
          "the libicu data package",
          u_errorName(status));
    }
    return n;
  }();
  return normalizers;
}

icu::UnicodeString Normalize(const icu::Normalizer2* normalizer, const icu::UnicodeString& text) {
  if (normalizer == nullptr) return text;
  UErrorCode status = U_ZERO_ERROR;
  icu::UnicodeString out = normalizer->normalize(text, status);
  return U_SUCCESS(status) ? out : text;
}

bool IsAscii(std::string_view text) {
  for (char c : text) {
    if (static_cast<unsigned char>(c) >= 0x80) return false;
  }
  return true;
}

bool IsAsciiSpace(char c) { return c == ' ' || (c >= '\t' && c <= '\r'); }

// The Combining Diacritical Marks blocks. Only these are stripped: Latin, Greek and Cyrillic
// accents decompose into them, while marks that carry meaning in other scripts (Japanese
// dakuten U+3099, Thai vowels, Devanagari signs) lie elsewhere and must survive folding.
bool IsStrippedMark(UChar32 c) {
  return (c >= 0x0300 && c <= 0x036F) || (c >= 0x1AB0 && c <= 0x1AFF) ||
         (c >= 0x1DC0 && c <= 0x1DFF) || (c >= 0x20D0 && c <= 0x20FF) ||
         (c >= 0xFE20 && c <= 0xFE2F);
}

// Typographic apostrophes and quotes become ASCII so that "don’t" and "don't" agree.
UChar32 MapPunctuation(UChar32 c) {
  if (c == 0x2018 || c == 0x2019 || c == 0x02BC) return '\'';
  return c;
}

// Lower-cases and collapses white space of ASCII input; the fast path of Fold().
void FoldAscii(std::string_view text, std::string* out) {
  out->clear();
  out->reserve(text.size());
  bool pending_space = false;
  for (char c : text) {
    if (IsAsciiSpace(c)) {
      pending_space = !out->empty();
      continue;
    }
    if (pending_space) out->push_back(' ');
    pending_space = false;
    out->push_back(c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c);
  }
}

// Copies `text` with white space runs collapsed to one space and trimmed; when `strip` is set,
// also drops combining diacritics and maps đ to d.
icu::UnicodeString Collapse(const icu::UnicodeString& text, bool strip, bool* ascii) {
  icu::UnicodeString out;
  *ascii = true;
  bool pending_space = false;
  for (int32_t i = 0; i < text.length();) {
    UChar32 c = text.char32At(i);
    i += U16_LENGTH(c);
    if (u_isUWhiteSpace(c)) {
      pending_space = !out.isEmpty();
      continue;
    }
    if (strip && IsStrippedMark(c)) continue;
    if (strip && c == 0x0111) c = 'd';  // đ has no decomposition, so NFD leaves it intact
    c = MapPunctuation(c);
    if (pending_space) out.append(static_cast<UChar>(' '));
    pending_space = false;
    if (c >= 0x80) *ascii = false;
    out.append(c);
  }
  return out;
}

void AppendHex(const unsigned char* bytes, unsigned int size, std::string* out) {
  static constexpr char kDigits[] = "0123456789abcdef";
  for (unsigned int i = 0; i < size; ++i) {
    out->push_back(kDigits[bytes[i] >> 4]);
    out->push_back(kDigits[bytes[i] & 0xF]);
  }
}

}  // namespace

namespace internal {

icu::UnicodeString FromUtf8(std::string_view text) {
  // UnicodeString lengths are int32_t; a chat text never approaches the limit, and clamping
  // keeps an absurd input from overflowing the conversion.
  const auto size = static_cast<int32_t>(std::min<std::size_t>(text.size(), INT32_MAX / 2));
  return icu::UnicodeString::fromUTF8(icu::StringPiece(text.data(), size));
}

std::string ToUtf8(const icu::UnicodeString& text) {
  std::string out;
  text.toUTF8String(out);
  return out;
}

void Fold(const icu::UnicodeString& text, std::string* lower, std::string* folded) {
  // Most words are ASCII, where all of NFKC, case folding and accent removal reduce to
  // lower-casing; skipping ICU here more than halves the cost of analysing English.
  const char16_t* units = text.getBuffer();
  const int32_t length = text.length();
  if (units != nullptr && std::all_of(units, units + length, [](char16_t u) { return u < 0x80; })) {
    std::string ascii(static_cast<std::size_t>(length), '\0');
    for (int32_t i = 0; i < length; ++i)
      ascii[static_cast<std::size_t>(i)] = static_cast<char>(units[i]);
    FoldAscii(ascii, folded);
    if (lower != nullptr) *lower = *folded;
    return;
  }

  const Normalizers& n = GetNormalizers();
  icu::UnicodeString casefolded;
  if (n.nfkc_casefold != nullptr) {
    casefolded = Normalize(n.nfkc_casefold, text);
  } else {
    casefolded = text;
    casefolded.foldCase();
  }
  bool ascii = true;
  if (lower != nullptr) *lower = ToUtf8(Collapse(casefolded, /*strip=*/false, &ascii));

  icu::UnicodeString stripped = Collapse(Normalize(n.nfd, casefolded), /*strip=*/true, &ascii);
  // Hangul and other scripts that NFD decomposed into non-mark parts must be put back together.
  if (!ascii) stripped = Normalize(n.nfc, stripped);
  *folded = ToUtf8(stripped);
}

}  // namespace internal

std::string_view LanguageCode(Language language) {
  switch (language) {
    case Language::kEnglish:
      return "en";
    case Language::kVietnamese:
      return "vi";
    case Language::kUnknown:
      break;
  }
  return "und";
}

Language ParseLanguageCode(std::string_view code) {
  std::string lower;
  FoldAscii(code, &lower);
  // Region subtags ("en-US", "vi_VN") do not change the analysis.
  lower = lower.substr(0, lower.find_first_of("-_"));
  if (lower == "en" || lower == "eng") return Language::kEnglish;
  if (lower == "vi" || lower == "vie") return Language::kVietnamese;
  return Language::kUnknown;
}

bool IsValidUtf8(std::string_view text) {
  const auto* s = reinterpret_cast<const unsigned char*>(text.data());
  const std::size_t size = text.size();
  std::size_t i = 0;
  while (i < size) {
    const unsigned char lead = s[i];
    if (lead < 0x80) {
      ++i;
      continue;
    }
    // RFC 3629: no overlong forms, no surrogates, nothing above U+10FFFF.
    std::size_t length = 0;
    unsigned char min_second = 0x80;
    unsigned char max_second = 0xBF;
    if (lead >= 0xC2 && lead <= 0xDF) {
      length = 2;
    } else if (lead >= 0xE0 && lead <= 0xEF) {
      length = 3;
      if (lead == 0xE0) min_second = 0xA0;
      if (lead == 0xED) max_second = 0x9F;
    } else if (lead >= 0xF0 && lead <= 0xF4) {
      length = 4;
      if (lead == 0xF0) min_second = 0x90;
      if (lead == 0xF4) max_second = 0x8F;
    } else {
      return false;
    }
    if (size - i < length) return false;
    if (s[i + 1] < min_second || s[i + 1] > max_second) return false;
    for (std::size_t k = 2; k < length; ++k) {
      if ((s[i + k] & 0xC0) != 0x80) return false;
    }
    i += length;
  }
  return true;
}

std::string NormalizeNfc(std::string_view text) {
  if (IsAscii(text)) {
    std::size_t begin = 0;
    std::size_t end = text.size();
    while (begin < end && IsAsciiSpace(text[begin])) ++begin;
    while (end > begin && IsAsciiSpace(text[end - 1])) --end;
    return std::string(text.substr(begin, end - begin));
  }
  icu::UnicodeString normalized = Normalize(GetNormalizers().nfc, internal::FromUtf8(text));
  int32_t begin = 0;
  int32_t end = normalized.length();
  while (begin < end && u_isUWhiteSpace(normalized.char32At(begin))) {
    begin += U16_LENGTH(normalized.char32At(begin));
  }
  while (end > begin && u_isUWhiteSpace(normalized.char32At(end - 1))) {
    end -= U16_LENGTH(normalized.char32At(end - 1));
  }
  return internal::ToUtf8(normalized.tempSubStringBetween(begin, end));
}

std::string FoldForSearch(std::string_view text) {
  std::string out;
  if (IsAscii(text)) {
    FoldAscii(text, &out);
  } else {
    internal::Fold(internal::FromUtf8(text), nullptr, &out);
  }
  return out;
}

std::string ContentKey(std::string_view text) {
  // Punctuation is deleted, not turned into a space, so "don't" and "dont" share a key; the
  // white space around deleted marks ("Lan , Ha") collapses afterwards.
  const std::string folded = FoldForSearch(text);
  std::string key;
  key.reserve(folded.size());
  const auto* s = reinterpret_cast<const uint8_t*>(folded.data());
  const auto size = static_cast<int32_t>(std::min<std::size_t>(folded.size(), INT32_MAX));
  bool pending_space = false;
  for (int32_t i = 0; i < size;) {
    const int32_t start = i;
    UChar32 c;
    U8_NEXT(s, i, size, c);
    if (c < 0 || u_ispunct(c)) continue;
    if (c == ' ') {
      pending_space = !key.empty();
      continue;
    }
    if (pending_space) key.push_back(' ');
    pending_space = false;
    key.append(folded, static_cast<std::size_t>(start), static_cast<std::size_t>(i - start));
  }
  return Sha256Hex(key);
}

std::string Sha256Hex(std::string_view bytes) {
  std::array<unsigned char, EVP_MAX_MD_SIZE> digest{};
  unsigned int digest_size = 0;
  std::string hex;
  if (EVP_Digest(bytes.data(), bytes.size(), digest.data(), &digest_size, EVP_sha256(), nullptr) !=
      1) {
    // Only a broken OpenSSL installation gets here; an empty key never equals a real one.
    log::Get("text")->error("sha256 failed: check the OpenSSL installation");
    return hex;
  }
  hex.reserve(2 * digest_size);
  AppendHex(digest.data(), digest_size, &hex);
  return hex;
}

}  // namespace mann::text
