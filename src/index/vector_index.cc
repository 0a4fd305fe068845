#include <algorithm>
#include <cassert>
#include <cstring>

#include <mann/index/vector_index.h>

namespace mann::index {
namespace {

// Eight independent partial sums: without -ffast-math the compiler may not reorder a single
// running sum, but it can pack these fixed lanes into SIMD registers (SLP vectorization at -O2).
float Dot(const float* a, const float* b, std::size_t n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    for (std::size_t j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  float tail = 0.0f;
  for (; i < n; ++i) tail += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail;
}

// Best first, ties by lower doc id.
bool Better(const ScoredDoc& a, const ScoredDoc& b) {
  return a.score > b.score || (a.score == b.score && a.doc < b.doc);
}

}  // namespace

FlatVectorIndex::FlatVectorIndex(std::size_t dimension) : dimension_(dimension) {}

void FlatVectorIndex::Upsert(DocId doc, std::span<const float> v) {
  assert(v.size() == dimension_);
  // A wrong-sized vector in a release build is dropped rather than read out of bounds.
  if (v.size() != dimension_) return;

  if (doc >= doc_row_.size()) doc_row_.resize(static_cast<std::size_t>(doc) + 1, kNoRow);
  std::size_t row = doc_row_[doc];
  if (row == kNoRow) {
    row = row_doc_.size();
    row_doc_.push_back(doc);
    data_.resize(data_.size() + dimension_);
    doc_row_[doc] = row;
  }
  std::copy(v.begin(), v.end(), data_.begin() + static_cast<std::ptrdiff_t>(row * dimension_));
}

void FlatVectorIndex::Remove(DocId doc) {
  if (!Contains(doc)) return;
  const std::size_t row = doc_row_[doc];
  const std::size_t last = row_doc_.size() - 1;
  if (row != last) {
    std::memcpy(&data_[row * dimension_], &data_[last * dimension_], dimension_ * sizeof(float));
    const DocId moved = row_doc_[last];
    row_doc_[row] = moved;
    doc_row_[moved] = row;
  }
  row_doc_.pop_back();
  data_.resize(last * dimension_);
  doc_row_[doc] = kNoRow;
}

bool FlatVectorIndex::Contains(DocId doc) const {
  return doc < doc_row_.size() && doc_row_[doc] != kNoRow;
}

std::span<const float> FlatVectorIndex::Get(DocId doc) const {
  if (!Contains(doc)) return {};
  return {data_.data() + doc_row_[doc] * dimension_, dimension_};
}

std::vector<ScoredDoc> FlatVectorIndex::TopK(std::span<const float> query, std::size_t k) const {
  assert(query.size() == dimension_);
  if (query.size() != dimension_ || k == 0) return {};
  const std::size_t rows = row_doc_.size();
  k = std::min(k, rows);

  // A bounded heap whose front is the worst of the k best so far; most rows fail the single
  // comparison against it, so selection costs little next to the dot products.
  std::vector<ScoredDoc> heap;
  heap.reserve(k);
  const float* q = query.data();
  for (std::size_t row = 0; row < rows; ++row) {
    const ScoredDoc cand{row_doc_[row], Dot(data_.data() + row * dimension_, q, dimension_)};
    if (heap.size() < k) {
      heap.push_back(cand);
      std::push_heap(heap.begin(), heap.end(), Better);
    } else if (Better(cand, heap.front())) {
      std::pop_heap(heap.begin(), heap.end(), Better);
      heap.back() = cand;
      std::push_heap(heap.begin(), heap.end(), Better);
    }
  }
  std::sort_heap(heap.begin(), heap.end(), Better);
  return heap;
}

void FlatVectorIndex::Clear() {
  data_.clear();
  row_doc_.clear();
  doc_row_.clear();
}

}  // namespace mann::index
