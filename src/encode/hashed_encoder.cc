#include <cmath>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/format.h>

#include <mann/encode/hashed_encoder.h>
#include <mann/text/analyzer.h>

namespace mann::encode {
namespace {

constexpr std::size_t kMinDimension = 8;
constexpr std::size_t kMaxDimension = 4096;
constexpr int kMaxNgram = 8;

// Feature kinds enter the hash, so the word "abc" and the trigram "abc" land apart.
enum class Kind : unsigned char { kWord = 'w', kBigram = 'b', kChar = 'c' };

// The murmur3 64-bit finalizer: FNV-1a alone leaves the low bits (the bucket) and the top bit
// (the sign) poorly mixed for short keys.
std::uint64_t Mix(std::uint64_t h) {
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdULL;
  h ^= h >> 33;
  h *= 0xc4ceb9fe1a85ec53ULL;
  h ^= h >> 33;
  return h;
}

constexpr std::uint64_t kFnvPrime = 0x100000001b3ULL;

std::uint64_t FnvBytes(std::uint64_t h, std::string_view bytes) {
  for (char c : bytes) h = (h ^ static_cast<unsigned char>(c)) * kFnvPrime;
  return h;
}

// Seeded 64-bit hash of `kind`, `first` and, for bigrams, a space and `second`. Defined on
// bytes only, so every machine computes the same value.
std::uint64_t HashFeature(std::uint64_t seed, Kind kind, std::string_view first,
                          std::string_view second = {}) {
  std::uint64_t h = 0xcbf29ce484222325ULL ^ Mix(seed);
  h = (h ^ static_cast<unsigned char>(kind)) * kFnvPrime;
  h = FnvBytes(h, first);
  if (!second.empty()) h = FnvBytes((h ^ ' ') * kFnvPrime, second);
  return Mix(h);
}

// Length of the UTF-8 sequence that `lead` starts; FoldForSearch output is valid UTF-8.
std::size_t Utf8Length(unsigned char lead) {
  if (lead < 0x80) return 1;
  if (lead >= 0xF0) return 4;
  if (lead >= 0xE0) return 3;
  return 2;
}

class Accumulator {
 public:
  Accumulator(const HashedEncoderOptions& options, Vector* out) : seed_(options.seed), out_(out) {}

  void Add(Kind kind, float weight, std::string_view first, std::string_view second = {}) {
    if (weight == 0.0f) return;
    const std::uint64_t h = HashFeature(seed_, kind, first, second);
    const float sign = (h >> 63) != 0 ? -1.0f : 1.0f;
    (*out_)[h % out_->size()] += sign * weight;
  }

 private:
  std::uint64_t seed_;
  Vector* out_;
};

}  // namespace

Status HashedEncoder::Validate(const HashedEncoderOptions& options) {
  if (options.dimension < kMinDimension || options.dimension > kMaxDimension) {
    return InvalidArgumentError(fmt::format("hashed encoder dimension must lie in [{}, {}], got {}",
                                            kMinDimension, kMaxDimension, options.dimension));
  }
  if (options.char_ngram_min < 1 || options.char_ngram_min > options.char_ngram_max ||
      options.char_ngram_max > kMaxNgram) {
    return InvalidArgumentError(fmt::format(
        "hashed encoder char n-grams need 1 <= char_ngram_min <= char_ngram_max <= {}, got {} "
        "and {}",
        kMaxNgram, options.char_ngram_min, options.char_ngram_max));
  }
  const struct {
    const char* name;
    float value;
  } weights[] = {{"word_weight", options.word_weight},
                 {"bigram_weight", options.bigram_weight},
                 {"char_weight", options.char_weight}};
  for (const auto& w : weights) {
    if (!std::isfinite(w.value) || w.value < 0.0f) {
      return InvalidArgumentError(fmt::format(
          "hashed encoder {} must be finite and non-negative, got {}", w.name, w.value));
    }
  }
  return Status::Ok();
}

Result<HashedEncoder> HashedEncoder::Create(HashedEncoderOptions options) {
  MANN_RETURN_IF_ERROR(Validate(options));
  return HashedEncoder(options);
}

HashedEncoder::HashedEncoder(HashedEncoderOptions options)
    : options_(options), options_status_(Validate(options)) {}

std::string HashedEncoder::Id() const {
  std::string id = fmt::format("hashed-v1-d{}-c{}{}", options_.dimension, options_.char_ngram_min,
                               options_.char_ngram_max);
  // Seed and weights change the vectors too; they are named only when they differ from the
  // defaults, so the common id stays short.
  const HashedEncoderOptions defaults;
  if (options_.seed != defaults.seed) id += fmt::format("-s{:x}", options_.seed);
  if (options_.word_weight != defaults.word_weight ||
      options_.bigram_weight != defaults.bigram_weight ||
      options_.char_weight != defaults.char_weight) {
    id += fmt::format("-w{}_{}_{}", options_.word_weight, options_.bigram_weight,
                      options_.char_weight);
  }
  return id;
}

Status HashedEncoder::EncodeBatch(std::span<const std::string> texts,
                                  std::vector<Vector>* out) const {
  if (out == nullptr) return InvalidArgumentError("hashed encoder: output vector is null");
  MANN_RETURN_IF_ERROR(options_status_);
  out->clear();
  out->reserve(texts.size());

  const auto min_n = static_cast<std::size_t>(options_.char_ngram_min);
  const auto max_n = static_cast<std::size_t>(options_.char_ngram_max);
  std::string bounded;
  std::vector<std::size_t> starts;  // byte offset of each code point in `bounded`, plus the end
  for (const std::string& text : texts) {
    Vector& v = out->emplace_back(options_.dimension, 0.0f);
    Accumulator acc(options_, &v);
    const std::vector<std::string> words = text::Words(text::FoldForSearch(text));

    for (std::size_t i = 0; i < words.size(); ++i) {
      // Word and bigram features.
      acc.Add(Kind::kWord, options_.word_weight, words[i]);
      if (i > 0) acc.Add(Kind::kBigram, options_.bigram_weight, words[i - 1], words[i]);

      // Character n-grams over "^word$", counted in code points so that CJK and Vietnamese
      // letters are never split mid-character.
      bounded.clear();
      bounded.push_back('^');
      bounded += words[i];
      bounded += '$';
      starts.clear();
      for (std::size_t at = 0; at < bounded.size();
           at += Utf8Length(static_cast<unsigned char>(bounded[at]))) {
        starts.push_back(at);
      }
      starts.push_back(bounded.size());
      const std::size_t code_points = starts.size() - 1;
      for (std::size_t n = min_n; n <= max_n && n <= code_points; ++n) {
        for (std::size_t begin = 0; begin + n <= code_points; ++begin) {
          acc.Add(
              Kind::kChar, options_.char_weight,
              std::string_view(bounded).substr(starts[begin], starts[begin + n] - starts[begin]));
        }
      }
    }
    NormalizeL2(v);
  }
  return Status::Ok();
}

}  // namespace mann::encode
