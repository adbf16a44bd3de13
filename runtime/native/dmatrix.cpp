// Dense distance-matrix storage (see dmatrix.hpp).
#include "dmatrix.hpp"

#include <cstring>
#include <mutex>


#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FOCAL_X86 1
#include <immintrin.h>
#endif

namespace focal {

double DistMatrix::rel() const {
  // Round to nearest: |s - f| <= 2^-11 |f| <= 2^-11 / (1 - 2^-11) |s| in the
  // normal range (the factor is rounded up here).
  return half ? 4.8852e-4 : 0.0;
}

double DistMatrix::abs() const {
  return half ? 2.9802322387695312e-08 : 0.0;  // 2^-25: half the subnormal spacing
}

namespace {

// Fetches one row into L2 a line at a time, spread over a gather loop (one
// line per 8 values gathered, the rest at the end) so the requests never
// pile up; nothing when there is no row.
struct RowPrefetch {
  const char* p;
  i64 b, bytes;
  void step(i64 s) {
    if ((s & 7) == 0 && b < bytes) {
      __builtin_prefetch(p + b, 0, 1);
      b += 64;
    }
  }
  void finish() {
    for (; b < bytes; b += 64) __builtin_prefetch(p + b, 0, 1);
  }
};

void store_block_generic(const float* tile, i64 B, i64 rows, i64 cols, float* D, i64 n, i64 r0, i64 c0, bool mirror) {
  for (i64 r = 0; r < rows; ++r) std::memcpy(D + (r0 + r) * n + c0, tile + r * B, sizeof(float) * cols);
  if (mirror)
    for (i64 c = 0; c < cols; ++c) {
      float* dst = D + (c0 + c) * n + r0;
      for (i64 r = 0; r < rows; ++r) dst[r] = tile[r * B + c];
    }
}

#ifdef FOCAL_X86
#define FOCAL_AVX2 __attribute__((target("avx2")))
#define FOCAL_F16C __attribute__((target("avx2,f16c")))

FOCAL_AVX2 void stream_row(float* dst, const float* src, i64 len) {
  if (len == 64 && (reinterpret_cast<std::uintptr_t>(dst) & 31) == 0) {
    for (int t = 0; t < 64; t += 8) _mm256_stream_ps(dst + t, _mm256_load_ps(src + t));
  } else {
    std::memcpy(dst, src, sizeof(float) * len);
  }
}

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;

FOCAL_F16C void stream_row_half(std::uint16_t* dst, const float* src, i64 len) {
  i64 t = 0;
  if ((reinterpret_cast<std::uintptr_t>(dst) & 31) == 0) {
    for (; t + 16 <= len; t += 16) {
      const __m128i a = _mm256_cvtps_ph(_mm256_loadu_ps(src + t), kRound);
      const __m128i b = _mm256_cvtps_ph(_mm256_loadu_ps(src + t + 8), kRound);
      _mm256_stream_si256(reinterpret_cast<__m256i*>(dst + t), _mm256_set_m128i(b, a));
    }
  }
  for (; t + 8 <= len; t += 8)
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + t), _mm256_cvtps_ph(_mm256_loadu_ps(src + t), kRound));
  for (; t < len; ++t) dst[t] = _cvtss_sh(src[t], kRound);
}

FOCAL_AVX2 void transpose8(const float* src, i64 ls, float* dst, i64 ld) {
  const __m256 a0 = _mm256_load_ps(src), a1 = _mm256_load_ps(src + ls), a2 = _mm256_load_ps(src + 2 * ls),
               a3 = _mm256_load_ps(src + 3 * ls), a4 = _mm256_load_ps(src + 4 * ls),
               a5 = _mm256_load_ps(src + 5 * ls), a6 = _mm256_load_ps(src + 6 * ls),
               a7 = _mm256_load_ps(src + 7 * ls);
  const __m256 t0 = _mm256_unpacklo_ps(a0, a1), t1 = _mm256_unpackhi_ps(a0, a1);
  const __m256 t2 = _mm256_unpacklo_ps(a2, a3), t3 = _mm256_unpackhi_ps(a2, a3);
  const __m256 t4 = _mm256_unpacklo_ps(a4, a5), t5 = _mm256_unpackhi_ps(a4, a5);
  const __m256 t6 = _mm256_unpacklo_ps(a6, a7), t7 = _mm256_unpackhi_ps(a6, a7);
  const __m256 u0 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u1 = _mm256_shuffle_ps(t0, t2, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u2 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u3 = _mm256_shuffle_ps(t1, t3, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u4 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u5 = _mm256_shuffle_ps(t4, t6, _MM_SHUFFLE(3, 2, 3, 2));
  const __m256 u6 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(1, 0, 1, 0));
  const __m256 u7 = _mm256_shuffle_ps(t5, t7, _MM_SHUFFLE(3, 2, 3, 2));
  _mm256_store_ps(dst, _mm256_permute2f128_ps(u0, u4, 0x20));
  _mm256_store_ps(dst + ld, _mm256_permute2f128_ps(u1, u5, 0x20));
  _mm256_store_ps(dst + 2 * ld, _mm256_permute2f128_ps(u2, u6, 0x20));
  _mm256_store_ps(dst + 3 * ld, _mm256_permute2f128_ps(u3, u7, 0x20));
  _mm256_store_ps(dst + 4 * ld, _mm256_permute2f128_ps(u0, u4, 0x31));
  _mm256_store_ps(dst + 5 * ld, _mm256_permute2f128_ps(u1, u5, 0x31));
  _mm256_store_ps(dst + 6 * ld, _mm256_permute2f128_ps(u2, u6, 0x31));
  _mm256_store_ps(dst + 7 * ld, _mm256_permute2f128_ps(u3, u7, 0x31));
}

FOCAL_AVX2 void transpose_tile(const float* tile, i64 B, float* tileT) {
  // B is a multiple of 8; padding rows/columns are transposed too and simply
  // not written out.
  for (i64 r = 0; r < B; r += 8)
    for (i64 c = 0; c < B; c += 8) transpose8(tile + r * B + c, B, tileT + c * B + r, B);
}

FOCAL_AVX2 void store_block_avx2(const float* tile, i64 B, i64 rows, i64 cols, float* D, i64 n, i64 r0, i64 c0,
                                 bool mirror, float* tileT) {
  for (i64 r = 0; r < rows; ++r) stream_row(D + (r0 + r) * n + c0, tile + r * B, cols);
  if (!mirror) return;
  transpose_tile(tile, B, tileT);
  for (i64 c = 0; c < cols; ++c) stream_row(D + (c0 + c) * n + r0, tileT + c * B, rows);
}

FOCAL_F16C void store_block_half(const float* tile, i64 B, i64 rows, i64 cols, std::uint16_t* D, i64 n, i64 r0,
                                 i64 c0, bool mirror, float* tileT) {
  for (i64 r = 0; r < rows; ++r) stream_row_half(D + (r0 + r) * n + c0, tile + r * B, cols);
  if (!mirror) return;
  transpose_tile(tile, B, tileT);
  for (i64 c = 0; c < cols; ++c) stream_row_half(D + (c0 + c) * n + r0, tileT + c * B, rows);
}

FOCAL_F16C void half_row_to_float(const std::uint16_t* src, i64 n, float* dst) {
  i64 t = 0;
  for (; t + 8 <= n; t += 8)
    _mm256_storeu_ps(dst + t, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + t))));
  for (; t < n; ++t) dst[t] = _cvtsh_ss(src[t]);
}

FOCAL_F16C void gather_half(const std::uint16_t* row, const int* idx, i64 m, float* out, RowPrefetch& pf) {
  for (i64 s = 0; s < m; ++s) {
    out[s] = _cvtsh_ss(row[idx[s]]);
    pf.step(s);
  }
  pf.finish();
}

__attribute__((target("avx512f"))) void gram_to_d2_avx512(float* tile, i64 ld, i64 rows, i64 cols, const float* nr,
                                                          const float* nc) {
  // The operations of gram_to_d2's portable loop, lane by lane.
  const __m512 two = _mm512_set1_ps(2.0f), zero = _mm512_setzero_ps();
  for (i64 r = 0; r < rows; ++r) {
    float* g = tile + r * ld;
    const __m512 vr = _mm512_set1_ps(nr[r]);
    for (i64 c = 0; c < cols; c += 16) {
      const i64 left = cols - c;
      const __mmask16 m = static_cast<__mmask16>(left >= 16 ? 0xFFFF : (1u << left) - 1u);
      const __m512 s = _mm512_add_ps(vr, _mm512_maskz_loadu_ps(m, nc + c));
      const __m512 f = _mm512_sub_ps(s, _mm512_mul_ps(two, _mm512_maskz_loadu_ps(m, g + c)));
      _mm512_mask_storeu_ps(g + c, m, _mm512_maskz_max_ps(0xFFFF, f, zero));  // max(-0, +0) = +0, as the loop
    }
  }
}

bool detect_f16c() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("f16c");
}
#undef FOCAL_AVX2
#undef FOCAL_F16C
#endif

void gram_to_d2_generic(float* tile, i64 ld, i64 rows, i64 cols, const float* nr, const float* nc) {
  for (i64 r = 0; r < rows; ++r) {
    float* g = tile + r * ld;
    for (i64 c = 0; c < cols; ++c) {
      const float f = (nr[r] + nc[c]) - 2.0f * g[c];
      g[c] = f > 0.0f ? f : 0.0f;
    }
  }
}

// The matrix is the one big allocation; one is kept between calls.
std::mutex g_matrix_mutex;
AlignedBuffer<float> g_matrix;
constexpr std::size_t kMatrixCacheMax = std::size_t(80) << 20;  // bytes kept between calls

}  // namespace

bool half_matrix_supported(Isa isa) {
#ifdef FOCAL_X86
  static const bool f16c = detect_f16c();
  return isa >= Isa::avx2 && f16c;
#else
  (void)isa;
  return false;
#endif
}

DistMatrix take_matrix(i64 n, bool half, Isa isa) {
  DistMatrix m;
  m.n = n;
  m.half = half && half_matrix_supported(isa);
  m.stream = isa >= Isa::avx2;
  const std::size_t cells = static_cast<std::size_t>(n) * static_cast<std::size_t>(n);
  const std::size_t floats = (m.half ? (cells + 1) / 2 : cells) + 16;  // + 16: whole-vector reads at the end
  {
    std::lock_guard<std::mutex> lock(g_matrix_mutex);
    if (g_matrix.size() >= floats) m.buf = std::move(g_matrix);
  }
  if (!m.buf.size()) m.buf.reset(floats);
  std::memset(m.buf.data() + (floats - 16), 0, 16 * sizeof(float));
  return m;
}

void give_back_matrix(DistMatrix&& m) {
  if (m.buf.size() * sizeof(float) > kMatrixCacheMax) return;
  std::lock_guard<std::mutex> lock(g_matrix_mutex);
  if (m.buf.size() > g_matrix.size()) g_matrix = std::move(m.buf);
}

void store_block(const float* tile, i64 B, i64 rows, i64 cols, DistMatrix& D, i64 r0, i64 c0, bool mirror,
                 float* tileT) {
#ifdef FOCAL_X86
  if (D.half) return store_block_half(tile, B, rows, cols, D.f16(), D.n, r0, c0, mirror, tileT);
  if (D.stream) return store_block_avx2(tile, B, rows, cols, D.f32(), D.n, r0, c0, mirror, tileT);
#endif
  store_block_generic(tile, B, rows, cols, D.f32(), D.n, r0, c0, mirror);
}

// Orders this thread's streaming stores before the matrix is read elsewhere.
void finish_stores(const DistMatrix& D) {
#ifdef FOCAL_X86
  if (D.stream || D.half) _mm_sfence();
#else
  (void)D;
#endif
}

GramToD2 gram_to_d2_kernel(Isa isa) {
#ifdef FOCAL_X86
  if (isa == Isa::avx512) return gram_to_d2_avx512;
#endif
  (void)isa;
  return gram_to_d2_generic;
}

const float* matrix_row(const DistMatrix& D, i64 i, float* buf) {
#ifdef FOCAL_X86
  if (D.half) {
    half_row_to_float(D.f16() + i * D.n, D.n, buf);
    return buf;
  }
#endif
  (void)buf;
  return D.f32() + i * D.n;
}

void gather_row(const DistMatrix& D, i64 i, const int* idx, i64 m, float* out, i64 next) {
  const char* g = next >= 0 ? (D.half ? reinterpret_cast<const char*>(D.f16() + next * D.n)
                                      : reinterpret_cast<const char*>(D.f32() + next * D.n))
                            : nullptr;
  const i64 bytes = D.n * (D.half ? 2 : 4);
  RowPrefetch pf{g, g ? 0 : bytes, bytes};
#ifdef FOCAL_X86
  if (D.half) {
    gather_half(D.f16() + i * D.n, idx, m, out, pf);
    return;
  }
#endif
  const float* row = D.f32() + i * D.n;
  for (i64 s = 0; s < m; ++s) {
    out[s] = row[idx[s]];
    pf.step(s);
  }
  pf.finish();
}

}  // namespace focal
