// Core distances and Prim's minimum spanning tree over mutual reachability
// (see hdbscan.hpp for the contract and the exactness argument).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <mutex>
#include <numeric>
#include <queue>
#include <stdexcept>
#include <utility>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
#define FOCAL_X86 1
#include <immintrin.h>
#endif

#include "gemm.hpp"
#include "dmatrix.hpp"
#include "hdbscan.hpp"
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

// Exact k-th smallest squared distance of point i, given approximations
// vals[0..m) (with point ids idx), each within e + rel * a of its exact value
// a*, that contain every point whose approximation is <= hi (below). Returns
// false (nothing done) when the candidates were collected only up to less
// than hi (*need then holds the threshold to collect up to).
bool exact_kth(const float* vals, const int* idx, i64 m, i64 k, double e, double rel, float collected_upto,
               const float* x, int d, i64 i, KthScratch& s, double* out, i64* evals, double* need) {
  // With F the approximate k-th smallest, the exact k-th lies in
  // [F (1 - rel) - e, F (1 + rel) + e] (order statistics of the lower and of
  // the upper bounds, both monotone in a); a value whose interval misses it
  // is exactly below (a < lo) or above (a > hi) it. rel = 0: F -+ 2e.
  const double F = kth_smallest(vals, m, k, s.sel);
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
  const i64 c = band_split(vals, idx, m, float_at_least(lo), float_at_most(hi), s.ids.data(), &below);
  s.ex.resize(c);
  exact_d2_many(x + i * d, x, s.ids.data(), c, d, s.ex.data());
  *evals += c;
  const i64 kk = k - below;
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

i64 collect(RowView row, i64 n, float upto, RowScratch& s) {
  if (static_cast<i64>(s.vals.size()) < n + 16) {
    s.vals.resize(n + 16);
    s.idx.resize(n + 16);
  }
  return row.f32 ? collect_le(row.f32, n, upto, s.vals.data(), s.idx.data())
                 : collect_le_half(row.f16, n, upto, s.vals.data(), s.idx.data());
}

// Exact core distance (squared) of point i from its full approximate row
// (each value within e + rel * value of the exact one).
double core_from_row(RowView row, i64 n, i64 i, i64 k, double e, double rel, const float* x, int d, RowScratch& s,
                     i64* evals) {
  // A sample puts the collection threshold just above the k-th value.
  const i64 stride = std::max<i64>(1, n / 256);
  s.samp.resize((n + stride - 1) / stride + 16);
  i64 ns = 0;
  if (row.f32) {
    for (i64 j = 0; j < n; j += stride) s.samp[ns++] = row.f32[j];
  } else {
    ns = sample_half(row.f16, n, stride, s.samp.data());
  }
  const i64 r = std::min<i64>(ns - 1, static_cast<i64>(static_cast<double>(k + 1) * ns / n * 1.25) + 4);
  const double guess = kth_smallest(s.samp.data(), ns, r, s.kth.sel);
  float upto = float_at_least(guess + 4.0 * (e + rel * guess));
  i64 m = collect(row, n, upto, s);
  if (m < k + 1) {
    upto = std::numeric_limits<float>::infinity();
    m = collect(row, n, upto, s);
  }
  double out = 0.0, need = 0.0;
  if (!exact_kth(s.vals.data(), s.idx.data(), m, k, e, rel, upto, x, d, i, s.kth, &out, evals, &need)) {
    upto = float_at_least(need);
    m = collect(row, n, upto, s);
    exact_kth(s.vals.data(), s.idx.data(), m, k, e, rel, upto, x, d, i, s.kth, &out, evals, &need);
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
double relax_generic(Slots& S, const float* f, i64 s0, i64 s1, i64 v, double c2v, std::vector<i64>* saturated) {
  double mn = kInf;
  for (i64 s = s0; s < s1; ++s) {
    const double chi = offer(S, s, f[s], v, c2v, saturated);
    if (chi < mn) mn = chi;
  }
  return mn;
}

// Exactifies the slots of [s0, s1) with lo <= m and keeps the best
// (value, point) in (*best, *best_val, *best_pt).
void select_generic(Slots& S, i64 s0, i64 s1, double m, i64* best, double* best_val, i64* best_pt) {
  for (i64 s = s0; s < s1; ++s) {
    if (S.lo[s] <= m) {
      S.exactify(s);
      const double val = S.lo[s];
      const i64 pt = S.point(s);
      if (*best < 0 || val < *best_val || (val == *best_val && pt < *best_pt)) {
        *best = s;
        *best_val = val;
        *best_pt = pt;
      }
    }
  }
}

#ifdef FOCAL_X86
__attribute__((target("avx2"))) double relax_avx2(Slots& S, const float* f, i64 s0, i64 s1, i64 v, double c2v,
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
  i64 s = s0;
  for (; s + 4 <= s1; s += 4) {
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
  if (s < s1) mn = std::min(mn, relax_generic(S, f, s, s1, v, c2v, saturated));
  return mn;
}

__attribute__((target("avx2"))) void select_avx2(Slots& S, i64 s0, i64 s1, double m, i64* best, double* best_val,
                                                 i64* best_pt) {
  const __m256d vm = _mm256_set1_pd(m);
  i64 s = s0;
  for (; s + 4 <= s1; s += 4) {
    int bits = _mm256_movemask_pd(_mm256_cmp_pd(_mm256_loadu_pd(S.lo + s), vm, _CMP_LE_OQ));
    while (bits) {
      const i64 t = s + __builtin_ctz(bits);
      bits &= bits - 1;
      select_generic(S, t, t + 1, m, best, best_val, best_pt);
    }
  }
  select_generic(S, s, s1, m, best, best_val, best_pt);
}
#endif

#ifdef FOCAL_X86
// relax() with a float32 pre-filter (AVX-512, 16 slots per step): a test
// that never rejects an offer that matters - its lower bound max(fd (1 - r) -
// e, max(c_v, c_j)) against hif >= hi - sends the few that may (about 2% of
// them on real maps) to the exact per-slot offer. Returns an upper bound on
// the smallest hi (min of hif), which is all the selection after it needs.
// (Gathering straight from the matrix row with vpgatherdd instead was slower.)
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

double relax(Slots& S, const float* f, i64 s0, i64 s1, i64 v, double c2v, std::vector<i64>* saturated) {
#ifdef FOCAL_X86
  if (S.hif && s0 == 0) return relax_filtered_avx512(S, f, s1, v, c2v, saturated);  // shadows: AVX-512 CPUs
  if (cpu_avx2()) return relax_avx2(S, f, s0, s1, v, c2v, saturated);
#endif
  return relax_generic(S, f, s0, s1, v, c2v, saturated);
}

void select(Slots& S, i64 s0, i64 s1, double m, i64* best, double* best_val, i64* best_pt) {
#ifdef FOCAL_X86
  if (cpu_avx2()) return select_avx2(S, s0, s1, m, best, best_val, best_pt);
#endif
  select_generic(S, s0, s1, m, best, best_val, best_pt);
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
  AlignedBuffer<float> hif, c2sf;  // float32 shadows (Slots), where the fused relaxation runs
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
// clusters saturate) is too small to share through a barrier per step on a
// machine shared with other work (measured: splitting each step's offers
// over two threads with a spinning hand-over made the median 4 ms slower on
// 2 shared cores, though its best runs were 1.3 ms faster).
// step(S, v, nv, A, c2v, f, saturated, guess) offers the new tree point v's
// edges to the A active slots (f: scratch for their distances) and returns
// the selection threshold: at least the smallest hi. guess: the likely next
// tree point (-1: none).
template <class Step>
void run_prim_slots(PrimSlots& P, const float* x, const double* c2, double e, double rel, Step&& step,
                    MstResult& out) {
  const i64 n = P.n;
  const int d = P.d;
  out.src.resize(n - 1);
  out.dst.resize(n - 1);
  out.weight.resize(n - 1);
  std::vector<float> f(static_cast<std::size_t>((n + kPanel - 1) / kPanel + 1) * kPanel);
  std::vector<i64> saturated, sat_points;
  Slots S;
  S.x = x;
  S.d = d;
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
  using Entry = std::pair<double, i64>;  // (value, point): the package's order of choice
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> heap;
  i64 v = 0;  // point 0 starts the tree
  float nv = P.ns.empty() ? 0.0f : P.ns[P.pos[0]];
  double c2v = c2[0];
  P.remove(P.pos[0]);
  for (i64 edge = 0; edge < n - 1; ++edge) {
    const i64 A = P.active;
    double m = kInf;
    saturated.clear();
    // The next tree point is nearly always the heap's top (it holds the
    // smallest values): the step may fetch that point's row ahead.
    const i64 guess = heap.empty() ? -1 : heap.top().second;
    if (A > 0) m = step(S, v, nv, A, c2v, f.data(), &saturated, guess);
    const bool have_heap = !heap.empty();
    if (have_heap) m = std::min(m, heap.top().first);
    i64 best = -1, best_pt = -1;
    double best_val = kInf;
    select(S, 0, A, m, &best, &best_val, &best_pt);
    if (have_heap) {
      const Entry& top = heap.top();
      if (best < 0 || top.first < best_val || (top.first == best_val && top.second < best_pt)) {
        best_val = top.first;
        best_pt = top.second;
        heap.pop();
      }
    }
    // Newly saturated slots leave the active region (tracked by point: slots move).
    sat_points.clear();
    for (const i64 s : saturated) sat_points.push_back(P.idx[s]);
    for (const i64 p : sat_points) {
      if (p == best_pt) continue;  // joins the tree now
      const i64 s = P.pos[p];
      heap.emplace(P.lo[s], p);
      P.saturate(s);
    }
    if (best_pt < 0) throw std::logic_error("focal native core: Prim's found no next point (exactness bound violated)");
    const i64 ws = P.pos[best_pt];
    out.src[edge] = P.src[ws];
    out.dst[edge] = best_pt;
    out.weight[edge] = std::sqrt(best_val);
    v = best_pt;
    c2v = c2[v];
    nv = P.ns.empty() ? 0.0f : P.ns[ws];
    P.remove(ws);
  }
  out.stats.prim_exact += S.evals;
}

}  // namespace

MstResult mutual_reachability_mst(const float* x, i64 n, int d, int min_samples, const MstOptions& opt) {
  MstResult out;
  const int threads = resolve_threads(opt.num_threads);
  out.stats.threads = threads;
  // The package clips min_samples to [1, N - 1]; the core distance is then
  // the k-th smallest distance with the point itself at rank 0.
  i64 k = std::min<i64>(n - 1, min_samples);
  if (k <= 0) k = 1;
  out.stats.min_samples = static_cast<int>(k);
  const bool dense = opt.path == 1 || (opt.path == 0 && n <= opt.dense_max_points);
  out.stats.dense = dense;

  auto t0 = Clock::now();
  PackedRows packed;
  pack_rows(x, n, d, packed);
  // Norms from the Gram kernel's own diagonal, so identical rows are at an
  // exactly zero approximate distance.
  std::vector<float> norms(packed.panels * kPanel, 0.0f);
  {
    std::vector<float> tile(kPanel * kPanel);
    for (i64 p = 0; p < packed.panels; ++p) {
      gram_panels(packed, p, 1, p, 1, tile.data(), kPanel);
      for (int r = 0; r < kPanel; ++r) norms[p * kPanel + r] = tile[r * kPanel + r];
    }
  }
  double max_norm = 0.0;
  for (i64 i = 0; i < n; ++i) max_norm = std::max(max_norm, static_cast<double>(norms[i]));
  const double e = error_bound(d, max_norm);
  out.stats.error_bound = e;

  std::vector<double> c2(n);
  PrimSlots P;
  P.n = n;
  P.d = d;
  DistMatrix d2;
  double e_store = e, rel = 0.0;  // bound on the stored values: e_store + rel * value
  std::vector<i64> evals(threads, 0);

  if (dense) {
    // Full matrix of approximate squared distances, one 64 x 64 block pair
    // at a time (upper triangle computed, mirrored with whole-line stores).
    // Half storage where the values fit (|x_i - x_j|^2 <= 4 max |x|^2, far
    // below the half range's 65504 for the runtime's unit rows).
    const bool half = opt.allow_half && 4.01 * max_norm + 1.0 < 60000.0;
    d2 = take_matrix(n, half);
    out.stats.half_matrix = d2.half;
    e_store = e + d2.abs();
    rel = d2.rel();
    const i64 bp = 4;  // panels per block
    const i64 nb = (packed.panels + bp - 1) / bp;
    std::vector<std::pair<i64, i64>> pairs;
    pairs.reserve(nb * (nb + 1) / 2);
    for (i64 a = 0; a < nb; ++a)
      for (i64 b = a; b < nb; ++b) pairs.emplace_back(a, b);
    const i64 B = bp * kPanel;
    std::vector<AlignedBuffer<float>> tiles(threads), tilesT(threads);
    for (auto& t : tiles) t.reset(B * B);
    for (auto& t : tilesT) t.reset(B * B);
    parallel_for(static_cast<i64>(pairs.size()), threads, 8, [&](i64 b0, i64 b1, int tid) {
      float* tile = tiles[tid].data();
      for (i64 pi = b0; pi < b1; ++pi) {
        const i64 a = pairs[pi].first, b = pairs[pi].second;
        const i64 npa = std::min(bp, packed.panels - a * bp), npb = std::min(bp, packed.panels - b * bp);
        gram_panels(packed, a * bp, npa, b * bp, npb, tile, B);
        const i64 r0 = a * B, c0 = b * B;
        const i64 r1 = std::min(n, r0 + npa * kPanel), c1 = std::min(n, c0 + npb * kPanel);
        gram_to_d2(tile, B, r1 - r0, c1 - c0, norms.data() + r0, norms.data() + c0);
        if (a == b)
          for (i64 r = r0; r < r1; ++r) tile[(r - r0) * B + (r - c0)] = 0.0f;
        store_block(tile, B, r1 - r0, c1 - c0, d2, r0, c0, a != b, tilesT[tid].data());
      }
      finish_stores();
    });
    out.stats.seconds_gram = since(t0);
    auto t1 = Clock::now();
    std::vector<RowScratch> scratch(threads);
    std::vector<std::vector<float>> rowbuf(threads, std::vector<float>(n + 16));
    parallel_for(n, threads, 64, [&](i64 i0, i64 i1, int tid) {
      for (i64 i = i0; i < i1; ++i) {
        // No software prefetch: rows are read in order, which the hardware
        // prefetcher follows (measured: a prefetch of row i + 1 cost 0.5 ms).
        // Half rows are filtered in place where the AVX-512 kernel converts
        // on the fly, converted to float32 first elsewhere.
        const RowView row = d2.half && cpu_avx512() ? RowView{nullptr, d2.f16() + i * n}
                                                    : RowView{matrix_row(d2, i, rowbuf[tid].data()), nullptr};
        c2[i] = core_from_row(row, n, i, k, e_store, rel, x, d, scratch[tid], &evals[tid]);
      }
    });
    out.stats.seconds_core = since(t1);
  } else {
    // No N x N matrix: stream 64-row blocks against 1024-column blocks and
    // keep, per row, only the candidates that can still be its core distance.
    // A sample of columns gives each row a first threshold, so that few
    // values are kept from the start.
    const i64 rbp = 4, cbp = 64;
    const i64 RB = rbp * kPanel, CB = cbp * kPanel;
    const i64 nrb = (packed.panels + rbp - 1) / rbp;
    const i64 nsamp = std::min<i64>(n, 2048);
    std::vector<float> samp_rows(static_cast<std::size_t>(nsamp) * d);
    std::vector<float> samp_norms(((nsamp + kPanel - 1) / kPanel) * kPanel, 0.0f);
    for (i64 t = 0; t < nsamp; ++t) {
      const i64 j = t * n / nsamp;
      std::memcpy(samp_rows.data() + t * d, x + j * d, sizeof(float) * d);
      samp_norms[t] = norms[j];
    }
    PackedRows spack;
    pack_rows(samp_rows.data(), nsamp, d, spack);
    // gram_panels multiplies panels of one packed matrix: pack rows and sample
    // together would cost a copy of x; instead the row block is packed again
    // with the sample appended per call (tiny: 64 + 2048 rows).
    const i64 srank = std::min<i64>(nsamp - 1, static_cast<i64>(static_cast<double>(k + 1) * nsamp / n * 1.25) + 4);
    std::vector<AlignedBuffer<float>> tiles(threads), stiles(threads);
    for (auto& t : tiles) t.reset(RB * CB);
    for (auto& t : stiles) t.reset(RB * spack.panels * kPanel);
    struct RowState {
      std::vector<float> vals;
      std::vector<int> idx;
      i64 count = 0;
      double upto = kInf;
      i64 cap = 0;
    };
    std::vector<std::vector<RowState>> states(threads, std::vector<RowState>(RB));
    std::vector<KthScratch> kth(threads);
    std::vector<RowScratch> fallback(threads);
    std::vector<PackedRows> mixed(threads);
    std::vector<std::vector<float>> rowbuf(threads);
    const i64 cap0 = 2 * (k + 1) + 256;
    parallel_for(nrb, threads, 1, [&](i64 b0, i64 b1, int tid) {
      float* tile = tiles[tid].data();
      auto& rows = states[tid];
      KthScratch& ks = kth[tid];
      for (i64 rb = b0; rb < b1; ++rb) {
        const i64 r0 = rb * RB;
        const i64 npi = std::min(rbp, packed.panels - rb * rbp);
        const i64 r1 = std::min(n, r0 + npi * kPanel);
        // First thresholds from the column sample.
        {
          PackedRows& mp = mixed[tid];
          mp.n = npi * kPanel + spack.panels * kPanel;
          mp.d = d;
          mp.panels = npi + spack.panels;
          if (mp.data.size() < static_cast<std::size_t>(mp.panels * d * kPanel)) mp.data.reset(mp.panels * d * kPanel);
          std::memcpy(mp.data.data(), packed.data.data() + rb * rbp * d * kPanel, sizeof(float) * npi * d * kPanel);
          std::memcpy(mp.data.data() + npi * d * kPanel, spack.data.data(), sizeof(float) * spack.panels * d * kPanel);
          const i64 sw = spack.panels * kPanel;
          float* st_tile = stiles[tid].data();
          gram_panels(mp, 0, npi, npi, spack.panels, st_tile, sw);
          for (i64 r = r0; r < r1; ++r) {
            RowState& st = rows[r - r0];
            float* g = st_tile + (r - r0) * sw;
            const float nr = norms[r];
            gram_to_d2(g, sw, 1, nsamp, &nr, samp_norms.data());
            st.upto = static_cast<double>(kth_smallest(g, nsamp, srank, ks.sel)) + 4.0 * e;
            st.cap = cap0;
            st.count = 0;
            if (static_cast<i64>(st.vals.size()) < cap0 + CB) {
              st.vals.resize(cap0 + CB);
              st.idx.resize(cap0 + CB);
            }
          }
        }
        for (i64 cb = 0; cb < packed.panels; cb += cbp) {
          const i64 npj = std::min(cbp, packed.panels - cb);
          gram_panels(packed, rb * rbp, npi, cb, npj, tile, CB);
          const i64 c0 = cb * kPanel, c1 = std::min(n, c0 + npj * kPanel);
          for (i64 r = r0; r < r1; ++r) {
            RowState& st = rows[r - r0];
            float* g = tile + (r - r0) * CB;
            const float nr = norms[r];
            const i64 w = c1 - c0;
            if (r >= c0 && r < c1) g[r - c0] = std::numeric_limits<float>::max();  // distance to itself: 0
            if (static_cast<i64>(st.vals.size()) < st.count + w + 16) {
              st.vals.resize(st.count + w + 16 + st.cap);
              st.idx.resize(st.count + w + 16 + st.cap);
            }
            st.count += filter_le(g, w, nr, norms.data() + c0, float_at_least(st.upto), c0,
                                    st.vals.data() + st.count, st.idx.data() + st.count);
            if (st.count > st.cap) {
              st.upto = std::min(st.upto, static_cast<double>(kth_smallest(st.vals.data(), st.count, k, ks.sel)) + 2.0 * e);
              const float keep = float_at_least(st.upto);
              i64 o = 0;
              for (i64 t = 0; t < st.count; ++t) {
                if (st.vals[t] <= keep) { st.vals[o] = st.vals[t]; st.idx[o] = st.idx[t]; ++o; }
              }
              st.count = o;
              if (o > st.cap / 2) st.cap *= 2;
            }
          }
        }
        for (i64 r = r0; r < r1; ++r) {
          RowState& st = rows[r - r0];
          double need = 0.0;
          const bool ok = st.count >= k + 1 &&
                          exact_kth(st.vals.data(), st.idx.data(), st.count, k, e, 0.0, float_at_least(st.upto), x, d, r,
                                    ks, &c2[r], &evals[tid], &need);
          if (!ok) {
            // The sampled threshold was too low for this row: redo it in full.
            std::vector<float>& rbuf = rowbuf[tid];
            rbuf.resize(packed.panels * kPanel);
            dot_panels(x + r * d, packed.data.data(), d, 0, packed.panels, rbuf.data());
            for (i64 c = 0; c < n; ++c) {
              const float f = (norms[r] + norms[c]) - 2.0f * rbuf[c];
              rbuf[c] = f > 0.0f ? f : 0.0f;
            }
            rbuf[r] = 0.0f;
            c2[r] = core_from_row(RowView{rbuf.data(), nullptr}, n, r, k, e, 0.0, x, d, fallback[tid], &evals[tid]);
          }
        }
      }
    });
    out.stats.seconds_core = since(t0);
    // Prim's working copy of the rows, and norms from the dot kernel Prim uses.
    P.panels = std::move(packed.data);
    P.ns.assign(n, 0.0f);
    std::vector<float> tmp(kPanel);
    for (i64 i = 0; i < n; ++i) {
      dot_panels(x + i * d, P.panels.data() + (i / kPanel) * d * kPanel, d, 0, 1, tmp.data());
      P.ns[i] = tmp[i % kPanel];
    }
  }
  for (i64 t : evals) out.stats.core_exact += t;
  for (i64 i = 0; i < n; ++i)
    if (!(c2[i] >= 0.0))  // exact_kth's NaN: the float32 error bound did not hold
      throw std::logic_error("focal native core: a core distance could not be decided (exactness bound violated)");

  auto t2 = Clock::now();
  {
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
    if (cpu_avx512()) {  // float32 shadows for the pre-filtered relaxation
      P.hif.reset(n);
      P.c2sf.reset(n);
      for (i64 i = 0; i < n; ++i) {
        P.hif[i] = std::numeric_limits<float>::infinity();
        P.c2sf[i] = float_at_most(c2[i]);
      }
    }
    if (dense) {
      const int* idx = P.idx.data();
      // The active points' distances to v, gathered from its row.
      run_prim_slots(P, x, c2.data(), e_store, rel, [&](Slots& S, i64 v, float, i64 A, double c2v, float* f,
                                                        std::vector<i64>* sat, i64 guess) {
        // Each step reads one row that is far out of cache, and which row
        // is known only after the previous step. The guess (right over 99%
        // of the time on real maps) lets this step fetch the next row into
        // L2 while it gathers (lite@512 map: 8.9 -> 7.2 ms of Prim's;
        // gathering half values one by one instead of converting the whole
        // row: 7.2 -> 6.3 ms).
        gather_row(d2, v, idx, A, f, guess);
        return relax(S, f, 0, A, v, c2v, sat);
      }, out);
      give_back_matrix(std::move(d2));
    } else {
      // Recomputed: the dot kernel on the active points' packed rows.
      run_prim_slots(P, x, c2.data(), e, 0.0, [&](Slots& S, i64 v, float nv, i64 A, double c2v, float* f,
                                                   std::vector<i64>* sat, i64) {
        dot_panels(x + v * d, P.panels.data(), d, 0, (A + kPanel - 1) / kPanel, f);
        const float* nsv = P.ns.data();
        for (i64 s = 0; s < A; ++s) {
          const float a = (nv + nsv[s]) - 2.0f * f[s];
          f[s] = a > 0.0f ? a : 0.0f;
        }
        return relax(S, f, 0, A, v, c2v, sat);
      }, out);
    }
  }
  out.stats.seconds_prim = since(t2);
  out.core.resize(n);
  for (i64 i = 0; i < n; ++i) out.core[i] = std::sqrt(c2[i]);
  return out;
}

}  // namespace focal
