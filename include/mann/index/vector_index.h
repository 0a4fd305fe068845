// FlatVectorIndex: exact top-k search by dot product over one contiguous float array.
//
// Vectors are expected to be unit length (see encode::Encoder), so the dot product is the
// cosine similarity. Rows live contiguously (row-major, `dimension` floats each) so a scan is
// one linear pass the compiler can vectorize; removal moves the last row into the hole.
//
// Thread-safety: none; the owner serializes writers against readers. Const members may run
// concurrently with each other.
#pragma once

#include <cstddef>
#include <span>
#include <vector>

#include <mann/index/scored.h>

namespace mann::index {

class FlatVectorIndex {
 public:
  explicit FlatVectorIndex(std::size_t dimension);

  std::size_t dimension() const { return dimension_; }
  std::size_t size() const { return row_doc_.size(); }

  // Adds or replaces the vector of `doc`. REQUIRES: v.size() == dimension().
  void Upsert(DocId doc, std::span<const float> v);
  void Remove(DocId doc);
  bool Contains(DocId doc) const;
  // The stored vector of `doc`, or an empty span.
  std::span<const float> Get(DocId doc) const;

  // The `k` highest dot products with `query`, best first, ties by lower doc id.
  // REQUIRES: query.size() == dimension().
  std::vector<ScoredDoc> TopK(std::span<const float> query, std::size_t k) const;

  void Clear();

 private:
  static constexpr std::size_t kNoRow = static_cast<std::size_t>(-1);
  std::size_t dimension_;
  std::vector<float> data_;           // row-major
  std::vector<DocId> row_doc_;        // row -> doc
  std::vector<std::size_t> doc_row_;  // doc -> row, kNoRow when absent
};

}  // namespace mann::index
