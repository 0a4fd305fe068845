// Forward pass of USE-lite. docs/design/use-lite.md gives the graph step by step, and its
// section "The C++ pass" the measurements behind the choices made here.
//
// Layout: activations are row-major [tokens, width] in 64-byte aligned buffers; every width
// (256, 512, 768, 1536) is a multiple of 16 floats, so every row starts on a cache line. The
// weights ([in, out], y = x*W + b) are repacked at load time into panels of 16 or 32 columns,
// each panel stored k-major, so a product streams them once, sequentially, and never repacks.
//
// Why not Eigen: a GEMM library repacks the weight matrix on every call, which for the 10 to
// 40 rows of one sentence costs about as much as the multiplication itself, and it can only use
// the instructions the whole binary is compiled for (SSE2 in a portable x86-64 build). Here the
// weights are packed once and the kernel (AVX-512, AVX2+FMA or portable) is chosen at run time.
//
// Determinism: every output element of a product is summed over k in ascending order in one
// accumulator, however many rows there are and however they are tiled, and layer norm,
// attention and pooling look at one row or one sentence at a time. So a sentence gets the same
// bits alone or in any batch.
#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <mutex>
#include <new>
#include <utility>

#if defined(__x86_64__) || defined(__i386__)
#define MANN_USE_LITE_X86 1
#include <immintrin.h>
#endif

#include <mann/encode/use_lite_encoder.h>
#include <mann/encode/use_tokenizer.h>

namespace mann::encode {
namespace {

constexpr int kEmbeddingRows = 8002;
constexpr int kEmbeddingWidth = 256;
constexpr int kTimescales = kEmbeddingWidth / 2;
constexpr int kWidth = 512;  // every layer's output
constexpr int kHidden = 1536;
constexpr int kHeads = 4;
constexpr int kPositions = static_cast<int>(UseLiteEncoder::kMaxTokens);
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

std::size_t Size(int rows, int width) {
  return static_cast<std::size_t>(rows) * static_cast<std::size_t>(width);
}

// ---------------------------------------------------------------------------------------------
// Aligned buffers.

constexpr std::size_t kAlignment = 64;

template <class T>
struct AlignedAllocator {
  using value_type = T;
  AlignedAllocator() = default;
  template <class U>
  AlignedAllocator(const AlignedAllocator<U>&) {}  // rebinding, as std::allocator allows
  T* allocate(std::size_t n) {
    return static_cast<T*>(::operator new(n * sizeof(T), std::align_val_t(kAlignment)));
  }
  void deallocate(T* p, std::size_t) { ::operator delete(p, std::align_val_t(kAlignment)); }
  friend bool operator==(const AlignedAllocator&, const AlignedAllocator&) { return true; }
};

using FloatBuffer = std::vector<float, AlignedAllocator<float>>;

// Grows `buffer` to at least `n` floats and returns its data. It never shrinks, so a reused
// workspace stops allocating once it has seen its largest group.
float* Reserve(FloatBuffer& buffer, std::size_t n) {
  if (buffer.size() < n) buffer.resize(n);
  return buffer.data();
}

// ---------------------------------------------------------------------------------------------
// Packed matrices.

int RoundUp(int n, int multiple) { return (n + multiple - 1) / multiple * multiple; }

// A k x n matrix as n/panel panels of `panel` columns (n a multiple of it). A panel holds its
// columns for k = 0..k-1, `panel` floats per k, so a kernel reads it as one sequential stream.
struct PackedView {
  const float* data = nullptr;
  int k = 0;
  int n = 0;
};

// Packs the row-major k x n matrix at `src` (row stride `ld`; n a multiple of `panel`).
void PackRows(const float* src, std::size_t ld, int k, int n, int panel, float* dst) {
  for (int col = 0; col < n; col += panel) {
    for (int kk = 0; kk < k; ++kk) {
      std::memcpy(dst, src + kk * ld + col, panel * sizeof(float));
      dst += panel;
    }
  }
}

// Packs the transpose of the row-major n x k matrix at `src` (row stride `ld`) as a k x n
// matrix, with zero columns up to the next multiple of `panel`.
void PackTransposed(const float* src, std::size_t ld, int n, int k, int panel, float* dst) {
  for (int col = 0; col < n; col += panel) {
    for (int kk = 0; kk < k; ++kk) {
      for (int j = 0; j < panel; ++j) dst[j] = col + j < n ? src[(col + j) * ld + kk] : 0.0f;
      dst += panel;
    }
  }
}

struct PackedMatrix {
  FloatBuffer data;
  int k = 0;
  int n = 0;
  PackedView view() const { return {data.data(), k, n}; }
};

// ---------------------------------------------------------------------------------------------
// Tile kernels: `rows` rows of the left operand, packed k-major (`rows` floats per k), times one
// panel, with the epilogue applied before the store.

enum class Epilogue {
  kStore,  // c = x*W + b
  kRelu,   // c = max(x*W + b, 0)
  kAdd,    // c += x*W + b (a residual connection)
};

struct Tile {
  const float* a = nullptr;
  const float* b = nullptr;  // the panel
  int k = 0;
  const float* bias = nullptr;  // at the panel's first column, or null for none
  float* c = nullptr;           // the tile's top-left element
  std::size_t ldc = 0;
  Epilogue epilogue = Epilogue::kStore;
};

using TileKernel = void (*)(const Tile&);

// The portable kernel: GCC/Clang vector types, separate multiply and add (SSE2, the x86-64
// baseline, has no fused multiply-add).
typedef float F32x4 __attribute__((vector_size(16)));

template <int R>
void PortableTile(const Tile& t) {
  constexpr int kPanel = 16;
  constexpr int kLanes = kPanel / 4;
  F32x4 acc[R][kLanes];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
#pragma GCC unroll 4
    for (int l = 0; l < kLanes; ++l) acc[r][l] = F32x4{};
  }
  const float* a = t.a;
  for (int kk = 0; kk < t.k; ++kk, a += R) {
    const float* b = t.b + kk * kPanel;
    F32x4 bv[kLanes];
#pragma GCC unroll 4
    for (int l = 0; l < kLanes; ++l) std::memcpy(&bv[l], b + 4 * l, sizeof(F32x4));
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const F32x4 av = {a[r], a[r], a[r], a[r]};
#pragma GCC unroll 4
      for (int l = 0; l < kLanes; ++l) acc[r][l] += av * bv[l];
    }
  }
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    float* out = t.c + r * t.ldc;
#pragma GCC unroll 4
    for (int l = 0; l < kLanes; ++l) {
      F32x4 v = acc[r][l];
      F32x4 other;
      if (t.bias) {
        std::memcpy(&other, t.bias + 4 * l, sizeof(other));
        v += other;
      }
      if (t.epilogue == Epilogue::kRelu) v = v > 0.0f ? v : F32x4{};
      if (t.epilogue == Epilogue::kAdd) {
        std::memcpy(&other, out + 4 * l, sizeof(other));
        v = other + v;
      }
      std::memcpy(out + 4 * l, &v, sizeof(v));
    }
  }
}

#if defined(MANN_USE_LITE_X86)

template <int R>
__attribute__((target("avx2,fma"))) void Avx2Tile(const Tile& t) {
  constexpr int kPanel = 16;
  __m256 acc[R][2];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    acc[r][0] = _mm256_setzero_ps();
    acc[r][1] = _mm256_setzero_ps();
  }
  const float* a = t.a;
  for (int kk = 0; kk < t.k; ++kk, a += R) {
    const float* b = t.b + kk * kPanel;
    const __m256 b0 = _mm256_load_ps(b);
    const __m256 b1 = _mm256_load_ps(b + 8);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m256 av = _mm256_broadcast_ss(a + r);
      acc[r][0] = _mm256_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm256_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    float* out = t.c + r * t.ldc;
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      __m256 v = acc[r][h];
      if (t.bias) v = _mm256_add_ps(v, _mm256_loadu_ps(t.bias + 8 * h));
      if (t.epilogue == Epilogue::kRelu) v = _mm256_max_ps(v, zero);
      if (t.epilogue == Epilogue::kAdd) v = _mm256_add_ps(_mm256_loadu_ps(out + 8 * h), v);
      _mm256_storeu_ps(out + 8 * h, v);
    }
  }
}

template <int R>
__attribute__((target("avx512f"))) void Avx512Tile(const Tile& t) {
  constexpr int kPanel = 32;  // two registers per row
  __m512 acc[R][2];
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    acc[r][0] = _mm512_setzero_ps();
    acc[r][1] = _mm512_setzero_ps();
  }
  const float* a = t.a;
  for (int kk = 0; kk < t.k; ++kk, a += R) {
    const float* b = t.b + kk * kPanel;
    const __m512 b0 = _mm512_load_ps(b);
    const __m512 b1 = _mm512_load_ps(b + 16);
#pragma GCC unroll 16
    for (int r = 0; r < R; ++r) {
      const __m512 av = _mm512_set1_ps(a[r]);
      acc[r][0] = _mm512_fmadd_ps(av, b0, acc[r][0]);
      acc[r][1] = _mm512_fmadd_ps(av, b1, acc[r][1]);
    }
  }
  const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 16
  for (int r = 0; r < R; ++r) {
    float* out = t.c + r * t.ldc;
#pragma GCC unroll 2
    for (int h = 0; h < 2; ++h) {
      __m512 v = acc[r][h];
      if (t.bias) v = _mm512_add_ps(v, _mm512_loadu_ps(t.bias + 16 * h));
      // The masked max: GCC 12 reports a false -Wmaybe-uninitialized inside _mm512_max_ps.
      if (t.epilogue == Epilogue::kRelu) {
        v = _mm512_maskz_max_ps(static_cast<__mmask16>(0xFFFF), v, zero);
      }
      if (t.epilogue == Epilogue::kAdd) v = _mm512_add_ps(_mm512_loadu_ps(out + 16 * h), v);
      _mm512_storeu_ps(out + 16 * h, v);
    }
  }
}

#endif  // MANN_USE_LITE_X86

// Copies `R` rows of x (row stride lda, times `scale`) into a tile's k-major layout.
template <int R>
void PackTile(const float* src, std::size_t lda, int k, float scale, float* dst) {
  if (scale == 1.0f) {
    for (int kk = 0; kk < k; ++kk, dst += R) {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) dst[r] = src[r * lda + kk];
    }
  } else {
    for (int kk = 0; kk < k; ++kk, dst += R) {
#pragma GCC unroll 16
      for (int r = 0; r < R; ++r) dst[r] = src[r * lda + kk] * scale;
    }
  }
}

using TilePacker = void (*)(const float*, std::size_t, int, float, float*);

// ---------------------------------------------------------------------------------------------
// Row-sparse kernels, for a left operand that is mostly zeros (Layer_0's FFN hidden layer, 92%
// zeros after the ReLU): for one row, c = epilogue(sum over the non-zero a_j of a_j * W[j, :]
// + b), with W row-major, accumulated block by block of columns in registers, j ascending.
// Leaving out the zero terms leaves the sum as the dense product computes it.

using RowKernel = void (*)(const float* values, const std::int32_t* index, int count,
                           const float* w, int n, const float* bias, float* c, Epilogue epilogue);

template <int kBlock>
void PortableRow(const float* values, const std::int32_t* index, int count, const float* w, int n,
                 const float* bias, float* c, Epilogue epilogue) {
  constexpr int kLanes = kBlock / 4;
  for (int col = 0; col < n; col += kBlock) {
    F32x4 acc[kLanes];
#pragma GCC unroll 16
    for (int l = 0; l < kLanes; ++l) acc[l] = F32x4{};
    for (int i = 0; i < count; ++i) {
      const F32x4 h = {values[i], values[i], values[i], values[i]};
      const float* row = w + static_cast<std::size_t>(index[i]) * n + col;
#pragma GCC unroll 16
      for (int l = 0; l < kLanes; ++l) {
        F32x4 wv;
        std::memcpy(&wv, row + 4 * l, sizeof(wv));
        acc[l] += h * wv;
      }
    }
#pragma GCC unroll 16
    for (int l = 0; l < kLanes; ++l) {
      F32x4 v = acc[l];
      F32x4 other;
      std::memcpy(&other, bias + col + 4 * l, sizeof(other));
      v += other;
      if (epilogue == Epilogue::kRelu) v = v > 0.0f ? v : F32x4{};
      if (epilogue == Epilogue::kAdd) {
        std::memcpy(&other, c + col + 4 * l, sizeof(other));
        v = other + v;
      }
      std::memcpy(c + col + 4 * l, &v, sizeof(v));
    }
  }
}

#if defined(MANN_USE_LITE_X86)

template <int kBlock>
__attribute__((target("avx2,fma"))) void Avx2Row(const float* values, const std::int32_t* index,
                                                 int count, const float* w, int n,
                                                 const float* bias, float* c, Epilogue epilogue) {
  constexpr int kRegs = kBlock / 8;
  for (int col = 0; col < n; col += kBlock) {
    __m256 acc[kRegs];
#pragma GCC unroll 16
    for (int q = 0; q < kRegs; ++q) acc[q] = _mm256_setzero_ps();
    for (int i = 0; i < count; ++i) {
      const __m256 h = _mm256_set1_ps(values[i]);
      const float* row = w + static_cast<std::size_t>(index[i]) * n + col;
#pragma GCC unroll 16
      for (int q = 0; q < kRegs; ++q)
        acc[q] = _mm256_fmadd_ps(h, _mm256_loadu_ps(row + 8 * q), acc[q]);
    }
    const __m256 zero = _mm256_setzero_ps();
#pragma GCC unroll 16
    for (int q = 0; q < kRegs; ++q) {
      float* out = c + col + 8 * q;
      __m256 v = _mm256_add_ps(acc[q], _mm256_loadu_ps(bias + col + 8 * q));
      if (epilogue == Epilogue::kRelu) v = _mm256_max_ps(v, zero);
      if (epilogue == Epilogue::kAdd) v = _mm256_add_ps(_mm256_loadu_ps(out), v);
      _mm256_storeu_ps(out, v);
    }
  }
}

template <int kBlock>
__attribute__((target("avx512f"))) void Avx512Row(const float* values, const std::int32_t* index,
                                                  int count, const float* w, int n,
                                                  const float* bias, float* c, Epilogue epilogue) {
  constexpr int kRegs = kBlock / 16;
  for (int col = 0; col < n; col += kBlock) {
    __m512 acc[kRegs];
#pragma GCC unroll 16
    for (int q = 0; q < kRegs; ++q) acc[q] = _mm512_setzero_ps();
    for (int i = 0; i < count; ++i) {
      const __m512 h = _mm512_set1_ps(values[i]);
      const float* row = w + static_cast<std::size_t>(index[i]) * n + col;
#pragma GCC unroll 16
      for (int q = 0; q < kRegs; ++q) {
        acc[q] = _mm512_fmadd_ps(h, _mm512_loadu_ps(row + 16 * q), acc[q]);
      }
    }
    const __m512 zero = _mm512_setzero_ps();
#pragma GCC unroll 16
    for (int q = 0; q < kRegs; ++q) {
      float* out = c + col + 16 * q;
      __m512 v = _mm512_add_ps(acc[q], _mm512_loadu_ps(bias + col + 16 * q));
      if (epilogue == Epilogue::kRelu) {
        v = _mm512_maskz_max_ps(static_cast<__mmask16>(0xFFFF), v, zero);
      }
      if (epilogue == Epilogue::kAdd) v = _mm512_add_ps(_mm512_loadu_ps(out), v);
      _mm512_storeu_ps(out, v);
    }
  }
}

#endif  // MANN_USE_LITE_X86

// ---------------------------------------------------------------------------------------------
// Kernel sets.

constexpr int kMaxTileRows = 14;

// The kernels of one instruction set: dense tiles of 1..rows rows (they all sum in the same
// order, so the tile height never changes a result) and the row-sparse kernel, whose block of
// columns (row_block) must divide the width of the matrices it is used on.
struct KernelSet {
  UseLiteKernel kernel;
  int rows;                                    // at most kMaxTileRows
  int panel;                                   // columns per panel
  std::array<TileKernel, kMaxTileRows> tiles;  // [rows - 1]
  std::array<TilePacker, kMaxTileRows> packs;  // [rows - 1]
  RowKernel row;
  int row_block;
};

template <template <int> class Tiles, int Rows, int Panel>
KernelSet MakeKernelSet(UseLiteKernel kernel, RowKernel row, int row_block) {
  static_assert(Rows <= kMaxTileRows);
  KernelSet set{kernel, Rows, Panel, {}, {}, row, row_block};
  [&]<int... I>(std::integer_sequence<int, I...>) {
    ((set.tiles[I] = &Tiles<I + 1>::Run), ...);
    ((set.packs[I] = &PackTile<I + 1>), ...);
  }
  (std::make_integer_sequence<int, Rows>());
  return set;
}

template <int R>
struct PortableTiles {
  static void Run(const Tile& t) { PortableTile<R>(t); }
};

// Tile shapes, measured on this model's products (docs/design/use-lite.md): AVX-512, 14 rows x
// 32 columns = 28 accumulators of its 32 registers; AVX2, 6 x 16 = 12 of 16; portable, 3 x 16 =
// 12 of 16 (the panel is reloaded from L1 for each row). Row-sparse blocks: AVX-512 128 columns,
// so that the block's slice of W (768 KB) stays in a 1 MB L2 across a sentence's rows.
const KernelSet& PortableKernels() {
  static const KernelSet set =
      MakeKernelSet<PortableTiles, 3, 16>(UseLiteKernel::kPortable, &PortableRow<32>, 32);
  return set;
}

#if defined(MANN_USE_LITE_X86)
template <int R>
struct Avx2Tiles {
  static void Run(const Tile& t) { Avx2Tile<R>(t); }
};
template <int R>
struct Avx512Tiles {
  static void Run(const Tile& t) { Avx512Tile<R>(t); }
};

const KernelSet& Avx2Kernels() {
  static const KernelSet set =
      MakeKernelSet<Avx2Tiles, 6, 16>(UseLiteKernel::kAvx2, &Avx2Row<64>, 64);
  return set;
}
const KernelSet& Avx512Kernels() {
  static const KernelSet set =
      MakeKernelSet<Avx512Tiles, 14, 32>(UseLiteKernel::kAvx512, &Avx512Row<128>, 128);
  return set;
}
#endif

bool CpuHas(UseLiteKernel kernel) {
#if defined(MANN_USE_LITE_X86)
  // libgcc's checks include the OS's support for the wide registers (XGETBV).
  __builtin_cpu_init();
  switch (kernel) {
    case UseLiteKernel::kAvx512:
      return __builtin_cpu_supports("avx512f");
    case UseLiteKernel::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case UseLiteKernel::kAuto:
    case UseLiteKernel::kPortable:
      return true;
  }
  return false;
#else
  return kernel == UseLiteKernel::kAuto || kernel == UseLiteKernel::kPortable;
#endif
}

const KernelSet& KernelsFor(UseLiteKernel kernel) {
#if defined(MANN_USE_LITE_X86)
  if (kernel == UseLiteKernel::kAuto) {
    kernel = CpuHas(UseLiteKernel::kAvx512) ? UseLiteKernel::kAvx512
             : CpuHas(UseLiteKernel::kAvx2) ? UseLiteKernel::kAvx2
                                            : UseLiteKernel::kPortable;
  }
  if (kernel == UseLiteKernel::kAvx512) return Avx512Kernels();
  if (kernel == UseLiteKernel::kAvx2) return Avx2Kernels();
#else
  (void)kernel;  // only the portable kernel exists here
#endif
  return PortableKernels();
}

// ---------------------------------------------------------------------------------------------
// Products.

// A dense layer y = x*W + b, W packed for the encoder's kernel set.
struct Dense {
  PackedMatrix w;           // k and n always; the panels only where the layer runs dense
  std::vector<float> rows;  // W row-major, only where the layer runs row-sparse
  std::vector<float> b;
};

// The packed rows of one chunk of a product's left operand stay within this budget, so they sit
// in the L2 cache beside the panel being streamed past them.
constexpr std::size_t kPackedRowsBudget = 256 * 1024 / sizeof(float);

// Scratch for the left operand of a product.
struct PackBuffers {
  FloatBuffer values;
  std::vector<float> sparse_values;        // a row's non-zero entries
  std::vector<std::int32_t> sparse_index;  // and their columns
};

// Runs products on one kernel set, packing left operands into one call's scratch.
class Products {
 public:
  Products(const KernelSet& set, PackBuffers& pack) : set_(set), pack_(pack) {}

  int panel() const { return set_.panel; }

  // c = epilogue(a*W + bias) for the m rows of `a` (row stride lda, w.k columns, each element
  // multiplied by a_scale first), into the first w.n columns of c (row stride ldc).
  void Run(const float* a, std::size_t lda, int m, PackedView w, const float* bias, float* c,
           std::size_t ldc, Epilogue epilogue = Epilogue::kStore, float a_scale = 1.0f) const;

  void Run(const Dense& layer, const float* a, std::size_t lda, int m, float* c, std::size_t ldc,
           Epilogue epilogue = Epilogue::kStore) const {
    Run(a, lda, m, layer.w.view(), layer.b.data(), c, ldc, epilogue);
  }

  // As Run(), for an `a` that is mostly zeros, with the layer's weights kept row-major
  // (Dense::rows): each row of c adds up only the rows of W its non-zero entries select.
  void RunRowSparse(const Dense& layer, const float* a, std::size_t lda, int m, float* c,
                    std::size_t ldc, Epilogue epilogue) const;

 private:
  const KernelSet& set_;
  PackBuffers& pack_;
};

void Products::Run(const float* a, std::size_t lda, int m, PackedView w, const float* bias,
                   float* c, std::size_t ldc, Epilogue epilogue, float a_scale) const {
  if (m <= 0) return;
  const int k = w.k;
  // Tiles of nearly equal height (26 rows -> 13+13, or 9+9+8 rather than 12+12+2): a short
  // tile leaves the FMA units waiting on too few accumulators.
  const int tiles = (m + set_.rows - 1) / set_.rows;
  const int base = m / tiles;
  const int extra = m % tiles;
  auto tile_start = [&](int i) { return i * base + std::min(i, extra); };
  const int chunk_tiles =
      std::max<int>(1, static_cast<int>(kPackedRowsBudget / Size(set_.rows, k)));
  float* packed = Reserve(pack_.values, Size(std::min(tiles, chunk_tiles) * set_.rows, k));
  const std::size_t panel_size = Size(k, set_.panel);

  for (int first = 0; first < tiles; first += chunk_tiles) {
    const int last = std::min(tiles, first + chunk_tiles);
    const int row0 = tile_start(first);
    for (int i = first; i < last; ++i) {
      const int rows = tile_start(i + 1) - tile_start(i);
      set_.packs[rows - 1](a + tile_start(i) * lda, lda, k, a_scale,
                           packed + Size(tile_start(i) - row0, k));
    }
    // Each panel is read once per chunk and stays in the cache for all the chunk's tiles.
    for (int col = 0; col < w.n; col += set_.panel) {
      Tile t;
      t.b = w.data + (col / set_.panel) * panel_size;
      t.k = k;
      t.bias = bias ? bias + col : nullptr;
      t.ldc = ldc;
      t.epilogue = epilogue;
      for (int i = first; i < last; ++i) {
        t.a = packed + Size(tile_start(i) - row0, k);
        t.c = c + tile_start(i) * ldc + col;
        set_.tiles[tile_start(i + 1) - tile_start(i) - 1](t);
      }
    }
  }
}

void Products::RunRowSparse(const Dense& layer, const float* a, std::size_t lda, int m, float* c,
                            std::size_t ldc, Epilogue epilogue) const {
  const int k = layer.w.k;
  if (pack_.sparse_values.size() < static_cast<std::size_t>(k)) {
    pack_.sparse_values.resize(k);
    pack_.sparse_index.resize(k);
  }
  for (int r = 0; r < m; ++r) {
    const float* row = a + r * lda;
    // Branch-free compaction: a branch on "non-zero" would be mispredicted at 8% density (and a
    // float compare becomes one), so the test is on the bits; -0 counts as zero, and leaving out
    // -0 * w changes no sum either.
    int count = 0;
    for (int j = 0; j < k; ++j) {
      std::uint32_t bits;
      std::memcpy(&bits, row + j, sizeof(bits));
      pack_.sparse_values[count] = row[j];
      pack_.sparse_index[count] = j;
      count += (bits << 1) != 0;
    }
    set_.row(pack_.sparse_values.data(), pack_.sparse_index.data(), count, layer.rows.data(),
             layer.w.n, layer.b.data(), c + r * ldc, epilogue);
  }
}

// ---------------------------------------------------------------------------------------------
// Simulated reduced precision (UseLitePrecisionSimulation), for measurement only. The default
// pass selects no product, so none of this runs and its vectors are unchanged.

using Simulation = UseLitePrecisionSimulation;

bool Rounds(const Simulation& simulation, std::uint32_t product) {
  return (simulation.products & product) != 0;
}

// Rounds the row-major k x n matrix `w` in place as simulation.weights asks.
void RoundWeights(const Simulation& simulation, int k, int n, float* w) {
  if (simulation.weights == Simulation::Weights::kBfloat16) {
    for (std::size_t i = 0; i < Size(k, n); ++i) {
      std::uint32_t bits;
      std::memcpy(&bits, &w[i], sizeof(bits));
      bits = (bits + 0x7FFFu + ((bits >> 16) & 1u)) & 0xFFFF0000u;  // the model has no NaN
      std::memcpy(&w[i], &bits, sizeof(bits));
    }
  } else if (simulation.weights == Simulation::Weights::kInt) {
    // Symmetric, one scale per output column (or per group of rows of it), as an int8 kernel
    // would dequantize its sums.
    const float levels = static_cast<float>((1 << (simulation.weight_bits - 1)) - 1);
    const int group = simulation.weight_group > 0 ? simulation.weight_group : k;
    for (int j = 0; j < n; ++j) {
      for (int first = 0; first < k; first += group) {
        const int last = std::min(k, first + group);
        float max = 0.0f;
        for (int i = first; i < last; ++i) max = std::max(max, std::fabs(w[Size(i, n) + j]));
        if (max == 0.0f) continue;
        const float scale = max / levels;
        for (int i = first; i < last; ++i) {
          float& v = w[Size(i, n) + j];
          v = std::clamp(std::nearbyint(v / scale), -levels, levels) * scale;
        }
      }
    }
  }
}

// Rounds one row of a product's input as simulation.activations asks, one scale per row (per
// token), as an int8 kernel would quantize its left operand.
void RoundRow(const Simulation& simulation, const float* x, int n, float* y) {
  const int bits = simulation.activation_bits;
  if (simulation.activations == Simulation::Activations::kSymmetric) {
    const float levels = static_cast<float>((1 << (bits - 1)) - 1);
    float max = 0.0f;
    for (int i = 0; i < n; ++i) max = std::max(max, std::fabs(x[i]));
    const float scale = max > 0.0f ? max / levels : 1.0f;
    for (int i = 0; i < n; ++i)
      y[i] = std::clamp(std::nearbyint(x[i] / scale), -levels, levels) * scale;
  } else {
    // Asymmetric: the range always includes 0, so 0 (ReLU's output, mostly) stays exact.
    const float levels = static_cast<float>((1 << bits) - 1);
    float low = 0.0f, high = 0.0f;
    for (int i = 0; i < n; ++i) {
      low = std::min(low, x[i]);
      high = std::max(high, x[i]);
    }
    const float scale = high > low ? (high - low) / levels : 1.0f;
    const float zero = std::clamp(std::nearbyint(-low / scale), 0.0f, levels);
    for (int i = 0; i < n; ++i) {
      y[i] = (std::clamp(std::nearbyint(x[i] / scale) + zero, 0.0f, levels) - zero) * scale;
    }
  }
}

// A product's left operand as the simulation sees it: `a` itself unless `product` has its
// inputs rounded, else a rounded copy in `buffer` with the same row stride.
class InputRounding {
 public:
  InputRounding(const Simulation& simulation, FloatBuffer& buffer)
      : simulation_(simulation), buffer_(buffer) {}

  const float* operator()(std::uint32_t product, const float* a, std::size_t lda, int rows,
                          int width) const {
    if (simulation_.activations == Simulation::Activations::kExact ||
        !Rounds(simulation_, product)) {
      return a;
    }
    float* out = Reserve(buffer_, rows * lda);
    for (int r = 0; r < rows; ++r) RoundRow(simulation_, a + r * lda, width, out + r * lda);
    return out;
  }

 private:
  const Simulation& simulation_;
  FloatBuffer& buffer_;
};

// ---------------------------------------------------------------------------------------------
// The model.

struct LayerNormParams {
  std::vector<float> scale;
  std::vector<float> bias;
};

struct Layer {
  int width = 0;  // of the attention input; the output is always 512
  float query_scale = 0;
  LayerNormParams attention_norm, ffn_norm;
  Dense qkv, attention_out, ffn_in, ffn_out;
  bool has_residual = false;
  Dense residual;  // Layer_0 projects its 256-wide input to 512
  // The products' bits in UseLitePrecisionSimulation, for the simulated pass.
  std::uint32_t qkv_product = 0, attention_out_product = 0, residual_product = 0,
                ffn_in_product = 0, ffn_out_product = 0;
};

// Looks up the tensors a layer uses, checks their shapes and packs the matrices in panels of
// `panel` columns. Layer_0 attends at 256 and projects to 512; Layer_1 works at 512
// throughout. Both have 4 heads. The products `simulation` selects get their weights rounded.
Result<Layer> LoadLayer(const UseLiteWeights& weights, int index, int panel,
                        const Simulation& simulation) {
  const std::string l = "Layer_" + std::to_string(index) + "/TransformerLayer/";
  const int d = index == 0 ? 256 : 512;
  using Shape = std::vector<std::int64_t>;
  auto vec = [&](const std::string& name, int n) -> Result<std::vector<float>> {
    MANN_ASSIGN_OR_RETURN(std::span<const float> s, weights.Float(name, Shape{n}));
    return std::vector<float>(s.begin(), s.end());
  };
  // Kernels are stored as [in, out] or as 1x1 convolutions [1, 1, in, out]. A layer that runs
  // row-sparse keeps them as they are, the others packed.
  auto dense = [&](const std::string& kernel, Shape shape, const std::string& bias,
                   std::uint32_t product, bool row_sparse = false) -> Result<Dense> {
    MANN_ASSIGN_OR_RETURN(std::span<const float> w, weights.Float(kernel, shape));
    Dense layer;
    layer.w.k = static_cast<int>(shape[shape.size() - 2]);
    layer.w.n = static_cast<int>(shape.back());
    std::vector<float> rounded;
    if (simulation.weights != Simulation::Weights::kExact && Rounds(simulation, product)) {
      rounded.assign(w.begin(), w.end());
      RoundWeights(simulation, layer.w.k, layer.w.n, rounded.data());
      w = rounded;
    }
    if (row_sparse) {
      layer.rows.assign(w.begin(), w.end());
    } else {
      layer.w.data.resize(w.size());
      PackRows(w.data(), layer.w.n, layer.w.k, layer.w.n, panel, layer.w.data.data());
    }
    MANN_ASSIGN_OR_RETURN(layer.b, vec(bias, layer.w.n));
    return layer;
  };
  Layer layer;
  layer.width = d;
  layer.query_scale = 1.0f / std::sqrt(static_cast<float>(d / kHeads));
  layer.qkv_product = index == 0 ? Simulation::kLayer0Qkv : Simulation::kLayer1Qkv;
  layer.attention_out_product =
      index == 0 ? Simulation::kLayer0AttentionOut : Simulation::kLayer1AttentionOut;
  layer.residual_product = index == 0 ? Simulation::kLayer0Residual : 0;
  layer.ffn_in_product = index == 0 ? Simulation::kLayer0FfnIn : Simulation::kLayer1FfnIn;
  layer.ffn_out_product = index == 0 ? Simulation::kLayer0FfnOut : Simulation::kLayer1FfnOut;

  const std::string ln = Cat({kApply, l, "layer_prepostprocess/layer_norm/layer_norm_"});
  const std::string ffn_ln = Cat({kApply, l, "FFN/layer_prepostprocess/layer_norm/layer_norm_"});
  const std::string mha = Cat({kModule, l, "MultiheadAttention/"});
  const std::string mha_bias = Cat({kApply, l, "MultiheadAttention/"});
  MANN_ASSIGN_OR_RETURN(layer.attention_norm.scale, vec(Cat({ln, "scale", kPartition}), d));
  MANN_ASSIGN_OR_RETURN(layer.attention_norm.bias, vec(Cat({ln, "bias", kPartition}), d));
  MANN_ASSIGN_OR_RETURN(
      layer.qkv,
      dense(mha + "qkv_transform_single/kernel/part_0", {1, 1, d, 3 * d},
            Cat({mha_bias, "qkv_transform_single/bias", kPartition}), layer.qkv_product));
  MANN_ASSIGN_OR_RETURN(layer.attention_out,
                        dense(mha + "output_transform_single/kernel/part_0", {1, 1, d, kWidth},
                              Cat({mha_bias, "output_transform_single/bias", kPartition}),
                              layer.attention_out_product));
  if (index == 0) {
    layer.has_residual = true;
    MANN_ASSIGN_OR_RETURN(
        layer.residual, dense(Cat({kApply, l, "dense/kernel", kPartition}), {d, kWidth},
                              Cat({kApply, l, "dense/bias", kPartition}), layer.residual_product));
  }
  MANN_ASSIGN_OR_RETURN(layer.ffn_norm.scale, vec(Cat({ffn_ln, "scale", kPartition}), kWidth));
  MANN_ASSIGN_OR_RETURN(layer.ffn_norm.bias, vec(Cat({ffn_ln, "bias", kPartition}), kWidth));
  MANN_ASSIGN_OR_RETURN(
      layer.ffn_in, dense(Cat({kStack, l, "FFN/conv1/Tensordot/Reshape_1"}), {kWidth, kHidden},
                          Cat({kApply, l, "FFN/conv1/bias", kPartition}), layer.ffn_in_product));
  MANN_ASSIGN_OR_RETURN(
      layer.ffn_out,
      dense(Cat({kStack, l, "FFN/conv2/Tensordot/Reshape_1"}), {kHidden, kWidth},
            Cat({kApply, l, "FFN/conv2/bias", kPartition}), layer.ffn_out_product, index == 0));
  return layer;
}

// Element-wise row helpers, four lanes at a time (the x86-64 baseline vectorizes them; the
// compiler would not on its own, the widths being run-time values). Each lane does the scalar
// arithmetic, so results do not depend on the vector width. Widths are multiples of 4.
F32x4 Load4(const float* p) {
  F32x4 v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
void Store4(float* p, F32x4 v) { std::memcpy(p, &v, sizeof(v)); }

// Sums n floats in eight interleaved partial sums, combined in a fixed order, so the result does
// not depend on the data's alignment.
float Sum(const float* x, int n) {
  F32x4 low{}, high{};  // partial sums of lanes 0-3 and 4-7
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    low += Load4(x + i);
    high += Load4(x + i + 4);
  }
  float sum = 0.0f;
  for (; i < n; ++i) sum += x[i];
  for (int l = 0; l < 4; ++l) sum += low[l];
  for (int l = 0; l < 4; ++l) sum += high[l];
  return sum;
}

// Row-wise layer norm with the biased variance, as the graph's Mean/Square/Rsqrt nodes do:
// (x - mean) * rsqrt(var + eps) * scale + bias. `centred` is one row of scratch.
void LayerNorm(const float* x, int rows, int width, const LayerNormParams& norm, float* y,
               float* centred) {
  const float* scale = norm.scale.data();
  const float* bias = norm.bias.data();
  for (int r = 0; r < rows; ++r) {
    const float* in = x + Size(r, width);
    float* out = y + Size(r, width);
    const float mean = Sum(in, width) / static_cast<float>(width);
    for (int i = 0; i < width; i += 4) {
      const F32x4 c = Load4(in + i) - mean;
      Store4(centred + i, c);
      Store4(out + i, c * c);
    }
    const float variance = Sum(out, width) / static_cast<float>(width);
    const float inv = 1.0f / std::sqrt(variance + kLayerNormEpsilon);
    for (int i = 0; i < width; i += 4) {
      Store4(out + i, Load4(centred + i) * inv * Load4(scale + i) + Load4(bias + i));
    }
  }
}

// Softmax of each of the `rows` rows (first `n` entries, row stride ld), in place.
void Softmax(float* scores, int rows, int n, std::size_t ld) {
  for (int r = 0; r < rows; ++r) {
    float* row = scores + r * ld;
    const float max = *std::max_element(row, row + n);
    for (int j = 0; j < n; ++j) row[j] = std::exp(row[j] - max);
    const float sum = Sum(row, n);
    for (int j = 0; j < n; ++j) row[j] /= sum;
  }
}

// Column means of rows [first, first + n) of a row-major matrix of `width` columns, summed in
// row order.
void MeanRows(const float* x, int width, int first, int n, float* mean) {
  std::fill(mean, mean + width, 0.0f);
  for (int r = first; r < first + n; ++r) {
    const float* row = x + Size(r, width);
    for (int i = 0; i < width; i += 4) Store4(mean + i, Load4(mean + i) + Load4(row + i));
  }
  const float count = static_cast<float>(n);
  for (int i = 0; i < width; i += 4) Store4(mean + i, Load4(mean + i) / count);
}

// The matrices of one call, sized for its largest group so far.
struct Scratch {
  FloatBuffer x0;             // [rows, 256]: the embedded input, kept for Layer_0's residual
  FloatBuffer x;              // [rows, 512]: the residual stream
  FloatBuffer normed;         // [rows, 512]: layer norm output
  FloatBuffer qkv;            // [rows, 1536]: q | k | v
  FloatBuffer merged;         // [rows, 512]: attention output, heads side by side
  FloatBuffer hidden;         // [rows, 1536]: FFN hidden layer
  FloatBuffer keys;           // one head's K^T, packed
  FloatBuffer values;         // one head's V, packed
  FloatBuffer scores;         // [t, t rounded up to a panel]: one head's attention weights
  PackBuffers pack;           // packed rows of a product's left operand
  FloatBuffer centred;        // one row of layer-norm scratch
  FloatBuffer pooled;         // [sentences, 512]
  FloatBuffer pooled_hidden;  // [sentences, 1536]
  FloatBuffer head;           // [sentences, 512]
  FloatBuffer rounded;        // a product's rounded input, in the simulated pass only
};

// Multi-head self-attention of one layer: norm and the q|k|v projection on all rows at once,
// then each sentence attends to its own tokens only, head by head. Leaves s.merged.
void SelfAttention(const Layer& layer, const Products& mm, const InputRounding& rounding,
                   const float* in, int rows, std::span<const std::size_t> lengths, Scratch& s) {
  const int d = layer.width;
  const int dh = d / kHeads;
  const std::size_t ld = 3 * static_cast<std::size_t>(d);
  const int max_padded = RoundUp(kPositions, mm.panel());
  float* normed = Reserve(s.normed, Size(rows, kWidth));
  float* qkv = Reserve(s.qkv, Size(rows, 3 * d));
  float* merged = Reserve(s.merged, Size(rows, kWidth));
  float* keys = Reserve(s.keys, Size(max_padded, dh));
  float* values = Reserve(s.values, Size(kPositions, dh));
  float* scores = Reserve(s.scores, Size(kPositions, max_padded));

  LayerNorm(in, rows, d, layer.attention_norm, normed, Reserve(s.centred, kWidth));
  mm.Run(layer.qkv, rounding(layer.qkv_product, normed, d, rows, d), d, rows, qkv, ld);

  int start = 0;
  for (std::size_t length : lengths) {
    const int t = static_cast<int>(length);
    const int padded = RoundUp(t, mm.panel());
    const float* q = qkv + start * ld;
    for (int h = 0; h < kHeads; ++h) {
      // scores = (q * scale) k^T, softmax, then times v. A single sentence has no padding,
      // so the graph's attention bias is zero here.
      PackTransposed(q + d + h * dh, ld, t, dh, mm.panel(), keys);
      mm.Run(q + h * dh, ld, t, {keys, dh, padded}, nullptr, scores, padded, Epilogue::kStore,
             layer.query_scale);
      Softmax(scores, t, t, padded);
      PackRows(q + 2 * d + h * dh, ld, t, dh, mm.panel(), values);
      mm.Run(scores, padded, t, {values, t, dh}, nullptr, merged + Size(start, d) + h * dh, d);
    }
    start += t;
  }
}

}  // namespace

std::string_view UseLiteKernelName(UseLiteKernel kernel) {
  switch (kernel) {
    case UseLiteKernel::kAuto:
      return "auto";
    case UseLiteKernel::kPortable:
      return "portable";
    case UseLiteKernel::kAvx2:
      return "avx2";
    case UseLiteKernel::kAvx512:
      return "avx512";
  }
  return "unknown";
}

Result<UseLiteKernel> ParseUseLiteKernel(std::string_view name) {
  for (UseLiteKernel k : {UseLiteKernel::kAuto, UseLiteKernel::kPortable, UseLiteKernel::kAvx2,
                          UseLiteKernel::kAvx512}) {
    if (name == UseLiteKernelName(k)) return k;
  }
  return InvalidArgumentError("unknown USE-lite kernel \"" + std::string(name) +
                              "\": expected auto, portable, avx2 or avx512");
}

struct UseLiteEncoder::Params {
  const KernelSet* kernels = nullptr;
  std::vector<float> embedding;  // [8002, 256]
  std::vector<float> timing;     // [kMaxTokens, 256]: sin | cos per position
  Layer layers[2];
  Dense head;                             // tanh_layer_0, 512x512
  UseLitePrecisionSimulation simulation;  // for measurement only; selects nothing by default
};

struct UseLiteEncoder::Workspace {
  Scratch scratch;
  std::vector<std::int32_t> ids;     // every text's ids, back to back
  std::vector<std::size_t> lengths;  // per text, after the cut at kMaxTokens
  std::vector<std::size_t> starts;   // per text: offset into ids
};

// Hands out workspaces, one per concurrent call; a returned one is reused by the next call.
class UseLiteEncoder::WorkspacePool {
 public:
  class Lease {
   public:
    Lease(WorkspacePool& pool, std::unique_ptr<Workspace> ws) : pool_(pool), ws_(std::move(ws)) {}
    ~Lease() { pool_.Return(std::move(ws_)); }
    Lease(const Lease&) = delete;
    Lease& operator=(const Lease&) = delete;
    Workspace& operator*() const { return *ws_; }

   private:
    WorkspacePool& pool_;
    std::unique_ptr<Workspace> ws_;
  };

  Lease Borrow() {
    std::unique_ptr<Workspace> ws;
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!free_.empty()) {
        ws = std::move(free_.back());
        free_.pop_back();
      }
    }
    if (!ws) ws = std::make_unique<Workspace>();
    return Lease(*this, std::move(ws));
  }

 private:
  void Return(std::unique_ptr<Workspace> ws) {
    std::lock_guard<std::mutex> lock(mu_);
    free_.push_back(std::move(ws));
  }

  std::mutex mu_;
  std::vector<std::unique_ptr<Workspace>> free_;
};

bool UseLiteEncoder::KernelSupported(UseLiteKernel kernel) { return CpuHas(kernel); }

Result<std::unique_ptr<UseLiteEncoder>> UseLiteEncoder::Load(const std::string& model_dir,
                                                             UseLiteKernel kernel) {
  return Load(model_dir, kernel, UseLitePrecisionSimulation{});
}

Result<std::unique_ptr<UseLiteEncoder>> UseLiteEncoder::Load(
    const std::string& model_dir, UseLiteKernel kernel,
    const UseLitePrecisionSimulation& simulation) {
  if (simulation.weight_bits < 2 || simulation.weight_bits > 16) {
    return InvalidArgumentError("UseLitePrecisionSimulation.weight_bits must be in [2, 16], not " +
                                std::to_string(simulation.weight_bits));
  }
  if (simulation.activation_bits < 2 || simulation.activation_bits > 16) {
    return InvalidArgumentError(
        "UseLitePrecisionSimulation.activation_bits must be in [2, 16], not " +
        std::to_string(simulation.activation_bits));
  }
  if (simulation.weight_group < 0) {
    return InvalidArgumentError("UseLitePrecisionSimulation.weight_group must be >= 0, not " +
                                std::to_string(simulation.weight_group));
  }
  if ((simulation.products & ~UseLitePrecisionSimulation::kAllProducts) != 0) {
    return InvalidArgumentError("UseLitePrecisionSimulation.products has unknown bits");
  }
  if (!CpuHas(kernel)) {
    return FailedPreconditionError("USE-lite kernel " + std::string(UseLiteKernelName(kernel)) +
                                   " needs CPU features this machine lacks; use auto");
  }
  MANN_ASSIGN_OR_RETURN(UseLiteWeights weights, UseLiteWeights::Load(model_dir));
  auto params = std::make_unique<Params>();
  params->kernels = &KernelsFor(kernel);
  params->simulation = simulation;
  const int panel = params->kernels->panel;
  using Shape = std::vector<std::int64_t>;

  MANN_ASSIGN_OR_RETURN(
      std::span<const float> embedding,
      weights.Float("module/Embeddings_en", Shape{kEmbeddingRows, kEmbeddingWidth}));
  params->embedding.assign(embedding.begin(), embedding.end());

  // timing(p) = [sin(p*inv[0..127]) | cos(p*inv[0..127])], tensor2tensor's timing signal; the
  // inverse timescales are read from the graph rather than recomputed.
  MANN_ASSIGN_OR_RETURN(
      std::span<const float> inv,
      weights.Float(Cat({kStack, "Layer_0/AddTimingSignal/TimingSignal/ExpandDims_1"}),
                    Shape{1, kTimescales}));
  params->timing.resize(Size(kPositions, kEmbeddingWidth));
  for (int p = 0; p < kPositions; ++p) {
    float* row = &params->timing[Size(p, kEmbeddingWidth)];
    for (int i = 0; i < kTimescales; ++i) {
      const float angle = static_cast<float>(p) * inv[i];  // a float32 product, as in the graph
      row[i] = std::sin(angle);
      row[kTimescales + i] = std::cos(angle);
    }
  }

  for (int l = 0; l < 2; ++l) {
    MANN_ASSIGN_OR_RETURN(params->layers[l], LoadLayer(weights, l, panel, simulation));
  }

  const std::string head = "module/Encoder_en/hidden_layers/tanh_layer_0/";
  MANN_ASSIGN_OR_RETURN(std::span<const float> head_w,
                        weights.Float(head + "weights", Shape{kWidth, kWidth}));
  MANN_ASSIGN_OR_RETURN(std::span<const float> head_b, weights.Float(head + "bias", Shape{kWidth}));
  std::vector<float> rounded_head;
  if (simulation.weights != Simulation::Weights::kExact && Rounds(simulation, Simulation::kHead)) {
    rounded_head.assign(head_w.begin(), head_w.end());
    RoundWeights(simulation, kWidth, kWidth, rounded_head.data());
    head_w = rounded_head;
  }
  params->head.w.k = kWidth;
  params->head.w.n = kWidth;
  params->head.w.data.resize(head_w.size());
  PackRows(head_w.data(), kWidth, kWidth, kWidth, panel, params->head.w.data.data());
  params->head.b.assign(head_b.begin(), head_b.end());

  const std::string vocab_path = model_dir + "/vocab.json";
  MANN_ASSIGN_OR_RETURN(UseTokenizer tokenizer, UseTokenizer::FromVocabFile(vocab_path));
  if (tokenizer.vocab_size() > static_cast<std::size_t>(kEmbeddingRows)) {
    return DataLossError(vocab_path + " has " + std::to_string(tokenizer.vocab_size()) +
                         " pieces, more than the " + std::to_string(kEmbeddingRows) +
                         " rows of module/Embeddings_en");
  }
  // `weights` (the shards' 28 MB) is freed here: the pass keeps its own copies.
  return std::unique_ptr<UseLiteEncoder>(
      new UseLiteEncoder(std::move(params), std::make_unique<UseTokenizer>(std::move(tokenizer))));
}

UseLiteEncoder::UseLiteEncoder(std::unique_ptr<Params> params,
                               std::unique_ptr<UseTokenizer> tokenizer)
    : params_(std::move(params)),
      tokenizer_(std::move(tokenizer)),
      pool_(std::make_unique<WorkspacePool>()) {}

UseLiteEncoder::~UseLiteEncoder() = default;

UseLiteKernel UseLiteEncoder::kernel() const { return params_->kernels->kernel; }

std::string UseLiteEncoder::Id() const {
  return params_->simulation.active() ? "use-lite-v1-d512+simulated" : "use-lite-v1-d512";
}

void UseLiteEncoder::Forward(std::span<const std::int32_t> ids,
                             std::span<const std::size_t> lengths, Workspace& ws,
                             Vector* out) const {
  const Params& p = *params_;
  Scratch& s = ws.scratch;
  const Products mm(*p.kernels, s.pack);
  const InputRounding rounding(p.simulation, s.rounded);
  const int rows = static_cast<int>(ids.size());
  const int sentences = static_cast<int>(lengths.size());

  // x0 = 2*E[id] + timing(position): the graph adds the embedding once in AddTimingSignal and
  // once more in Layer_0/add.
  float* x0 = Reserve(s.x0, Size(rows, kEmbeddingWidth));
  for (int r = 0, sentence = 0, position = 0; r < rows; ++r, ++position) {
    if (position == static_cast<int>(lengths[sentence])) {
      ++sentence;
      position = 0;
    }
    const float* e = &p.embedding[Size(ids[r], kEmbeddingWidth)];
    const float* timing = &p.timing[Size(position, kEmbeddingWidth)];
    float* row = x0 + Size(r, kEmbeddingWidth);
    for (int i = 0; i < kEmbeddingWidth; i += 4) {
      Store4(row + i, 2.0f * Load4(e + i) + Load4(timing + i));
    }
  }

  // The two layers. Each: x += attention(LN(x)) (Layer_0: its residual is a dense 256 -> 512
  // projection of the un-normalized input), then x += FFN(LN(x)), 512 -> 1536 (ReLU) -> 512.
  float* x = Reserve(s.x, Size(rows, kWidth));
  float* normed = Reserve(s.normed, Size(rows, kWidth));
  float* centred = Reserve(s.centred, kWidth);
  float* hidden = Reserve(s.hidden, Size(rows, kHidden));
  for (int l = 0; l < 2; ++l) {
    const Layer& layer = p.layers[l];
    const float* in = l == 0 ? x0 : x;
    SelfAttention(layer, mm, rounding, in, rows, lengths, s);
    const float* merged =
        rounding(layer.attention_out_product, s.merged.data(), layer.width, rows, layer.width);
    if (layer.has_residual) {
      mm.Run(layer.attention_out, merged, layer.width, rows, x, kWidth);
      mm.Run(layer.residual,
             rounding(layer.residual_product, x0, kEmbeddingWidth, rows, kEmbeddingWidth),
             kEmbeddingWidth, rows, x, kWidth, Epilogue::kAdd);
    } else {
      mm.Run(layer.attention_out, merged, layer.width, rows, x, kWidth, Epilogue::kAdd);
    }
    LayerNorm(x, rows, kWidth, layer.ffn_norm, normed, centred);
    mm.Run(layer.ffn_in, rounding(layer.ffn_in_product, normed, kWidth, rows, kWidth), kWidth, rows,
           hidden, kHidden, Epilogue::kRelu);
    // Layer_1's FFN output is left to the pooling below.
    if (l == 0) {
      const float* h = rounding(layer.ffn_out_product, hidden, kHidden, rows, kHidden);
      mm.RunRowSparse(layer.ffn_out, h, kHidden, rows, x, kWidth, Epilogue::kAdd);
    }
  }

  // Mean over each sentence's tokens. The last FFN output is only ever averaged, and averaging
  // commutes with its 1536 -> 512 product: mean(x + h*W + b) = mean(x) + mean(h)*W + b. So
  // that product runs on one row per sentence instead of one per token (a sixth of the
  // arithmetic of the pass).
  float* pooled = Reserve(s.pooled, Size(sentences, kWidth));
  float* pooled_hidden = Reserve(s.pooled_hidden, Size(sentences, kHidden));
  for (int i = 0, start = 0; i < sentences; start += static_cast<int>(lengths[i]), ++i) {
    const int t = static_cast<int>(lengths[i]);
    MeanRows(x, kWidth, start, t, pooled + Size(i, kWidth));
    MeanRows(hidden, kHidden, start, t, pooled_hidden + Size(i, kHidden));
  }
  mm.Run(p.layers[1].ffn_out,
         rounding(p.layers[1].ffn_out_product, pooled_hidden, kHidden, sentences, kHidden), kHidden,
         sentences, pooled, kWidth, Epilogue::kAdd);

  // Head: tanh(dense), then L2 with the graph's floor on the squared norm.
  float* head = Reserve(s.head, Size(sentences, kWidth));
  mm.Run(p.head, rounding(Simulation::kHead, pooled, kWidth, sentences, kWidth), kWidth, sentences,
         head, kWidth);
  for (int i = 0; i < sentences; ++i) {
    float* y = head + Size(i, kWidth);
    float squares[kWidth];
    for (int j = 0; j < kWidth; ++j) {
      y[j] = std::tanh(y[j]);
      squares[j] = y[j] * y[j];
    }
    const float scale = 1.0f / std::sqrt(std::max(Sum(squares, kWidth), kMinSquaredNorm));
    out[i].resize(kDimension);
    for (int j = 0; j < kWidth; ++j) out[i][j] = y[j] * scale;
  }
}

Result<Vector> UseLiteEncoder::EmbedTokens(std::span<const std::int32_t> ids) const {
  ids = ids.first(std::min(ids.size(), kMaxTokens));
  // No tokens: the reference throws; the Encoder contract wants the zero vector.
  if (ids.empty()) return Vector(kDimension, 0.0f);
  for (std::size_t p = 0; p < ids.size(); ++p) {
    if (ids[p] < 0 || ids[p] >= kEmbeddingRows) {
      return InvalidArgumentError("token id " + std::to_string(ids[p]) + " at position " +
                                  std::to_string(p) + " is outside [0, " +
                                  std::to_string(kEmbeddingRows) + ")");
    }
  }
  const WorkspacePool::Lease ws = pool_->Borrow();
  const std::size_t length = ids.size();
  Vector out;
  Forward(ids, std::span<const std::size_t>(&length, 1), *ws, &out);
  return out;
}

Status UseLiteEncoder::EncodeBatch(std::span<const std::string> texts,
                                   std::vector<Vector>* out) const {
  const WorkspacePool::Lease lease = pool_->Borrow();
  Workspace& ws = *lease;

  // Tokenize everything first; the ids of all texts lie back to back, each cut at kMaxTokens.
  ws.ids.clear();
  ws.starts.clear();
  ws.lengths.clear();
  for (const std::string& text : texts) {
    const std::vector<std::int32_t> ids = tokenizer_->Encode(text);
    const std::size_t n = std::min(ids.size(), kMaxTokens);
    for (std::size_t p = 0; p < n; ++p) {
      if (ids[p] < 0 || ids[p] >= kEmbeddingRows) {
        return InternalError("tokenizer output rejected: token id " + std::to_string(ids[p]) +
                             " at position " + std::to_string(p) + " is outside [0, " +
                             std::to_string(kEmbeddingRows) + ")");
      }
    }
    ws.starts.push_back(ws.ids.size());
    ws.lengths.push_back(n);
    ws.ids.insert(ws.ids.end(), ids.begin(), ids.begin() + static_cast<std::ptrdiff_t>(n));
  }

  // Groups of consecutive texts, bounded in tokens and sentences, in input order. Texts with
  // no tokens get the zero vector; they take no room in ids, so they never split a group.
  std::vector<Vector> vectors(texts.size());
  std::vector<std::size_t> group;  // indices of the group's texts
  std::vector<std::size_t> group_lengths;
  std::size_t group_tokens = 0;
  auto flush = [&] {
    if (group.empty()) return;
    std::vector<Vector> group_out(group.size());
    Forward(std::span<const std::int32_t>(ws.ids).subspan(ws.starts[group.front()], group_tokens),
            group_lengths, ws, group_out.data());
    for (std::size_t i = 0; i < group.size(); ++i) vectors[group[i]] = std::move(group_out[i]);
    group.clear();
    group_lengths.clear();
    group_tokens = 0;
  };
  for (std::size_t i = 0; i < texts.size(); ++i) {
    const std::size_t n = ws.lengths[i];
    if (n == 0) {
      vectors[i].assign(kDimension, 0.0f);
      continue;
    }
    if (group_tokens + n > kMaxGroupTokens || group.size() == kMaxGroupSentences) flush();
    group.push_back(i);
    group_lengths.push_back(n);
    group_tokens += n;
  }
  flush();
  *out = std::move(vectors);
  return Status::Ok();
}

}  // namespace mann::encode
