#include <utility>

#include <fmt/format.h>

#include <mann/encode/router.h>

namespace mann::encode {

bool EmbeddingCache::Get(const std::string& key, Vector* out) {
  std::lock_guard lock(mu_);
  const auto it = map_.find(key);
  if (it == map_.end()) {
    ++misses_;
    return false;
  }
  order_.splice(order_.begin(), order_, it->second);
  *out = it->second->second;
  ++hits_;
  return true;
}

void EmbeddingCache::Put(const std::string& key, const Vector& value) {
  if (capacity_ == 0) return;
  std::lock_guard lock(mu_);
  const auto it = map_.find(key);
  if (it != map_.end()) {
    it->second->second = value;
    order_.splice(order_.begin(), order_, it->second);
    return;
  }
  order_.emplace_front(key, value);
  map_.emplace(key, order_.begin());
  while (order_.size() > capacity_) {
    map_.erase(order_.back().first);
    order_.pop_back();
  }
}

std::size_t EmbeddingCache::size() const {
  std::lock_guard lock(mu_);
  return order_.size();
}

std::uint64_t EmbeddingCache::hits() const {
  std::lock_guard lock(mu_);
  return hits_;
}

std::uint64_t EmbeddingCache::misses() const {
  std::lock_guard lock(mu_);
  return misses_;
}

std::unique_ptr<Router> Router::Single(const Encoder& encoder, std::size_t cache_size) {
  std::unique_ptr<Router> r(new Router());
  r->spaces_ = {&encoder};
  r->lanes_.push_back(std::make_unique<Lane>(Lane{0, nullptr, encoder.Id()}));
  const Lane* only = r->lanes_.front().get();
  r->english_ = r->vietnamese_ = r->other_ = only;
  r->query_english_ = r->query_vietnamese_ = r->query_other_ = {only};
  if (cache_size > 0) r->cache_ = std::make_unique<EmbeddingCache>(cache_size);
  return r;
}

std::unique_ptr<Router> Router::Sentence(const Encoder& sentence, const text::Glosser* gloss,
                                         const Encoder& fallback, std::size_t cache_size) {
  std::unique_ptr<Router> r(new Router());
  r->spaces_ = {&sentence, &fallback};
  r->lanes_.push_back(std::make_unique<Lane>(Lane{0, nullptr, sentence.Id()}));
  r->lanes_.push_back(std::make_unique<Lane>(Lane{1, nullptr, fallback.Id()}));
  r->english_ = r->lanes_[0].get();
  r->other_ = r->lanes_[1].get();
  if (gloss != nullptr) {
    r->lanes_.push_back(std::make_unique<Lane>(
        Lane{0, gloss, fmt::format("{}+gloss-vi-{}", sentence.Id(), gloss->fingerprint())}));
    r->vietnamese_ = r->lanes_[2].get();
    r->query_vietnamese_ = {r->vietnamese_, r->other_};
  } else {
    r->vietnamese_ = r->other_;
    r->query_vietnamese_ = {r->other_};
  }
  // An English query also looks among the memories only the fallback could read: they may
  // still share words or names with it.
  r->query_english_ = {r->english_, r->other_};
  r->query_other_ = {r->other_};
  if (cache_size > 0) r->cache_ = std::make_unique<EmbeddingCache>(cache_size);
  return r;
}

const Lane& Router::ForText(text::Language language) const {
  switch (language) {
    case text::Language::kEnglish:
      return *english_;
    case text::Language::kVietnamese:
      return *vietnamese_;
    case text::Language::kUnknown:
      break;
  }
  return *other_;
}

std::span<const Lane* const> Router::ForQuery(text::Language language) const {
  switch (language) {
    case text::Language::kEnglish:
      return query_english_;
    case text::Language::kVietnamese:
      return query_vietnamese_;
    case text::Language::kUnknown:
      break;
  }
  return query_other_;
}

std::string Router::InputFor(const Lane& lane, std::string_view text) const {
  if (lane.gloss != nullptr) return lane.gloss->Gloss(text);
  return std::string(text);
}

std::string Router::CacheKey(const Lane& lane, std::string_view input) const {
  std::string keyed = lane.provenance;
  keyed += '\n';
  keyed += input;
  return text::Sha256Hex(keyed);
}

Result<Vector> Router::Embed(const Lane& lane, std::string_view text) const {
  std::vector<Vector> out;
  const std::string one(text);
  MANN_RETURN_IF_ERROR(EmbedBatch(lane, std::span<const std::string>(&one, 1), &out));
  return std::move(out.front());
}

void Router::SetSharedCache(std::shared_ptr<SharedEmbeddingCache> shared) {
  std::lock_guard lock(shared_mu_);
  shared_ = std::move(shared);
}

std::shared_ptr<SharedEmbeddingCache> Router::shared_cache() const {
  std::lock_guard lock(shared_mu_);
  return shared_;
}

void Router::FillFromShared(SharedEmbeddingCache& shared, const Encoder& encoder,
                            const std::vector<std::string>& keys, std::vector<std::string>& inputs,
                            std::vector<std::size_t>& slots, std::vector<Vector>* out) const {
  std::vector<std::string> wanted;
  wanted.reserve(slots.size());
  for (const std::size_t slot : slots) wanted.push_back(keys[slot]);
  std::vector<Vector> found;
  shared.GetMany(wanted, encoder.Dimension(), &found);

  // Keep, in order, only the texts the tier did not have. The tier promises the dimension; it
  // is checked again because a wrong-length vector would corrupt an index.
  std::size_t kept = 0;
  for (std::size_t j = 0; j < slots.size(); ++j) {
    if (j < found.size() && found[j].size() == encoder.Dimension()) {
      if (cache_) cache_->Put(keys[slots[j]], found[j]);
      (*out)[slots[j]] = std::move(found[j]);
      continue;
    }
    inputs[kept] = std::move(inputs[j]);
    slots[kept] = slots[j];
    ++kept;
  }
  inputs.resize(kept);
  slots.resize(kept);
}

Status Router::EmbedBatch(const Lane& lane, std::span<const std::string> texts,
                          std::vector<Vector>* out) const {
  const Encoder& encoder = *spaces_.at(lane.space);
  const std::shared_ptr<SharedEmbeddingCache> shared = shared_cache();
  const bool keyed = cache_ != nullptr || shared != nullptr;
  out->assign(texts.size(), Vector{});

  // The in-process cache first: a hit costs a hash and a copy.
  std::vector<std::string> keys(texts.size());
  std::vector<std::string> inputs;  // the texts no cache had
  std::vector<std::size_t> slots;   // ... and where their vectors go
  for (std::size_t i = 0; i < texts.size(); ++i) {
    std::string input = InputFor(lane, texts[i]);
    if (keyed) keys[i] = CacheKey(lane, input);
    if (cache_ && cache_->Get(keys[i], &(*out)[i])) continue;
    inputs.push_back(std::move(input));
    slots.push_back(i);
  }

  // Then the shared tier, asked once for every local miss of the batch.
  if (shared && !inputs.empty()) FillFromShared(*shared, encoder, keys, inputs, slots, out);
  if (inputs.empty()) return Status::Ok();

  // Then the encoder, for what neither tier had.
  std::vector<Vector> fresh;
  MANN_RETURN_IF_ERROR(encoder.EncodeBatch(inputs, &fresh));
  if (fresh.size() != inputs.size()) {
    return InternalError(fmt::format("encoder {} returned {} vectors for {} texts", encoder.Id(),
                                     fresh.size(), inputs.size()));
  }
  for (const Vector& v : fresh) {
    if (v.size() != encoder.Dimension()) {
      return InternalError(fmt::format("encoder {} returned {} dimensions, expected {}",
                                       encoder.Id(), v.size(), encoder.Dimension()));
    }
  }
  if (keyed) {
    std::vector<std::string> fresh_keys;
    fresh_keys.reserve(slots.size());
    for (const std::size_t slot : slots) fresh_keys.push_back(keys[slot]);
    if (cache_) {
      for (std::size_t j = 0; j < fresh.size(); ++j) cache_->Put(fresh_keys[j], fresh[j]);
    }
    if (shared) shared->PutMany(fresh_keys, fresh);
  }
  for (std::size_t j = 0; j < fresh.size(); ++j) (*out)[slots[j]] = std::move(fresh[j]);
  return Status::Ok();
}

std::string Router::Describe() const {
  if (spaces_.size() == 1) return spaces_[0]->Id() + " (every language)";
  const bool glossed = vietnamese_->gloss != nullptr;
  return fmt::format("{} (en{}) + {} ({})", spaces_[0]->Id(), glossed ? "; vi via gloss" : "",
                     spaces_[1]->Id(), glossed ? "other" : "vi and other");
}

}  // namespace mann::encode
