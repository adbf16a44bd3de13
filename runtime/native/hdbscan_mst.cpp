// Core distances and Prim's minimum spanning tree over mutual reachability
// (see hdbscan.hpp for the contract and the exactness argument).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <numeric>
#include <queue>
#include <stdexcept>
#include <string>
#include <utility>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FOCAL_X86 1
#include <immintrin.h>
#endif

#include "dmatrix.hpp"
#include "gemm.hpp"
#include "hdbscan.hpp"
#include "isa.hpp"
#include "select.hpp"

namespace focal {

double exact_d2(const float* a, const float* b, int d) {
  // Same operations, same order as the package's Euclidean rdist on float64
  // copies of the rows (built with -ffp-contract=off: no fused multiply-add).
  double s = 0.0;
  for (int k = 0; k < d; ++k) {
    const double t = static_cast<double>(a[k]) - static_cast<double>(b[k]);
    s += t * t;
  }
  return s;
}

namespace {

// out[t] = exact_d2(xi, x + ids[t] * d) for t < m, bit for bit: eight
// independent sums advance together (each still in increasing k), which
// hides the latency of the additions the sequential order imposes.
void exact_d2_many(const float* xi, const float* x, const int* ids, i64 m, int d, double* out) {
  for (i64 t = 0; t < m; t += 8) {
    const float* p[8];
    for (int q = 0; q < 8; ++q) p[q] = x + static_cast<i64>(ids[std::min(t + q, m - 1)]) * d;  // short tail: repeat the last
    double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (int k = 0; k < d; ++k) {
      const double a = xi[k];
      for (int q = 0; q < 8; ++q) {
        const double u = a - static_cast<double>(p[q][k]);
        s[q] += u * u;
      }
    }
    for (int q = 0; q < 8 && t + q < m; ++q) out[t + q] = s[q];
  }
}

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t0) {
  return std::chrono::duration<double>(Clock::now() - t0).count();
}

constexpr double kInf = std::numeric_limits<double>::infinity();

// Bound on |fl32(n_i + n_j - 2 g_ij) - exact_d2(i, j)| when n and g come
// from the chunked float32 kernels (gemm.hpp), with or without FMA:
// |g - g*| <= gamma_m |x_i||x_j|, |n - n*| <= gamma_m n* (m =
// gemm_error_terms(d)), two more roundings in forming n_i + n_j - 2 g, and
// the double reference's own rounding.
double error_bound(int d, double max_norm2) {
  const double u = 1.0 / 16777216.0;  // 2^-24
  const double du = gemm_error_terms(d) * u;
  const double gamma = du / (1.0 - du);
  const double m = max_norm2 * (1.0 + 4.0 * gamma) + 1e-30;
  return ((4.0 * gamma + 10.0 * u) + 1e-12) * m;
}

// Smallest float >= v (v finite or +inf).
float float_at_least(double v) {
  if (!(v < static_cast<double>(std::numeric_limits<float>::max()))) return std::numeric_limits<float>::infinity();
  float f = static_cast<float>(v);
  if (static_cast<double>(f) < v) f = std::nextafter(f, std::numeric_limits<float>::infinity());
  return f;
}

// Largest float <= v (v finite or -inf).
float float_at_most(double v) {
  if (!(v > -static_cast<double>(std::numeric_limits<float>::max()))) return -std::numeric_limits<float>::infinity();
  float f = static_cast<float>(v);
  if (static_cast<double>(f) > v) f = std::nextafter(f, -std::numeric_limits<float>::infinity());
  return f;
}

struct KthScratch {
  SelectScratch sel;
  std::vector<double> ex;
  std::vector<int> ids;
};

// What deciding a core distance needs besides the candidates: the exact rows,
// the rank k, the bound e + rel * value on the approximate values, and the
// selection kernels.
struct CoreQuery {
  const float* x = nullptr;
  int d = 0;
  i64 k = 0;
  double e = 0.0, rel = 0.0;
  const SelectKernels* sel = nullptr;
};

// Exact k-th smallest squared distance of point i, given approximations
// vals[0..m) (with point ids idx), each within e + rel * a of its exact value
// a*, that contain every point whose approximation is <= hi (below). Returns
// false (nothing done) when the candidates were collected only up to less
// than hi (*need then holds the threshold to collect up to).
bool exact_kth(const CoreQuery& q, const float* vals, const int* idx, i64 m, float collected_upto, i64 i,
               KthScratch& s, double* out, i64* evals, double* need) {
  // With F the approximate k-th smallest, the exact k-th lies in
  // [F (1 - rel) - e, F (1 + rel) + e] (order statistics of the lower and of
  // the upper bounds, both monotone in a); a value whose interval misses it
  // is exactly below (a < lo) or above (a > hi) it. rel = 0: F -+ 2e.
  const double e = q.e, rel = q.rel;
  const double F = q.sel->kth(vals, m, q.k, s.sel);
  const double lo = ((F * (1.0 - rel) - e) - e) / (1.0 + rel);
  const double hi = ((F * (1.0 + rel) + e) + e) / (1.0 - rel);
  if (!(hi <= static_cast<double>(collected_upto))) {
    *need = hi;
    return false;
  }
  // For a float f: f < lo iff f < (smallest float >= lo), f <= hi iff
  // f <= (largest float <= hi).
  if (static_cast<i64>(s.ids.size()) < m + 16) s.ids.resize(m + 16);
  i64 below = 0;
  const i64 c = q.sel->band(vals, idx, m, float_at_least(lo), float_at_most(hi), s.ids.data(), &below);
  s.ex.resize(c);
  exact_d2_many(q.x + i * q.d, q.x, s.ids.data(), c, q.d, s.ex.data());
  *evals += c;
  const i64 kk = q.k - below;
  if (kk < 0 || kk >= c) {  // only a wrong error bound gets here: NaN, reported after the parallel pass
    *out = std::numeric_limits<double>::quiet_NaN();
    return true;
  }
  std::nth_element(s.ex.begin(), s.ex.begin() + kk, s.ex.end());
  *out = s.ex[kk];
  return true;
}

struct RowScratch {
  std::vector<float> samp, vals;
  std::vector<int> idx;
  KthScratch kth;
};

// One row of approximate squared distances: float32, or IEEE half read in
// place (the conversion fused into the filter pass).
struct RowView {
  const float* f32 = nullptr;
  const std::uint16_t* f16 = nullptr;
};

i64 collect(const SelectKernels& sel, RowView row, i64 n, float upto, RowScratch& s) {
  if (static_cast<i64>(s.vals.size()) < n + 16) {
    s.vals.resize(n + 16);
    s.idx.resize(n + 16);
  }
  return row.f32 ? sel.collect(row.f32, n, upto, s.vals.data(), s.idx.data())
                 : sel.collect_half(row.f16, n, upto, s.vals.data(), s.idx.data());
}

// Exact core distance (squared) of point i from its full approximate row
// (n values, each within q.e + q.rel * value of the exact one).
double core_from_row(const CoreQuery& q, RowView row, i64 n, i64 i, RowScratch& s, i64* evals) {
  // A sample puts the collection threshold just above the k-th value.
  const SelectKernels& sel = *q.sel;
  const i64 stride = std::max<i64>(1, n / 256);
  s.samp.resize((n + stride - 1) / stride + 16);
  i64 ns = 0;
  if (row.f32) {
    for (i64 j = 0; j < n; j += stride) s.samp[ns++] = row.f32[j];
  } else {
    ns = sel.sample_half(row.f16, n, stride, s.samp.data());
  }
  const i64 r = std::min<i64>(ns - 1, static_cast<i64>(static_cast<double>(q.k + 1) * ns / n * 1.25) + 4);
  const double guess = sel.kth(s.samp.data(), ns, r, s.kth.sel);
  float upto = float_at_least(guess + 4.0 * (q.e + q.rel * guess));
  i64 m = collect(sel, row, n, upto, s);
  if (m < q.k + 1) {
    upto = std::numeric_limits<float>::infinity();
    m = collect(sel, row, n, upto, s);
  }
  double out = 0.0, need = 0.0;
  if (!exact_kth(q, s.vals.data(), s.idx.data(), m, upto, i, s.kth, &out, evals, &need)) {
    upto = float_at_least(need);
    m = collect(sel, row, n, upto, s);
    exact_kth(q, s.vals.data(), s.idx.data(), m, upto, i, s.kth, &out, evals, &need);
  }
  return out;
}

// ------------------------------------------------------------- Prim's loop
//
// The package's Prim: the tree starts at point 0; every point outside keeps
// the smallest mutual reachability to the tree seen so far and the tree point
// that first reached it (strict-less updates); the point with the smallest
// value joins next, the lowest index among equal values. Values are held as
// intervals [lo, hi] around the exact value (float32 distance +- the bound),
// collapsed to the exact value (lo == hi) whenever a decision needs it.

// Per-slot view used by the relaxation kernels; a slot is a point outside
// the tree, idx maps slots to points.
struct Slots {
  const float* x = nullptr;
  int d = 0;
  const double* c2 = nullptr;  // exact squared core distance by point
  double e = 0.0;              // a float32 value f is within e + r * f of the exact one
  double r = 0.0;
  double* lo = nullptr;
  double* hi = nullptr;
  const double* c2s = nullptr;  // squared core distance by slot (+inf: no point there)
  i64* src = nullptr;           // tree point that gave the current value
  const int* idx = nullptr;     // slot -> point; null: identity
  i64 evals = 0;
  // Float32 shadows for the AVX-512 pre-filter (relax_filtered_avx512): hif[s]
  // >= hi[s] always (kept tight where relaxing changes hi; exactify only
  // lowers hi), c2sf[s] <= c2s[s].
  float* hif = nullptr;
  const float* c2sf = nullptr;

  i64 point(i64 s) const { return idx ? idx[s] : s; }
  void exactify(i64 s) {
    if (lo[s] == hi[s]) return;
    const i64 j = point(s), q = src[s];
    const double y = exact_d2(x + q * d, x + j * d, d);
    ++evals;
    lo[s] = hi[s] = std::max(y, std::max(c2[q], c2s[s]));
  }
  // An offer the float32 bound cannot settle: decide it exactly.
  void resolve(i64 s, i64 v, double cm) {
    exactify(s);
    const double y = exact_d2(x + v * d, x + point(s) * d, d);
    ++evals;
    const double mr = y > cm ? y : cm;
    if (mr < lo[s]) {
      lo[s] = hi[s] = mr;
      src[s] = v;
    }
  }
};

// One offer: edge (v, slot s) with float32 squared distance fd. Returns the
// slot's hi after it. A slot whose value became its own core distance, which
// nothing can lower, is appended to *saturated.
inline double offer(Slots& S, i64 s, double fd, i64 v, double c2v, std::vector<i64>* saturated) {
  const double cj = S.c2s[s];
  const double cm = c2v > cj ? c2v : cj;
  double mlo = fd * (1.0 - S.r) - S.e;
  if (mlo < cm) mlo = cm;
  double mhi = fd * (1.0 + S.r) + S.e;
  if (mhi < cm) mhi = cm;
  double chi = S.hi[s];
  if (mhi < S.lo[s]) {
    S.lo[s] = mlo;
    S.hi[s] = chi = mhi;
    S.src[s] = v;
    if (saturated && mhi == cj) saturated->push_back(s);
  } else if (mlo < chi) {
    S.resolve(s, v, cm);
    chi = S.hi[s];
    if (saturated && S.lo[s] == cj && chi == cj) saturated->push_back(s);
  }
  return chi;
}

// Offers the edges (v, slot s) for s in [s0, s1), f[s] being their float32
// squared distances; returns the smallest hi.
double relax_range(Slots& S, const float* f, i64 s0, i64 s1, i64 v, double c2v, std::vector<i64>* saturated) {
  double mn = kInf;
  for (i64 s = s0; s < s1; ++s) {
    const double chi = offer(S, s, f[s], v, c2v, saturated);
    if (chi < mn) mn = chi;
  }
  return mn;
}

double relax_generic(Slots& S, const float* f, i64 A, i64 v, double c2v, std::vector<i64>* saturated) {
  return relax_range(S, f, 0, A, v, c2v, saturated);
}

// The best (value, point) found so far by a selection; slot -1: none.
struct Best {
  i64 slot = -1;
  double val = kInf;
  i64 pt = -1;
};

// Exactifies the slots of [s0, s1) with lo <= m and keeps the best (lowest
// value, then lowest point) in b.
void select_generic(Slots& S, i64 s0, i64 s1, double m, Best& b) {
  for (i64 s = s0; s < s1; ++s) {
    if (S.lo[s] <= m) {
      S.exactify(s);
      const double val = S.lo[s];
      const i64 pt = S.point(s);
      if (b.slot < 0 || val < b.val || (val == b.val && pt < b.pt)) {
        b.slot = s;
        b.val = val;
        b.pt = pt;
      }
    }
  }
}

#ifdef FOCAL_X86
__attribute__((target("avx2"))) double relax_avx2(Slots& S, const float* f, i64 A, i64 v, double c2v,
                                                  std::vector<i64>* saturated) {
  const __m256d ve = _mm256_set1_pd(S.e), vc2v = _mm256_set1_pd(c2v);
  const __m256d rlo = _mm256_set1_pd(1.0 - S.r), rhi = _mm256_set1_pd(1.0 + S.r);
  const __m256d vv = _mm256_castsi256_pd(_mm256_set1_epi64x(v));
  __m256d vmin = _mm256_set1_pd(kInf);
  double smin = kInf;
  double* lo = S.lo;
  double* hi = S.hi;
  const double* c2s = S.c2s;
  double* src = reinterpret_cast<double*>(S.src);
  i64 s = 0;
  for (; s + 4 <= A; s += 4) {
    const __m256d fd = _mm256_cvtps_pd(_mm_loadu_ps(f + s));
    const __m256d cj = _mm256_loadu_pd(c2s + s);
    const __m256d cm = _mm256_max_pd(vc2v, cj);
    const __m256d mlo = _mm256_max_pd(_mm256_sub_pd(_mm256_mul_pd(fd, rlo), ve), cm);
    const __m256d mhi = _mm256_max_pd(_mm256_add_pd(_mm256_mul_pd(fd, rhi), ve), cm);
    const __m256d clo = _mm256_loadu_pd(lo + s);
    __m256d chi = _mm256_loadu_pd(hi + s);
    const __m256d upd = _mm256_cmp_pd(mhi, clo, _CMP_LT_OQ);
    const __m256d unc = _mm256_andnot_pd(upd, _mm256_cmp_pd(mlo, chi, _CMP_LT_OQ));
    const int ub = _mm256_movemask_pd(upd);
    if (ub) {
      _mm256_storeu_pd(lo + s, _mm256_blendv_pd(clo, mlo, upd));
      chi = _mm256_blendv_pd(chi, mhi, upd);
      _mm256_storeu_pd(hi + s, chi);
      _mm256_storeu_pd(src + s, _mm256_blendv_pd(_mm256_loadu_pd(src + s), vv, upd));
      if (saturated) {
        int sb = ub & _mm256_movemask_pd(_mm256_cmp_pd(mhi, cj, _CMP_EQ_OQ));
        while (sb) {
          saturated->push_back(s + __builtin_ctz(sb));
          sb &= sb - 1;
        }
      }
    }
    vmin = _mm256_min_pd(vmin, chi);
    int bits = _mm256_movemask_pd(unc);
    while (bits) {
      const i64 t = s + __builtin_ctz(bits);
      bits &= bits - 1;
      const double c = c2s[t];
      S.resolve(t, v, c2v > c ? c2v : c);
      if (saturated && lo[t] == c && hi[t] == c) saturated->push_back(t);
      if (hi[t] < smin) smin = hi[t];
    }
  }
  alignas(32) double t4[4];
  _mm256_store_pd(t4, vmin);
  double mn = std::min(std::min(std::min(t4[0], t4[1]), std::min(t4[2], t4[3])), smin);
  if (s < A) mn = std::min(mn, relax_range(S, f, s, A, v, c2v, saturated));
  return mn;
}

__attribute__((target("avx2"))) void select_avx2(Slots& S, i64 s0, i64 s1, double m, Best& b) {
  const __m256d vm = _mm256_set1_pd(m);
  i64 s = s0;
  for (; s + 4 <= s1; s += 4) {
    int bits = _mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(S.lo + s), vm, _CMP_LE_OQ));
    while (bits) {
      const i64 t = s + __builtin_ctz(bits);
      bits &= bits - 1;
      select_generic(S, t, t + 1, m, b);
    }
  }
  select_generic(S, s, s1, m, b);
}
#endif

#ifdef FOCAL_X86
// The relaxation with a float32 pre-filter (AVX-512, 16 slots per step): a
// test that never rejects an offer that matters - its lower bound
// max(fd (1 - r) - e, max(c_v, c_j)) against hif >= hi - sends the few that
// may to the exact per-slot offer. Returns an upper bound on the smallest hi
// (min of hif), which is all the selection after it needs. f arrives
// gathered (contiguous), so each step is one plain 16-lane load.
__attribute__((target("avx512f"))) double relax_filtered_avx512(Slots& S, const float* f, i64 A, i64 v, double c2v,
                                                                std::vector<i64>* saturated) {
  // fl(fl(fd q) - E) <= fd (1 - r) - e for fd >= 0: q and E carry a 2^-20
  // margin that covers the two float roundings (2^-24 each).
  const __m512 q = _mm512_set1_ps(float_at_most(1.0 - S.r - 9.5367431640625e-07));
  const __m512 E = _mm512_set1_ps(float_at_least(S.e * (1.0 + 9.5367431640625e-07)));
  const __m512 cv = _mm512_set1_ps(float_at_most(c2v));
  __m512 vmin = _mm512_set1_ps(std::numeric_limits<float>::infinity());
  for (i64 s = 0; s < A; s += 16) {
    const i64 left = A - s;
    const __mmask16 tm = static_cast<__mmask16>(left >= 16 ? 0xFFFF : (1u << left) - 1u);
    const __m512 fd = _mm512_maskz_loadu_ps(tm, f + s);
    const __m512 flo = _mm512_sub_ps(_mm512_mul_ps(fd, q), E);
    const __m512 cm = _mm512_maskz_max_ps(0xFFFF, cv, _mm512_maskz_loadu_ps(tm, S.c2sf + s));
    const __m512 mlo = _mm512_maskz_max_ps(0xFFFF, flo, cm);
    __m512 hif = _mm512_maskz_loadu_ps(tm, S.hif + s);
    __mmask16 cand = _mm512_mask_cmp_ps_mask(tm, mlo, hif, _CMP_LT_OQ);
    if (cand) {
      while (cand) {
        const i64 t = s + __builtin_ctz(cand);
        cand = static_cast<__mmask16>(cand & (cand - 1));
        S.hif[t] = float_at_least(offer(S, t, f[t], v, c2v, saturated));
      }
      hif = _mm512_maskz_loadu_ps(tm, S.hif + s);
    }
    vmin = _mm512_mask_min_ps(vmin, tm, vmin, hif);
  }
  alignas(64) float t16[16];  // (not _mm512_reduce_min_ps: GCC 12 warns inside it)
  _mm512_store_ps(t16, vmin);
  return *std::min_element(t16, t16 + 16);
}
#endif

// The Prim's kernels of one family. relax offers the new tree point v's edges
// to the slots [0, A) (f[s]: their float32 squared distances) and returns
// the selection threshold, at least the smallest hi; select exactifies and
// picks as select_generic does.
using RelaxFn = double (*)(Slots& S, const float* f, i64 A, i64 v, double c2v, std::vector<i64>* saturated);
using SelectFn = void (*)(Slots& S, i64 s0, i64 s1, double m, Best& b);

// Every kernel one call runs, chosen once at its start.
struct Kernels {
  Isa isa = Isa::generic;
  const GemmKernels* gemm = nullptr;
  const SelectKernels* sel = nullptr;
  GramToD2 to_d2 = nullptr;
  RelaxFn relax = nullptr;
  SelectFn select = nullptr;
  bool shadows = false;        // relax reads and keeps the float32 shadows (Slots::hif, c2sf)
  bool half_in_place = false;  // sel->collect_half converts on the fly: no float32 copy of a half row
};

Kernels pick_kernels(Isa isa) {
  Kernels K;
  K.isa = isa;
  K.gemm = &gemm_kernels(isa);
  K.sel = &select_kernels(isa);
  K.to_d2 = gram_to_d2_kernel(isa);
  K.relax = relax_generic;
  K.select = select_generic;
#ifdef FOCAL_X86
  if (isa >= Isa::avx2) {
    K.relax = relax_avx2;
    K.select = select_avx2;
  }
  if (isa == Isa::avx512) {
    K.relax = relax_filtered_avx512;
    K.shadows = K.half_in_place = true;
  }
#endif
  return K;
}

// Prim's state for both paths. Slots are kept as [active | saturated]: a
// saturated slot holds its own core distance, the least value it can ever
// have, so it is never offered an edge again and waits in a heap (ordered by
// value, then point) until it joins the tree. Each step offers the new tree
// point's edges to the active slots only: gathered from the matrix row
// (dense path) or recomputed by the dot kernel from the active points' packed
// rows (implicit path, no matrix).
struct PrimSlots {
  i64 n = 0;
  int d = 0;
  std::vector<int> idx;
  std::vector<i64> pos;  // point -> slot
  AlignedBuffer<double> lo, hi, c2s;
  AlignedBuffer<i64> src;
  AlignedBuffer<float> hif, c2sf;  // float32 shadows (Slots), where the pre-filtered relaxation runs
  std::vector<float> ns;
  AlignedBuffer<float> panels;  // active points' rows, slot s at panel s / kPanel, lane s % kPanel
  i64 active = 0, used = 0;

  void swap_slots(i64 a, i64 b) {
    if (a == b) return;
    std::swap(idx[a], idx[b]);
    std::swap(lo[a], lo[b]);
    std::swap(hi[a], hi[b]);
    std::swap(c2s[a], c2s[b]);
    std::swap(src[a], src[b]);
    if (hif.size()) {
      std::swap(hif[a], hif[b]);
      std::swap(c2sf[a], c2sf[b]);
    }
    if (!ns.empty()) std::swap(ns[a], ns[b]);
    pos[idx[a]] = a;
    pos[idx[b]] = b;
    if (!panels.size()) return;
    float* pa = panels.data() + (a / kPanel) * d * kPanel + (a % kPanel);
    float* pb = panels.data() + (b / kPanel) * d * kPanel + (b % kPanel);
    for (int k = 0; k < d; ++k) std::swap(pa[k * kPanel], pb[k * kPanel]);
  }
  void saturate(i64 s) {  // active -> saturated
    swap_slots(s, active - 1);
    --active;
  }
  void remove(i64 s) {
    if (s < active) {
      swap_slots(s, active - 1);
      swap_slots(active - 1, used - 1);
      --active;
    } else {
      swap_slots(s, used - 1);
    }
    --used;
  }
};

// One thread: a step's work (at most a few thousand active slots once the
// clusters saturate) is too small to share; handing part of it to another
// thread costs a synchronisation per step, which on a machine shared with
// other work outweighs the half step it saves.
using Entry = std::pair<double, i64>;  // (value, point): the package's order of choice
using SaturatedHeap = std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>>;

// Every point outside the tree, at +inf from it, in slot order = point order.
void init_prim_slots(PrimSlots& P, const double* c2, bool shadows) {
  const i64 n = P.n;
  P.idx.resize(n);
  std::iota(P.idx.begin(), P.idx.end(), 0);
  P.pos.resize(n);
  std::iota(P.pos.begin(), P.pos.end(), 0);
  P.lo.reset(n);
  P.hi.reset(n);
  P.c2s.reset(n);
  P.src.reset(n);
  for (i64 i = 0; i < n; ++i) {
    P.lo[i] = P.hi[i] = kInf;
    P.c2s[i] = c2[i];
    P.src[i] = 0;
  }
  P.active = P.used = n;
  if (!shadows) return;
  P.hif.reset(n);
  P.c2sf.reset(n);
  for (i64 i = 0; i < n; ++i) {
    P.hif[i] = std::numeric_limits<float>::infinity();
    P.c2sf[i] = float_at_most(c2[i]);
  }
}

// The relaxation kernels' view of P; values within e + rel * value.
Slots bind_slots(PrimSlots& P, const float* x, const double* c2, double e, double rel) {
  Slots S;
  S.x = x;
  S.d = P.d;
  S.c2 = c2;
  S.e = e;
  S.r = rel;
  S.lo = P.lo.data();
  S.hi = P.hi.data();
  S.c2s = P.c2s.data();
  S.src = P.src.data();
  S.idx = P.idx.data();
  S.hif = P.hif.size() ? P.hif.data() : nullptr;
  S.c2sf = P.c2sf.size() ? P.c2sf.data() : nullptr;
  return S;
}

// The next tree point (value, point): the best of the A active slots whose
// lo is <= m, or the heap's top where that is better (lower value, then
// lower point), popped then. Point -1: none.
Entry next_point(const Kernels& K, Slots& S, i64 A, double m, SaturatedHeap& heap) {
  Best b;
  K.select(S, 0, A, m, b);
  if (!heap.empty()) {
    const Entry top = heap.top();
    if (b.slot < 0 || top.first < b.val || (top.first == b.val && top.second < b.pt)) {
      heap.pop();
      return top;
    }
  }
  return {b.val, b.pt};
}

// Newly saturated slots leave the active region for the heap, except the
// point joining the tree now. Tracked by point: slots move as others leave.
void park_saturated(PrimSlots& P, const std::vector<i64>& saturated, i64 joining, std::vector<i64>& points,
                    SaturatedHeap& heap) {
  points.clear();
  for (const i64 s : saturated) points.push_back(P.idx[s]);
  for (const i64 p : points) {
    if (p == joining) continue;
    const i64 s = P.pos[p];
    heap.emplace(P.lo[s], p);
    P.saturate(s);
  }
}

// Prim's from point 0 over P (initialised), writing out's edges.
// step(S, v, nv, A, c2v, f, saturated, guess) offers the new tree point v's
// edges to the A active slots (f: scratch for their distances) and returns
// the selection threshold: at least the smallest hi. guess: the likely next
// tree point (-1: none).
template <class Step>
void run_prim_slots(PrimSlots& P, const Kernels& K, Slots S, Step&& step, MstResult& out) {
  const i64 n = P.n;
  out.src.resize(n - 1);
  out.dst.resize(n - 1);
  out.weight.resize(n - 1);
  std::vector<float> f(static_cast<std::size_t>((n + kPanel - 1) / kPanel + 1) * kPanel);
  std::vector<i64> saturated, sat_points;
  SaturatedHeap heap;
  i64 v = 0;  // point 0 starts the tree
  float nv = P.ns.empty() ? 0.0f : P.ns[P.pos[0]];
  P.remove(P.pos[0]);
  for (i64 edge = 0; edge < n - 1; ++edge) {
    const i64 A = P.active;
    saturated.clear();
    // The next tree point is nearly always the heap's top (it holds the
    // smallest values): the step may fetch that point's row ahead.
    const i64 guess = heap.empty() ? -1 : heap.top().second;
    double m = A > 0 ? step(S, v, nv, A, S.c2[v], f.data(), &saturated, guess) : kInf;
    if (!heap.empty()) m = std::min(m, heap.top().first);
    const Entry next = next_point(K, S, A, m, heap);
    park_saturated(P, saturated, next.second, sat_points, heap);
    if (next.second < 0)
      throw std::logic_error("focal native core: Prim's found no next point for edge " + std::to_string(edge) +
                             " of " + std::to_string(n - 1) + " (exactness bound violated)");
    const i64 ws = P.pos[next.second];
    out.src[edge] = P.src[ws];
    out.dst[edge] = next.second;
    out.weight[edge] = std::sqrt(next.first);
    v = next.second;
    nv = P.ns.empty() ? 0.0f : P.ns[ws];
    P.remove(ws);
  }
  out.stats.prim_exact += S.evals;
}

// ------------------------------------------------------------ both paths

// The rows and what both paths derive from them first.
struct Problem {
  const float* x = nullptr;  // [n, d] float32 rows
  i64 n = 0;
  int d = 0;
  i64 k = 0;        // core-distance rank, after the package's clipping
  int threads = 1;
  Kernels K;
  PackedRows packed;
  std::vector<float> norms;  // squared norms, padded to whole panels
  double max_norm = 0.0;     // largest squared norm
  double e = 0.0;            // bound on |float32 d^2 - exact d^2|
};

void prepare(Problem& pb) {
  pack_rows(pb.x, pb.n, pb.d, pb.packed);
  // Norms from the Gram kernel's own diagonal, so identical rows are at an
  // exactly zero approximate distance.
  pb.norms.assign(pb.packed.panels * kPanel, 0.0f);
  std::vector<float> tile(kPanel * kPanel);
  for (i64 p = 0; p < pb.packed.panels; ++p) {
    pb.K.gemm->gram(pb.packed, p, 1, p, 1, tile.data(), kPanel);
    for (int r = 0; r < kPanel; ++r) pb.norms[p * kPanel + r] = tile[r * kPanel + r];
  }
  for (i64 i = 0; i < pb.n; ++i) pb.max_norm = std::max(pb.max_norm, static_cast<double>(pb.norms[i]));
  pb.e = error_bound(pb.d, pb.max_norm);
}

// Sums the exact evaluations of the core distances; a NaN core distance
// (exact_kth's report of a violated bound) raises.
void finish_core(const std::vector<double>& c2, const std::vector<i64>& evals, MstResult& out) {
  for (const i64 t : evals) out.stats.core_exact += t;
  for (std::size_t i = 0; i < c2.size(); ++i)
    if (!(c2[i] >= 0.0))
      throw std::logic_error("focal native core: the core distance of point " + std::to_string(i) +
                             " could not be decided (exactness bound violated)");
}

// ------------------------------------------------------------ dense path

// The full matrix of approximate squared distances, one 64 x 64 block pair
// at a time (upper triangle computed, mirrored with whole-line stores).
void fill_matrix(const Problem& pb, DistMatrix& d2) {
  const PackedRows& packed = pb.packed;
  const i64 n = pb.n;
  const i64 bp = 4;  // panels per block
  const i64 nb = (packed.panels + bp - 1) / bp;
  std::vector<std::pair<i64, i64>> pairs;
  pairs.reserve(nb * (nb + 1) / 2);
  for (i64 a = 0; a < nb; ++a)
    for (i64 b = a; b < nb; ++b) pairs.emplace_back(a, b);
  const i64 B = bp * kPanel;
  std::vector<AlignedBuffer<float>> tiles(pb.threads), tilesT(pb.threads);
  for (auto& t : tiles) t.reset(B * B);
  for (auto& t : tilesT) t.reset(B * B);
  parallel_for(static_cast<i64>(pairs.size()), pb.threads, 8, [&](i64 b0, i64 b1, int tid) {
    float* tile = tiles[tid].data();
    for (i64 pi = b0; pi < b1; ++pi) {
      const i64 a = pairs[pi].first, b = pairs[pi].second;
      const i64 npa = std::min(bp, packed.panels - a * bp), npb = std::min(bp, packed.panels - b * bp);
      pb.K.gemm->gram(packed, a * bp, npa, b * bp, npb, tile, B);
      const i64 r0 = a * B, c0 = b * B;
      const i64 r1 = std::min(n, r0 + npa * kPanel), c1 = std::min(n, c0 + npb * kPanel);
      pb.K.to_d2(tile, B, r1 - r0, c1 - c0, pb.norms.data() + r0, pb.norms.data() + c0);
      if (a == b)
        for (i64 r = r0; r < r1; ++r) tile[(r - r0) * B + (r - c0)] = 0.0f;
      store_block(tile, B, r1 - r0, c1 - c0, d2, r0, c0, a != b, tilesT[tid].data());
    }
    finish_stores(d2);
  });
}

// Exact core distances from the matrix rows, read in order: the hardware
// prefetcher follows them, no software prefetch is needed.
void dense_core(const Problem& pb, const DistMatrix& d2, const CoreQuery& q, double* c2, std::vector<i64>& evals) {
  const i64 n = pb.n;
  // Half rows are filtered in place where the kernels convert on the fly,
  // converted to float32 first elsewhere.
  const bool in_place = d2.half && pb.K.half_in_place;
  std::vector<RowScratch> scratch(pb.threads);
  std::vector<std::vector<float>> rowbuf(pb.threads, std::vector<float>(n + 16));
  parallel_for(n, pb.threads, 64, [&](i64 i0, i64 i1, int tid) {
    for (i64 i = i0; i < i1; ++i) {
      const RowView row = in_place ? RowView{nullptr, d2.f16() + i * n}
                                   : RowView{matrix_row(d2, i, rowbuf[tid].data()), nullptr};
      c2[i] = core_from_row(q, row, n, i, scratch[tid], &evals[tid]);
    }
  });
}

// Prim's over the matrix: each step gathers the active points' distances to
// the new tree point from its row.
void dense_prim(const Problem& pb, PrimSlots& P, const DistMatrix& d2, const double* c2, const CoreQuery& q,
                MstResult& out) {
  const int* idx = P.idx.data();
  const RelaxFn relax = pb.K.relax;
  auto step = [&](Slots& S, i64 v, float, i64 A, double c2v, float* f, std::vector<i64>* sat, i64 guess) {
    // Each step reads one row that is far out of cache, and which row is
    // known only after the previous step: the guess lets this step fetch
    // the next row into L2 while it gathers. Half values are gathered one
    // by one, as only the active slots' columns are read.
    gather_row(d2, v, idx, A, f, guess);
    return relax(S, f, A, v, c2v, sat);
  };
  run_prim_slots(P, pb.K, bind_slots(P, pb.x, c2, q.e, q.rel), step, out);
}

void run_dense(Problem& pb, const MstOptions& opt, Clock::time_point t0, std::vector<double>& c2, MstResult& out) {
  // Half storage where the values fit (|x_i - x_j|^2 <= 4 max |x|^2, far
  // below the half range's 65504 for the runtime's unit rows).
  const bool half = opt.allow_half && 4.01 * pb.max_norm + 1.0 < 60000.0;
  DistMatrix d2 = take_matrix(pb.n, half, pb.K.isa);
  out.stats.half_matrix = d2.half;
  fill_matrix(pb, d2);
  out.stats.seconds_gram = since(t0);
  // The stored values' bound: the float32 one plus the storage's error.
  const CoreQuery q{pb.x, pb.d, pb.k, pb.e + d2.abs(), d2.rel(), pb.K.sel};
  const auto t1 = Clock::now();
  std::vector<i64> evals(pb.threads, 0);
  dense_core(pb, d2, q, c2.data(), evals);
  out.stats.seconds_core = since(t1);
  finish_core(c2, evals, out);
  const auto t2 = Clock::now();
  PrimSlots P;
  P.n = pb.n;
  P.d = pb.d;
  init_prim_slots(P, c2.data(), pb.K.shadows);
  dense_prim(pb, P, d2, c2.data(), q, out);
  give_back_matrix(std::move(d2));
  out.stats.seconds_prim = since(t2);
}

// --------------------------------------------------------- implicit path
//
// No N x N matrix: 64-row blocks are streamed against 1024-column blocks,
// each row keeping only the candidates that can still be its core distance.
// A sample of columns gives each row a first threshold, so that few values
// are kept from the start.

constexpr i64 kRowPanels = 4;   // panels per row block
constexpr i64 kColPanels = 64;  // panels per column block

// Every (n / count)-th row, packed, with its norm.
struct ColumnSample {
  i64 count = 0;
  i64 rank = 0;  // the rank whose value (+ 4e) is a row's first threshold
  PackedRows packed;
  std::vector<float> norms;
};

ColumnSample sample_columns(const Problem& pb) {
  ColumnSample cs;
  const i64 n = pb.n;
  const int d = pb.d;
  cs.count = std::min<i64>(n, 2048);
  std::vector<float> rows(static_cast<std::size_t>(cs.count) * d);
  cs.norms.assign(((cs.count + kPanel - 1) / kPanel) * kPanel, 0.0f);
  for (i64 t = 0; t < cs.count; ++t) {
    const i64 j = t * n / cs.count;
    std::memcpy(rows.data() + t * d, pb.x + j * d, sizeof(float) * d);
    cs.norms[t] = pb.norms[j];
  }
  pack_rows(rows.data(), cs.count, d, cs.packed);
  const double scaled = static_cast<double>(pb.k + 1) * cs.count / n * 1.25;
  cs.rank = std::min<i64>(cs.count - 1, static_cast<i64>(scaled) + 4);
  return cs;
}

// One row's candidates for its core distance: the approximate values <= upto
// and their columns; cap: how many before they are pruned.
struct RowState {
  std::vector<float> vals;
  std::vector<int> idx;
  i64 count = 0;
  double upto = kInf;
  i64 cap = 0;
};

// Per-thread buffers of the implicit path.
struct ImplicitWorker {
  AlignedBuffer<float> tile, stile;  // block x column-block and block x sample products
  std::vector<RowState> rows;        // one per row of the block
  KthScratch kth;
  RowScratch fallback;
  PackedRows mixed;  // the block's panels followed by the sample's
  std::vector<float> rowbuf;
};

// Rows [r0, r1) of row block rb (npi panels).
struct RowBlock {
  i64 rb = 0, npi = 0, r0 = 0, r1 = 0;
};

RowBlock row_block(const Problem& pb, i64 rb) {
  RowBlock blk;
  blk.rb = rb;
  blk.npi = std::min(kRowPanels, pb.packed.panels - rb * kRowPanels);
  blk.r0 = rb * kRowPanels * kPanel;
  blk.r1 = std::min(pb.n, blk.r0 + blk.npi * kPanel);
  return blk;
}

// First thresholds of the block's rows: the sample's rank-th smallest
// distance + 4e. The Gram kernel multiplies panels of one packed matrix, so
// the block and the sample are packed together (a small copy: 64 + 2048
// rows) rather than packing x and the sample as one.
void sample_thresholds(const Problem& pb, const ColumnSample& cs, const RowBlock& blk, i64 cap0, ImplicitWorker& w) {
  const int d = pb.d;
  const i64 sp = cs.packed.panels, sw = sp * kPanel;
  PackedRows& mp = w.mixed;
  mp.n = blk.npi * kPanel + sw;
  mp.d = d;
  mp.panels = blk.npi + sp;
  if (mp.data.size() < static_cast<std::size_t>(mp.panels * d * kPanel)) mp.data.reset(mp.panels * d * kPanel);
  std::memcpy(mp.data.data(), pb.packed.data.data() + blk.rb * kRowPanels * d * kPanel,
              sizeof(float) * blk.npi * d * kPanel);
  std::memcpy(mp.data.data() + blk.npi * d * kPanel, cs.packed.data.data(), sizeof(float) * sp * d * kPanel);
  float* st_tile = w.stile.data();
  pb.K.gemm->gram(mp, 0, blk.npi, blk.npi, sp, st_tile, sw);
  const i64 want = cap0 + kColPanels * kPanel;
  for (i64 r = blk.r0; r < blk.r1; ++r) {
    RowState& st = w.rows[r - blk.r0];
    float* g = st_tile + (r - blk.r0) * sw;
    const float nr = pb.norms[r];
    pb.K.to_d2(g, sw, 1, cs.count, &nr, cs.norms.data());
    st.upto = static_cast<double>(pb.K.sel->kth(g, cs.count, cs.rank, w.kth.sel)) + 4.0 * pb.e;
    st.cap = cap0;
    st.count = 0;
    if (static_cast<i64>(st.vals.size()) < want) {
      st.vals.resize(want);
      st.idx.resize(want);
    }
  }
}

// Appends the columns c0 + [0, w) whose squared distance (from the inner
// products g) is within the row's threshold; past cap candidates, lowers
// the threshold to the k-th smallest + 2e and drops those above it.
void keep_candidates(const Problem& pb, RowState& st, const float* g, i64 w, float nr, i64 c0, KthScratch& ks) {
  if (static_cast<i64>(st.vals.size()) < st.count + w + 16) {
    st.vals.resize(st.count + w + 16 + st.cap);
    st.idx.resize(st.count + w + 16 + st.cap);
  }
  st.count += pb.K.sel->filter(g, w, nr, pb.norms.data() + c0, float_at_least(st.upto), c0,
                               st.vals.data() + st.count, st.idx.data() + st.count);
  if (st.count <= st.cap) return;
  const double kth = static_cast<double>(pb.K.sel->kth(st.vals.data(), st.count, pb.k, ks.sel));
  st.upto = std::min(st.upto, kth + 2.0 * pb.e);
  const float keep = float_at_least(st.upto);
  i64 o = 0;
  for (i64 t = 0; t < st.count; ++t) {
    if (st.vals[t] <= keep) {
      st.vals[o] = st.vals[t];
      st.idx[o] = st.idx[t];
      ++o;
    }
  }
  st.count = o;
  if (o > st.cap / 2) st.cap *= 2;
}

// Streams the block's rows against every column block.
void scan_columns(const Problem& pb, const RowBlock& blk, ImplicitWorker& w) {
  const i64 CB = kColPanels * kPanel;
  float* tile = w.tile.data();
  for (i64 cb = 0; cb < pb.packed.panels; cb += kColPanels) {
    const i64 npj = std::min(kColPanels, pb.packed.panels - cb);
    pb.K.gemm->gram(pb.packed, blk.rb * kRowPanels, blk.npi, cb, npj, tile, CB);
    const i64 c0 = cb * kPanel, c1 = std::min(pb.n, c0 + npj * kPanel);
    for (i64 r = blk.r0; r < blk.r1; ++r) {
      float* g = tile + (r - blk.r0) * CB;
      if (r >= c0 && r < c1) g[r - c0] = std::numeric_limits<float>::max();  // distance to itself: 0
      keep_candidates(pb, w.rows[r - blk.r0], g, c1 - c0, pb.norms[r], c0, w.kth);
    }
  }
}

// Row r's core distance from its full row of distances, recomputed by the
// dot kernel: for a row whose sampled threshold was too low.
double core_from_full_row(const Problem& pb, const CoreQuery& q, i64 r, ImplicitWorker& w, i64* evals) {
  std::vector<float>& rbuf = w.rowbuf;
  rbuf.resize(pb.packed.panels * kPanel);
  pb.K.gemm->dots(pb.x + r * pb.d, pb.packed.data.data(), pb.d, 0, pb.packed.panels, rbuf.data());
  for (i64 c = 0; c < pb.n; ++c) {
    const float f = (pb.norms[r] + pb.norms[c]) - 2.0f * rbuf[c];
    rbuf[c] = f > 0.0f ? f : 0.0f;
  }
  rbuf[r] = 0.0f;
  return core_from_row(q, RowView{rbuf.data(), nullptr}, pb.n, r, w.fallback, evals);
}

void finish_rows(const Problem& pb, const RowBlock& blk, ImplicitWorker& w, double* c2, i64* evals) {
  const CoreQuery q{pb.x, pb.d, pb.k, pb.e, 0.0, pb.K.sel};
  for (i64 r = blk.r0; r < blk.r1; ++r) {
    RowState& st = w.rows[r - blk.r0];
    double need = 0.0;
    const bool ok = st.count >= pb.k + 1 && exact_kth(q, st.vals.data(), st.idx.data(), st.count,
                                                      float_at_least(st.upto), r, w.kth, &c2[r], evals, &need);
    if (!ok) c2[r] = core_from_full_row(pb, q, r, w, evals);
  }
}

void implicit_core(const Problem& pb, double* c2, std::vector<i64>& evals) {
  const ColumnSample cs = sample_columns(pb);
  const i64 RB = kRowPanels * kPanel, CB = kColPanels * kPanel;
  const i64 nrb = (pb.packed.panels + kRowPanels - 1) / kRowPanels;
  const i64 cap0 = 2 * (pb.k + 1) + 256;
  std::vector<ImplicitWorker> workers(pb.threads);
  for (auto& w : workers) {
    w.tile.reset(RB * CB);
    w.stile.reset(RB * cs.packed.panels * kPanel);
    w.rows.resize(RB);
  }
  parallel_for(nrb, pb.threads, 1, [&](i64 b0, i64 b1, int tid) {
    ImplicitWorker& w = workers[tid];
    for (i64 rb = b0; rb < b1; ++rb) {
      const RowBlock blk = row_block(pb, rb);
      sample_thresholds(pb, cs, blk, cap0, w);
      scan_columns(pb, blk, w);
      finish_rows(pb, blk, w, c2, &evals[tid]);
    }
  });
}

// Prim's with each step's distances recomputed by the dot kernel from the
// active points' packed rows (the packing moves here: slots swap their
// lanes as they move), with norms from that same kernel.
void implicit_prim(Problem& pb, const double* c2, MstResult& out) {
  const i64 n = pb.n;
  const int d = pb.d;
  const GemmKernels& gemm = *pb.K.gemm;
  PrimSlots P;
  P.n = n;
  P.d = d;
  P.panels = std::move(pb.packed.data);
  P.ns.assign(n, 0.0f);
  std::vector<float> tmp(kPanel);
  for (i64 i = 0; i < n; ++i) {
    gemm.dots(pb.x + i * d, P.panels.data() + (i / kPanel) * d * kPanel, d, 0, 1, tmp.data());
    P.ns[i] = tmp[i % kPanel];
  }
  init_prim_slots(P, c2, pb.K.shadows);
  const RelaxFn relax = pb.K.relax;
  auto step = [&](Slots& S, i64 v, float nv, i64 A, double c2v, float* f, std::vector<i64>* sat, i64) {
    gemm.dots(pb.x + v * d, P.panels.data(), d, 0, (A + kPanel - 1) / kPanel, f);
    const float* nsv = P.ns.data();
    for (i64 s = 0; s < A; ++s) {
      const float a = (nv + nsv[s]) - 2.0f * f[s];
      f[s] = a > 0.0f ? a : 0.0f;
    }
    return relax(S, f, A, v, c2v, sat);
  };
  run_prim_slots(P, pb.K, bind_slots(P, pb.x, c2, pb.e, 0.0), step, out);
}

void run_implicit(Problem& pb, Clock::time_point t0, std::vector<double>& c2, MstResult& out) {
  std::vector<i64> evals(pb.threads, 0);
  implicit_core(pb, c2.data(), evals);
  out.stats.seconds_core = since(t0);
  finish_core(c2, evals, out);
  const auto t2 = Clock::now();
  implicit_prim(pb, c2.data(), out);
  out.stats.seconds_prim = since(t2);
}

}  // namespace

MstResult mutual_reachability_mst(const float* x, i64 n, int d, int min_samples, const MstOptions& opt) {
  MstResult out;
  Problem pb;
  pb.x = x;
  pb.n = n;
  pb.d = d;
  pb.threads = resolve_threads(opt.num_threads);
  pb.K = pick_kernels(active_isa());
  // The package clips min_samples to [1, N - 1]; the core distance is then
  // the k-th smallest distance with the point itself at rank 0.
  pb.k = std::max<i64>(1, std::min<i64>(n - 1, min_samples));
  out.stats.threads = pb.threads;
  out.stats.min_samples = static_cast<int>(pb.k);
  out.stats.dense = opt.path == 1 || (opt.path == 0 && n <= opt.dense_max_points);
  const auto t0 = Clock::now();
  prepare(pb);
  out.stats.error_bound = pb.e;
  std::vector<double> c2(n);
  if (out.stats.dense)
    run_dense(pb, opt, t0, c2, out);
  else
    run_implicit(pb, t0, c2, out);
  out.core.resize(n);
  for (i64 i = 0; i < n; ++i) out.core[i] = std::sqrt(c2[i]);
  return out;
}

}  // namespace focal
