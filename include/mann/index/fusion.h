// Fusion of a dense and a lexical ranking into one.
//
// Two methods, chosen by configuration and compared on the evaluation set (docs/benchmarks.md):
//  - kWeightedSum: score = dense_weight * max(0, dense) + lexical_weight * lexical, where both
//    inputs are already per-query normalized to [0, 1] (cosine for dense, Bm25Index's
//    normalized score for lexical). A document missing from one list contributes 0 there.
//    The fused score stays an absolute similarity in [0, 1], which `min_similarity` filters on.
//    With `lexical_confidence` (the default), the lexical weight is first multiplied by the best
//    lexical score of the query: how much of the query the closest wording covers. A query that
//    some document shares nearly all its words with is a lexical question and the lexical list
//    gets its full weight; a query that no document shares more than a common word with is a
//    paraphrase, where a shared word ("living" for "live", "City" in "Honda City") is weak
//    evidence and should not outvote the dense ranking. docs/benchmarks.md measures both.
//  - kReciprocalRank: score = sum of w / (rrf_k + rank) over the lists the document is in
//    (rank from 1). Scores are then rescaled so the best possible (rank 1 in both) is 1.
#pragma once

#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include <mann/index/scored.h>

namespace mann::index {

enum class FusionMethod { kWeightedSum, kReciprocalRank };

std::string_view FusionMethodName(FusionMethod m);  // "weighted_sum", "rrf"
std::optional<FusionMethod> ParseFusionMethod(std::string_view name);

struct FusionOptions {
  FusionMethod method = FusionMethod::kWeightedSum;
  float dense_weight = 0.5f;
  float lexical_weight = 0.5f;
  float rrf_k = 60.0f;
  bool lexical_confidence = true;  // weighted sum only
};

struct FusedDoc {
  DocId doc = 0;
  float score = 0.0f;    // fused, in [0, 1]
  float dense = 0.0f;    // input dense score, 0 when absent from that list
  float lexical = 0.0f;  // input lexical score, 0 when absent from that list
};

// Fuses two rankings (each best first); returns every document of either list, best first,
// ties by lower doc id.
std::vector<FusedDoc> Fuse(std::span<const ScoredDoc> dense, std::span<const ScoredDoc> lexical,
                           const FusionOptions& options);

}  // namespace mann::index
