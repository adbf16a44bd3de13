// Dense DCT zero counts (see gridzeros.hpp for the contract).
#include "gridzeros.hpp"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>
#include <vector>

#include "isa.hpp"

namespace focal {

namespace {

struct ZeroPlan {
  const std::uint8_t* gray;
  int w, ow;  // ow = w - 7 window origins a row
  const float* cosines;
  std::uint8_t* out;
};

// Row pass of image row y into rows[8][ow], by the basis' symmetry C[v][7 - k] = (-1)^v C[v][k]:
// R[v][x] = sum_{k<4} C[v][k] * s_k[x], s_k = e_k (v even) or o_k (v odd), with
// e_k[x] = d[x + k] + d[x + 7 - k] and o_k[x] = d[x + k] - d[x + 7 - k], d = g[y] - 128.
// Half the products of the plain 8-tap sum.
__attribute__((always_inline)) inline void row_pass(const ZeroPlan& a, i64 y, float* rows, float* d, float* eo) {
  const std::uint8_t* line = a.gray + y * a.w;
  for (int x = 0; x < a.w; ++x) d[x] = static_cast<float>(line[x]) - 128.0f;
  const int ow = a.ow;
  for (int k = 0; k < 4; ++k) {
    float* e = eo + static_cast<std::size_t>(k) * ow;
    float* o = eo + static_cast<std::size_t>(4 + k) * ow;
    const float* lo = d + k;
    const float* hi = d + 7 - k;
    for (int x = 0; x < ow; ++x) e[x] = lo[x] + hi[x], o[x] = lo[x] - hi[x];
  }
  for (int v = 0; v < 8; ++v) {
    float* r = rows + static_cast<std::size_t>(v) * ow;
    const float* s = eo + static_cast<std::size_t>(v % 2 ? 4 : 0) * ow;
    const float *s0 = s, *s1 = s + ow, *s2 = s + 2 * ow, *s3 = s + 3 * static_cast<std::size_t>(ow);
    const float* c = a.cosines + v * 8;
    for (int x = 0; x < ow; ++x) {
      float acc = c[0] * s0[x];
      acc = acc + c[1] * s1[x];
      acc = acc + c[2] * s2[x];
      acc = acc + c[3] * s3[x];
      r[x] = acc;
    }
  }
}

// One coefficient's column sum over the butterflies, and whether it rounds to 0.
__attribute__((always_inline)) inline std::uint8_t is_zero(const float* c, float s0, float s1, float s2, float s3) {
  float raw = c[0] * s0;
  raw = raw + c[1] * s1;
  raw = raw + c[2] * s2;
  raw = raw + c[3] * s3;
  return std::fabs(raw) <= 0.5f ? 1 : 0;
}

// Output rows [y0, y1): a ring of the 8 image rows' row passes a window needs, each computed once.
// The column pass uses the same symmetry over the window's 8 rows: E_j = R_j + R_{7-j} for even u,
// O_j = R_j - R_{7-j} for odd u, j < 4.
__attribute__((always_inline)) inline void zero_rows_body(const ZeroPlan& a, i64 y0, i64 y1) {
  const int ow = a.ow;
  const std::size_t plane = static_cast<std::size_t>(8) * ow;  // one image row's R[v][x]
  std::vector<float> ring(8 * plane), d(static_cast<std::size_t>(a.w)), eo(plane);
  std::vector<std::uint8_t> count(static_cast<std::size_t>(ow));
  const float* C = a.cosines;
  for (i64 y = y0; y < y0 + 7; ++y) row_pass(a, y, ring.data() + (y % 8) * plane, d.data(), eo.data());
  for (i64 y = y0; y < y1; ++y) {
    row_pass(a, y + 7, ring.data() + ((y + 7) % 8) * plane, d.data(), eo.data());
    const float* rj[8];
    for (int j = 0; j < 8; ++j) rj[j] = ring.data() + ((y + j) % 8) * plane;
    std::fill(count.begin(), count.end(), std::uint8_t{0});
    std::uint8_t* n = count.data();
    for (int v = 0; v < 8; ++v) {
      const std::size_t off = static_cast<std::size_t>(v) * ow;
      const float *r0 = rj[0] + off, *r1 = rj[1] + off, *r2 = rj[2] + off, *r3 = rj[3] + off;
      const float *r4 = rj[4] + off, *r5 = rj[5] + off, *r6 = rj[6] + off, *r7 = rj[7] + off;
      // u = 0, v = 0 is the DC term: not counted (the loop for v = 0 starts at u = 1's sums)
      const std::uint8_t dc = v == 0 ? 0 : 1;
      for (int x = 0; x < ow; ++x) {
        const float e0 = r0[x] + r7[x], e1 = r1[x] + r6[x], e2 = r2[x] + r5[x], e3 = r3[x] + r4[x];
        const float o0 = r0[x] - r7[x], o1 = r1[x] - r6[x], o2 = r2[x] - r5[x], o3 = r3[x] - r4[x];
        std::uint8_t z = static_cast<std::uint8_t>(dc & is_zero(C, e0, e1, e2, e3));
        z = static_cast<std::uint8_t>(z + is_zero(C + 8, o0, o1, o2, o3));
        z = static_cast<std::uint8_t>(z + is_zero(C + 16, e0, e1, e2, e3));
        z = static_cast<std::uint8_t>(z + is_zero(C + 24, o0, o1, o2, o3));
        z = static_cast<std::uint8_t>(z + is_zero(C + 32, e0, e1, e2, e3));
        z = static_cast<std::uint8_t>(z + is_zero(C + 40, o0, o1, o2, o3));
        z = static_cast<std::uint8_t>(z + is_zero(C + 48, e0, e1, e2, e3));
        z = static_cast<std::uint8_t>(z + is_zero(C + 56, o0, o1, o2, o3));
        n[x] = static_cast<std::uint8_t>(n[x] + z);
      }
    }
    std::copy(count.begin(), count.end(), a.out + y * ow);
  }
}

void zero_rows_generic(const ZeroPlan& a, i64 y0, i64 y1) { zero_rows_body(a, y0, y1); }

#if defined(__x86_64__) || defined(_M_X64)
// Eight floats a lane group instead of SSE2's four.
__attribute__((target("avx2"))) void zero_rows_avx2(const ZeroPlan& a, i64 y0, i64 y1) { zero_rows_body(a, y0, y1); }
// Sixteen.
__attribute__((target("avx512f,avx512bw"))) void zero_rows_avx512(const ZeroPlan& a, i64 y0, i64 y1) {
  zero_rows_body(a, y0, y1);
}
#endif

}  // namespace

void grid_zero_counts(const std::uint8_t* gray, int h, int w, const float* cosines, int num_threads,
                      std::uint8_t* out) {
  if (h < 8 || w < 8)
    throw std::invalid_argument("grid_zero_counts: need h, w >= 8, got " + std::to_string(h) + " x " +
                                std::to_string(w));
  const ZeroPlan plan{gray, w, w - 7, cosines, out};
  void (*body)(const ZeroPlan&, i64, i64) = zero_rows_generic;
#if defined(__x86_64__) || defined(_M_X64)
  if (active_isa() >= Isa::avx2) body = zero_rows_avx2;
  if (active_isa() >= Isa::avx512 && __builtin_cpu_supports("avx512bw")) body = zero_rows_avx512;
#endif
  // A chunk recomputes the 7 row passes before its first row: 32 rows a chunk keep that under a fifth.
  parallel_for(h - 7, resolve_threads(num_threads), 32, [&](i64 y0, i64 y1, int) { body(plan, y0, y1); });
}

void grid_cell_votes(const std::uint8_t* z, int oh, int ow, int zmax, int margin, int num_threads, std::int8_t* out) {
  if (oh < 8 || ow < 8 || margin < 1)
    throw std::invalid_argument("grid_cell_votes: need counts of at least 8 x 8 and margin >= 1, got " +
                                std::to_string(oh) + " x " + std::to_string(ow) + ", margin " + std::to_string(margin));
  const int ch = oh / 8, cw = ow / 8;
  parallel_for(ch, resolve_threads(num_threads), 8, [&](i64 i0, i64 i1, int) {
    for (i64 i = i0; i < i1; ++i)
      for (int j = 0; j < cw; ++j) {
        // The first window with the most zeros, in the cell's row-major order (NumPy's argmax).
        int best = -1, vote = 0;
        for (int a = 0; a < 8; ++a) {
          const std::uint8_t* row = z + (8 * i + a) * static_cast<i64>(ow) + 8 * j;
          for (int b = 0; b < 8; ++b)
            if (row[b] > best) best = row[b], vote = 8 * a + b;
        }
        // Refused: a second window within the margin, no zeros at all, or a smooth cell.
        const int floor = std::max(0, best - margin + 1);
        int close = 0;
        for (int a = 0; a < 8; ++a) {
          const std::uint8_t* row = z + (8 * i + a) * static_cast<i64>(ow) + 8 * j;
          for (int b = 0; b < 8; ++b) close += row[b] >= floor;
        }
        const bool refuse = close > 1 || best == 0 || best > zmax;
        out[i * cw + j] = static_cast<std::int8_t>(refuse ? -1 : vote);
      }
  });
}

GridHits grid_window_hits(const std::int8_t* votes, int ch, int cw, const std::int64_t* grids, const double* bounds,
                          int count, int window, int num_threads) {
  if (ch < 1 || cw < 1 || window < 1 || count < 0)
    throw std::invalid_argument("grid_window_hits: need votes of at least 1 x 1 and a window >= 1, got " +
                                std::to_string(ch) + " x " + std::to_string(cw) + ", window " + std::to_string(window));
  for (int g = 0; g < count; ++g)
    if (grids[g] < 0 || grids[g] > 63) throw std::invalid_argument("grid_window_hits: grids must lie in 0..63");
  // Window (i, j) spans cells i - before .. i + window - 1 - before (OpenCV's centred anchor).
  const int before = window / 2, after = window - 1 - before;
  std::vector<GridHits> per(static_cast<std::size_t>(count));
  parallel_for(count, resolve_threads(num_threads), 1, [&](i64 g0, i64 g1, int) {
    std::vector<std::int32_t> rows(static_cast<std::size_t>(ch) * cw);
    for (i64 g = g0; g < g1; ++g) {
      const auto grid = static_cast<std::int8_t>(grids[g]);
      // Row sums over the window's columns, each by a running sum along the row.
      for (int i = 0; i < ch; ++i) {
        const std::int8_t* v = votes + static_cast<i64>(i) * cw;
        std::int32_t* r = rows.data() + static_cast<i64>(i) * cw;
        std::int32_t run = 0;
        for (int x = 0; x < std::min(after, cw); ++x) run += v[x] == grid;
        for (int j = 0; j < cw; ++j) {
          if (j + after < cw) run += v[j + after] == grid;
          if (j - before - 1 >= 0) run -= v[j - before - 1] == grid;
          r[j] = run;
        }
      }
      // Then over the window's rows, one running sum a column, emitted row by row.
      GridHits& out = per[static_cast<std::size_t>(g)];
      std::vector<std::int32_t> col(static_cast<std::size_t>(cw), 0);
      for (int y = 0; y < std::min(after, ch); ++y)
        for (int j = 0; j < cw; ++j) col[j] += rows[static_cast<i64>(y) * cw + j];
      const double bound = bounds[g];
      for (int i = 0; i < ch; ++i) {
        const std::int32_t* add = i + after < ch ? rows.data() + static_cast<i64>(i + after) * cw : nullptr;
        const std::int32_t* drop = i - before - 1 >= 0 ? rows.data() + static_cast<i64>(i - before - 1) * cw : nullptr;
        for (int j = 0; j < cw; ++j) {
          col[j] += (add ? add[j] : 0) - (drop ? drop[j] : 0);
          if (static_cast<double>(col[j]) > bound) {
            out.grid.push_back(static_cast<std::int32_t>(g));
            out.y.push_back(i), out.x.push_back(j), out.count.push_back(col[j]);
          }
        }
      }
    }
  });
  GridHits all;
  for (const GridHits& h : per) {  // grid by grid: np.nonzero's order over [G, H', W']
    all.grid.insert(all.grid.end(), h.grid.begin(), h.grid.end());
    all.y.insert(all.y.end(), h.y.begin(), h.y.end());
    all.x.insert(all.x.end(), h.x.begin(), h.x.end());
    all.count.insert(all.count.end(), h.count.begin(), h.count.end());
  }
  return all;
}

}  // namespace focal
