// Encoder: turns text into a dense vector for similarity search.
//
// Every implementation returns unit-length vectors (L2 norm 1), or the zero vector for text
// with no usable features (empty, only punctuation), so cosine similarity is a dot product.
// Id() names the encoder and every parameter that changes its output; vectors of different
// ids must never be compared or mixed in one index.
//
// Thread-safety: Encode() is safe to call concurrently on one instance.
#pragma once

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/status.h>

namespace mann::encode {

using Vector = std::vector<float>;

class Encoder {
 public:
  virtual ~Encoder() = default;

  // e.g. "hashed-v1-d256"; stored beside every vector.
  virtual std::string Id() const = 0;
  virtual std::size_t Dimension() const = 0;

  // Encodes each text; out->size() == texts.size() on success.
  virtual Status EncodeBatch(std::span<const std::string> texts,
                             std::vector<Vector>* out) const = 0;

  // Convenience for one text.
  Result<Vector> Encode(std::string_view text) const;
};

// Dot product of two vectors of equal length.
float Dot(std::span<const float> a, std::span<const float> b);

// Scales `v` to unit length in place; leaves the zero vector unchanged.
void NormalizeL2(std::span<float> v);

}  // namespace mann::encode
