// Selection kernels (see select.hpp).
#include "select.hpp"

#include <algorithm>
#include <cstdint>
#include <cstring>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FOCAL_X86 1
#include <immintrin.h>
#endif

namespace focal {

float half_to_float(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t exp = (h >> 10) & 0x1Fu, man = h & 0x3FFu;
  if (exp == 0) {  // zero or subnormal: man * 2^-24, exact in float
    const float f = static_cast<float>(man) * 5.9604644775390625e-08f;
    return sign ? -f : f;
  }
  const std::uint32_t bits = exp == 31 ? (sign | 0x7F800000u | (man << 13))  // inf / nan
                                       : (sign | ((exp + 112u) << 23) | (man << 13));
  float f;
  std::memcpy(&f, &bits, sizeof f);
  return f;
}

void SelectScratch::reserve(i64 n) {
  // + 16: the vector kernels store whole 16-float registers past the end.
  const std::size_t need = static_cast<std::size_t>(n) + 16;
  for (auto& b : buf)
    if (b.size() < need) b.reset(need);
}

namespace {

// Rearranges a[0..n) so that a[k] holds the k-th smallest value, as
// std::nth_element does (the baseline kernel).
void select_kth_inplace(float* a, i64 n, i64 k) {
  // Branch-free partitions: the data are random-looking distances, where a
  // branching partition mispredicts half the time.
  i64 lo = 0, hi = n;
  while (hi - lo > 16) {
    const float x = a[lo], y = a[lo + (hi - lo) / 2], z = a[hi - 1];
    const float pivot = std::max(std::min(x, y), std::min(std::max(x, y), z));
    i64 j = lo;
    for (i64 t = lo; t < hi; ++t) {
      const float v = a[t];
      const bool less = v < pivot;
      a[t] = a[j];
      a[j] = v;
      j += less;
    }
    if (k < j) {
      hi = j;
      continue;
    }
    i64 j2 = j;  // [j, j2): equal to the pivot (never empty)
    for (i64 t = j; t < hi; ++t) {
      const float v = a[t];
      const bool eq = !(pivot < v);
      a[t] = a[j2];
      a[j2] = v;
      j2 += eq;
    }
    if (k < j2) return;
    lo = j2;
  }
  for (i64 t = lo + 1; t < hi; ++t) {
    const float v = a[t];
    i64 u = t;
    while (u > lo && v < a[u - 1]) {
      a[u] = a[u - 1];
      --u;
    }
    a[u] = v;
  }
}

float kth_generic(const float* v, i64 n, i64 k, SelectScratch& s) {
  s.reserve(n);
  float* a = s.buf[0].data();
  std::memcpy(a, v, sizeof(float) * n);
  select_kth_inplace(a, n, k);
  return a[k];
}

i64 collect_generic(const float* row, i64 n, float upto, float* vals, int* idx) {
  i64 c = 0;
  for (i64 j = 0; j < n; ++j) {
    const float f = row[j];
    vals[c] = f;
    idx[c] = static_cast<int>(j);
    c += (f <= upto);
  }
  return c;
}

i64 band_generic(const float* vals, const int* idx, i64 m, float lo, float hi, int* band, i64* below) {
  i64 b = 0, c = 0;
  for (i64 t = 0; t < m; ++t) {
    const float f = vals[t];
    b += f < lo;
    band[c] = idx[t];
    c += (f >= lo) & (f <= hi);
  }
  *below = b;
  return c;
}

#ifdef FOCAL_X86
// Left-packing permutations: lane order of the set bits of an 8-bit mask.
struct PackTable {
  alignas(32) int perm[256][8];
  PackTable() {
    for (int m = 0; m < 256; ++m) {
      int c = 0;
      for (int l = 0; l < 8; ++l)
        if (m >> l & 1) perm[m][c++] = l;
      for (; c < 8; ++c) perm[m][c] = 0;
    }
  }
};
const PackTable kPack;

// Appends, without branching, the lanes of f selected by mask to vals and
// their column numbers (base + lane) to idx; both need 8 entries of room.
__attribute__((target("avx2"))) inline i64 pack8(__m256 f, int mask, __m256i cols, float* vals, int* idx) {
  const __m256i p = _mm256_load_si256(reinterpret_cast<const __m256i*>(kPack.perm[mask]));
  _mm256_storeu_ps(vals, _mm256_permutevar8x32_ps(f, p));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(idx), _mm256_permutevar8x32_epi32(cols, p));
  return __builtin_popcount(mask);
}

__attribute__((target("avx2"))) i64 collect_avx2(const float* row, i64 n, float upto, float* vals, int* idx) {
  const __m256 t = _mm256_set1_ps(upto);
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  i64 c = 0, j = 0;
  for (; j + 8 <= n; j += 8) {
    const __m256 v = _mm256_loadu_ps(row + j);
    const int bits = _mm256_movemask_ps(_mm256_cmp_ps(v, t, _CMP_LE_OQ));
    c += pack8(v, bits, _mm256_add_epi32(lanes, _mm256_set1_epi32(static_cast<int>(j))), vals + c, idx + c);
  }
  for (; j < n; ++j)
    if (row[j] <= upto) { vals[c] = row[j]; idx[c] = static_cast<int>(j); ++c; }
  return c;
}
#endif

// Squared distances f = max(nr + nc[c] - 2 g[c], 0) of one row against w
// columns, those <= upto appended to vals (with column c0 + c to idx); the
// float operations are those of the dense path. Returns how many.
i64 filter_generic(const float* g, i64 w, float nr, const float* nc, float upto, i64 c0, float* vals, int* idx) {
  i64 cnt = 0;
  for (i64 c = 0; c < w; ++c) {
    float f = (nr + nc[c]) - 2.0f * g[c];
    f = f > 0.0f ? f : 0.0f;
    vals[cnt] = f;
    idx[cnt] = static_cast<int>(c0 + c);
    cnt += (f <= upto);
  }
  return cnt;
}

#ifdef FOCAL_X86
__attribute__((target("avx2"))) i64 filter_avx2(const float* g, i64 w, float nr, const float* nc, float upto, i64 c0,
                                                float* vals, int* idx) {
  const __m256 vn = _mm256_set1_ps(nr), vt = _mm256_set1_ps(upto), two = _mm256_set1_ps(2.0f);
  const __m256 zero = _mm256_setzero_ps();
  const __m256i lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  i64 cnt = 0, c = 0;
  for (; c + 8 <= w; c += 8) {
    const __m256 s = _mm256_add_ps(vn, _mm256_loadu_ps(nc + c));
    const __m256 f = _mm256_max_ps(_mm256_sub_ps(s, _mm256_mul_ps(two, _mm256_loadu_ps(g + c))), zero);
    const int bits = _mm256_movemask_ps(_mm256_cmp_ps(f, vt, _CMP_LE_OQ));
    cnt += pack8(f, bits, _mm256_add_epi32(lanes, _mm256_set1_epi32(static_cast<int>(c0 + c))), vals + cnt,
                 idx + cnt);
  }
  return cnt + filter_generic(g + c, w - c, nr, nc + c, upto, c0 + c, vals + cnt, idx + cnt);
}
#endif

#ifdef FOCAL_X86
// Compress to a register, then a plain store: the memory-destination form of
// vcompressps is microcoded and slow on AMD Zen 4.
#define FOCAL_AVX512 __attribute__((target("avx512f,popcnt")))

inline __mmask16 tail_mask(i64 r) {
  return static_cast<__mmask16>(r >= 16 ? 0xFFFF : r <= 0 ? 0 : (1u << r) - 1u);
}

// Out of place quickselect: each pass writes the values below the pivot to
// one free buffer and those above it to another, and counts the rest (equal
// to the pivot); the side holding rank k becomes the next input.
FOCAL_AVX512 float kth_avx512(const float* v, i64 n, i64 k, SelectScratch& s) {
  s.reserve(n);
  const float* src = v;
  int cur = -1;  // buffer holding src (-1: the caller's array)
  for (int pass = 0; n > 32; ++pass) {
    if (pass == 48) {  // pathological pivots: finish with the baseline kernel
      float* a = s.buf[cur == 0 ? 1 : 0].data();
      std::memcpy(a, src, sizeof(float) * n);
      select_kth_inplace(a, n, k);
      return a[k];
    }
    const float x = src[n / 4], y = src[n / 2], z = src[n - 1 - n / 4];
    const float pivot = std::max(std::min(x, y), std::min(std::max(x, y), z));
    const int bl = cur < 0 ? 0 : (cur + 1) % 3;  // two buffers other than src's
    const int bg = cur < 0 ? 1 : (cur + 2) % 3;
    float* L = s.buf[bl].data();
    float* G = s.buf[bg].data();
    const __m512 p = _mm512_set1_ps(pivot);
    i64 nl = 0, ng = 0, t = 0;
    for (; t + 16 <= n; t += 16) {
      const __m512 a = _mm512_loadu_ps(src + t);
      const __mmask16 ml = _mm512_cmp_ps_mask(a, p, _CMP_LT_OQ);
      const __mmask16 mg = _mm512_cmp_ps_mask(a, p, _CMP_GT_OQ);
      _mm512_storeu_ps(L + nl, _mm512_maskz_compress_ps(ml, a));
      nl += __builtin_popcount(ml);
      _mm512_storeu_ps(G + ng, _mm512_maskz_compress_ps(mg, a));
      ng += __builtin_popcount(mg);
    }
    if (t < n) {
      const __mmask16 tm = tail_mask(n - t);
      const __m512 a = _mm512_maskz_loadu_ps(tm, src + t);
      const __mmask16 ml = _mm512_mask_cmp_ps_mask(tm, a, p, _CMP_LT_OQ);
      const __mmask16 mg = _mm512_mask_cmp_ps_mask(tm, a, p, _CMP_GT_OQ);
      _mm512_storeu_ps(L + nl, _mm512_maskz_compress_ps(ml, a));
      nl += __builtin_popcount(ml);
      _mm512_storeu_ps(G + ng, _mm512_maskz_compress_ps(mg, a));
      ng += __builtin_popcount(mg);
    }
    const i64 ne = n - nl - ng;  // >= 1: the pivot itself
    if (k < nl) {
      src = L;
      cur = bl;
      n = nl;
    } else if (k < nl + ne) {
      return pivot;
    } else {
      k -= nl + ne;
      src = G;
      cur = bg;
      n = ng;
    }
  }
  // At most 32 left: the value whose rank range [#less, #less-or-equal)
  // holds k, found by counting against two registers.
  const __mmask16 m0 = tail_mask(n), m1 = tail_mask(n - 16);
  const __m512 a0 = _mm512_maskz_loadu_ps(m0, src);
  const __m512 a1 = _mm512_maskz_loadu_ps(m1, src + 16);
  for (i64 t = 0; t < n; ++t) {
    const __m512 x = _mm512_set1_ps(src[t]);
    const int lt = __builtin_popcount(_mm512_mask_cmp_ps_mask(m0, a0, x, _CMP_LT_OQ)) +
                   __builtin_popcount(_mm512_mask_cmp_ps_mask(m1, a1, x, _CMP_LT_OQ));
    if (lt > k) continue;
    const int le = __builtin_popcount(_mm512_mask_cmp_ps_mask(m0, a0, x, _CMP_LE_OQ)) +
                   __builtin_popcount(_mm512_mask_cmp_ps_mask(m1, a1, x, _CMP_LE_OQ));
    if (k < le) return src[t];
  }
  return src[0];  // unreachable for NaN-free input
}

FOCAL_AVX512 inline __m512 load16(const float* p, __mmask16 m) { return _mm512_maskz_loadu_ps(m, p); }
FOCAL_AVX512 inline __m512 load16(const std::uint16_t* p, __mmask16 m) {
  // IEEE half to float (AVX-512F's vcvtph2ps); m is all lanes or a prefix
  // (the tail), read through a padded copy: masked 16-bit loads need
  // AVX-512BW. (maskz forms: GCC 12 warns on the plain ones.)
  if (m == 0xFFFF) return _mm512_maskz_cvtph_ps(0xFFFF, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
  alignas(32) std::uint16_t tmp[16] = {};
  std::memcpy(tmp, p, sizeof(std::uint16_t) * __builtin_popcount(m));
  return _mm512_maskz_cvtph_ps(0xFFFF, _mm256_load_si256(reinterpret_cast<const __m256i*>(tmp)));
}

FOCAL_AVX512 void convert16(const std::uint16_t* h, float* out) {
  _mm512_storeu_ps(out, _mm512_maskz_cvtph_ps(0xFFFF, _mm256_load_si256(reinterpret_cast<const __m256i*>(h))));
}

// Four vectors per step: their masks and counts are independent, so only
// the running count's additions stay serial.
template <class T>
FOCAL_AVX512 i64 collect_avx512(const T* row, i64 n, float upto, float* vals, int* idx) {
  const __m512 t = _mm512_set1_ps(upto);
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i sixteen = _mm512_set1_epi32(16);
  i64 c = 0, j = 0;
  for (; j + 64 <= n; j += 64) {
    const __m512 v0 = load16(row + j, 0xFFFF), v1 = load16(row + j + 16, 0xFFFF);
    const __m512 v2 = load16(row + j + 32, 0xFFFF), v3 = load16(row + j + 48, 0xFFFF);
    const __mmask16 m0 = _mm512_cmp_ps_mask(v0, t, _CMP_LE_OQ), m1 = _mm512_cmp_ps_mask(v1, t, _CMP_LE_OQ);
    const __mmask16 m2 = _mm512_cmp_ps_mask(v2, t, _CMP_LE_OQ), m3 = _mm512_cmp_ps_mask(v3, t, _CMP_LE_OQ);
    const __m512i c0 = _mm512_add_epi32(lanes, _mm512_set1_epi32(static_cast<int>(j)));
    const __m512i c1 = _mm512_add_epi32(c0, sixteen), c2 = _mm512_add_epi32(c1, sixteen);
    const __m512i c3 = _mm512_add_epi32(c2, sixteen);
    const i64 p0 = c, p1 = p0 + __builtin_popcount(m0), p2 = p1 + __builtin_popcount(m1);
    const i64 p3 = p2 + __builtin_popcount(m2);
    _mm512_storeu_ps(vals + p0, _mm512_maskz_compress_ps(m0, v0));
    _mm512_storeu_si512(idx + p0, _mm512_maskz_compress_epi32(m0, c0));
    _mm512_storeu_ps(vals + p1, _mm512_maskz_compress_ps(m1, v1));
    _mm512_storeu_si512(idx + p1, _mm512_maskz_compress_epi32(m1, c1));
    _mm512_storeu_ps(vals + p2, _mm512_maskz_compress_ps(m2, v2));
    _mm512_storeu_si512(idx + p2, _mm512_maskz_compress_epi32(m2, c2));
    _mm512_storeu_ps(vals + p3, _mm512_maskz_compress_ps(m3, v3));
    _mm512_storeu_si512(idx + p3, _mm512_maskz_compress_epi32(m3, c3));
    c = p3 + __builtin_popcount(m3);
  }
  for (; j < n; j += 16) {
    const __mmask16 tm = tail_mask(n - j);
    const __m512 v = load16(row + j, tm);
    const __mmask16 m = _mm512_mask_cmp_ps_mask(tm, v, t, _CMP_LE_OQ);
    const __m512i cols = _mm512_add_epi32(lanes, _mm512_set1_epi32(static_cast<int>(j)));
    _mm512_storeu_ps(vals + c, _mm512_maskz_compress_ps(m, v));
    _mm512_storeu_si512(idx + c, _mm512_maskz_compress_epi32(m, cols));
    c += __builtin_popcount(m);
  }
  return c;
}

FOCAL_AVX512 i64 band_avx512(const float* vals, const int* idx, i64 m, float lo, float hi, int* band, i64* below) {
  const __m512 vlo = _mm512_set1_ps(lo), vhi = _mm512_set1_ps(hi);
  i64 b = 0, c = 0;
  for (i64 t = 0; t < m; t += 16) {
    const __mmask16 tm = tail_mask(m - t);
    const __m512 v = _mm512_maskz_loadu_ps(tm, vals + t);
    const __mmask16 mb = _mm512_mask_cmp_ps_mask(tm, v, vlo, _CMP_LT_OQ);
    const __mmask16 mi = _mm512_mask_cmp_ps_mask(static_cast<__mmask16>(tm & ~mb), v, vhi, _CMP_LE_OQ);
    b += __builtin_popcount(mb);
    _mm512_storeu_si512(band + c, _mm512_maskz_compress_epi32(mi, _mm512_maskz_loadu_epi32(tm, idx + t)));
    c += __builtin_popcount(mi);
  }
  *below = b;
  return c;
}

FOCAL_AVX512 i64 filter_avx512(const float* g, i64 w, float nr, const float* nc, float upto, i64 c0, float* vals,
                               int* idx) {
  // The float operations of filter_generic, lane by lane (no fused
  // multiply-add: 2 g is exact, the subtraction rounds once).
  const __m512 vn = _mm512_set1_ps(nr), vt = _mm512_set1_ps(upto), two = _mm512_set1_ps(2.0f);
  const __m512 zero = _mm512_setzero_ps();
  const __m512i lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  i64 cnt = 0;
  for (i64 c = 0; c < w; c += 16) {
    const __mmask16 tm = tail_mask(w - c);
    const __m512 s = _mm512_add_ps(vn, _mm512_maskz_loadu_ps(tm, nc + c));
    // (maskz form: GCC 12 warns on the plain one's undefined passthrough)
    const __m512 f =
        _mm512_maskz_max_ps(0xFFFF, _mm512_sub_ps(s, _mm512_mul_ps(two, _mm512_maskz_loadu_ps(tm, g + c))), zero);
    const __mmask16 m = _mm512_mask_cmp_ps_mask(tm, f, vt, _CMP_LE_OQ);
    const __m512i cols = _mm512_add_epi32(lanes, _mm512_set1_epi32(static_cast<int>(c0 + c)));
    _mm512_storeu_ps(vals + cnt, _mm512_maskz_compress_ps(m, f));
    _mm512_storeu_si512(idx + cnt, _mm512_maskz_compress_epi32(m, cols));
    cnt += __builtin_popcount(m);
  }
  return cnt;
}
// Strided 16-bit loads, then one conversion per 16 values.
FOCAL_AVX512 i64 sample_half_avx512(const std::uint16_t* row, i64 n, i64 stride, float* out) {
  i64 c = 0;
  alignas(32) std::uint16_t h[16];
  for (i64 j = 0; j < n;) {
    int m = 0;
    for (; m < 16 && j < n; ++m, j += stride) h[m] = row[j];
    for (int t = m; t < 16; ++t) h[t] = 0;
    convert16(h, out + c);
    c += m;
  }
  return c;
}
#undef FOCAL_AVX512

#endif

i64 collect_half_generic(const std::uint16_t* row, i64 n, float upto, float* vals, int* idx) {
  i64 c = 0;
  for (i64 j = 0; j < n; ++j) {
    const float f = half_to_float(row[j]);
    vals[c] = f;
    idx[c] = static_cast<int>(j);
    c += (f <= upto);
  }
  return c;
}

i64 sample_half_generic(const std::uint16_t* row, i64 n, i64 stride, float* out) {
  i64 c = 0;
  for (i64 j = 0; j < n; j += stride) out[c++] = half_to_float(row[j]);
  return c;
}

}  // namespace

const SelectKernels& select_kernels(Isa isa) {
  static const SelectKernels generic{kth_generic,        collect_generic, collect_half_generic,
                                     sample_half_generic, filter_generic,  band_generic};
#ifdef FOCAL_X86
  static const SelectKernels avx2{kth_generic,        collect_avx2, collect_half_generic,
                                  sample_half_generic, filter_avx2,  band_generic};
  static const SelectKernels avx512{kth_avx512,         collect_avx512<float>, collect_avx512<std::uint16_t>,
                                    sample_half_avx512, filter_avx512,         band_avx512};
  if (isa == Isa::avx512) return avx512;
  if (isa == Isa::avx2) return avx2;
#endif
  (void)isa;
  return generic;
}

float kth_smallest(const float* v, i64 n, i64 k, SelectScratch& s) {
  return select_kernels(active_isa()).kth(v, n, k, s);
}

}  // namespace focal
