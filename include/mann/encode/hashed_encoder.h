// HashedEncoder: a language-agnostic dense encoder from hashed word and character n-grams.
//
// Features: folded words (text::FoldForSearch, so Vietnamese with and without diacritics agree),
// word bigrams, and character n-grams of each folded word with boundary marks ("^ha", "noi$").
// Each feature is hashed (64-bit, seeded) to a bucket and a sign (the "hashing trick" with signs,
// so collisions cancel in expectation), weighted by kind, summed, and L2-normalized.
// Deterministic across runs and machines.
#pragma once

#include <cstddef>
#include <cstdint>

#include <mann/encode/encoder.h>

namespace mann::encode {

struct HashedEncoderOptions {
  std::size_t dimension = 256;
  int char_ngram_min = 3;
  int char_ngram_max = 4;
  float word_weight = 1.0f;
  float bigram_weight = 0.7f;
  float char_weight = 0.5f;
  std::uint64_t seed = 0x6d616e6e;  // "mann"
};

// Thread-safety: immutable after construction; EncodeBatch() may run concurrently.
class HashedEncoder final : public Encoder {
 public:
  // InvalidArgument unless 8 <= dimension <= 4096, 1 <= char_ngram_min <= char_ngram_max <= 8
  // and every weight is finite and non-negative.
  static Status Validate(const HashedEncoderOptions& options);
  // Validates, then constructs.
  static Result<HashedEncoder> Create(HashedEncoderOptions options);

  // Prefer Create(). An encoder built from invalid options returns Validate()'s error from
  // every EncodeBatch() call instead of encoding.
  explicit HashedEncoder(HashedEncoderOptions options = {});

  std::string Id() const override;  // "hashed-v1-d<dim>-c<min><max>"
  std::size_t Dimension() const override { return options_.dimension; }
  Status EncodeBatch(std::span<const std::string> texts, std::vector<Vector>* out) const override;

 private:
  HashedEncoderOptions options_;
  Status options_status_;  // Validate(options_)
};

}  // namespace mann::encode
