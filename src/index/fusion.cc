#include <algorithm>
#include <unordered_map>

#include <mann/index/fusion.h>

namespace mann::index {
namespace {

// Position of each document in the fused output, filled as the two lists are walked.
struct Merged {
  std::vector<FusedDoc> docs;
  std::vector<std::size_t> dense_rank;    // 1-based, 0 when absent
  std::vector<std::size_t> lexical_rank;  // 1-based, 0 when absent
};

// Collects the union of both lists. A document listed twice in one list keeps its first
// (best) position there, so malformed input cannot count twice.
Merged Merge(std::span<const ScoredDoc> dense, std::span<const ScoredDoc> lexical) {
  Merged m;
  std::unordered_map<DocId, std::size_t> slot;
  slot.reserve(dense.size() + lexical.size());
  auto slot_of = [&](DocId doc) {
    auto [it, inserted] = slot.try_emplace(doc, m.docs.size());
    if (inserted) {
      m.docs.push_back(FusedDoc{doc, 0.0f, 0.0f, 0.0f});
      m.dense_rank.push_back(0);
      m.lexical_rank.push_back(0);
    }
    return it->second;
  };
  for (std::size_t i = 0; i < dense.size(); ++i) {
    const std::size_t s = slot_of(dense[i].doc);
    if (m.dense_rank[s] != 0) continue;
    m.dense_rank[s] = i + 1;
    m.docs[s].dense = dense[i].score;
  }
  for (std::size_t i = 0; i < lexical.size(); ++i) {
    const std::size_t s = slot_of(lexical[i].doc);
    if (m.lexical_rank[s] != 0) continue;
    m.lexical_rank[s] = i + 1;
    m.docs[s].lexical = lexical[i].score;
  }
  return m;
}

void ScoreWeightedSum(Merged& m, const FusionOptions& o) {
  float lexical_weight = o.lexical_weight;
  if (o.lexical_confidence) {
    float best_lexical = 0.0f;
    for (const FusedDoc& d : m.docs) best_lexical = std::max(best_lexical, d.lexical);
    lexical_weight *= std::min(best_lexical, 1.0f);
  }
  for (FusedDoc& d : m.docs) {
    // A negative cosine means "unrelated", not "anti-relevant"; it must not cancel lexical.
    const float fused = o.dense_weight * std::max(0.0f, d.dense) + lexical_weight * d.lexical;
    // Weights summing to 1 keep this in [0, 1] already; the clamp holds the promise otherwise.
    d.score = std::clamp(fused, 0.0f, 1.0f);
  }
}

void ScoreReciprocalRank(Merged& m, const FusionOptions& o) {
  // Rank 1 in both lists scores (w_d + w_l) / (k + 1); dividing by it maps that to 1.
  const float best = (o.dense_weight + o.lexical_weight) / (o.rrf_k + 1.0f);
  for (std::size_t i = 0; i < m.docs.size(); ++i) {
    float raw = 0.0f;
    if (m.dense_rank[i] != 0) {
      raw += o.dense_weight / (o.rrf_k + static_cast<float>(m.dense_rank[i]));
    }
    if (m.lexical_rank[i] != 0) {
      raw += o.lexical_weight / (o.rrf_k + static_cast<float>(m.lexical_rank[i]));
    }
    m.docs[i].score = best > 0.0f ? std::clamp(raw / best, 0.0f, 1.0f) : 0.0f;
  }
}

}  // namespace

std::string_view FusionMethodName(FusionMethod m) {
  switch (m) {
    case FusionMethod::kWeightedSum:
      return "weighted_sum";
    case FusionMethod::kReciprocalRank:
      return "rrf";
  }
  return "unknown";
}

std::optional<FusionMethod> ParseFusionMethod(std::string_view name) {
  if (name == "weighted_sum") return FusionMethod::kWeightedSum;
  if (name == "rrf") return FusionMethod::kReciprocalRank;
  return std::nullopt;
}

std::vector<FusedDoc> Fuse(std::span<const ScoredDoc> dense, std::span<const ScoredDoc> lexical,
                           const FusionOptions& options) {
  Merged m = Merge(dense, lexical);
  switch (options.method) {
    case FusionMethod::kWeightedSum:
      ScoreWeightedSum(m, options);
      break;
    case FusionMethod::kReciprocalRank:
      ScoreReciprocalRank(m, options);
      break;
  }
  // The (score, doc) key is total over distinct docs, so the order does not depend on input order
  // or on the hash map.
  std::sort(m.docs.begin(), m.docs.end(), [](const FusedDoc& a, const FusedDoc& b) {
    return a.score > b.score || (a.score == b.score && a.doc < b.doc);
  });
  return std::move(m.docs);
}

}  // namespace mann::index
