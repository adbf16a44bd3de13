// Quantised block DCT (see blockdct.hpp for the contract).
#include "blockdct.hpp"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <vector>

#include "isa.hpp"

namespace focal {

namespace {

struct DctPlan {
  const std::uint8_t* gray;
  int w, bw, count, cols;  // cols: the v the positions need (largest + 1)
  const double* cosines;
  const int* u;
  const int* v;
  const double* steps;
  std::int32_t* out;
};

// 1.5 * 2^52: adding and subtracting it rounds a double of magnitude below 2^51 to an integer,
// half to even in the default rounding mode (what np.rint does), in plain vector arithmetic.
constexpr double kRound = 6755399441055744.0;

// Block rows [r0, r1). Lanes run across the blocks of one row; every sum keeps the reference's
// order, so every ISA gives the same bits.
__attribute__((always_inline)) inline void dct_rows_body(const DctPlan& a, i64 r0, i64 r1) {
  const int bw = a.bw, count = a.count, cols = a.cols;
  std::vector<double> d(64 * static_cast<std::size_t>(bw));         // d[y][x][block]
  std::vector<double> t(8 * static_cast<std::size_t>(cols) * bw);   // T[y][v][block]
  std::vector<double> raw(static_cast<std::size_t>(bw));
  for (i64 r = r0; r < r1; ++r) {
    for (int y = 0; y < 8; ++y) {
      const std::uint8_t* line = a.gray + (r * 8 + y) * a.w;
      for (int x = 0; x < 8; ++x) {
        double* dst = d.data() + (y * 8 + x) * static_cast<std::size_t>(bw);
        for (int b = 0; b < bw; ++b) dst[b] = static_cast<double>(line[b * 8 + x]) - 128.0;
      }
    }
    for (int y = 0; y < 8; ++y)
      for (int v = 0; v < cols; ++v) {
        double* acc = t.data() + (y * cols + v) * static_cast<std::size_t>(bw);
        const double* d0 = d.data() + (y * 8) * static_cast<std::size_t>(bw);
        const double c0 = a.cosines[v * 8];
        for (int b = 0; b < bw; ++b) acc[b] = d0[b] * c0;
        for (int x = 1; x < 8; ++x) {
          const double* dx = d.data() + (y * 8 + x) * static_cast<std::size_t>(bw);
          const double c = a.cosines[v * 8 + x];
          for (int b = 0; b < bw; ++b) acc[b] = acc[b] + dx[b] * c;
        }
      }
    std::int32_t* row_out = a.out + r * bw * count;
    for (int j = 0; j < count; ++j) {
      const int u = a.u[j], v = a.v[j];
      const double* t0 = t.data() + v * static_cast<std::size_t>(bw);
      const double c0 = a.cosines[u * 8];
      for (int b = 0; b < bw; ++b) raw[b] = c0 * t0[b];
      for (int y = 1; y < 8; ++y) {
        const double* ty = t.data() + (y * cols + v) * static_cast<std::size_t>(bw);
        const double c = a.cosines[u * 8 + y];
        for (int b = 0; b < bw; ++b) raw[b] = raw[b] + c * ty[b];
      }
      const double step = a.steps[j];
      for (int b = 0; b < bw; ++b) {
        // |raw| <= 8 * 128 * 8: far inside the rounding trick's range.
        const double q = (raw[b] / step + kRound) - kRound;
        row_out[static_cast<i64>(b) * count + j] = static_cast<std::int32_t>(q);
      }
    }
  }
}

void dct_rows_generic(const DctPlan& a, i64 r0, i64 r1) { dct_rows_body(a, r0, r1); }

#if defined(__x86_64__) || defined(_M_X64)
// Four doubles a lane group instead of SSE2's two.
__attribute__((target("avx2"))) void dct_rows_avx2(const DctPlan& a, i64 r0, i64 r1) { dct_rows_body(a, r0, r1); }
#endif

}  // namespace

void block_dct(const std::uint8_t* gray, int h, int w, const double* cosines, const int* positions,
               const int* steps, int count, int num_threads, std::int32_t* out) {
  if (h < 0 || w < 0 || count < 1 || count > 64)
    throw std::invalid_argument("block_dct: need h, w >= 0 and 1 <= count <= 64, got " + std::to_string(h) + " x " +
                                std::to_string(w) + ", count " + std::to_string(count));
  std::vector<int> u(count), v(count);
  std::vector<double> step(count);
  int cols = 0;
  for (int j = 0; j < count; ++j) {
    if (positions[j] < 0 || positions[j] > 63 || steps[j] < 1)
      throw std::invalid_argument("block_dct: positions must lie in 0..63 and steps be >= 1, got position " +
                                  std::to_string(positions[j]) + ", step " + std::to_string(steps[j]));
    u[j] = positions[j] / 8;
    v[j] = positions[j] % 8;
    step[j] = static_cast<double>(steps[j]);
    cols = std::max(cols, v[j] + 1);
  }
  const int bh = h / 8, bw = w / 8;
  if (bh == 0 || bw == 0) return;
  const DctPlan plan{gray, w, bw, count, cols, cosines, u.data(), v.data(), step.data(), out};
  void (*body)(const DctPlan&, i64, i64) = dct_rows_generic;
#if defined(__x86_64__) || defined(_M_X64)
  if (active_isa() >= Isa::avx2) body = dct_rows_avx2;
#endif
  parallel_for(bh, resolve_threads(num_threads), 4, [&](i64 r0, i64 r1, int) { body(plan, r0, r1); });
}

}  // namespace focal
