// Float32 inner-product kernels (see gemm.hpp). Built with -ffp-contract=fast
// so the portable kernels fuse multiply-adds where the baseline ISA has them
// (aarch64); on x86-64 AVX-512 or AVX2+FMA versions are selected at run
// time, the wheel itself staying at the SSE2 baseline (no -march=native).
#include "gemm.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FOCAL_X86_DISPATCH 1
#include <immintrin.h>
#endif

namespace focal {

void pack_rows(const float* x, i64 n, int d, PackedRows& out) {
  out.n = n;
  out.d = d;
  out.panels = (n + kPanel - 1) / kPanel;
  out.data.reset(static_cast<std::size_t>(out.panels) * d * kPanel);
  float* dst = out.data.data();
  for (i64 p = 0; p < out.panels; ++p) {
    float* panel = dst + p * d * kPanel;
    for (int r = 0; r < kPanel; ++r) {
      const i64 row = p * kPanel + r;
      if (row < n) {
        const float* src = x + row * d;
        for (int k = 0; k < d; ++k) panel[k * kPanel + r] = src[k];
      } else {
        for (int k = 0; k < d; ++k) panel[k * kPanel + r] = 0.0f;
      }
    }
  }
}

namespace {

// ---------------------------------------------------------------- portable
typedef float v4sf __attribute__((vector_size(16)));

inline v4sf load4(const float* p) {
  v4sf v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline void store4(float* p, v4sf v) { std::memcpy(p, &v, sizeof(v)); }

// NV vectors of 4 columns per micro-tile: 2 on x86 baseline (16 SSE
// registers), 4 where 32 vector registers exist (aarch64).
#if defined(__aarch64__)
constexpr int kNV = 4;
#else
constexpr int kNV = 2;
#endif

void tile_generic(const float* A, const float* B, int d, float* C, i64 ldc) {
  for (int c0 = 0; c0 < kPanel; c0 += 4 * kNV) {
    for (int r0 = 0; r0 < kPanel; r0 += 4) {
      v4sf tot[4][kNV];
      for (int t = 0; t < 4; ++t)
        for (int v = 0; v < kNV; ++v) tot[t][v] = v4sf{0.f, 0.f, 0.f, 0.f};
      for (int k0 = 0; k0 < d; k0 += kChunk) {
        const int k1 = std::min(d, k0 + kChunk);
        v4sf acc[4][kNV];
        for (int t = 0; t < 4; ++t)
          for (int v = 0; v < kNV; ++v) acc[t][v] = v4sf{0.f, 0.f, 0.f, 0.f};
        const float* a = A + r0 + k0 * kPanel;
        const float* b = B + c0 + k0 * kPanel;
        for (int k = k0; k < k1; ++k, a += kPanel, b += kPanel) {
          v4sf bv[kNV];
          for (int v = 0; v < kNV; ++v) bv[v] = load4(b + 4 * v);
          for (int t = 0; t < 4; ++t) {
            const float s = a[t];
            const v4sf av = {s, s, s, s};
            for (int v = 0; v < kNV; ++v) acc[t][v] += av * bv[v];
          }
        }
        for (int t = 0; t < 4; ++t)
          for (int v = 0; v < kNV; ++v) tot[t][v] = k0 == 0 ? acc[t][v] : tot[t][v] + acc[t][v];
      }
      for (int t = 0; t < 4; ++t)
        for (int v = 0; v < kNV; ++v) store4(C + (r0 + t) * ldc + c0 + 4 * v, tot[t][v]);
    }
  }
}

void dots_generic(const float* v, const float* panels, int d, i64 q0, i64 q1, float* out) {
  for (i64 q = q0; q < q1; ++q) {
    const float* b = panels + q * d * kPanel;
    v4sf tot[4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
    for (int k0 = 0; k0 < d; k0 += kChunk) {
      const int k1 = std::min(d, k0 + kChunk);
      v4sf acc[4] = {{0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}, {0.f, 0.f, 0.f, 0.f}};
      for (int k = k0; k < k1; ++k, b += kPanel) {
        const float s = v[k];
        const v4sf sv = {s, s, s, s};
        for (int j = 0; j < 4; ++j) acc[j] += sv * load4(b + 4 * j);
      }
      for (int j = 0; j < 4; ++j) tot[j] = k0 == 0 ? acc[j] : tot[j] + acc[j];
    }
    for (int j = 0; j < 4; ++j) store4(out + q * kPanel + 4 * j, tot[j]);
  }
}

#ifdef FOCAL_X86_DISPATCH
// ------------------------------------------------------------ AVX2 + FMA
// One kPanel x kPanel tile over dimensions [k0, k1): C = chunk sums when
// first, else C += chunk sums (the chunked order gemm.hpp describes).
__attribute__((target("avx2,fma"))) void tile_chunk_avx2(const float* A, const float* B, int k0, int k1, float* C,
                                                         i64 ldc, bool first) {
  for (int r0 = 0; r0 < kPanel; r0 += 4) {
    float* c = C + r0 * ldc;
    __m256 c00 = _mm256_setzero_ps(), c01 = _mm256_setzero_ps();
    __m256 c10 = _mm256_setzero_ps(), c11 = _mm256_setzero_ps();
    __m256 c20 = _mm256_setzero_ps(), c21 = _mm256_setzero_ps();
    __m256 c30 = _mm256_setzero_ps(), c31 = _mm256_setzero_ps();
    const float* a = A + r0 + k0 * kPanel;
    const float* b = B + k0 * kPanel;
    for (int k = k0; k < k1; ++k, a += kPanel, b += kPanel) {
      const __m256 b0 = _mm256_load_ps(b);
      const __m256 b1 = _mm256_load_ps(b + 8);
      __m256 s = _mm256_broadcast_ss(a + 0);
      c00 = _mm256_fmadd_ps(s, b0, c00);
      c01 = _mm256_fmadd_ps(s, b1, c01);
      s = _mm256_broadcast_ss(a + 1);
      c10 = _mm256_fmadd_ps(s, b0, c10);
      c11 = _mm256_fmadd_ps(s, b1, c11);
      s = _mm256_broadcast_ss(a + 2);
      c20 = _mm256_fmadd_ps(s, b0, c20);
      c21 = _mm256_fmadd_ps(s, b1, c21);
      s = _mm256_broadcast_ss(a + 3);
      c30 = _mm256_fmadd_ps(s, b0, c30);
      c31 = _mm256_fmadd_ps(s, b1, c31);
    }
    if (!first) {  // add this chunk's sums to the running totals
      c00 = _mm256_add_ps(_mm256_loadu_ps(c), c00);
      c01 = _mm256_add_ps(_mm256_loadu_ps(c + 8), c01);
      c10 = _mm256_add_ps(_mm256_loadu_ps(c + ldc), c10);
      c11 = _mm256_add_ps(_mm256_loadu_ps(c + ldc + 8), c11);
      c20 = _mm256_add_ps(_mm256_loadu_ps(c + 2 * ldc), c20);
      c21 = _mm256_add_ps(_mm256_loadu_ps(c + 2 * ldc + 8), c21);
      c30 = _mm256_add_ps(_mm256_loadu_ps(c + 3 * ldc), c30);
      c31 = _mm256_add_ps(_mm256_loadu_ps(c + 3 * ldc + 8), c31);
    }
    _mm256_storeu_ps(c, c00);
    _mm256_storeu_ps(c + 8, c01);
    _mm256_storeu_ps(c + ldc, c10);
    _mm256_storeu_ps(c + ldc + 8, c11);
    _mm256_storeu_ps(c + 2 * ldc, c20);
    _mm256_storeu_ps(c + 2 * ldc + 8, c21);
    _mm256_storeu_ps(c + 3 * ldc, c30);
    _mm256_storeu_ps(c + 3 * ldc + 8, c31);
  }
}

// ------------------------------------------------------------ AVX-512
// The same tile and the same per-element operations (one FMA per k in
// increasing order within the chunk, chunk sums added in order), so the
// bits equal tile_chunk_avx2's: a whole 16 x 16 tile lives in 16 of the 32
// registers, each k costing one load of B and 16 FMAs with a broadcast A
// operand, against 8 FMAs per 6 loads and four passes over B in AVX2.
__attribute__((target("avx512f"))) void tile_chunk_avx512(const float* A, const float* B, int k0, int k1, float* C,
                                                          i64 ldc, bool first) {
  static_assert(kPanel == 16, "one zmm register per tile row");
  __m512 c[kPanel];
#pragma GCC unroll 16
  for (int r = 0; r < kPanel; ++r) c[r] = _mm512_setzero_ps();
  const float* a = A + k0 * kPanel;
  const float* b = B + k0 * kPanel;
  for (int k = k0; k < k1; ++k, a += kPanel, b += kPanel) {
    const __m512 bv = _mm512_load_ps(b);
#pragma GCC unroll 16
    for (int r = 0; r < kPanel; ++r) c[r] = _mm512_fmadd_ps(_mm512_set1_ps(a[r]), bv, c[r]);
  }
#pragma GCC unroll 16
  for (int r = 0; r < kPanel; ++r) {
    float* cr = C + r * ldc;
    _mm512_storeu_ps(cr, first ? c[r] : _mm512_add_ps(_mm512_loadu_ps(cr), c[r]));
  }
}

__attribute__((target("avx2,fma"))) void dots_avx2(const float* v, const float* panels, int d, i64 q0,
                                                   i64 q1, float* out) {
  i64 q = q0;
  // Two panels at a time: four independent accumulator chains hide the FMA latency.
  for (; q + 1 < q1; q += 2) {
    const float* b = panels + q * d * kPanel;
    const float* e = b + d * kPanel;
    __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
    __m256 t2 = _mm256_setzero_ps(), t3 = _mm256_setzero_ps();
    for (int k0 = 0; k0 < d; k0 += kChunk) {
      const int k1 = std::min(d, k0 + kChunk);
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      __m256 a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
      for (int k = k0; k < k1; ++k, b += kPanel, e += kPanel) {
        const __m256 s = _mm256_broadcast_ss(v + k);
        a0 = _mm256_fmadd_ps(s, _mm256_load_ps(b), a0);
        a1 = _mm256_fmadd_ps(s, _mm256_load_ps(b + 8), a1);
        a2 = _mm256_fmadd_ps(s, _mm256_load_ps(e), a2);
        a3 = _mm256_fmadd_ps(s, _mm256_load_ps(e + 8), a3);
      }
      if (k0 == 0) {
        t0 = a0; t1 = a1; t2 = a2; t3 = a3;
      } else {
        t0 = _mm256_add_ps(t0, a0); t1 = _mm256_add_ps(t1, a1);
        t2 = _mm256_add_ps(t2, a2); t3 = _mm256_add_ps(t3, a3);
      }
    }
    float* o = out + q * kPanel;
    _mm256_storeu_ps(o, t0);
    _mm256_storeu_ps(o + 8, t1);
    _mm256_storeu_ps(o + 16, t2);
    _mm256_storeu_ps(o + 24, t3);
  }
  for (; q < q1; ++q) {
    const float* b = panels + q * d * kPanel;
    __m256 t0 = _mm256_setzero_ps(), t1 = _mm256_setzero_ps();
    for (int k0 = 0; k0 < d; k0 += kChunk) {
      const int k1 = std::min(d, k0 + kChunk);
      __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
      for (int k = k0; k < k1; ++k, b += kPanel) {
        const __m256 s = _mm256_broadcast_ss(v + k);
        a0 = _mm256_fmadd_ps(s, _mm256_load_ps(b), a0);
        a1 = _mm256_fmadd_ps(s, _mm256_load_ps(b + 8), a1);
      }
      if (k0 == 0) {
        t0 = a0; t1 = a1;
      } else {
        t0 = _mm256_add_ps(t0, a0); t1 = _mm256_add_ps(t1, a1);
      }
    }
    _mm256_storeu_ps(out + q * kPanel, t0);
    _mm256_storeu_ps(out + q * kPanel + 8, t1);
  }
}

// Chunk-major: one chunk of the A panel and of each B panel stay in L1.
template <void (*Tile)(const float*, const float*, int, int, float*, i64, bool)>
void gram_chunked(const PackedRows& p, i64 pi0, i64 npi, i64 pj0, i64 npj, float* out, i64 ldo) {
  const int d = p.d;
  const float* base = p.data.data();
  for (i64 i = 0; i < npi; ++i) {
    const float* A = base + (pi0 + i) * d * kPanel;
    for (int k0 = 0; k0 < d; k0 += kChunk) {
      const int k1 = std::min(d, k0 + kChunk);
      for (i64 j = 0; j < npj; ++j)
        Tile(A, base + (pj0 + j) * d * kPanel, k0, k1, out + i * kPanel * ldo + j * kPanel, ldo, k0 == 0);
    }
  }
}
#endif  // FOCAL_X86_DISPATCH

void gram_generic(const PackedRows& p, i64 pi0, i64 npi, i64 pj0, i64 npj, float* out, i64 ldo) {
  const int d = p.d;
  const float* base = p.data.data();
  for (i64 i = 0; i < npi; ++i)
    for (i64 j = 0; j < npj; ++j)
      tile_generic(base + (pi0 + i) * d * kPanel, base + (pj0 + j) * d * kPanel, d,
                   out + i * kPanel * ldo + j * kPanel, ldo);
}

}  // namespace

const GemmKernels& gemm_kernels(Isa isa) {
  static const GemmKernels generic{gram_generic, dots_generic};
#ifdef FOCAL_X86_DISPATCH
  static const GemmKernels avx2{gram_chunked<tile_chunk_avx2>, dots_avx2};
  static const GemmKernels avx512{gram_chunked<tile_chunk_avx512>, dots_avx2};
  if (isa == Isa::avx512) return avx512;
  if (isa == Isa::avx2) return avx2;
#endif
  (void)isa;
  return generic;
}

const char* gemm_isa() {
#ifdef FOCAL_X86_DISPATCH
  const Isa isa = active_isa();
  return isa == Isa::avx512 ? "avx512" : isa == Isa::avx2 ? "avx2+fma" : "sse2";
#elif defined(__aarch64__)
  return "neon";
#else
  return "generic";
#endif
}

}  // namespace focal
