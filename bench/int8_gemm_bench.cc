// Reduced-precision matrix products beside the fp32 one, on the FFN shapes of the USE-lite pass
// (docs/design/use-lite.md, "Reduced precision, measured"): 25 rows, about one sentence of
// bench/data/encoder_sentences.txt (23.6 tokens on average), times 512x1536 and 1536x512.
//
//   build/int8_gemm_bench --benchmark_repetitions=5
//       --benchmark_enable_random_interleaving=true --benchmark_report_aggregates_only=true
//
// All run on one core, side by side in one process, so their ratios hold on a busy machine:
//   BM_Fp32Avx2       the encoder's AVX2 scheme: weights packed once in k-major panels of 16
//                     columns, rows packed k-major into tiles of at most 6 (nearly equal
//                     heights), a 6x16 tile of 12 FMA accumulators, bias (+ ReLU) before the
//                     store. The encoder's kernels are internal to use_lite_encoder.cc, so this
//                     is a copy of the same scheme, not a call into it.
//   BM_Int8Avx2<R>    u8 activations x s8 weights: vpmaddubsw (u8 x s8 -> s16 pairs), vpmaddwd
//                     by ones (-> s32), vpaddd, in tiles of R rows x 16 columns. The weights are
//                     kept in [-63, 63] (7 bits): a pair of products then stays within
//                     2 * 255 * 63 = 32130, so vpmaddubsw never saturates. The timed product
//                     includes quantizing the fp32 input rows (per-row scale and zero point) and
//                     the float epilogue (zero-point correction, scales, bias, ReLU).
//   BM_Int8Avx2KernelOnly<R>  the same without the input's quantization (already packed).
//   BM_Int16Avx2      s16 lanes x s16 lanes -> s32 with vpmaddwd alone, both operands within
//                     +-1023 so that the s32 sums cannot overflow; input quantization included.
// The `GFLOPS` counter counts 2*M*K*N per product for every kernel (GFLOP-equivalent).
// At startup each kernel is checked against a scalar reference on the same data; the run stops
// if one disagrees.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>
#include <utility>
#include <vector>

#include <benchmark/benchmark.h>
#include <immintrin.h>

namespace {

constexpr int kRows = 25;
constexpr int kPanel = 16;  // output columns per packed panel, as the encoder's AVX2 kernel
constexpr int kFp32TileRows = 6;
// The s16 kernel's range for both operands (11 bits): a product is at most 1023^2, so a sum of
// 1536 of them (1.6e9) fits the s32 accumulators. Full s16 ranges would overflow them.
constexpr int kInt16Limit = 1023;

// 64-byte aligned storage, as the encoder's buffers.
template <class T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) {}
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(64)));
  }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(64)); }
  friend bool operator==(const AlignedAllocator&, const AlignedAllocator&) { return true; }
};
template <class T>
using Aligned = std::vector<T, AlignedAllocator<T>>;

// Splits m rows into tiles of at most `max_rows`, of nearly equal heights (25 rows in tiles of
// at most 6 give five of 5), as the encoder does: short tiles starve the multiply units.
struct Tiling {
  Tiling(int m, int max_rows)
      : tiles((m + max_rows - 1) / max_rows), base(m / tiles), extra(m % tiles) {}
  int start(int i) const { return i * base + std::min(i, extra); }
  int rows(int i) const { return start(i + 1) - start(i); }
  int tiles, base, extra;
};

// One product's data: x [m, k] fp32 row-major, W [k, n] fp32 row-major, bias [n].
struct Problem {
  int m, k, n;
  bool relu;
  std::vector<float> x, w, bias;
};

Problem MakeProblem(int k, int n, bool relu) {
  Problem p{kRows, k, n, relu, {}, {}, {}};
  std::mt19937 rng(1234 + k + n);
  std::normal_distribution<float> normal(0.0f, 1.0f);
  // Layer-normed inputs (about unit variance) and weights of the model's order of magnitude.
  p.x.resize(static_cast<std::size_t>(p.m) * k);
  for (float& v : p.x) v = normal(rng);
  p.w.resize(static_cast<std::size_t>(k) * n);
  for (float& v : p.w) v = 0.05f * normal(rng);
  p.bias.resize(n);
  for (float& v : p.bias) v = 0.1f * normal(rng);
  return p;
}

// ---------------------------------------------------------------------------------------------
// fp32, the encoder's AVX2 scheme.

struct Fp32Weights {
  Aligned<float> panels;  // n / 16 panels, each k rows of 16 floats
  int k = 0, n = 0;
};

Fp32Weights PackFp32(const Problem& p) {
  Fp32Weights w;
  w.k = p.k;
  w.n = p.n;
  w.panels.resize(static_cast<std::size_t>(p.k) * p.n);
  float* dst = w.panels.data();
  for (int col = 0; col < p.n; col += kPanel) {
    for (int kk = 0; kk < p.k; ++kk, dst += kPanel) {
      std::memcpy(dst, &p.w[static_cast<std::size_t>(kk) * p.n + col], kPanel * sizeof(float));
    }
  }
  return w;
}

template <int R>
__attribute__((target("avx2,fma"))) void Fp32Tile(const float* a, const float* b, int k,
                                                  const float* bias, float* c, int ldc, bool relu) {
  __m256 acc[R][2];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_ps();
  for (int kk = 0; kk < k; ++kk, a += R, b += kPanel) {
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      __m256 v = _mm256_add_ps(acc[r][h], _mm256_loadu_ps(bias + 8 * h));
      if (relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
      _mm256_storeu_ps(c + r * ldc + 8 * h, v);
    }
  }
}

using Fp32TileFn = void (*)(const float*, const float*, int, const float*, float*, int, bool);
constexpr Fp32TileFn kFp32Tiles[kFp32TileRows] = {&Fp32Tile<1>, &Fp32Tile<2>, &Fp32Tile<3>,
                                                  &Fp32Tile<4>, &Fp32Tile<5>, &Fp32Tile<6>};

// c = x*W + b (ReLU'd if asked), as Products::Run: pack every tile's rows k-major, then run each
// panel past all tiles. (For these shapes all tiles fit the encoder's 256 KB packing budget, so
// its chunking of the rows changes nothing here.)
void Fp32Product(const Problem& p, const Fp32Weights& w, float* packed, float* c) {
  const Tiling tiling(p.m, kFp32TileRows);
  for (int i = 0; i < tiling.tiles; ++i) {
    const int rows = tiling.rows(i);
    const float* src = &p.x[static_cast<std::size_t>(tiling.start(i)) * p.k];
    float* dst = packed + static_cast<std::size_t>(tiling.start(i)) * p.k;
    for (int kk = 0; kk < p.k; ++kk, dst += rows) {
      for (int r = 0; r < rows; ++r) dst[r] = src[static_cast<std::size_t>(r) * p.k + kk];
    }
  }
  for (int col = 0; col < p.n; col += kPanel) {
    const float* panel = w.panels.data() + static_cast<std::size_t>(col) * p.k;
    for (int i = 0; i < tiling.tiles; ++i) {
      kFp32Tiles[tiling.rows(i) - 1](packed + static_cast<std::size_t>(tiling.start(i)) * p.k,
                                     panel, p.k, p.bias.data() + col,
                                     c + tiling.start(i) * p.n + col, p.n, p.relu);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Integer products. Weights: symmetric per output column, w = q * col_scale[j]. Activations:
// per row, x = (q - zero_point[r]) * row_scale[r]. So
//   y[r][j] = row_scale[r] * col_scale[j] * (sum_k qx*qw - zero_point[r] * col_sum[j]) + b[j].

struct IntWeights {
  Aligned<std::int8_t> s8;    // int8: per panel, per group of 4 k: 2 x (8 columns x 4 k)
  Aligned<std::int16_t> s16;  // int16: per panel, per pair of k: 2 x (8 columns x 2 k)
  std::vector<float> col_scale;
  std::vector<std::int32_t> col_sum;  // sum over k of the quantized weights
  int k = 0, n = 0;
};

// Quantizes W per column to [-limit, limit] (round to nearest) and packs it for the kernel:
// bytes = 4 (int8, vpmaddubsw pairs, then vpmaddwd pairs) or 2 (int16) consecutive k per lane.
IntWeights PackInt(const Problem& p, int limit, int per_lane) {
  IntWeights w;
  w.k = p.k;
  w.n = p.n;
  w.col_scale.assign(p.n, 1.0f);
  w.col_sum.assign(p.n, 0);
  std::vector<std::int32_t> q(static_cast<std::size_t>(p.k) * p.n);
  for (int j = 0; j < p.n; ++j) {
    float max = 0.0f;
    for (int kk = 0; kk < p.k; ++kk) max = std::max(max, std::fabs(p.w[kk * p.n + j]));
    if (max > 0.0f) w.col_scale[j] = max / static_cast<float>(limit);
    for (int kk = 0; kk < p.k; ++kk) {
      const int v = static_cast<int>(std::nearbyint(p.w[kk * p.n + j] / w.col_scale[j]));
      q[static_cast<std::size_t>(kk) * p.n + j] = std::clamp(v, -limit, limit);
      w.col_sum[j] += q[static_cast<std::size_t>(kk) * p.n + j];
    }
  }
  const std::size_t count = static_cast<std::size_t>(p.k) * p.n;
  if (per_lane == 4) {
    w.s8.resize(count);
  } else {
    w.s16.resize(count);
  }
  std::size_t out = 0;
  for (int col = 0; col < p.n; col += kPanel) {
    for (int g = 0; g < p.k; g += per_lane) {
      for (int column = 0; column < kPanel; ++column) {  // 2 registers of 8 lanes
        for (int i = 0; i < per_lane; ++i, ++out) {
          const std::int32_t v = q[static_cast<std::size_t>(g + i) * p.n + col + column];
          if (per_lane == 4) {
            w.s8[out] = static_cast<std::int8_t>(v);
          } else {
            w.s16[out] = static_cast<std::int16_t>(v);
          }
        }
      }
    }
  }
  return w;
}

// A product's quantized left operand, packed per tile: for tile i, lane word (group g, row r)
// at start(i) * groups + g * rows(i) + r holds 4 u8 (or 2 s16) of row r, k = per_lane * g...
struct QuantizedRows {
  Aligned<std::int32_t> packed;
  Aligned<std::uint8_t> u8;   // [m, k] row-major, before packing
  Aligned<std::int16_t> s16;  // [m, k] row-major, before packing
  std::vector<float> row_scale;
  std::vector<std::int32_t> zero_point;
};

// Per-row asymmetric u8: the range [min(x, 0), max(x, 0)] in 255 steps, zero exact.
__attribute__((target("avx2,fma"))) void QuantizeRowU8(const float* x, int k, float* scale,
                                                       std::int32_t* zero_point, std::uint8_t* q) {
  __m256 lo = _mm256_setzero_ps(), hi = _mm256_setzero_ps();
  for (int i = 0; i < k; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    lo = _mm256_min_ps(lo, v);
    hi = _mm256_max_ps(hi, v);
  }
  alignas(32) float l[8], h[8];
  _mm256_store_ps(l, lo);
  _mm256_store_ps(h, hi);
  const float min = *std::min_element(l, l + 8), max = *std::max_element(h, h + 8);
  const float s = max > min ? (max - min) / 255.0f : 1.0f;
  const int zp = std::clamp(static_cast<int>(std::nearbyint(-min / s)), 0, 255);
  *scale = s;
  *zero_point = zp;
  const __m256 inv = _mm256_set1_ps(1.0f / s);
  const __m256i zpv = _mm256_set1_epi32(zp);
  for (int i = 0; i < k; i += 32) {
    __m256i v[4];
    for (int j = 0; j < 4; ++j) {
      v[j] = _mm256_add_epi32(
          _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8 * j), inv)), zpv);
    }
    // packs work per 128-bit lane; the permute puts the 32 bytes back in order.
    const __m256i w01 = _mm256_packs_epi32(v[0], v[1]);
    const __m256i w23 = _mm256_packs_epi32(v[2], v[3]);
    const __m256i b = _mm256_packus_epi16(w01, w23);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                        _mm256_permutevar8x32_epi32(b, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7)));
  }
}

// Per-row symmetric, in s16 lanes: [-max|x|, max|x|] in +-kInt16Limit.
__attribute__((target("avx2,fma"))) void QuantizeRowS16(const float* x, int k, float* scale,
                                                        std::int16_t* q) {
  const __m256 sign = _mm256_set1_ps(-0.0f);
  __m256 m = _mm256_setzero_ps();
  for (int i = 0; i < k; i += 8)
    m = _mm256_max_ps(m, _mm256_andnot_ps(sign, _mm256_loadu_ps(x + i)));
  alignas(32) float a[8];
  _mm256_store_ps(a, m);
  const float max = *std::max_element(a, a + 8);
  const float s = max > 0.0f ? max / static_cast<float>(kInt16Limit) : 1.0f;
  *scale = s;
  const __m256 inv = _mm256_set1_ps(1.0f / s);
  for (int i = 0; i < k; i += 16) {
    const __m256i v0 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i), inv));
    const __m256i v1 = _mm256_cvtps_epi32(_mm256_mul_ps(_mm256_loadu_ps(x + i + 8), inv));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + i),
                        _mm256_permute4x64_epi64(_mm256_packs_epi32(v0, v1), 0xD8));
  }
}

// Quantizes every row of x and packs the words per tile of at most max_rows rows.
void QuantizeRows(const Problem& p, int max_rows, int per_lane, QuantizedRows& out) {
  const int groups = p.k / per_lane;
  out.row_scale.resize(p.m);
  out.zero_point.assign(p.m, 0);
  for (int r = 0; r < p.m; ++r) {
    const float* x = &p.x[static_cast<std::size_t>(r) * p.k];
    if (per_lane == 4) {
      QuantizeRowU8(x, p.k, &out.row_scale[r], &out.zero_point[r],
                    out.u8.data() + static_cast<std::size_t>(r) * p.k);
    } else {
      QuantizeRowS16(x, p.k, &out.row_scale[r], out.s16.data() + static_cast<std::size_t>(r) * p.k);
    }
  }
  const auto* words = per_lane == 4 ? reinterpret_cast<const std::int32_t*>(out.u8.data())
                                    : reinterpret_cast<const std::int32_t*>(out.s16.data());
  const Tiling tiling(p.m, max_rows);
  for (int i = 0; i < tiling.tiles; ++i) {
    const int rows = tiling.rows(i);
    std::int32_t* dst = out.packed.data() + static_cast<std::size_t>(tiling.start(i)) * groups;
    for (int g = 0; g < groups; ++g, dst += rows) {
      for (int r = 0; r < rows; ++r) {
        dst[r] = words[static_cast<std::size_t>(tiling.start(i) + r) * groups + g];
      }
    }
  }
}

// The float epilogue shared by the integer tiles: zero-point correction, scales, bias, ReLU.
__attribute__((target("avx2,fma"))) inline void StoreInt(__m256i acc, float row_scale,
                                                         std::int32_t zero_point,
                                                         const float* col_scale,
                                                         const std::int32_t* col_sum,
                                                         const float* bias, bool relu, float* c) {
  const __m256i corrected = _mm256_sub_epi32(
      acc, _mm256_mullo_epi32(_mm256_set1_epi32(zero_point),
                              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(col_sum))));
  __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(corrected),
                             _mm256_mul_ps(_mm256_set1_ps(row_scale), _mm256_loadu_ps(col_scale)),
                             _mm256_loadu_ps(bias));
  if (relu) v = _mm256_max_ps(v, _mm256_setzero_ps());
  _mm256_storeu_ps(c, v);
}

struct IntTile {
  const std::int32_t* a;  // the tile's packed words
  const void* b;          // the panel
  int groups;
  const float* row_scale;
  const std::int32_t* zero_point;
  const float* col_scale;
  const std::int32_t* col_sum;
  const float* bias;
  float* c;
  int ldc;
  bool relu;
};

template <int R>
__attribute__((target("avx2,fma"))) void Int8Tile(const IntTile& t) {
  const __m256i ones = _mm256_set1_epi16(1);
  __m256i acc[R][2];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  const auto* b = static_cast<const __m256i*>(t.b);
  const std::int32_t* a = t.a;
  for (int g = 0; g < t.groups; ++g, a += R, b += 2) {
    const __m256i b0 = _mm256_load_si256(b);
    const __m256i b1 = _mm256_load_si256(b + 1);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256i av = _mm256_set1_epi32(a[r]);
      acc[r][0] =
          _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b0), ones));
      acc[r][1] =
          _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(av, b1), ones));
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      StoreInt(acc[r][h], t.row_scale[r], t.zero_point[r], t.col_scale + 8 * h, t.col_sum + 8 * h,
               t.bias + 8 * h, t.relu, t.c + r * t.ldc + 8 * h);
    }
  }
}

template <int R>
__attribute__((target("avx2,fma"))) void Int16Tile(const IntTile& t) {
  __m256i acc[R][2];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) acc[r][0] = acc[r][1] = _mm256_setzero_si256();
  const auto* b = static_cast<const __m256i*>(t.b);
  const std::int32_t* a = t.a;
  for (int g = 0; g < t.groups; ++g, a += R, b += 2) {
    const __m256i b0 = _mm256_load_si256(b);
    const __m256i b1 = _mm256_load_si256(b + 1);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256i av = _mm256_set1_epi32(a[r]);
      acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(av, b0));
      acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(av, b1));
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      StoreInt(acc[r][h], t.row_scale[r], 0, t.col_scale + 8 * h, t.col_sum + 8 * h, t.bias + 8 * h,
               t.relu, t.c + r * t.ldc + 8 * h);
    }
  }
}

using IntTileFn = void (*)(const IntTile&);

template <template <int> class Tile, int... I>
constexpr std::array<IntTileFn, sizeof...(I)> MakeTiles(std::integer_sequence<int, I...>) {
  return {&Tile<I + 1>::Run...};
}
template <int R>
struct Int8Tiles {
  static void Run(const IntTile& t) { Int8Tile<R>(t); }
};
template <int R>
struct Int16Tiles {
  static void Run(const IntTile& t) { Int16Tile<R>(t); }
};

// c = dequantize(qx * qW) + b over the packed rows, each panel past all tiles.
template <int MaxRows, template <int> class Tiles>
void IntProduct(const Problem& p, const IntWeights& w, const QuantizedRows& q, int per_lane,
                float* c) {
  static constexpr auto tiles = MakeTiles<Tiles>(std::make_integer_sequence<int, MaxRows>());
  const int groups = p.k / per_lane;
  const Tiling tiling(p.m, MaxRows);
  const std::size_t panel_bytes = static_cast<std::size_t>(p.k) * kPanel * (per_lane == 4 ? 1 : 2);
  const auto* base = per_lane == 4 ? static_cast<const void*>(w.s8.data())
                                   : static_cast<const void*>(w.s16.data());
  for (int col = 0; col < p.n; col += kPanel) {
    IntTile t;
    t.b = static_cast<const char*>(base) + static_cast<std::size_t>(col / kPanel) * panel_bytes;
    t.groups = groups;
    t.col_scale = w.col_scale.data() + col;
    t.col_sum = w.col_sum.data() + col;
    t.bias = p.bias.data() + col;
    t.ldc = p.n;
    t.relu = p.relu;
    for (int i = 0; i < tiling.tiles; ++i) {
      const int row0 = tiling.start(i);
      t.a = q.packed.data() + static_cast<std::size_t>(row0) * groups;
      t.row_scale = q.row_scale.data() + row0;
      t.zero_point = q.zero_point.data() + row0;
      t.c = c + row0 * p.n + col;
      tiles[tiling.rows(i) - 1](t);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Fixtures and checks.

struct Shape {
  int k, n;
  bool relu;
};
constexpr Shape kShapes[] = {{512, 1536, true}, {1536, 512, false}};

struct Prepared {
  Problem problem;
  Fp32Weights fp32;
  IntWeights int8, int16;
};

const Prepared& Get(int shape) {
  static Prepared* prepared[2] = {nullptr, nullptr};
  if (!prepared[shape]) {
    const Shape s = kShapes[shape];
    Problem p = MakeProblem(s.k, s.n, s.relu);
    // int8 weights in [-63, 63], within the [-64, 63] that keeps vpmaddubsw from saturating.
    prepared[shape] = new Prepared{p, PackFp32(p), PackInt(p, 63, 4), PackInt(p, kInt16Limit, 2)};
  }
  return *prepared[shape];
}

void AllocateRows(const Problem& p, int max_rows, QuantizedRows& q) {
  q.packed.resize(static_cast<std::size_t>(p.m) * p.k + 64);
  q.u8.resize(static_cast<std::size_t>(p.m) * p.k);
  q.s16.resize(static_cast<std::size_t>(p.m) * p.k);
  (void)max_rows;
}

void SetCounters(benchmark::State& state, const Problem& p) {
  state.counters["GFLOPS"] =
      benchmark::Counter(2.0 * p.m * p.k * p.n * static_cast<double>(state.iterations()) / 1e9,
                         benchmark::Counter::kIsRate);
  state.SetLabel(std::to_string(p.m) + "x" + std::to_string(p.k) + "x" + std::to_string(p.n));
}

void BM_Fp32Avx2(benchmark::State& state) {
  const Prepared& pr = Get(static_cast<int>(state.range(0)));
  const Problem& p = pr.problem;
  Aligned<float> packed(static_cast<std::size_t>(p.m) * p.k),
      c(static_cast<std::size_t>(p.m) * p.n);
  for (auto _ : state) {
    Fp32Product(p, pr.fp32, packed.data(), c.data());
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  SetCounters(state, p);
}
BENCHMARK(BM_Fp32Avx2)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

template <int R>
void BM_Int8Avx2(benchmark::State& state) {
  const Prepared& pr = Get(static_cast<int>(state.range(0)));
  const Problem& p = pr.problem;
  QuantizedRows q;
  AllocateRows(p, R, q);
  Aligned<float> c(static_cast<std::size_t>(p.m) * p.n);
  for (auto _ : state) {
    QuantizeRows(p, R, 4, q);
    IntProduct<R, Int8Tiles>(p, pr.int8, q, 4, c.data());
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  SetCounters(state, p);
}
BENCHMARK(BM_Int8Avx2<4>)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Int8Avx2<5>)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_Int8Avx2<6>)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

template <int R>
void BM_Int8Avx2KernelOnly(benchmark::State& state) {
  const Prepared& pr = Get(static_cast<int>(state.range(0)));
  const Problem& p = pr.problem;
  QuantizedRows q;
  AllocateRows(p, R, q);
  QuantizeRows(p, R, 4, q);
  Aligned<float> c(static_cast<std::size_t>(p.m) * p.n);
  for (auto _ : state) {
    IntProduct<R, Int8Tiles>(p, pr.int8, q, 4, c.data());
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  SetCounters(state, p);
}
BENCHMARK(BM_Int8Avx2KernelOnly<5>)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

void BM_Int16Avx2(benchmark::State& state) {
  const Prepared& pr = Get(static_cast<int>(state.range(0)));
  const Problem& p = pr.problem;
  QuantizedRows q;
  AllocateRows(p, 6, q);
  Aligned<float> c(static_cast<std::size_t>(p.m) * p.n);
  for (auto _ : state) {
    QuantizeRows(p, 6, 2, q);
    IntProduct<6, Int16Tiles>(p, pr.int16, q, 2, c.data());
    benchmark::DoNotOptimize(c.data());
    benchmark::ClobberMemory();
  }
  SetCounters(state, p);
}
BENCHMARK(BM_Int16Avx2)->Arg(0)->Arg(1)->Unit(benchmark::kMicrosecond);

// Checks each kernel once against scalar arithmetic on the same data: the fp32 one against a
// double-precision product, the integer ones against the same dequantization formula applied to
// exact integer sums. Also prints how far the integer results are from fp32 (for information:
// the accuracy that matters is measured on the encoder, in use_lite_encoder_test.cc).
bool CheckKernels() {
  bool ok = true;
  for (int shape = 0; shape < 2; ++shape) {
    const Prepared& pr = Get(shape);
    const Problem& p = pr.problem;
    const std::size_t out = static_cast<std::size_t>(p.m) * p.n;
    Aligned<float> packed(static_cast<std::size_t>(p.m) * p.k), fp32(out), int8(out), int16(out);
    Fp32Product(p, pr.fp32, packed.data(), fp32.data());
    QuantizedRows q8, q16;
    AllocateRows(p, 5, q8);
    AllocateRows(p, 6, q16);
    QuantizeRows(p, 5, 4, q8);
    IntProduct<5, Int8Tiles>(p, pr.int8, q8, 4, int8.data());
    QuantizeRows(p, 6, 2, q16);
    IntProduct<6, Int16Tiles>(p, pr.int16, q16, 2, int16.data());

    // Unpack the packed int8 weights back to [k, n] for the scalar sums.
    std::vector<int> w8(static_cast<std::size_t>(p.k) * p.n);
    std::size_t at = 0;
    for (int col = 0; col < p.n; col += kPanel) {
      for (int g = 0; g < p.k; g += 4) {
        for (int column = 0; column < kPanel; ++column) {
          for (int i = 0; i < 4; ++i)
            w8[static_cast<std::size_t>(g + i) * p.n + col + column] = pr.int8.s8[at++];
        }
      }
    }
    double fp32_error = 0, int8_error = 0, int16_error = 0, int8_vs_fp32 = 0, norm = 0;
    for (int r = 0; r < p.m; ++r) {
      for (int j = 0; j < p.n; ++j) {
        double exact = p.bias[j];
        std::int64_t sum = 0;
        for (int kk = 0; kk < p.k; ++kk) {
          exact += static_cast<double>(p.x[r * p.k + kk]) * p.w[kk * p.n + j];
          sum += (static_cast<int>(q8.u8[r * p.k + kk]) - q8.zero_point[r]) *
                 w8[static_cast<std::size_t>(kk) * p.n + j];
        }
        double int8_ref =
            static_cast<double>(q8.row_scale[r]) * pr.int8.col_scale[j] * static_cast<double>(sum) +
            p.bias[j];
        if (p.relu) {
          exact = std::max(exact, 0.0);
          int8_ref = std::max(int8_ref, 0.0);
        }
        const std::size_t i = static_cast<std::size_t>(r) * p.n + j;
        fp32_error = std::max(fp32_error, std::fabs(fp32[i] - exact));
        int8_error = std::max(int8_error, std::fabs(int8[i] - int8_ref));
        int16_error += (int16[i] - exact) * (int16[i] - exact);
        int8_vs_fp32 += (int8[i] - exact) * (int8[i] - exact);
        norm += exact * exact;
      }
    }
    std::fprintf(stderr,
                 "check %dx%dx%d: fp32 max |error| %.2e; int8 kernel vs scalar int8 %.2e; "
                 "relative rms error vs exact: int8 %.2e, int16 %.2e\n",
                 p.m, p.k, p.n, fp32_error, int8_error, std::sqrt(int8_vs_fp32 / norm),
                 std::sqrt(int16_error / norm));
    // fp32: rounding of 1536-term sums of terms around 0.05; int8 vs its own scalar formula:
    // only the float epilogue's rounding; int16: its quantization, 1/1023 of the ranges.
    if (fp32_error > 1e-4 || int8_error > 1e-4 || std::sqrt(int16_error / norm) > 5e-3) ok = false;
  }
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma")) {
    std::fprintf(stderr, "int8_gemm_bench needs AVX2 and FMA\n");
    return 1;
  }
  if (!CheckKernels()) {
    std::fprintf(stderr, "a kernel disagrees with its scalar reference; not timing it\n");
    return 1;
  }
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
