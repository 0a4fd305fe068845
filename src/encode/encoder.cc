#include <algorithm>
#include <cmath>

#include <mann/encode/encoder.h>

namespace mann::encode {

Result<Vector> Encoder::Encode(std::string_view text) const {
  const std::string texts[] = {std::string(text)};
  std::vector<Vector> out;
  MANN_RETURN_IF_ERROR(EncodeBatch(texts, &out));
  if (out.size() != 1) {
    return InternalError("encoder " + Id() + " returned " + std::to_string(out.size()) +
                         " vectors for one text");
  }
  return std::move(out.front());
}

float Dot(std::span<const float> a, std::span<const float> b) {
  // Vectors of different lengths are a caller bug; reading only the common prefix keeps it
  // from becoming an out-of-bounds read.
  const std::size_t n = std::min(a.size(), b.size());
  // Eight independent partial sums: without -ffast-math the compiler may not reorder one
  // running sum, but it does turn these lanes into SIMD registers.
  constexpr std::size_t kLanes = 8;
  float partial[kLanes] = {};
  std::size_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    for (std::size_t lane = 0; lane < kLanes; ++lane) partial[lane] += a[i + lane] * b[i + lane];
  }
  float sum = 0.0f;
  for (; i < n; ++i) sum += a[i] * b[i];
  for (float p : partial) sum += p;
  return sum;
}

void NormalizeL2(std::span<float> v) {
  double squares = 0.0;
  for (float x : v) squares += static_cast<double>(x) * x;
  if (!(squares > 0.0) || !std::isfinite(squares)) return;
  const auto scale = static_cast<float>(1.0 / std::sqrt(squares));
  for (float& x : v) x *= scale;
}

}  // namespace mann::encode
