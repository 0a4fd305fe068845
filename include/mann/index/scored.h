// Scored document ids, shared by the lexical and dense indexes and by fusion.
#pragma once

#include <cstdint>

namespace mann::index {

// Index-local document number, assigned by the owner of the index (the memory bank uses one
// number per live entry of a namespace). Numbers may be reused after Remove().
using DocId = std::uint32_t;

struct ScoredDoc {
  DocId doc = 0;
  float score = 0.0f;
};

}  // namespace mann::index
