// Glosser: a word-by-word English gloss of Vietnamese text, from a bilingual lexicon.
//
// The sentence encoder reads English only. Glossing "tôi sống ở Hà Nội" into "i live in Hanoi"
// lets it place Vietnamese memories and questions near their meaning, and near English ones.
// A gloss is not a translation: word order stays Vietnamese and each key has one sense, which
// is enough for a bag-of-meaning encoder (docs/design/routing.md measures what it buys).
//
// Matching is greedy, longest first, over up to kMaxKeySyllables syllables. A syllable written
// with diacritics must match a key exactly (case aside), because the marks carry the meaning
// ("bạn" friend, "bàn" table, "bán" sell); a syllable written without any ("ban") matches the
// first key of the lexicon that folds to it. Words missing from the lexicon pass through with
// their diacritics removed, so names reach the encoder as "Da Nang" rather than as unknown
// characters. Keys glossed "-" are dropped (particles, classifiers).
//
// The lexicon format (data/vi_en_gloss.tsv, compiled into mann): UTF-8 lines; `#` starts a
// comment line; every other line is `vietnamese<TAB>english`, the key lowercase NFC.
//
// Thread-safety: immutable after construction; every const member is safe to call concurrently.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>

#include <mann/core/status.h>

namespace mann::text {

class Glosser {
 public:
  static constexpr std::size_t kMaxKeySyllables = 4;

  // Parses a lexicon. InvalidArgument naming `source` and the line for a line without exactly
  // one tab, an empty key or gloss, a key of more than kMaxKeySyllables syllables, or a key
  // listed twice.
  static Result<Glosser> Parse(std::string_view tsv, std::string_view source);

  // The lexicon built into mann (data/vi_en_gloss.tsv). Parsed once, on first use.
  static const Glosser& BuiltIn();

  // The English gloss of `text`, words separated by single spaces; punctuation is dropped.
  std::string Gloss(std::string_view text) const;

  // How much of `text` the lexicon knew: syllables covered by a key / syllables with letters.
  double Coverage(std::string_view text) const;

  // The first 12 hex digits of the lexicon's SHA-256: a new lexicon changes glosses, so
  // vectors made through it are tagged with this and re-made when it changes.
  const std::string& fingerprint() const { return fingerprint_; }
  std::size_t size() const { return exact_.size(); }

 private:
  std::unordered_map<std::string, std::string> exact_;   // "thành phố" -> "city"
  std::unordered_map<std::string, std::string> folded_;  // "thanh pho" -> "city" (first wins)
  std::string fingerprint_;
};

}  // namespace mann::text
