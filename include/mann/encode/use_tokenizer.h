// UseTokenizer: the tokenizer of the Universal Sentence Encoder "lite", bit-for-bit the one in
// @energetic-ai/embeddings 0.2.0 (a port of the tfjs-models USE tokenizer; not SentencePiece).
//
// Text is NFKC-normalized, every U+0020 becomes U+2581 "▁" and one "▁" is prepended (unless
// the normalized text is empty). A max-sum lattice over code points then picks pieces of the
// vocabulary, with the reference's quirks kept on purpose because the model was run with them:
// a null score counts as 0, a running best of exactly 0 counts as unset (so ": hello" gives
// "▁ : ▁hell o"), ties go to the later start, a duplicated piece keeps its last id, and a code
// point that starts no piece becomes id 0, consecutive ones merged into a single 0.
// docs/design/use-lite.md describes the algorithm and every quirk.
//
// Invalid UTF-8 is decoded with U+FFFD replacements, as node does when it reads text.
// Known difference: NFKC comes from the system ICU (72 on Debian bookworm, Unicode 15), node's
// from ICU 78; only code points added after Unicode 15 can tokenize differently.
//
// Thread-safety: immutable after construction; Encode() is safe to call concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <unicode/uversion.h>

#include <mann/core/status.h>

U_NAMESPACE_BEGIN
class Normalizer2;
U_NAMESPACE_END

namespace mann::encode {

class UseTokenizer {
 public:
  // Parses vocab.json (an array of [piece, score-or-null] pairs; id = index). DataLoss naming
  // the file for malformed content, NotFound/FailedPrecondition for a missing/unreadable file.
  // FailedPrecondition also when ICU's NFKC data is unavailable.
  static Result<UseTokenizer> FromVocabFile(const std::string& path);
  // As FromVocabFile, for vocabulary text already in memory; `origin` names it in errors.
  static Result<UseTokenizer> FromVocabJson(std::string_view json, const std::string& origin);

  // Token ids exactly as the reference tokenizer produces them, uncut (the model graph drops
  // positions >= 128; callers cut). Empty for input that normalizes to "".
  std::vector<std::int32_t> Encode(std::string_view text) const;

  // Number of entries in vocab.json, reserved ids included.
  std::size_t vocab_size() const { return backtrack_length_.size(); }

 private:
  struct Node {
    double score = 0.0;    // the piece's score; null in vocab.json is 0, as in the reference
    std::int32_t id = -1;  // the piece ending at this node; -1 when none does
  };

  UseTokenizer() = default;

  // The trie node reached from `node` by `symbol`, or -1.
  std::int32_t Child(std::int32_t node, char32_t symbol) const;
  // NFKC, then "▁" for U+0020 and a leading "▁", as code points.
  void Prepare(std::string_view text, std::vector<char32_t>* symbols) const;

  const icu::Normalizer2* nfkc_ = nullptr;  // ICU's process-wide singleton; not owned
  // A trie over code points; node 0 is the root. Its edges sit in one open-addressing table
  // keyed by (parent << 21 | symbol) + 1, so 0 marks an empty slot.
  std::vector<Node> nodes_;
  std::vector<std::uint64_t> edge_keys_;
  std::vector<std::int32_t> edge_children_;
  int edge_shift_ = 64;  // 64 - log2(table size)
  // Per id: how far the reference's backtrack steps back from the end of that id's piece. The
  // reference uses the piece's UTF-16 length (its code-point count for every piece of the
  // shipped vocabulary); at least 1, so that an odd vocabulary cannot stall the backtrack.
  std::vector<std::int32_t> backtrack_length_;
};

}  // namespace mann::encode
