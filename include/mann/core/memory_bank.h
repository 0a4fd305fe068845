// MemoryBank: the long-term memory of mann, one bank of entries per namespace.
//
// The bank keeps every live entry of every namespace in memory, indexed twice: a BM25 inverted
// index over analysed terms and an exact dense index over encoder vectors. The Store is the
// durable truth: every change is committed through it before the call that made it returns, and
// Open() rebuilds the indexes from it.
//
// The *read head* (Search) scores each candidate by fusing dense cosine and normalized BM25,
// then weights by importance and recency, keeps the best `top_k`, and gives each an attention
// weight (a softmax over the kept scores, sharpened). Reads bump usage count and last access.
//
// The *write head* (Add) decides, for a new piece of information, between
//   NOOP   - the same content is already stored (same ContentKey), or cosine >= duplicate_threshold
//   UPDATE - a near-duplicate exists (cosine >= update_threshold): the new text is merged into it
//   DELETE - the text asks to forget something ("forget that I live in Hanoi") and a stored entry
//            matches it
//   ADD    - otherwise
// and records the decision in the entry's history. The cosine here measures wording: it is that
// of hashed n-gram vectors (default HashedEncoder), whatever the dense encoder, between the new
// text and the closest candidates of the dense and lexical indexes. A sentence encoder's cosine
// measures topic, and would merge different facts about one thing.
//
// Capacity: utilization = count / memory_size per namespace. A namespace never holds more than
// max_memory_capacity entries: an ADD at the limit first evicts the entry with the lowest
// importance / (1 + usage_count), least recently used first; each eviction is logged, counted
// and kept in history.
//
// Consistency: changes are applied in memory and queued to the store in one order under the
// bank's lock, then the caller waits for durability outside it (so concurrent writers share
// group commits). If a commit fails, the caller gets the error and the namespace is reloaded
// from the store, so memory never keeps a change the store refused.
//
// Thread-safety: every member is safe to call concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <mann/core/clock.h>
#include <mann/core/entry.h>
#include <mann/core/status.h>
#include <mann/encode/encoder.h>
#include <mann/encode/router.h>
#include <mann/index/fusion.h>
#include <mann/store/store.h>
#include <mann/text/analyzer.h>

namespace mann {

struct BankOptions {
  std::size_t memory_size = 1000;          // what utilization is measured against
  std::size_t max_memory_capacity = 5000;  // hard limit per namespace
  double update_threshold = 0.8;           // cosine at or above which new text merges
  double duplicate_threshold = 0.95;       // cosine at or above which new text is a NOOP
  double forget_threshold = 0.35;          // fused similarity a forget request needs to match
  index::FusionOptions fusion;
  double recency_half_life_days = 30.0;
  double recency_weight = 0.1;    // 0: recency ignored; 1: score fully decays with age
  double importance_boost = 0.1;  // score factor is 1 + boost * (importance - 1)
  double sharpening = 10.0;       // attention = softmax(sharpening * score)
  std::size_t max_content_bytes = 64 * 1024;
  std::size_t max_tags = 64;
  std::size_t max_tag_bytes = 128;
  std::size_t max_namespace_bytes = 128;
};

// Checks ranges and relations; InvalidArgument naming the option otherwise.
Status ValidateBankOptions(const BankOptions& options);

// Validates a namespace name: 1..max bytes of printable UTF-8, no control characters.
Status ValidateNamespace(std::string_view ns, std::size_t max_bytes = 128);

struct AddRequest {
  std::string ns{kDefaultNamespace};
  std::string content;
  std::string context;
  std::vector<std::string> tags;
  boost::json::object metadata;
  double importance = 1.0;
  std::string source = "api";
  // When false the write head is bypassed and the entry is always added (import).
  bool use_write_head = true;
};

struct WriteOutcome {
  WriteAction action = WriteAction::kNoop;
  std::string memory_id;    // the entry added, merged into, deleted, or matched (may be empty
                            // for a forget request that matched nothing)
  double similarity = 0.0;  // to the matched entry; 0 for ADD
  std::string reason;       // a few words: why this action
  std::vector<std::string> evicted_ids;
  std::int64_t version = 0;  // of memory_id after the write (0 when deleted or none)
};

struct UpdateRequest {
  std::string ns{kDefaultNamespace};
  std::string id;
  std::optional<std::string> content;
  std::optional<std::string> context;
  std::optional<std::vector<std::string>> tags;
  std::optional<boost::json::object> metadata;  // replaces the whole object
  std::optional<double> importance;
  std::string source = "api";
};

struct ListQuery {
  std::string ns{kDefaultNamespace};
  std::vector<std::string> tags;                     // every tag must be present
  std::optional<TimestampMs> created_from;           // inclusive
  std::optional<TimestampMs> created_until;          // exclusive
  std::optional<std::string> metadata_key;           // entries that have this top-level key
  std::optional<boost::json::value> metadata_value;  // ... with exactly this value
  std::size_t limit = 50;                            // 1..1000
  std::string cursor;                                // from a previous page; empty for the first
};

struct ListPage {
  std::vector<MemoryEntry> entries;  // newest first
  std::string next_cursor;           // empty on the last page
};

struct SearchRequest {
  std::string ns{kDefaultNamespace};
  std::string query;
  std::size_t top_k = 5;        // 1..50
  double min_similarity = 0.0;  // 0..1, applied to the fused similarity
  bool touch = true;            // bump usage count and last access of the results
};

struct SearchHit {
  MemoryEntry entry;      // as stored after this read's usage bump
  double similarity = 0;  // fused similarity in [0, 1]
  double score = 0;       // similarity weighted by importance and recency; the ranking key
  double attention = 0;   // softmax weight among the returned hits; they sum to 1
  double dense = 0;       // cosine of the query and entry vectors
  double lexical = 0;     // normalized BM25
};

struct Summary {
  double min = 0, mean = 0, max = 0;
};

struct NamespaceStats {
  std::string ns;
  std::size_t total_memories = 0;
  double utilization = 0;  // total / memory_size
  std::int64_t reads = 0;
  std::int64_t writes = 0;
  std::int64_t evictions = 0;
  Summary importance;
  Summary usage;
};

struct BankStats {
  NamespaceStats overall;  // ns "*": sums and whole-bank summaries; utilization is the highest
                           // namespace utilization, the one nearest its capacity limit
  std::vector<NamespaceStats> namespaces;  // sorted by name
  std::size_t memory_size = 0;
  std::size_t max_memory_capacity = 0;
  std::int64_t write_decisions[4] = {0, 0, 0, 0};  // by WriteAction, since start
};

struct OpenOptions {
  // Called after each batch while stored vectors are re-made: (done, total). Only during
  // Open(); it may capture objects that die once Open() returns.
  std::function<void(std::size_t done, std::size_t total)> progress;
  // Re-make every stored vector, not only those whose encoder or lexicon changed.
  bool reembed_all = false;
  // Store the re-made vectors. False while a stand-in encoder serves: the stored vectors stay
  // those of the configured encoder.
  bool write_back = true;
};

class MemoryBank {
 public:
  // Validates options and loads every stored entry. The router decides which encoder embeds
  // each entry (by its language); an entry whose stored vector came another way (another
  // encoder, another gloss lexicon) is re-embedded and written back, so an index never mixes
  // two encoders. The store, router, analyzer and clock must outlive the bank.
  static Result<std::unique_ptr<MemoryBank>> Open(const BankOptions& options, store::Store& store,
                                                  const encode::Router& router,
                                                  const text::Analyzer& analyzer,
                                                  const Clock& clock, OpenOptions open = {});

  // The same with one encoder for every language.
  static Result<std::unique_ptr<MemoryBank>> Open(const BankOptions& options, store::Store& store,
                                                  const encode::Encoder& encoder,
                                                  const text::Analyzer& analyzer,
                                                  const Clock& clock);
  ~MemoryBank();
  MemoryBank(const MemoryBank&) = delete;
  MemoryBank& operator=(const MemoryBank&) = delete;

  // The write head. InvalidArgument for bad input (empty content, importance outside [0, 3],
  // too long, bad tags or namespace); a store error otherwise.
  Result<WriteOutcome> Add(const AddRequest& request);

  // Puts back an entry exactly as it was exported: its id, times, usage count and version are
  // kept; the content-derived fields (hash, language, terms, vector) are recomputed, and content,
  // tags and importance are validated as Add validates them. The write head does not run.
  // AlreadyExists when an entry with that id is live in any namespace; ResourceExhausted when
  // the namespace is at max_memory_capacity (a restore never evicts).
  Result<WriteOutcome> Restore(MemoryEntry entry, const std::string& source = "import");

  // A new version of one entry; the previous one stays in history. NotFound for an unknown id.
  Result<WriteOutcome> Update(const UpdateRequest& request);

  // Removes an entry; its history stays. NotFound for an unknown id.
  Status Delete(const std::string& ns, const std::string& id, const std::string& source = "api");

  // Records that `source` considered the entry and decided to change nothing (a NOOP row in its
  // history, with `reason`); the entry itself stays as it is. NotFound for an unknown id.
  Status RecordNoop(const std::string& ns, const std::string& id, const std::string& source,
                    const std::string& reason);

  // Removes an entry and all its history for good. NotFound for an unknown id that also has no
  // history.
  Status Forget(const std::string& ns, const std::string& id);

  // One entry. A read: bumps usage count and last access unless touch is false.
  Result<MemoryEntry> Get(const std::string& ns, const std::string& id, bool touch = true);

  Result<ListPage> List(const ListQuery& query) const;

  Result<std::vector<HistoryRecord>> History(const std::string& ns, const std::string& id) const;

  // The read head.
  Result<std::vector<SearchHit>> Search(const SearchRequest& request);

  BankStats Stats() const;

  // Total live entries over all namespaces, cheap.
  std::size_t TotalCount() const;

  // Waits for queued bookkeeping (usage bumps, counters) to be durable.
  Status Flush();

  const BankOptions& options() const;
  const encode::Router& router() const;

  // How many stored vectors the opening load re-made.
  std::size_t reembedded_at_open() const;

  // --- Replicas: a store shared with other processes (see store::Change) ---

  // Applies changes other processes committed to the shared store, to memory only: nothing is
  // written to the store. An upsert inserts or replaces the entry in memory and in both indexes,
  // re-embedding it when its stored vector came another way than this bank's lane for its
  // text (another encoder or lexicon, as Open() does); a removal drops it. Applying a change
  // the bank already holds (its own write coming back) changes nothing; a stored version older
  // than the one in memory (this bank's own newer write, still committing) is skipped, since
  // that write's own change follows. Usage counts keep the higher of memory and store: reads
  // are bookkeeping each process keeps for itself. Returns the namespaces whose memory changed,
  // sorted. An encoder error returns before anything is applied.
  Result<std::vector<std::string>> ApplyReplicated(std::vector<store::Change> changes);

  // Rebuilds every namespace from the store, as Open() does: for a follower that fell behind
  // the change log's pruning, or after a failed reload (see NeedsReload()). The new state
  // replaces the served one only once the store was read in full; on failure memory keeps
  // serving what it held.
  Status Reload();

  // True when a commit failed and the reload that follows it failed as well (the store was
  // unreachable), so memory may differ from the store (it may hold the refused change, or miss
  // another replica's writes) until Reload() succeeds.
  bool NeedsReload() const;

  // The namespaces that memory held before a reload (Reload(), or the one after a failed
  // commit) and that the store no longer had, since the last call; each is named once. A full
  // reload's listeners invalidate what they keep for these as well as for every namespace
  // still held.
  std::vector<std::string> TakeNamespacesDroppedByReload();

 private:
  struct Impl;
  static Result<std::unique_ptr<MemoryBank>> OpenImpl(const BankOptions& options,
                                                      store::Store& store,
                                                      const encode::Router& router,
                                                      std::unique_ptr<encode::Router> owned_router,
                                                      const text::Analyzer& analyzer,
                                                      const Clock& clock, OpenOptions open);
  explicit MemoryBank(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace mann
