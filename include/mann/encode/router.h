// Router: which encoder embeds which text, and which vector spaces a search looks in.
//
// The sentence encoder reads English only. With it, a Router sends
//   English              -> the sentence encoder
//   Vietnamese           -> the sentence encoder through a word-by-word English gloss
//                           (text::Glosser), or to the fallback when no gloss is given
//   anything else        -> the fallback encoder (hashed n-grams, which read every script)
// and a query to every space that can read its language, each with its own query vector.
// Each *space* is one encoder (named by its Id()); every stored vector belongs to exactly one,
// so no index ever mixes vectors of two encoders. A *lane* is one way into a space; its
// provenance (the encoder id, plus the lexicon fingerprint for glossed text) is stored beside
// each vector, and a vector whose provenance is no longer what its text would get is re-made.
//
// Embeddings are cached by the SHA-256 of (provenance, input text), in an LRU of bounded size,
// so a repeated query or a re-sent memory costs one hash instead of a forward pass. Behind it,
// SetSharedCache adds a tier shared by replicas (SharedEmbeddingCache; Redis in `mann serve`).
// An embed looks in the in-process LRU, then asks the shared tier for all its misses at once,
// then encodes what neither had; a vector found in the shared tier fills the LRU, and a vector
// computed goes to both. The key is a content digest, so the same key always means the same
// vector: neither tier is ever invalidated, which is why an in-process copy in front of the
// shared one is safe here (unlike for search answers, see cache::ResultCache).
//
// Thread-safety: immutable after construction except the caches, which have their own locks;
// every member is safe to call concurrently. The encoders and glosser must outlive the Router.
#pragma once

#include <cstddef>
#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include <mann/core/status.h>
#include <mann/encode/encoder.h>
#include <mann/encode/shared_cache.h>
#include <mann/text/analyzer.h>
#include <mann/text/gloss.h>

namespace mann::encode {

struct Lane {
  std::size_t space = 0;                 // index into Router::spaces()
  const text::Glosser* gloss = nullptr;  // when set, the text is glossed before encoding
  std::string provenance;                // stored beside the vector
};

// A bounded LRU map from a content digest to its vector. Thread-safe.
class EmbeddingCache {
 public:
  explicit EmbeddingCache(std::size_t capacity) : capacity_(capacity) {}

  bool Get(const std::string& key, Vector* out);
  void Put(const std::string& key, const Vector& value);

  std::size_t capacity() const { return capacity_; }
  std::size_t size() const;
  std::uint64_t hits() const;
  std::uint64_t misses() const;

 private:
  using Order = std::list<std::pair<std::string, Vector>>;
  const std::size_t capacity_;
  mutable std::mutex mu_;
  Order order_;  // most recently used first
  std::unordered_map<std::string, Order::iterator> map_;
  std::uint64_t hits_ = 0;
  std::uint64_t misses_ = 0;
};

class Router {
 public:
  // Every text, in any language, goes to `encoder` as it is.
  static std::unique_ptr<Router> Single(const Encoder& encoder, std::size_t cache_size = 0);

  // English to `sentence`; Vietnamese to `sentence` through `gloss` (or to `fallback` when
  // gloss is null); everything else to `fallback`.
  static std::unique_ptr<Router> Sentence(const Encoder& sentence, const text::Glosser* gloss,
                                          const Encoder& fallback, std::size_t cache_size = 0);

  // The vector spaces, each one encoder; a bank keeps one index per space.
  std::span<const Encoder* const> spaces() const { return spaces_; }

  // Where stored text of `language` goes.
  const Lane& ForText(text::Language language) const;

  // The lanes a query of `language` is searched through, one per space that can read it.
  std::span<const Lane* const> ForQuery(text::Language language) const;

  // What the lane's encoder is given for `text`.
  std::string InputFor(const Lane& lane, std::string_view text) const;

  // The vector of `text` through `lane`, from the cache when it is there.
  Result<Vector> Embed(const Lane& lane, std::string_view text) const;

  // Vectors of several texts through one lane, batched for the encoder; out->size() ==
  // texts.size() on success.
  Status EmbedBatch(const Lane& lane, std::span<const std::string> texts,
                    std::vector<Vector>* out) const;

  // e.g. "use-lite-v1-d512 (en; vi via gloss) + hashed-v1-d256-c34 (other)".
  std::string Describe() const;

  // The in-process cache, or nullptr when it is off (cache_size 0).
  const EmbeddingCache* cache() const { return cache_.get(); }

  // Puts `shared` behind the in-process cache; nullptr takes the tier away. Safe while other
  // threads embed: each embed uses the tier that was set when it started.
  void SetSharedCache(std::shared_ptr<SharedEmbeddingCache> shared);
  std::shared_ptr<SharedEmbeddingCache> shared_cache() const;

 private:
  Router() = default;
  std::string CacheKey(const Lane& lane, std::string_view input) const;
  // Moves the vectors the shared tier holds for texts[slots[j]] into `out` (and the in-process
  // cache), and drops those texts from `inputs` and `slots`, leaving what must be encoded.
  void FillFromShared(SharedEmbeddingCache& shared, const Encoder& encoder,
                      const std::vector<std::string>& keys, std::vector<std::string>& inputs,
                      std::vector<std::size_t>& slots, std::vector<Vector>* out) const;

  std::vector<const Encoder*> spaces_;
  std::vector<std::unique_ptr<Lane>> lanes_;  // stable addresses
  const Lane* english_ = nullptr;
  const Lane* vietnamese_ = nullptr;
  const Lane* other_ = nullptr;
  std::vector<const Lane*> query_english_, query_vietnamese_, query_other_;
  std::unique_ptr<EmbeddingCache> cache_;  // null when caching is off
  mutable std::mutex shared_mu_;
  std::shared_ptr<SharedEmbeddingCache> shared_;  // guarded by shared_mu_; null: no shared tier
};

}  // namespace mann::encode
