// Forward pass of USE-lite; docs/design/use-lite.md gives the graph, step by step.
#include <algorithm>
#include <cmath>
#include <optional>

#include <Eigen/Core>

#include <mann/encode/use_lite_encoder.h>
#include <mann/encode/use_tokenizer.h>

namespace mann::encode {
namespace {

// Activations are row-major [tokens, width], like the weights ([in, out], y = x*W + b), so
// weights map straight onto the loaded buffer without a copy or a transpose.
using Matrix = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using MatrixMap = Eigen::Map<const Matrix>;
using RowVectorMap = Eigen::Map<const Eigen::RowVectorXf>;

constexpr std::int64_t kEmbeddingRows = 8002;
constexpr std::int64_t kEmbeddingWidth = 256;
constexpr std::int64_t kTimescales = kEmbeddingWidth / 2;
constexpr int kHeads = 4;
// The graph's scalar constants, as float32 (model.json holds them as Const tensors).
constexpr float kLayerNormEpsilon = 9.99999997e-7f;
constexpr float kMinSquaredNorm = 1e-12f;

constexpr std::string_view kApply = "module_apply_default/Encoder_en/KonaTransformer/Encode/";
constexpr std::string_view kStack =
    "module_apply_default/Encoder_en/KonaTransformer/Encode/TransformerStack/";
constexpr std::string_view kModule = "module/Encoder_en/KonaTransformer/Encode/";
constexpr std::string_view kPartition = "/ConcatPartitions/concat";

std::string Cat(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (std::string_view p : parts) s += p;
  return s;
}

// A dense layer y = x*W + b over the weight buffer.
struct Dense {
  const float* w = nullptr;
  const float* b = nullptr;
  int in = 0;
  int out = 0;
  // x*W + b for each row of x.
  Matrix Apply(const Matrix& x) const {
    Matrix y(x.rows(), out);
    y.noalias() = x * MatrixMap(w, in, out);
    y.rowwise() += RowVectorMap(b, out);
    return y;
  }
};

struct LayerNormParams {
  const float* scale = nullptr;
  const float* bias = nullptr;
  int width = 0;
};

struct Layer {
  int width = 0;  // of the attention input; the output is always 512
  float query_scale = 0;
  LayerNormParams attention_norm, ffn_norm;
  Dense qkv, attention_out, ffn_in, ffn_out;
  std::optional<Dense> residual;  // Layer_0 projects its 256-wide input to 512
};

// Row-wise layer norm with the biased variance, as the graph's Mean/Square/Rsqrt nodes do.
Matrix LayerNorm(const Matrix& x, const LayerNormParams& norm) {
  const RowVectorMap scale(norm.scale, norm.width);
  const RowVectorMap bias(norm.bias, norm.width);
  Matrix y(x.rows(), x.cols());
  for (Eigen::Index r = 0; r < x.rows(); ++r) {
    const float mean = x.row(r).mean();
    const auto centred = x.row(r).array() - mean;
    const float variance = centred.square().mean();
    const float inv = 1.0f / std::sqrt(variance + kLayerNormEpsilon);
    y.row(r) = (centred * inv * scale.array() + bias.array()).matrix();
  }
  return y;
}

// Multi-head self-attention over all rows (a single sentence has no padding to mask).
Matrix Attention(const Matrix& h, const Layer& layer) {
  const int d = layer.width;
  const int dh = d / kHeads;
  const Eigen::Index t = h.rows();
  const Matrix qkv = layer.qkv.Apply(h);  // [t, 3d]: q | k | v
  Matrix merged(t, d);
  Matrix scores(t, t);
  for (int head = 0; head < kHeads; ++head) {
    const auto q = qkv.middleCols(head * dh, dh);
    const auto k = qkv.middleCols(d + head * dh, dh);
    const auto v = qkv.middleCols(2 * d + head * dh, dh);
    scores.noalias() = (q * layer.query_scale) * k.transpose();
    for (Eigen::Index r = 0; r < t; ++r) {
      auto row = scores.row(r).array();
      row = (row - row.maxCoeff()).exp();
      row /= row.sum();
    }
    merged.middleCols(head * dh, dh).noalias() = scores * v;
  }
  return layer.attention_out.Apply(merged);
}

// One pre-norm transformer layer: attention and FFN, each with its residual.
Matrix TransformerLayer(const Matrix& x, const Layer& layer) {
  Matrix y = Attention(LayerNorm(x, layer.attention_norm), layer);
  // Layer_0's residual is a dense projection of the un-normalized input.
  if (layer.residual) {
    y += layer.residual->Apply(x);
  } else {
    y += x;
  }
  const Matrix hidden = layer.ffn_in.Apply(LayerNorm(y, layer.ffn_norm)).cwiseMax(0.0f);
  y += layer.ffn_out.Apply(hidden);
  return y;
}

// Looks up the tensors a layer uses and checks their shapes. Layer_0 attends at 256 and
// projects to 512; Layer_1 works at 512 throughout. Both have 4 heads.
Result<Layer> LoadLayer(const UseLiteWeights& weights, int index) {
  const std::string l = "Layer_" + std::to_string(index) + "/TransformerLayer/";
  const int d = index == 0 ? 256 : 512;
  constexpr int kOut = 512;
  constexpr int kHidden = 1536;
  using Shape = std::vector<std::int64_t>;
  auto get = [&](const std::string& name, Shape shape) -> Result<const float*> {
    MANN_ASSIGN_OR_RETURN(std::span<const float> s, weights.Float(name, shape));
    return s.data();
  };
  Layer layer;
  layer.width = d;
  layer.query_scale = 1.0f / std::sqrt(static_cast<float>(d / kHeads));

  const std::string ln = Cat({kApply, l, "layer_prepostprocess/layer_norm/layer_norm_"});
  const std::string ffn_ln = Cat({kApply, l, "FFN/layer_prepostprocess/layer_norm/layer_norm_"});
  const std::string mha = Cat({kModule, l, "MultiheadAttention/"});
  const std::string mha_bias = Cat({kApply, l, "MultiheadAttention/"});
  layer.attention_norm.width = d;
  MANN_ASSIGN_OR_RETURN(layer.attention_norm.scale, get(Cat({ln, "scale", kPartition}), {d}));
  MANN_ASSIGN_OR_RETURN(layer.attention_norm.bias, get(Cat({ln, "bias", kPartition}), {d}));
  layer.qkv = {.in = d, .out = 3 * d};
  MANN_ASSIGN_OR_RETURN(layer.qkv.w,
                        get(mha + "qkv_transform_single/kernel/part_0", {1, 1, d, 3 * d}));
  MANN_ASSIGN_OR_RETURN(layer.qkv.b,
                        get(Cat({mha_bias, "qkv_transform_single/bias", kPartition}), {3 * d}));
  layer.attention_out = {.in = d, .out = kOut};
  MANN_ASSIGN_OR_RETURN(layer.attention_out.w,
                        get(mha + "output_transform_single/kernel/part_0", {1, 1, d, kOut}));
  MANN_ASSIGN_OR_RETURN(layer.attention_out.b,
                        get(Cat({mha_bias, "output_transform_single/bias", kPartition}), {kOut}));
  if (index == 0) {
    Dense residual{.in = d, .out = kOut};
    MANN_ASSIGN_OR_RETURN(residual.w, get(Cat({kApply, l, "dense/kernel", kPartition}), {d, kOut}));
    MANN_ASSIGN_OR_RETURN(residual.b, get(Cat({kApply, l, "dense/bias", kPartition}), {kOut}));
    layer.residual = residual;
  }

  layer.ffn_norm.width = kOut;
  MANN_ASSIGN_OR_RETURN(layer.ffn_norm.scale, get(Cat({ffn_ln, "scale", kPartition}), {kOut}));
  MANN_ASSIGN_OR_RETURN(layer.ffn_norm.bias, get(Cat({ffn_ln, "bias", kPartition}), {kOut}));
  layer.ffn_in = {.in = kOut, .out = kHidden};
  MANN_ASSIGN_OR_RETURN(layer.ffn_in.w,
                        get(Cat({kStack, l, "FFN/conv1/Tensordot/Reshape_1"}), {kOut, kHidden}));
  MANN_ASSIGN_OR_RETURN(layer.ffn_in.b,
                        get(Cat({kApply, l, "FFN/conv1/bias", kPartition}), {kHidden}));
  layer.ffn_out = {.in = kHidden, .out = kOut};
  MANN_ASSIGN_OR_RETURN(layer.ffn_out.w,
                        get(Cat({kStack, l, "FFN/conv2/Tensordot/Reshape_1"}), {kHidden, kOut}));
  MANN_ASSIGN_OR_RETURN(layer.ffn_out.b,
                        get(Cat({kApply, l, "FFN/conv2/bias", kPartition}), {kOut}));
  return layer;
}

}  // namespace

struct UseLiteEncoder::Params {
  const float* embedding = nullptr;  // [8002, 256]
  std::vector<float> timing;         // [kMaxTokens, 256]: sin | cos per position
  Layer layers[2];
  Dense head;  // tanh_layer_0, 512x512
};

Result<std::unique_ptr<UseLiteEncoder>> UseLiteEncoder::Load(const std::string& model_dir) {
  MANN_ASSIGN_OR_RETURN(UseLiteWeights weights, UseLiteWeights::Load(model_dir));
  auto params = std::make_unique<Params>();
  using Shape = std::vector<std::int64_t>;

  MANN_ASSIGN_OR_RETURN(
      std::span<const float> embedding,
      weights.Float("module/Embeddings_en", Shape{kEmbeddingRows, kEmbeddingWidth}));
  params->embedding = embedding.data();

  // timing(p) = [sin(p*inv[0..127]) | cos(p*inv[0..127])], tensor2tensor's timing signal; the
  // inverse timescales are read from the graph rather than recomputed.
  MANN_ASSIGN_OR_RETURN(
      std::span<const float> inv,
      weights.Float(Cat({kStack, "Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1"}),
                    Shape{1, kTimescales}));
  params->timing.resize(kMaxTokens * kEmbeddingWidth);
  for (std::size_t p = 0; p < kMaxTokens; ++p) {
    float* row = &params->timing[p * kEmbeddingWidth];
    for (std::int64_t i = 0; i < kTimescales; ++i) {
      const float angle = static_cast<float>(p) * inv[i];  // a float32 product, as in the graph
      row[i] = std::sin(angle);
      row[kTimescales + i] = std::cos(angle);
    }
  }

  for (int l = 0; l < 2; ++l) {
    MANN_ASSIGN_OR_RETURN(params->layers[l], LoadLayer(weights, l));
  }

  const std::string head = "module/Encoder_en/hidden_layers/tanh_layer_0/";
  params->head = {.in = static_cast<int>(kDimension), .out = static_cast<int>(kDimension)};
  MANN_ASSIGN_OR_RETURN(std::span<const float> head_w,
                        weights.Float(head + "weights", Shape{512, 512}));
  MANN_ASSIGN_OR_RETURN(std::span<const float> head_b, weights.Float(head + "bias", Shape{512}));
  params->head.w = head_w.data();
  params->head.b = head_b.data();

  const std::string vocab_path = model_dir + "/vocab.json";
  MANN_ASSIGN_OR_RETURN(UseTokenizer tokenizer, UseTokenizer::FromVocabFile(vocab_path));
  if (tokenizer.vocab_size() > static_cast<std::size_t>(kEmbeddingRows)) {
    return DataLossError(vocab_path + " has " + std::to_string(tokenizer.vocab_size()) +
                         " pieces, more than the " + std::to_string(kEmbeddingRows) +
                         " rows of module/Embeddings_en");
  }
  return std::unique_ptr<UseLiteEncoder>(new UseLiteEncoder(
      std::move(weights), std::move(params), std::make_unique<UseTokenizer>(std::move(tokenizer))));
}

UseLiteEncoder::UseLiteEncoder(UseLiteWeights weights, std::unique_ptr<Params> params,
                               std::unique_ptr<UseTokenizer> tokenizer)
    : weights_(std::move(weights)), params_(std::move(params)), tokenizer_(std::move(tokenizer)) {}

UseLiteEncoder::~UseLiteEncoder() = default;

Result<Vector> UseLiteEncoder::EmbedTokens(std::span<const std::int32_t> ids) const {
  ids = ids.first(std::min(ids.size(), kMaxTokens));
  // No tokens: the reference throws; the Encoder contract wants the zero vector.
  if (ids.empty()) return Vector(kDimension, 0.0f);

  // x0 = 2*E[id] + timing(position): the graph adds the embedding once in AddTimingSignal and
  // once more in Layer_0/add.
  const auto t = static_cast<Eigen::Index>(ids.size());
  Matrix x(t, kEmbeddingWidth);
  for (Eigen::Index p = 0; p < t; ++p) {
    const std::int32_t id = ids[p];
    if (id < 0 || id >= kEmbeddingRows) {
      return InvalidArgumentError("token id " + std::to_string(id) + " at position " +
                                  std::to_string(p) + " is outside [0, " +
                                  std::to_string(kEmbeddingRows) + ")");
    }
    x.row(p) = 2.0f * RowVectorMap(params_->embedding + id * kEmbeddingWidth, kEmbeddingWidth) +
               RowVectorMap(&params_->timing[p * kEmbeddingWidth], kEmbeddingWidth);
  }

  for (const Layer& layer : params_->layers) x = TransformerLayer(x, layer);

  // Mean over the tokens, tanh(dense), then L2 with the graph's floor on the squared norm.
  const Matrix mean = x.colwise().mean();
  Matrix y = params_->head.Apply(mean).array().tanh().matrix();
  const float scale = 1.0f / std::sqrt(std::max(y.squaredNorm(), kMinSquaredNorm));
  Vector out(kDimension);
  for (std::size_t i = 0; i < kDimension; ++i) out[i] = y(0, static_cast<Eigen::Index>(i)) * scale;
  return out;
}

Status UseLiteEncoder::EncodeBatch(std::span<const std::string> texts,
                                   std::vector<Vector>* out) const {
  std::vector<Vector> vectors;
  vectors.reserve(texts.size());
  for (const std::string& text : texts) {
    const std::vector<std::int32_t> ids = tokenizer_->Encode(text);
    Result<Vector> v = EmbedTokens(ids);
    if (!v.ok()) return InternalError("tokenizer output rejected: " + v.status().message());
    vectors.push_back(std::move(*v));
  }
  *out = std::move(vectors);
  return Status::Ok();
}

}  // namespace mann::encode
