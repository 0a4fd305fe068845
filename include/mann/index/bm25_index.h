// Bm25Index: an in-memory inverted index ranking documents by Okapi BM25.
//
// Scores are also reported *normalized per query* to [0, 1]:
//   normalized = min(1, bm25 / sum over unique query terms t of idf(t))
// with idf(t) = ln(1 + (N - df(t) + 0.5) / (df(t) + 0.5)), where a term absent from the index has
// df 0. The denominator is the score of a document of average length containing each query term
// once, so a query whose words the bank never saw scores low rather than being stretched to 1.
//
// Thread-safety: none; the owner serializes writers against readers (the memory bank holds a
// reader/writer lock). Const members may run concurrently with each other.
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <mann/index/scored.h>

namespace mann::index {

// Expected ranges: k1 >= 0, b in [0, 1]; values outside are clamped into them.
struct Bm25Params {
  float k1 = 1.2f;
  float b = 0.75f;
};

class Bm25Index {
 public:
  explicit Bm25Index(Bm25Params params = {});

  // Adds or replaces document `doc` with the given terms (duplicates count as term frequency).
  // Memory grows with the largest doc id, so ids should be dense (see scored.h).
  void Upsert(DocId doc, std::span<const std::string> terms);
  // Removes `doc`; no effect when absent.
  void Remove(DocId doc);
  bool Contains(DocId doc) const;
  std::size_t size() const;  // live documents

  // Top `limit` documents by raw BM25, best first, ties by lower doc id; only documents that
  // match at least one query term. A term repeated in the query counts once.
  std::vector<ScoredDoc> Search(std::span<const std::string> query_terms, std::size_t limit) const;

  // As Search(), with each score normalized as described above.
  std::vector<ScoredDoc> SearchNormalized(std::span<const std::string> query_terms,
                                          std::size_t limit) const;

  // The normalizing denominator for a query (0 for an empty query).
  float QueryNorm(std::span<const std::string> query_terms) const;

  void Clear();

 private:
  // Implementation is the implementer's choice; it must keep Search() proportional to the
  // postings of the query terms, not to the number of documents.
  struct Posting {
    DocId doc;
    std::uint32_t tf;
  };
  struct TermInfo {
    std::vector<Posting> postings;  // sorted by doc, one per live document containing the term
  };
  using TermMap = std::unordered_map<std::string, TermInfo>;
  // Map nodes keep their address until erased, and a term is erased only once no document
  // holds it, so documents may point at their terms' entries.
  using TermEntry = TermMap::value_type;
  static constexpr std::uint32_t kAbsent = static_cast<std::uint32_t>(-1);

  float Idf(std::size_t df) const;
  // Unique query terms, in first-seen order.
  static std::vector<std::string_view> UniqueTerms(std::span<const std::string> terms);
  // Raw BM25 of every live document matching a term, in no particular order.
  std::vector<ScoredDoc> ScoreAll(std::span<const std::string_view> terms) const;

  Bm25Params params_;
  TermMap terms_;
  std::vector<std::uint32_t> doc_length_;           // indexed by DocId; kAbsent = not live
  std::vector<std::vector<TermEntry*>> doc_terms_;  // unique terms per doc, for Remove()
  std::size_t live_docs_ = 0;
  std::uint64_t total_length_ = 0;
};

}  // namespace mann::index
