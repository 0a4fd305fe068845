#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <shared_mutex>
#include <thread>
#include <unordered_map>

#include <fmt/format.h>

#include <mann/core/id.h>
#include <mann/core/log.h>
#include <mann/core/memory_bank.h>
#include <mann/core/shared_mutex.h>
#include <mann/core/write_head.h>
#include <mann/encode/hashed_encoder.h>
#include <mann/index/bm25_index.h>
#include <mann/index/vector_index.h>
#include <mann/text/analyzer.h>

namespace mann {
namespace {

using index::DocId;

constexpr double kMsPerDay = 86'400'000.0;
constexpr std::size_t kMaxTopK = 50;
constexpr std::size_t kMaxListLimit = 1000;
// How many candidates each index proposes per requested result: fusion and re-weighting can
// reorder them, so the final top k needs a deeper pool than k.
constexpr std::size_t kCandidateFactor = 5;
constexpr std::size_t kMinCandidates = 50;

struct Slot {
  MemoryEntry entry;
  std::vector<std::string> terms;
  const encode::Lane* lane = nullptr;  // how its vector was made; null when the slot is free
  bool live = false;
};

// The in-memory state of one namespace.
struct Space {
  Space(std::string n, std::span<const encode::Encoder* const> encoders) : name(std::move(n)) {
    vectors.reserve(encoders.size());
    for (const encode::Encoder* e : encoders) vectors.emplace_back(e->Dimension());
  }

  std::size_t count() const { return by_id.size(); }

  std::string name;
  std::vector<Slot> slots;  // by DocId
  std::vector<DocId> free_slots;
  std::map<std::string, DocId> by_id;                  // ordered: UUIDv7 ids sort by creation time
  std::unordered_multimap<std::string, DocId> by_key;  // content key -> docs
  index::Bm25Index bm25;
  std::vector<index::FlatVectorIndex> vectors;  // one per router space; an entry is in one
  std::int64_t reads = 0;
  std::int64_t writes = 0;
  std::int64_t evictions = 0;
};

// Every namespace's state by name. Spaces are heap-allocated so that pointers to them (the
// lexical loader's) stay valid while the map grows.
using SpaceMap = std::map<std::string, std::unique_ptr<Space>>;

// What a piece of text becomes before it enters the bank; computed outside the lock because
// analysis and encoding are the expensive part of a write.
struct Prepared {
  std::string content;
  std::string key;
  std::string language;
  std::vector<std::string> terms;
  const encode::Lane* lane = nullptr;
  encode::Vector embedding;
  encode::Vector surface;  // hashed n-grams, for the write head (NearestBySurface)
};

// A query's vector in each space it is searched in.
struct QueryVectors {
  std::vector<std::pair<std::size_t, encode::Vector>> by_space;
};

bool IsFinite(double v) { return std::isfinite(v); }

Status ValidateImportance(double importance) {
  if (!IsFinite(importance) || importance < kMinImportance || importance > kMaxImportance) {
    return InvalidArgumentError(fmt::format("importance_weight must lie in [{}, {}], got {}",
                                            kMinImportance, kMaxImportance, importance));
  }
  return Status::Ok();
}

Result<std::vector<std::string>> NormalizeTags(const std::vector<std::string>& tags,
                                               const BankOptions& options) {
  if (tags.size() > options.max_tags) {
    return InvalidArgumentError(
        fmt::format("tags: at most {} tags are allowed, got {}", options.max_tags, tags.size()));
  }
  std::vector<std::string> out;
  out.reserve(tags.size());
  for (const std::string& raw : tags) {
    std::string tag = text::NormalizeNfc(raw);
    if (tag.empty()) return InvalidArgumentError("tags: a tag must not be empty");
    if (tag.size() > options.max_tag_bytes) {
      return InvalidArgumentError(fmt::format("tags: a tag may be at most {} bytes, got {}",
                                              options.max_tag_bytes, tag.size()));
    }
    out.push_back(std::move(tag));
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

Result<std::string> NormalizeContent(std::string_view raw, const BankOptions& options) {
  if (raw.size() > options.max_content_bytes) {
    return InvalidArgumentError(fmt::format("content may be at most {} bytes, got {}",
                                            options.max_content_bytes, raw.size()));
  }
  std::string content = text::NormalizeNfc(raw);
  if (content.empty()) return InvalidArgumentError("content must not be empty");
  return content;
}

HistoryRecord MakeHistory(const MemoryEntry& e, HistoryAction action, TimestampMs at,
                          std::string source, std::string reason) {
  HistoryRecord h;
  h.entry_id = e.id;
  h.ns = e.ns;
  h.action = action;
  h.version = e.version;
  h.content = e.content;
  h.context = e.context;
  h.tags = e.tags;
  h.metadata = e.metadata;
  h.importance = e.importance;
  h.at_ms = at;
  h.source = std::move(source);
  h.reason = std::move(reason);
  return h;
}

Summary Summarize(const std::vector<double>& values) {
  Summary s;
  if (values.empty()) return s;
  s.min = *std::min_element(values.begin(), values.end());
  s.max = *std::max_element(values.begin(), values.end());
  double sum = 0;
  for (double v : values) sum += v;
  s.mean = sum / static_cast<double>(values.size());
  return s;
}

bool HasAllTags(const MemoryEntry& e, const std::vector<std::string>& wanted) {
  for (const std::string& t : wanted) {
    if (!std::binary_search(e.tags.begin(), e.tags.end(), t)) return false;
  }
  return true;
}

}  // namespace

Status ValidateNamespace(std::string_view ns, std::size_t max_bytes) {
  if (ns.empty()) return InvalidArgumentError("user_id (namespace) must not be empty");
  if (ns.size() > max_bytes) {
    return InvalidArgumentError(
        fmt::format("user_id (namespace) may be at most {} bytes, got {}", max_bytes, ns.size()));
  }
  if (!text::IsValidUtf8(ns)) return InvalidArgumentError("user_id (namespace) is not valid UTF-8");
  for (unsigned char c : ns) {
    if (c < 0x20 || c == 0x7f) {
      return InvalidArgumentError("user_id (namespace) must not contain control characters");
    }
  }
  return Status::Ok();
}

Status ValidateBankOptions(const BankOptions& o) {
  if (o.memory_size < 1) return InvalidArgumentError("memory_size must be at least 1");
  if (o.max_memory_capacity < o.memory_size) {
    return InvalidArgumentError(
        fmt::format("max_memory_capacity ({}) must be at least memory_size ({})",
                    o.max_memory_capacity, o.memory_size));
  }
  auto in_unit = [](double v) { return IsFinite(v) && v > 0.0 && v <= 1.0; };
  if (!in_unit(o.update_threshold)) {
    return InvalidArgumentError(
        fmt::format("update_threshold must lie in (0, 1], got {}", o.update_threshold));
  }
  if (!in_unit(o.duplicate_threshold) || o.duplicate_threshold < o.update_threshold) {
    return InvalidArgumentError(
        fmt::format("duplicate_threshold must lie in [update_threshold ({}), 1], got {}",
                    o.update_threshold, o.duplicate_threshold));
  }
  if (!in_unit(o.forget_threshold)) {
    return InvalidArgumentError(
        fmt::format("forget_threshold must lie in (0, 1], got {}", o.forget_threshold));
  }
  if (!IsFinite(o.recency_half_life_days) || o.recency_half_life_days <= 0) {
    return InvalidArgumentError("recency_half_life_days must be positive");
  }
  if (!IsFinite(o.recency_weight) || o.recency_weight < 0 || o.recency_weight > 1) {
    return InvalidArgumentError("recency_weight must lie in [0, 1]");
  }
  if (!IsFinite(o.importance_boost) || o.importance_boost < 0 || o.importance_boost > 1) {
    return InvalidArgumentError("importance_boost must lie in [0, 1]");
  }
  if (!IsFinite(o.sharpening) || o.sharpening <= 0) {
    return InvalidArgumentError("sharpening must be positive");
  }
  // Written as negations so NaN fails them too: a NaN weight would make every fused score NaN.
  if (!(o.fusion.dense_weight >= 0) || !(o.fusion.lexical_weight >= 0) ||
      !IsFinite(o.fusion.dense_weight + o.fusion.lexical_weight) ||
      o.fusion.dense_weight + o.fusion.lexical_weight <= 0) {
    return InvalidArgumentError("fusion weights must be finite, non-negative and not both zero");
  }
  if (!IsFinite(o.fusion.rrf_k) || o.fusion.rrf_k < 0) {
    return InvalidArgumentError(fmt::format("fusion rrf_k must be >= 0, got {}", o.fusion.rrf_k));
  }
  if (o.max_content_bytes < 1) return InvalidArgumentError("max_content_bytes must be positive");
  return Status::Ok();
}

// Builds BM25 indexes on a worker thread during start-up. The loading thread hands over
// (space, doc, terms); the worker owns every Space::bm25 until Finish(), after which the terms
// are moved back into their slots. Spaces are heap-allocated, so their addresses stay valid.
class LexicalLoader {
 public:
  struct Item {
    Space* space;
    DocId doc;
    std::vector<std::string> terms;
  };

  LexicalLoader() : worker_([this] { Run(); }) {}
  ~LexicalLoader() { Finish(); }

  void Add(Item item) {
    batch_.push_back(std::move(item));
    if (batch_.size() >= kBatch) Hand();
  }

  // Waits for the worker; returns every item, terms intact, for the caller to put back.
  std::vector<Item> Finish() {
    if (!worker_.joinable()) return {};
    Hand();
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    cv_.notify_all();
    worker_.join();
    return std::move(done_);
  }

 private:
  static constexpr std::size_t kBatch = 1024;

  void Hand() {
    if (batch_.empty()) return;
    {
      std::lock_guard lock(mu_);
      queue_.push_back(std::move(batch_));
    }
    batch_.clear();
    cv_.notify_one();
  }

  void Run() {
    for (;;) {
      std::vector<Item> work;
      {
        std::unique_lock lock(mu_);
        cv_.wait(lock, [&] { return closed_ || !queue_.empty(); });
        if (queue_.empty()) return;
        work = std::move(queue_.front());
        queue_.pop_front();
      }
      for (Item& item : work) {
        item.space->bm25.Upsert(item.doc, item.terms);
        done_.push_back(std::move(item));
      }
    }
  }

  std::vector<Item> batch_;  // loading thread only
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::vector<Item>> queue_;  // guarded by mu_
  bool closed_ = false;                  // guarded by mu_
  std::vector<Item> done_;               // worker only until joined
  std::thread worker_;
};

struct MemoryBank::Impl {
  Impl(const BankOptions& o, store::Store& s, const encode::Router& r, const text::Analyzer& a,
       const Clock& c, OpenOptions open)
      : options(o),
        store(s),
        router(r),
        analyzer(a),
        clock(c),
        open_options(std::move(open)),
        ids(c),
        log(log::Get("memory")) {}

  // --- preparation (no lock) ---------------------------------------------------------------

  Result<Prepared> Prepare(std::string content) const {
    Prepared p;
    p.content = std::move(content);
    p.key = text::ContentKey(p.content);
    const text::Language lang = text::DetectLanguage(p.content);
    p.language = std::string(text::LanguageCode(lang));
    p.terms = analyzer.Terms(p.content, lang);
    p.lane = &router.ForText(lang);
    MANN_ASSIGN_OR_RETURN(p.embedding, router.Embed(*p.lane, p.content));
    MANN_ASSIGN_OR_RETURN(p.surface, surface.Encode(p.content));
    return p;
  }

  // The stored entry whose wording is closest to `p`: candidates come from the dense and the
  // lexical index, and are compared by the cosine of their hashed n-gram vectors.
  //
  // The write head asks "is this the same fact, said again?", which is a question about
  // wording. A sentence encoder answers "is this about the same thing?": it puts "My sister
  // lives in Hanoi" at 0.80 of "I live in Hanoi", and two different drinks habits at 0.86
  // (docs/design/routing.md), so its cosine would merge distinct facts at the 0.8 threshold.
  // REQUIRES: mu held.
  struct Nearest {
    bool found = false;
    DocId doc = 0;
    double similarity = 0;
  };
  Nearest NearestBySurface(const Space& s, const Prepared& p) const {
    constexpr std::size_t kCandidates = 5;
    std::vector<DocId> candidates;
    for (const index::ScoredDoc& d : s.vectors[p.lane->space].TopK(p.embedding, kCandidates)) {
      candidates.push_back(d.doc);
    }
    for (const index::ScoredDoc& d : s.bm25.SearchNormalized(p.terms, kCandidates)) {
      candidates.push_back(d.doc);
    }
    Nearest best;
    for (DocId doc : candidates) {
      Result<encode::Vector> v = surface.Encode(s.slots[doc].entry.content);
      if (!v.ok()) continue;
      const double cosine = encode::Dot(p.surface, *v);
      if (!best.found || cosine > best.similarity ||
          (cosine == best.similarity && s.slots[doc].entry.id < s.slots[best.doc].entry.id)) {
        best = Nearest{true, doc, cosine};
      }
    }
    return best;
  }

  // The query's vector in every space that can read its language.
  Result<QueryVectors> EmbedQuery(std::string_view query, text::Language language) const {
    QueryVectors q;
    for (const encode::Lane* lane : router.ForQuery(language)) {
      MANN_ASSIGN_OR_RETURN(encode::Vector v, router.Embed(*lane, query));
      q.by_space.emplace_back(lane->space, std::move(v));
    }
    return q;
  }

  // --- in-memory state (REQUIRES: mu held exclusively) ---------------------------------------

  Space& SpaceFor(const std::string& ns) { return SpaceIn(spaces, ns); }

  // The space of `ns` in `map`, created empty when missing; `map` is the served one or one a
  // load is building.
  Space& SpaceIn(SpaceMap& map, const std::string& ns) const {
    auto it = map.find(ns);
    if (it == map.end()) it = map.emplace(ns, std::make_unique<Space>(ns, router.spaces())).first;
    return *it->second;
  }

  // Adds a live entry to every index of a served space `s`, and counts it in `total`.
  DocId Insert(Space& s, MemoryEntry entry, std::vector<std::string> terms,
               const encode::Lane& lane, std::span<const float> embedding) {
    const DocId doc = Place(s, std::move(entry), std::move(terms), lane, embedding, nullptr);
    total.fetch_add(1);
    return doc;
  }

  // Adds a live entry to every index of `s`, which may be a space a load is building (and so
  // not counted in `total` yet). With `lexical` null the terms go to the BM25 index
  // immediately; otherwise they are handed to that loader, which indexes them on its own thread.
  DocId Place(Space& s, MemoryEntry entry, std::vector<std::string> terms, const encode::Lane& lane,
              std::span<const float> embedding, LexicalLoader* lexical) {
    DocId doc;
    if (!s.free_slots.empty()) {
      doc = s.free_slots.back();
      s.free_slots.pop_back();
    } else {
      doc = static_cast<DocId>(s.slots.size());
      s.slots.emplace_back();
    }
    Slot& slot = s.slots[doc];
    s.by_id[entry.id] = doc;
    s.by_key.emplace(entry.content_hash, doc);
    s.vectors[lane.space].Upsert(doc, embedding);
    slot.entry = std::move(entry);
    slot.lane = &lane;
    slot.live = true;
    if (lexical == nullptr) {
      s.bm25.Upsert(doc, terms);
      slot.terms = std::move(terms);
    } else {
      lexical->Add({&s, doc, std::move(terms)});
    }
    return doc;
  }

  void FinishLexical(LexicalLoader& loader) {
    for (auto& item : loader.Finish()) item.space->slots[item.doc].terms = std::move(item.terms);
  }

  void EraseKey(Space& s, const std::string& key, DocId doc) {
    auto [lo, hi] = s.by_key.equal_range(key);
    for (auto it = lo; it != hi; ++it) {
      if (it->second == doc) {
        s.by_key.erase(it);
        return;
      }
    }
  }

  void RemoveDoc(Space& s, DocId doc) {
    Slot& slot = s.slots[doc];
    s.by_id.erase(slot.entry.id);
    EraseKey(s, slot.entry.content_hash, doc);
    s.bm25.Remove(doc);
    s.vectors[slot.lane->space].Remove(doc);
    slot = Slot{};
    s.free_slots.push_back(doc);
    total.fetch_sub(1);
  }

  // Replaces a live entry's content-derived parts and attributes.
  void Replace(Space& s, DocId doc, MemoryEntry entry, const Prepared* p) {
    Slot& slot = s.slots[doc];
    if (p != nullptr) {
      EraseKey(s, slot.entry.content_hash, doc);
      s.by_key.emplace(entry.content_hash, doc);
      s.bm25.Upsert(doc, p->terms);
      // New text may be in another language, and so belong in another space.
      if (slot.lane->space != p->lane->space) s.vectors[slot.lane->space].Remove(doc);
      s.vectors[p->lane->space].Upsert(doc, p->embedding);
      slot.lane = p->lane;
      slot.terms = p->terms;
    }
    slot.entry = std::move(entry);
  }

  store::StoredEntry ToStored(const Space& s, DocId doc) const {
    const Slot& slot = s.slots[doc];
    store::StoredEntry out;
    out.entry = slot.entry;
    out.terms = slot.terms;
    out.encoder_id = slot.lane->provenance;
    auto v = s.vectors[slot.lane->space].Get(doc);
    out.embedding.assign(v.begin(), v.end());
    return out;
  }

  // Puts the stored form of live entry `doc` into `m` as one write, and counts it.
  void NoteWrite(Space& s, DocId doc, store::Mutation& m) {
    m.upserts.push_back(ToStored(s, doc));
    m.counters.push_back({s.name, 0, 1, 0});
    ++s.writes;
  }

  const Slot* FindLive(const std::string& ns, const std::string& id, DocId* doc_out) const {
    auto sit = spaces.find(ns);
    if (sit == spaces.end()) return nullptr;
    auto it = sit->second->by_id.find(id);
    if (it == sit->second->by_id.end()) return nullptr;
    if (doc_out != nullptr) *doc_out = it->second;
    return &sit->second->slots[it->second];
  }

  // The entry the capacity policy removes first: lowest importance / (1 + usage), then least
  // recently used, then oldest id.
  DocId ChooseVictim(const Space& s) const {
    DocId best = 0;
    bool found = false;
    double best_value = 0;
    for (const auto& [id, doc] : s.by_id) {
      const MemoryEntry& e = s.slots[doc].entry;
      const double value = e.importance / (1.0 + static_cast<double>(e.usage_count));
      if (!found) {
        best = doc;
        best_value = value;
        found = true;
        continue;
      }
      const MemoryEntry& b = s.slots[best].entry;
      if (value < best_value ||
          (value == best_value && (e.last_access_ms < b.last_access_ms ||
                                   (e.last_access_ms == b.last_access_ms && e.id < b.id)))) {
        best = doc;
        best_value = value;
      }
    }
    return best;
  }

  // Evicts until one more entry fits, recording each eviction in `m`.
  void MakeRoom(Space& s, store::Mutation& m, WriteOutcome& outcome, TimestampMs now) {
    while (s.count() >= options.max_memory_capacity && s.count() > 0) {
      const DocId victim = ChooseVictim(s);
      const MemoryEntry& e = s.slots[victim].entry;
      const double value = e.importance / (1.0 + static_cast<double>(e.usage_count));
      std::string reason = fmt::format("capacity {} reached; lowest importance/(1+usage) = {:.3f}",
                                       options.max_memory_capacity, value);
      log->info("evicted memory ns={} id={} importance={} usage={} reason=\"{}\"", s.name, e.id,
                e.importance, e.usage_count, reason);
      m.history.push_back(MakeHistory(e, HistoryAction::kEvict, now, "capacity", reason));
      m.deletes.push_back(e.id);
      outcome.evicted_ids.push_back(e.id);
      ++s.evictions;
      m.counters.push_back({s.name, 0, 0, 1});
      RemoveDoc(s, victim);
    }
  }

  // --- durability -----------------------------------------------------------------------------

  // Waits for a mutation queued under the lock. On failure the in-memory state may hold a
  // change the store refused, so everything is reloaded from the store. When that reload fails
  // too (the store is still unreachable), memory keeps what it served, the refused change
  // included, and NeedsReload() says so until a later Reload() succeeds.
  Status AwaitCommit(std::future<Status> pending) {
    Status status = pending.get();
    if (status.ok()) return status;
    log->error("commit failed, reloading memory from the store: {}", status.ToString());
    std::unique_lock lock(mu);
    // Let every mutation queued behind the failed one settle first, so the reload sees them.
    store.Flush().IgnoreError();
    OpenOptions again;  // no progress display, nothing forced; the same write-back rule
    again.write_back = open_options.write_back;
    Status reload = LoadAllLocked(&again);
    if (!reload.ok()) {
      log->critical("reload after a failed commit failed, serving the previous memory: {}",
                    reload.ToString());
      needs_reload.store(true);
    }
    return status;
  }

  // The lane stored text of `e` belongs to.
  const encode::Lane& LaneOf(const MemoryEntry& e) const {
    return router.ForText(text::ParseLanguageCode(e.language));
  }

  // Rebuilds every namespace from the store. A stored vector is kept when it came through the
  // lane its text belongs to now; the others (another encoder, another lexicon, or all of them
  // with `reembed_all`) are re-made and written back. `progress` sees the re-embedding.
  //
  // The new state is built beside the served one and replaces it only once the store has been
  // read in full, so a failed load (the database went away mid-read) leaves memory as it was.
  // Readers wait on mu meanwhile, as they did for a load in place. A failed write-back of
  // re-embedded vectors is reported after the swap: memory then holds the store's entries, and
  // the next load re-embeds them again.
  // REQUIRES: mu held exclusively.
  Status LoadAllLocked(const OpenOptions* open = nullptr) {
    const bool reembed_all = open != nullptr && open->reembed_all;
    SpaceMap fresh;
    std::vector<store::StoredEntry> stale;  // entries whose vectors need re-embedding
    Status st;
    {
      // BM25 indexing is the largest part of a start-up; it runs on a second thread while this
      // one reads rows and fills the other indexes (bench/memory_bench.cc, BM_Startup). The
      // loader is finished before `fresh` can be dropped on failure.
      LexicalLoader lexical;
      st = store.Load([&](store::StoredEntry&& se) -> Status {
        if (se.terms.empty()) se.terms = analyzer.Terms(se.entry.content);
        const encode::Lane& lane = LaneOf(se.entry);
        if (reembed_all || se.encoder_id != lane.provenance ||
            se.embedding.size() != router.spaces()[lane.space]->Dimension()) {
          stale.push_back(std::move(se));
          return Status::Ok();
        }
        Space& s = SpaceIn(fresh, se.entry.ns);
        Place(s, std::move(se.entry), std::move(se.terms), lane, se.embedding, &lexical);
        return Status::Ok();
      });
      if (st.ok()) st = Reembed(fresh, stale, lexical, open);
      FinishLexical(lexical);
    }
    MANN_RETURN_IF_ERROR(st);

    MANN_ASSIGN_OR_RETURN(auto counters, store.Counters());
    for (const auto& c : counters) {
      Space& s = SpaceIn(fresh, c.ns);
      s.reads = c.reads;
      s.writes = c.writes;
      s.evictions = c.evictions;
    }

    // The store was read in full: serve what it holds, and note the namespaces it no longer
    // has (answers cached for them are stale too, and no listing names them any more).
    std::size_t count = 0;
    for (const auto& [name, space] : fresh) count += space->count();
    for (const auto& [name, space] : spaces) {
      if (!fresh.contains(name)) dropped_by_load.insert(name);
    }
    spaces.swap(fresh);
    total.store(count);
    reembedded.store(stale.size());

    // Write re-embedded vectors back in bounded batches so a later start is fast again.
    constexpr std::size_t kBatch = 500;
    const bool write_back = open == nullptr || open->write_back;
    for (std::size_t i = 0; write_back && i < stale.size(); i += kBatch) {
      store::Mutation m;
      for (std::size_t j = i; j < std::min(stale.size(), i + kBatch); ++j) {
        m.upserts.push_back(std::move(stale[j]));
      }
      MANN_RETURN_IF_ERROR(store.Commit(std::move(m)));
    }
    if (!stale.empty()) {
      log->info("re-embedded memories count={} encoders=\"{}\"", stale.size(), router.Describe());
    }
    return Status::Ok();
  }

  // Gives each stale entry a vector through the lane its text belongs to, in batches of one
  // lane each (the sentence encoder is faster on batches), and places it in `into`. `stale`
  // keeps the stored form with its new vector, for the write-back. REQUIRES: mu held
  // exclusively.
  Status Reembed(SpaceMap& into, std::vector<store::StoredEntry>& stale, LexicalLoader& lexical,
                 const OpenOptions* open) {
    if (stale.empty()) return Status::Ok();
    log->info("re-embedding memories count={} encoders=\"{}\"", stale.size(), router.Describe());
    std::map<const encode::Lane*, std::vector<std::size_t>> by_lane;
    for (std::size_t i = 0; i < stale.size(); ++i) by_lane[&LaneOf(stale[i].entry)].push_back(i);
    constexpr std::size_t kBatch = 32;
    std::size_t done = 0;
    for (const auto& [lane, members] : by_lane) {
      for (std::size_t b = 0; b < members.size(); b += kBatch) {
        const std::size_t e = std::min(members.size(), b + kBatch);
        std::vector<std::string> texts;
        for (std::size_t j = b; j < e; ++j) texts.push_back(stale[members[j]].entry.content);
        std::vector<encode::Vector> vectors;
        MANN_RETURN_IF_ERROR(router.EmbedBatch(*lane, texts, &vectors));
        for (std::size_t j = b; j < e; ++j) {
          store::StoredEntry& se = stale[members[j]];
          se.embedding = std::move(vectors[j - b]);
          se.encoder_id = lane->provenance;
          Place(SpaceIn(into, se.entry.ns), se.entry, se.terms, *lane, se.embedding, &lexical);
        }
        done += e - b;
        if (open != nullptr && open->progress) open->progress(done, stale.size());
      }
    }
    return Status::Ok();
  }

  // --- scoring --------------------------------------------------------------------------------

  double Weight(const MemoryEntry& e, TimestampMs now) const {
    const double importance_factor = 1.0 + options.importance_boost * (e.importance - 1.0);
    const TimestampMs last = std::max(e.last_access_ms, e.updated_ms);
    const double age_days = std::max(0.0, static_cast<double>(now - last) / kMsPerDay);
    const double decay = std::exp2(-age_days / options.recency_half_life_days);
    const double recency_factor = 1.0 - options.recency_weight + options.recency_weight * decay;
    return importance_factor * recency_factor;
  }

  // A ranked candidate; light to sort, the entry is copied only for the survivors.
  struct Candidate {
    DocId doc = 0;
    double similarity = 0;
    double score = 0;
    double dense = 0;
    double lexical = 0;
  };

  // Candidates for `query` in `s`, best first by score, at most `limit`. REQUIRES: mu held.
  std::vector<Candidate> Rank(const Space& s, const std::vector<std::string>& terms,
                              const QueryVectors& query, std::size_t limit, double min_similarity,
                              TimestampMs now) const {
    const std::size_t pool = std::max(limit * kCandidateFactor, kMinCandidates);
    // Every entry lives in one space, so the spaces' candidates never overlap; merged by cosine
    // they form one dense ranking.
    std::vector<index::ScoredDoc> dense;
    for (const auto& [space, embedding] : query.by_space) {
      const bool zero =
          std::all_of(embedding.begin(), embedding.end(), [](float x) { return x == 0.0f; });
      if (zero || s.vectors[space].size() == 0) continue;
      const std::vector<index::ScoredDoc> found = s.vectors[space].TopK(embedding, pool);
      dense.insert(dense.end(), found.begin(), found.end());
    }
    if (query.by_space.size() > 1) {
      std::sort(dense.begin(), dense.end(),
                [](const index::ScoredDoc& a, const index::ScoredDoc& b) {
                  return a.score > b.score || (a.score == b.score && a.doc < b.doc);
                });
      if (dense.size() > pool) dense.resize(pool);
    }
    const std::vector<index::ScoredDoc> lexical = s.bm25.SearchNormalized(terms, pool);
    const std::vector<index::FusedDoc> fused = index::Fuse(dense, lexical, options.fusion);

    std::vector<Candidate> out;
    out.reserve(fused.size());
    for (const index::FusedDoc& f : fused) {
      const double similarity = std::clamp(static_cast<double>(f.score), 0.0, 1.0);
      if (similarity <= 0.0 || similarity < min_similarity) continue;
      const double score = similarity * Weight(s.slots[f.doc].entry, now);
      out.push_back({f.doc, similarity, score, f.dense, f.lexical});
    }
    auto better = [&](const Candidate& a, const Candidate& b) {
      if (a.score != b.score) return a.score > b.score;
      return s.slots[a.doc].entry.id < s.slots[b.doc].entry.id;
    };
    if (out.size() > limit) {
      std::partial_sort(out.begin(), out.begin() + static_cast<std::ptrdiff_t>(limit), out.end(),
                        better);
      out.resize(limit);
    } else {
      std::sort(out.begin(), out.end(), better);
    }
    return out;
  }

  static SearchHit ToHit(const Space& s, const Candidate& c) {
    SearchHit h;
    h.entry = s.slots[c.doc].entry;
    h.similarity = c.similarity;
    h.score = c.score;
    h.dense = c.dense;
    h.lexical = c.lexical;
    return h;
  }

  void Attend(std::vector<SearchHit>& hits) const {
    if (hits.empty()) return;
    double max_logit = -std::numeric_limits<double>::infinity();
    for (const auto& h : hits) max_logit = std::max(max_logit, options.sharpening * h.score);
    double sum = 0;
    for (auto& h : hits) {
      h.attention = std::exp(options.sharpening * h.score - max_logit);
      sum += h.attention;
    }
    for (auto& h : hits) h.attention /= sum;
  }

  // --- write-head paths -----------------------------------------------------------------------

  Result<WriteOutcome> ForgetByText(const std::string& ns, const std::string& subject,
                                    const std::string& source) {
    const std::string normalized = text::NormalizeNfc(subject);
    // One language guess serves the analyser and the router.
    const text::Language language = text::DetectLanguage(normalized);
    MANN_ASSIGN_OR_RETURN(QueryVectors query, EmbedQuery(normalized, language));
    const std::vector<std::string> terms = analyzer.Terms(normalized, language);
    WriteOutcome outcome;
    outcome.action = WriteAction::kNoop;
    std::future<Status> pending;
    {
      std::unique_lock lock(mu);
      auto sit = spaces.find(ns);
      std::vector<Candidate> best;
      if (sit != spaces.end()) {
        best = Rank(*sit->second, terms, query, 1, 0.0, clock.NowMs());
      }
      if (best.empty() || best[0].similarity < options.forget_threshold) {
        outcome.reason = best.empty() ? "forget request matched no memory"
                                      : fmt::format(
                                            "forget request: best match similarity "
                                            "{:.2f} < {:.2f}",
                                            best[0].similarity, options.forget_threshold);
        decisions[static_cast<int>(WriteAction::kNoop)].fetch_add(1);
        return outcome;
      }
      Space& s = *sit->second;
      const DocId doc = best[0].doc;
      const MemoryEntry& e = s.slots[doc].entry;
      const TimestampMs now = clock.NowMs();
      outcome.action = WriteAction::kDelete;
      outcome.memory_id = e.id;
      outcome.similarity = best[0].similarity;
      outcome.reason = fmt::format("forget request matched with similarity {:.2f} >= {:.2f}",
                                   outcome.similarity, options.forget_threshold);
      store::Mutation m;
      m.history.push_back(MakeHistory(e, HistoryAction::kDelete, now, source, outcome.reason));
      m.deletes.push_back(e.id);
      m.counters.push_back({ns, 0, 1, 0});
      ++s.writes;
      RemoveDoc(s, doc);
      decisions[static_cast<int>(WriteAction::kDelete)].fetch_add(1);
      pending = store.Enqueue(std::move(m));
    }
    MANN_RETURN_IF_ERROR(AwaitCommit(std::move(pending)));
    return outcome;
  }

  // Merges new information into an existing entry (the UPDATE decision): the newer text wins,
  // tags are united, metadata keys of the new write override, importance keeps the higher.
  MemoryEntry Merge(const MemoryEntry& old, const AddRequest& r, const Prepared& p,
                    const std::vector<std::string>& tags, const std::string& context,
                    TimestampMs now) const {
    MemoryEntry e = old;
    e.content = p.content;
    e.content_hash = p.key;
    e.language = p.language;
    if (!context.empty()) e.context = context;
    std::vector<std::string> all = e.tags;
    all.insert(all.end(), tags.begin(), tags.end());
    std::sort(all.begin(), all.end());
    all.erase(std::unique(all.begin(), all.end()), all.end());
    e.tags = std::move(all);
    for (const auto& kv : r.metadata) e.metadata[kv.key()] = kv.value();
    e.importance = std::max(e.importance, r.importance);
    e.version += 1;
    e.updated_ms = now;
    return e;
  }

  // --- members --------------------------------------------------------------------------------

  const BankOptions options;
  store::Store& store;
  const encode::Router& router;
  std::unique_ptr<encode::Router> owned_router;  // set when the bank was opened on one encoder
  const text::Analyzer& analyzer;
  const Clock& clock;
  const OpenOptions open_options;
  std::atomic<std::size_t> reembedded{0};  // by the last load
  const encode::HashedEncoder surface;     // the write head's measure of wording
  IdGenerator ids;
  std::shared_ptr<spdlog::logger> log;

  mutable SharedMutex mu;
  std::map<std::string, std::unique_ptr<Space>> spaces;  // guarded by mu
  std::atomic<std::size_t> total{0};
  std::atomic<std::int64_t> decisions[4] = {0, 0, 0, 0};
  std::atomic<bool> needs_reload{false};  // a reload after a failed commit failed too
  std::set<std::string> dropped_by_load;  // guarded by mu; see TakeNamespacesDroppedByReload()

  // Read bookkeeping (usage bumps, read counters) waits here and reaches the store at most every
  // kBookkeepingInterval: a search-heavy load must not turn every read into a transaction, nor
  // queue reads ahead of acknowledged writes.
  void NoteReads(store::Mutation&& m) {
    std::lock_guard lock(pending_mu);
    for (auto& u : m.usage) pending_usage[u.entry_id] = std::move(u);
    for (const auto& c : m.counters) {
      auto& p = pending_counters[c.ns];
      p.ns = c.ns;
      p.reads += c.reads;
    }
  }

  // Hands pending bookkeeping to the store's queue.
  void DrainReads() {
    store::Mutation m;
    {
      std::lock_guard lock(pending_mu);
      if (pending_usage.empty() && pending_counters.empty()) return;
      m.usage.reserve(pending_usage.size());
      for (auto& [id, u] : pending_usage) m.usage.push_back(std::move(u));
      for (auto& [ns, c] : pending_counters) m.counters.push_back(std::move(c));
      pending_usage.clear();
      pending_counters.clear();
    }
    store.CommitLater(std::move(m));
  }

  void FlusherLoop() {
    std::unique_lock lock(flusher_mu);
    while (!stopping) {
      flusher_cv.wait_for(lock, kBookkeepingInterval, [&] { return stopping; });
      lock.unlock();
      DrainReads();
      lock.lock();
    }
  }

  void StopFlusher() {
    {
      std::lock_guard lock(flusher_mu);
      stopping = true;
    }
    flusher_cv.notify_all();
    if (flusher.joinable()) flusher.join();
  }

  static constexpr std::chrono::milliseconds kBookkeepingInterval{500};
  std::mutex pending_mu;
  std::unordered_map<std::string, store::UsageUpdate> pending_usage;  // guarded by pending_mu
  std::map<std::string, store::CounterDelta> pending_counters;        // guarded by pending_mu
  std::mutex flusher_mu;
  std::condition_variable flusher_cv;
  bool stopping = false;  // guarded by flusher_mu
  std::thread flusher;
};

// ------------------------------------------------------------------------------------------------

MemoryBank::MemoryBank(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
MemoryBank::~MemoryBank() {
  if (!impl_) return;
  impl_->StopFlusher();
  impl_->DrainReads();
  // Errors were logged by the store; a destructor has no one to report them to.
  impl_->store.Flush().IgnoreError();
}

Result<std::unique_ptr<MemoryBank>> MemoryBank::Open(const BankOptions& options,
                                                     store::Store& store,
                                                     const encode::Router& router,
                                                     const text::Analyzer& analyzer,
                                                     const Clock& clock, OpenOptions open) {
  return OpenImpl(options, store, router, nullptr, analyzer, clock, std::move(open));
}

Result<std::unique_ptr<MemoryBank>> MemoryBank::Open(const BankOptions& options,
                                                     store::Store& store,
                                                     const encode::Encoder& encoder,
                                                     const text::Analyzer& analyzer,
                                                     const Clock& clock) {
  std::unique_ptr<encode::Router> router = encode::Router::Single(encoder);
  const encode::Router& ref = *router;
  return OpenImpl(options, store, ref, std::move(router), analyzer, clock, OpenOptions{});
}

Result<std::unique_ptr<MemoryBank>> MemoryBank::OpenImpl(
    const BankOptions& options, store::Store& store, const encode::Router& router,
    std::unique_ptr<encode::Router> owned_router, const text::Analyzer& analyzer,
    const Clock& clock, OpenOptions open) {
  MANN_RETURN_IF_ERROR(ValidateBankOptions(options));
  auto impl = std::make_unique<Impl>(options, store, router, analyzer, clock, std::move(open));
  impl->owned_router = std::move(owned_router);
  {
    std::unique_lock lock(impl->mu);
    MANN_RETURN_IF_ERROR(impl->LoadAllLocked(&impl->open_options));
  }
  Impl* raw = impl.get();
  impl->flusher = std::thread([raw] { raw->FlusherLoop(); });
  return std::unique_ptr<MemoryBank>(new MemoryBank(std::move(impl)));
}

const BankOptions& MemoryBank::options() const { return impl_->options; }
const encode::Router& MemoryBank::router() const { return impl_->router; }
std::size_t MemoryBank::reembedded_at_open() const { return impl_->reembedded.load(); }

Result<WriteOutcome> MemoryBank::Add(const AddRequest& r) {
  Impl& im = *impl_;
  MANN_RETURN_IF_ERROR(ValidateNamespace(r.ns, im.options.max_namespace_bytes));
  MANN_RETURN_IF_ERROR(ValidateImportance(r.importance));
  MANN_ASSIGN_OR_RETURN(std::string content, NormalizeContent(r.content, im.options));
  MANN_ASSIGN_OR_RETURN(std::vector<std::string> tags, NormalizeTags(r.tags, im.options));
  if (r.context.size() > im.options.max_content_bytes) {
    return InvalidArgumentError(fmt::format("context may be at most {} bytes, got {}",
                                            im.options.max_content_bytes, r.context.size()));
  }
  const std::string context = text::NormalizeNfc(r.context);

  if (r.use_write_head) {
    if (auto subject = ParseForgetRequest(content))
      return im.ForgetByText(r.ns, *subject, r.source);
  }
  MANN_ASSIGN_OR_RETURN(Prepared p, im.Prepare(std::move(content)));

  WriteOutcome outcome;
  std::future<Status> pending;
  {
    std::unique_lock lock(im.mu);
    Space& s = im.SpaceFor(r.ns);
    const TimestampMs now = im.clock.NowMs();
    store::Mutation m;

    // Decide: exact duplicate, near duplicate, or new.
    std::optional<DocId> match;
    double similarity = 0;
    if (r.use_write_head) {
      auto exact = s.by_key.find(p.key);
      if (exact != s.by_key.end()) {
        match = exact->second;
        similarity = 1.0;
        outcome.action = WriteAction::kNoop;
        outcome.reason = "same content already stored";
      } else {
        const Impl::Nearest nearest = im.NearestBySurface(s, p);
        if (nearest.found && nearest.similarity >= im.options.update_threshold) {
          match = nearest.doc;
          similarity = nearest.similarity;
          const bool dup = similarity >= im.options.duplicate_threshold;
          outcome.action = dup ? WriteAction::kNoop : WriteAction::kUpdate;
          outcome.reason = fmt::format(
              "similarity {:.3f} >= {} threshold {:.2f}", similarity, dup ? "duplicate" : "update",
              dup ? im.options.duplicate_threshold : im.options.update_threshold);
        }
      }
    }

    if (match && outcome.action == WriteAction::kNoop) {
      const MemoryEntry& e = s.slots[*match].entry;
      outcome.memory_id = e.id;
      outcome.similarity = similarity;
      outcome.version = e.version;
      m.history.push_back(MakeHistory(e, HistoryAction::kNoop, now, r.source, outcome.reason));
    } else if (match) {
      MemoryEntry merged = im.Merge(s.slots[*match].entry, r, p, tags, context, now);
      outcome.memory_id = merged.id;
      outcome.similarity = similarity;
      outcome.version = merged.version;
      m.history.push_back(
          MakeHistory(merged, HistoryAction::kUpdate, now, "write_head", outcome.reason));
      im.Replace(s, *match, std::move(merged), &p);
      im.NoteWrite(s, *match, m);
    } else {
      outcome.action = WriteAction::kAdd;
      if (outcome.reason.empty()) {
        outcome.reason = r.use_write_head ? "no similar memory" : "write head bypassed";
      }
      im.MakeRoom(s, m, outcome, now);
      MemoryEntry e;
      e.id = im.ids.Next();
      e.ns = r.ns;
      e.content = p.content;
      e.context = context;
      e.tags = tags;
      e.metadata = r.metadata;
      e.importance = r.importance;
      e.last_access_ms = now;
      e.created_ms = now;
      e.updated_ms = now;
      e.version = 1;
      e.content_hash = p.key;
      e.language = p.language;
      outcome.memory_id = e.id;
      outcome.version = 1;
      m.history.push_back(MakeHistory(e, HistoryAction::kCreate, now, r.source, outcome.reason));
      im.NoteWrite(s, im.Insert(s, std::move(e), std::move(p.terms), *p.lane, p.embedding), m);
    }
    im.decisions[static_cast<int>(outcome.action)].fetch_add(1);
    pending = im.store.Enqueue(std::move(m));
  }
  MANN_RETURN_IF_ERROR(im.AwaitCommit(std::move(pending)));
  return outcome;
}

Result<WriteOutcome> MemoryBank::Restore(MemoryEntry e, const std::string& source) {
  Impl& im = *impl_;
  if (!IsUuid(e.id)) return InvalidArgumentError("id must be a UUID, got \"" + e.id + "\"");
  MANN_RETURN_IF_ERROR(ValidateNamespace(e.ns, im.options.max_namespace_bytes));
  MANN_RETURN_IF_ERROR(ValidateImportance(e.importance));
  MANN_ASSIGN_OR_RETURN(std::string content, NormalizeContent(e.content, im.options));
  MANN_ASSIGN_OR_RETURN(e.tags, NormalizeTags(e.tags, im.options));
  if (e.context.size() > im.options.max_content_bytes) {
    return InvalidArgumentError(fmt::format("context may be at most {} bytes, got {}",
                                            im.options.max_content_bytes, e.context.size()));
  }
  if (e.version < 1 || e.usage_count < 0) {
    return InvalidArgumentError("version must be at least 1 and usage_count not negative");
  }
  e.context = text::NormalizeNfc(e.context);
  MANN_ASSIGN_OR_RETURN(Prepared p, im.Prepare(std::move(content)));
  e.content = p.content;
  e.content_hash = p.key;
  e.language = p.language;
  const TimestampMs now = im.clock.NowMs();
  if (e.created_ms == 0) e.created_ms = now;
  if (e.updated_ms == 0) e.updated_ms = e.created_ms;
  if (e.last_access_ms == 0) e.last_access_ms = e.updated_ms;

  WriteOutcome outcome;
  outcome.action = WriteAction::kAdd;
  outcome.memory_id = e.id;
  outcome.version = e.version;
  outcome.reason = "restored with its original id";
  std::future<Status> pending;
  {
    std::unique_lock lock(im.mu);
    // Ids are unique across namespaces (they are the store's primary key).
    for (const auto& [name, space] : im.spaces) {
      if (space->by_id.count(e.id) != 0) {
        return AlreadyExistsError("memory " + e.id + " already exists");
      }
    }
    Space& s = im.SpaceFor(e.ns);
    if (s.count() >= im.options.max_memory_capacity) {
      return ResourceExhaustedError(fmt::format(
          "namespace {} holds max_memory_capacity={} memories; raise it to restore more", e.ns,
          im.options.max_memory_capacity));
    }
    store::Mutation m;
    m.history.push_back(MakeHistory(e, HistoryAction::kCreate, now, source, outcome.reason));
    im.NoteWrite(s, im.Insert(s, std::move(e), std::move(p.terms), *p.lane, p.embedding), m);
    pending = im.store.Enqueue(std::move(m));
  }
  MANN_RETURN_IF_ERROR(im.AwaitCommit(std::move(pending)));
  return outcome;
}

Result<WriteOutcome> MemoryBank::Update(const UpdateRequest& r) {
  Impl& im = *impl_;
  MANN_RETURN_IF_ERROR(ValidateNamespace(r.ns, im.options.max_namespace_bytes));
  if (!r.content && !r.context && !r.tags && !r.metadata && !r.importance) {
    return InvalidArgumentError(
        "nothing to update: give at least one of content, context, tags, metadata, "
        "importance_weight");
  }
  if (r.importance) MANN_RETURN_IF_ERROR(ValidateImportance(*r.importance));
  std::optional<Prepared> prepared;
  if (r.content) {
    MANN_ASSIGN_OR_RETURN(std::string content, NormalizeContent(*r.content, im.options));
    MANN_ASSIGN_OR_RETURN(prepared, im.Prepare(std::move(content)));
  }
  std::optional<std::vector<std::string>> tags;
  if (r.tags) {
    MANN_ASSIGN_OR_RETURN(tags, NormalizeTags(*r.tags, im.options));
  }
  if (r.context && r.context->size() > im.options.max_content_bytes) {
    return InvalidArgumentError(fmt::format("context may be at most {} bytes, got {}",
                                            im.options.max_content_bytes, r.context->size()));
  }

  WriteOutcome outcome;
  outcome.action = WriteAction::kUpdate;
  std::future<Status> pending;
  {
    std::unique_lock lock(im.mu);
    DocId doc;
    const Slot* slot = im.FindLive(r.ns, r.id, &doc);
    if (slot == nullptr) return NotFoundError("memory " + r.id + " not found");
    Space& s = *im.spaces.at(r.ns);
    const TimestampMs now = im.clock.NowMs();
    MemoryEntry e = slot->entry;
    if (prepared) {
      e.content = prepared->content;
      e.content_hash = prepared->key;
      e.language = prepared->language;
    }
    if (r.context) e.context = text::NormalizeNfc(*r.context);
    if (tags) e.tags = *tags;
    if (r.metadata) e.metadata = *r.metadata;
    if (r.importance) e.importance = *r.importance;
    e.version += 1;
    e.updated_ms = now;
    outcome.memory_id = e.id;
    outcome.version = e.version;
    outcome.reason = "explicit update";

    store::Mutation m;
    m.history.push_back(MakeHistory(e, HistoryAction::kUpdate, now, r.source, outcome.reason));
    im.Replace(s, doc, std::move(e), prepared ? &*prepared : nullptr);
    im.NoteWrite(s, doc, m);
    pending = im.store.Enqueue(std::move(m));
  }
  MANN_RETURN_IF_ERROR(im.AwaitCommit(std::move(pending)));
  return outcome;
}

Status MemoryBank::Delete(const std::string& ns, const std::string& id, const std::string& source) {
  Impl& im = *impl_;
  MANN_RETURN_IF_ERROR(ValidateNamespace(ns, im.options.max_namespace_bytes));
  std::future<Status> pending;
  {
    std::unique_lock lock(im.mu);
    DocId doc;
    const Slot* slot = im.FindLive(ns, id, &doc);
    if (slot == nullptr) return NotFoundError("memory " + id + " not found");
    Space& s = *im.spaces.at(ns);
    store::Mutation m;
    m.history.push_back(
        MakeHistory(slot->entry, HistoryAction::kDelete, im.clock.NowMs(), source, "deleted"));
    m.deletes.push_back(id);
    m.counters.push_back({ns, 0, 1, 0});
    ++s.writes;
    im.RemoveDoc(s, doc);
    pending = im.store.Enqueue(std::move(m));
  }
  return im.AwaitCommit(std::move(pending));
}

Status MemoryBank::RecordNoop(const std::string& ns, const std::string& id,
                              const std::string& source, const std::string& reason) {
  Impl& im = *impl_;
  MANN_RETURN_IF_ERROR(ValidateNamespace(ns, im.options.max_namespace_bytes));
  std::future<Status> pending;
  {
    std::unique_lock lock(im.mu);
    const Slot* slot = im.FindLive(ns, id, nullptr);
    if (slot == nullptr) return NotFoundError("memory " + id + " not found");
    store::Mutation m;
    m.history.push_back(
        MakeHistory(slot->entry, HistoryAction::kNoop, im.clock.NowMs(), source, reason));
    pending = im.store.Enqueue(std::move(m));
  }
  return im.AwaitCommit(std::move(pending));
}

Status MemoryBank::Forget(const std::string& ns, const std::string& id) {
  Impl& im = *impl_;
  MANN_RETURN_IF_ERROR(ValidateNamespace(ns, im.options.max_namespace_bytes));
  std::future<Status> pending;
  {
    std::unique_lock lock(im.mu);
    DocId doc;
    const Slot* slot = im.FindLive(ns, id, &doc);
    if (slot == nullptr) {
      // A deleted entry can still be forgotten: that purges its history.
      MANN_ASSIGN_OR_RETURN(auto history, im.store.History(ns, id));
      if (history.empty()) return NotFoundError("memory " + id + " not found");
    } else {
      im.RemoveDoc(*im.spaces.at(ns), doc);
    }
    // Counted in memory as in the store, whether the entry was live or only had history.
    ++im.SpaceFor(ns).writes;
    store::Mutation m;
    m.forgets.push_back(id);
    m.counters.push_back({ns, 0, 1, 0});
    pending = im.store.Enqueue(std::move(m));
  }
  return im.AwaitCommit(std::move(pending));
}

Result<MemoryEntry> MemoryBank::Get(const std::string& ns, const std::string& id, bool touch) {
  Impl& im = *impl_;
  MANN_RETURN_IF_ERROR(ValidateNamespace(ns, im.options.max_namespace_bytes));
  if (!touch) {
    std::shared_lock lock(im.mu);
    const Slot* slot = im.FindLive(ns, id, nullptr);
    if (slot == nullptr) return NotFoundError("memory " + id + " not found");
    return slot->entry;
  }
  MemoryEntry out;
  store::Mutation m;
  {
    std::unique_lock lock(im.mu);
    DocId doc;
    const Slot* slot = im.FindLive(ns, id, &doc);
    if (slot == nullptr) return NotFoundError("memory " + id + " not found");
    Space& s = *im.spaces.at(ns);
    MemoryEntry& e = s.slots[doc].entry;
    e.usage_count += 1;
    e.last_access_ms = im.clock.NowMs();
    ++s.reads;
    m.usage.push_back({e.id, e.usage_count, e.last_access_ms});
    m.counters.push_back({ns, 1, 0, 0});
    out = e;
  }
  im.NoteReads(std::move(m));
  return out;
}

Result<ListPage> MemoryBank::List(const ListQuery& q) const {
  const Impl& im = *impl_;
  MANN_RETURN_IF_ERROR(ValidateNamespace(q.ns, im.options.max_namespace_bytes));
  if (q.limit < 1 || q.limit > kMaxListLimit) {
    return InvalidArgumentError(
        fmt::format("limit must lie in [1, {}], got {}", kMaxListLimit, q.limit));
  }
  if (!q.cursor.empty() && !IsUuid(q.cursor)) {
    return InvalidArgumentError("cursor is not valid: pass the next_cursor of a previous page");
  }
  if (q.metadata_value && !q.metadata_key) {
    return InvalidArgumentError("metadata_value needs metadata_key");
  }
  MANN_ASSIGN_OR_RETURN(std::vector<std::string> tags, NormalizeTags(q.tags, im.options));

  ListPage page;
  std::shared_lock lock(im.mu);
  auto sit = im.spaces.find(q.ns);
  if (sit == im.spaces.end()) return page;
  const Space& s = *sit->second;

  // Newest first: walk ids downwards from just below the cursor.
  auto it = q.cursor.empty() ? s.by_id.end() : s.by_id.lower_bound(q.cursor);
  while (it != s.by_id.begin()) {
    --it;
    const MemoryEntry& e = s.slots[it->second].entry;
    if (q.created_from && e.created_ms < *q.created_from) continue;
    if (q.created_until && e.created_ms >= *q.created_until) continue;
    if (!HasAllTags(e, tags)) continue;
    if (q.metadata_key) {
      const auto* v = e.metadata.if_contains(*q.metadata_key);
      if (v == nullptr) continue;
      if (q.metadata_value && *v != *q.metadata_value) continue;
    }
    if (page.entries.size() == q.limit) {
      page.next_cursor = page.entries.back().id;
      break;
    }
    page.entries.push_back(e);
  }
  return page;
}

Result<std::vector<HistoryRecord>> MemoryBank::History(const std::string& ns,
                                                       const std::string& id) const {
  MANN_RETURN_IF_ERROR(ValidateNamespace(ns, impl_->options.max_namespace_bytes));
  MANN_ASSIGN_OR_RETURN(auto history, impl_->store.History(ns, id));
  if (history.empty()) return NotFoundError("memory " + id + " has no history");
  return history;
}

Result<std::vector<SearchHit>> MemoryBank::Search(const SearchRequest& r) {
  Impl& im = *impl_;
  MANN_RETURN_IF_ERROR(ValidateNamespace(r.ns, im.options.max_namespace_bytes));
  if (r.top_k < 1 || r.top_k > kMaxTopK) {
    return InvalidArgumentError(
        fmt::format("top_k must lie in [1, {}], got {}", kMaxTopK, r.top_k));
  }
  if (!IsFinite(r.min_similarity) || r.min_similarity < 0 || r.min_similarity > 1) {
    return InvalidArgumentError(
        fmt::format("min_similarity must lie in [0, 1], got {}", r.min_similarity));
  }
  if (r.query.size() > im.options.max_content_bytes) {
    return InvalidArgumentError(fmt::format("query may be at most {} bytes, got {}",
                                            im.options.max_content_bytes, r.query.size()));
  }
  const std::string query = text::NormalizeNfc(r.query);
  if (query.empty()) return InvalidArgumentError("query must not be empty");
  // One language guess serves the analyser and the router.
  const text::Language language = text::DetectLanguage(query);
  const std::vector<std::string> terms = im.analyzer.Terms(query, language);
  MANN_ASSIGN_OR_RETURN(QueryVectors embedding, im.EmbedQuery(query, language));

  std::vector<SearchHit> hits;
  {
    std::shared_lock lock(im.mu);
    auto sit = im.spaces.find(r.ns);
    if (sit == im.spaces.end()) return hits;
    const Space& s = *sit->second;
    const auto ranked = im.Rank(s, terms, embedding, r.top_k, r.min_similarity, im.clock.NowMs());
    hits.reserve(ranked.size());
    for (const auto& c : ranked) hits.push_back(Impl::ToHit(s, c));
  }

  if (r.touch && !hits.empty()) {
    store::Mutation m;
    {
      std::unique_lock lock(im.mu);
      auto sit = im.spaces.find(r.ns);
      if (sit != im.spaces.end()) {
        Space& s = *sit->second;
        const TimestampMs now = im.clock.NowMs();
        for (SearchHit& hit : hits) {
          auto it = s.by_id.find(hit.entry.id);
          if (it == s.by_id.end()) continue;  // removed since the ranking
          MemoryEntry& e = s.slots[it->second].entry;
          e.usage_count += 1;
          e.last_access_ms = now;
          hit.entry.usage_count = e.usage_count;
          hit.entry.last_access_ms = now;
          m.usage.push_back({e.id, e.usage_count, now});
        }
        ++s.reads;
        m.counters.push_back({r.ns, 1, 0, 0});
      }
    }
    im.NoteReads(std::move(m));
  }

  im.Attend(hits);
  return hits;
}

BankStats MemoryBank::Stats() const {
  const Impl& im = *impl_;
  BankStats out;
  out.memory_size = im.options.memory_size;
  out.max_memory_capacity = im.options.max_memory_capacity;
  for (int i = 0; i < 4; ++i) out.write_decisions[i] = im.decisions[i].load();
  out.overall.ns = "*";

  std::vector<double> all_importance, all_usage;
  std::shared_lock lock(im.mu);
  for (const auto& [name, space] : im.spaces) {
    NamespaceStats ns;
    ns.ns = name;
    ns.total_memories = space->count();
    ns.utilization =
        static_cast<double>(ns.total_memories) / static_cast<double>(im.options.memory_size);
    ns.reads = space->reads;
    ns.writes = space->writes;
    ns.evictions = space->evictions;
    std::vector<double> importance, usage;
    importance.reserve(ns.total_memories);
    usage.reserve(ns.total_memories);
    for (const auto& [id, doc] : space->by_id) {
      importance.push_back(space->slots[doc].entry.importance);
      usage.push_back(static_cast<double>(space->slots[doc].entry.usage_count));
    }
    ns.importance = Summarize(importance);
    ns.usage = Summarize(usage);
    all_importance.insert(all_importance.end(), importance.begin(), importance.end());
    all_usage.insert(all_usage.end(), usage.begin(), usage.end());

    out.overall.total_memories += ns.total_memories;
    out.overall.utilization = std::max(out.overall.utilization, ns.utilization);
    out.overall.reads += ns.reads;
    out.overall.writes += ns.writes;
    out.overall.evictions += ns.evictions;
    out.namespaces.push_back(std::move(ns));
  }
  out.overall.importance = Summarize(all_importance);
  out.overall.usage = Summarize(all_usage);
  return out;
}

std::size_t MemoryBank::TotalCount() const { return impl_->total.load(); }

Status MemoryBank::Flush() {
  impl_->DrainReads();
  return impl_->store.Flush();
}

// --- replicas -----------------------------------------------------------------------------------

namespace {

// Whether two versions of one entry differ in what List, Get and Search show (usage aside).
bool SameAttributes(const MemoryEntry& a, const MemoryEntry& b) {
  return a.version == b.version && a.updated_ms == b.updated_ms &&
         a.content_hash == b.content_hash && a.context == b.context && a.tags == b.tags &&
         a.metadata == b.metadata && a.importance == b.importance;
}

}  // namespace

Result<std::vector<std::string>> MemoryBank::ApplyReplicated(std::vector<store::Change> changes) {
  Impl& im = *impl_;

  // Step 1, without the lock: every upsert gets its terms and a vector through this bank's lane,
  // since analysis and encoding are the expensive part.
  for (store::Change& c : changes) {
    if (c.removed || !c.entry) continue;
    store::StoredEntry& se = *c.entry;
    if (se.terms.empty()) se.terms = im.analyzer.Terms(se.entry.content);
    const encode::Lane& lane = im.LaneOf(se.entry);
    if (se.encoder_id != lane.provenance ||
        se.embedding.size() != im.router.spaces()[lane.space]->Dimension()) {
      MANN_ASSIGN_OR_RETURN(se.embedding, im.router.Embed(lane, se.entry.content));
      se.encoder_id = lane.provenance;
    }
  }

  // Step 2: apply in log order under the lock.
  std::vector<std::string> touched;
  std::unique_lock lock(im.mu);
  for (store::Change& c : changes) {
    DocId doc = 0;
    const Slot* live = im.FindLive(c.ns, c.entry_id, &doc);
    if (c.removed || !c.entry) {
      if (live == nullptr) continue;  // never had it, or this bank removed it itself
      im.RemoveDoc(*im.spaces.at(c.ns), doc);
      touched.push_back(c.ns);
      continue;
    }

    store::StoredEntry& se = *c.entry;
    MemoryEntry& incoming = se.entry;
    const encode::Lane& lane = im.LaneOf(incoming);
    if (live == nullptr) {
      Space& s = im.SpaceFor(incoming.ns);
      touched.push_back(incoming.ns);
      im.Insert(s, std::move(incoming), std::move(se.terms), lane, se.embedding);
      continue;
    }

    const MemoryEntry& have = live->entry;
    if (have.version > incoming.version) continue;
    incoming.usage_count = std::max(incoming.usage_count, have.usage_count);
    incoming.last_access_ms = std::max(incoming.last_access_ms, have.last_access_ms);
    Space& s = *im.spaces.at(c.ns);
    if (have.content_hash == incoming.content_hash && live->lane == &lane &&
        SameAttributes(have, incoming)) {
      s.slots[doc].entry = std::move(incoming);  // an echo of what memory holds: usage only
      continue;
    }
    Prepared p;
    p.key = incoming.content_hash;
    p.language = incoming.language;
    p.terms = std::move(se.terms);
    p.lane = &lane;
    p.embedding = std::move(se.embedding);
    touched.push_back(c.ns);
    im.Replace(s, doc, std::move(incoming), &p);
  }
  lock.unlock();

  std::sort(touched.begin(), touched.end());
  touched.erase(std::unique(touched.begin(), touched.end()), touched.end());
  return touched;
}

Status MemoryBank::Reload() {
  Impl& im = *impl_;
  std::unique_lock lock(im.mu);
  OpenOptions again;  // no progress display, nothing forced; the same write-back rule
  again.write_back = im.open_options.write_back;
  if (Status loaded = im.LoadAllLocked(&again); !loaded.ok()) {
    // Memory still serves what it held; a later Reload() brings the store's state.
    im.needs_reload.store(true);
    return loaded;
  }
  im.needs_reload.store(false);
  im.log->info("memory reloaded from the store memories={}", im.total.load());
  return Status::Ok();
}

bool MemoryBank::NeedsReload() const { return impl_->needs_reload.load(); }

std::vector<std::string> MemoryBank::TakeNamespacesDroppedByReload() {
  Impl& im = *impl_;
  std::unique_lock lock(im.mu);
  std::vector<std::string> out(im.dropped_by_load.begin(), im.dropped_by_load.end());
  im.dropped_by_load.clear();
  return out;
}

}  // namespace mann
