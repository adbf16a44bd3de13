// Dense DCT zero counts (see gridzeros.hpp for the contract).
#include "gridzeros.hpp"

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

// Row pass of image row y into rows[8][ow]: R[v][x] = sum_k C[v][k] * (g[y][x + k] - 128).
__attribute__((always_inline)) inline void row_pass(const ZeroPlan& a, i64 y, float* rows, float* d) {
  const std::uint8_t* line = a.gray + y * a.w;
  for (int x = 0; x < a.w; ++x) d[x] = static_cast<float>(line[x]) - 128.0f;
  const int ow = a.ow;
  for (int v = 0; v < 8; ++v) {
    float* r = rows + static_cast<std::size_t>(v) * ow;
    const float c0 = a.cosines[v * 8];
    for (int x = 0; x < ow; ++x) r[x] = c0 * d[x];
    for (int k = 1; k < 8; ++k) {
      const float c = a.cosines[v * 8 + k];
      const float* dk = d + k;
      for (int x = 0; x < ow; ++x) r[x] = r[x] + c * dk[x];
    }
  }
}

// Output rows [y0, y1): a ring of the 8 image rows' row passes a window needs, each computed once.
__attribute__((always_inline)) inline void zero_rows_body(const ZeroPlan& a, i64 y0, i64 y1) {
  const int ow = a.ow;
  const std::size_t plane = static_cast<std::size_t>(8) * ow;  // one image row's R[v][x]
  std::vector<float> ring(8 * plane), d(static_cast<std::size_t>(a.w));
  std::vector<std::uint8_t> count(static_cast<std::size_t>(ow));
  for (i64 y = y0; y < y0 + 7; ++y) row_pass(a, y, ring.data() + (y % 8) * plane, d.data());
  for (i64 y = y0; y < y1; ++y) {
    row_pass(a, y + 7, ring.data() + ((y + 7) % 8) * plane, d.data());
    const float* rj[8];
    for (int j = 0; j < 8; ++j) rj[j] = ring.data() + ((y + j) % 8) * plane;
    std::fill(count.begin(), count.end(), std::uint8_t{0});
    for (int u = 0; u < 8; ++u) {
      const float* cu = a.cosines + u * 8;
      for (int v = (u == 0 ? 1 : 0); v < 8; ++v) {  // (0, 0) is the DC term: not counted
        const std::size_t off = static_cast<std::size_t>(v) * ow;
        const float *r0 = rj[0] + off, *r1 = rj[1] + off, *r2 = rj[2] + off, *r3 = rj[3] + off;
        const float *r4 = rj[4] + off, *r5 = rj[5] + off, *r6 = rj[6] + off, *r7 = rj[7] + off;
        for (int x = 0; x < ow; ++x) {
          float raw = cu[0] * r0[x];
          raw = raw + cu[1] * r1[x];
          raw = raw + cu[2] * r2[x];
          raw = raw + cu[3] * r3[x];
          raw = raw + cu[4] * r4[x];
          raw = raw + cu[5] * r5[x];
          raw = raw + cu[6] * r6[x];
          raw = raw + cu[7] * r7[x];
          count[x] = static_cast<std::uint8_t>(count[x] + (std::fabs(raw) <= 0.5f ? 1 : 0));
        }
      }
    }
    std::copy(count.begin(), count.end(), a.out + y * ow);
  }
}

void zero_rows_generic(const ZeroPlan& a, i64 y0, i64 y1) { zero_rows_body(a, y0, y1); }

#if defined(__x86_64__) || defined(_M_X64)
// Eight floats a lane group instead of SSE2's four.
__attribute__((target("avx2"))) void zero_rows_avx2(const ZeroPlan& a, i64 y0, i64 y1) { zero_rows_body(a, y0, y1); }
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
#endif
  // A chunk recomputes the 7 row passes before its first row: 32 rows a chunk keep that under a fifth.
  parallel_for(h - 7, resolve_threads(num_threads), 32, [&](i64 y0, i64 y1, int) { body(plan, y0, y1); });
}

}  // namespace focal
