// The JPEG-grid test's dense zero counts (gridzeros.hpp) against a naive
// per-window run of their documented float32 arithmetic: the same sums in
// the same order, so the counts must match exactly on every ISA and thread
// count (on aarch64, under qemu, this is what checks the NEON lanes).
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "gridzeros.hpp"
#include "harness.hpp"
#include "util.hpp"

namespace {

std::vector<float> cosines() { return ftest::dct_basis<float>(); }  // as the Python side builds it

// One coefficient of an 8-tap DCT by the basis' symmetry: four products with the mirrored taps'
// sums (even k) or differences (odd k), as the header documents.
float folded(const float* c, int k, const float* t) {
  float s[4];
  for (int n = 0; n < 4; ++n) s[n] = k % 2 ? t[n] - t[7 - n] : t[n] + t[7 - n];
  float acc = c[k * 8] * s[0];
  for (int n = 1; n < 4; ++n) acc = acc + c[k * 8 + n] * s[n];
  return acc;
}

int naive(const std::uint8_t* gray, int w, int y, int x, const std::vector<float>& c) {
  float r[8][8];  // r[v][j]: row pass of the window's row j
  for (int j = 0; j < 8; ++j) {
    const std::uint8_t* line = gray + static_cast<std::size_t>(y + j) * w + x;
    float d[8];
    for (int k = 0; k < 8; ++k) d[k] = static_cast<float>(line[k]) - 128.0f;
    for (int v = 0; v < 8; ++v) r[v][j] = folded(c.data(), v, d);
  }
  int zeros = 0;
  for (int u = 0; u < 8; ++u)
    for (int v = 0; v < 8; ++v) {
      if (u == 0 && v == 0) continue;  // the DC term is not counted
      zeros += std::fabs(folded(c.data(), u, r[v])) <= 0.5f;
    }
  return zeros;
}

}  // namespace

FTEST(gridzeros, matches_the_naive_windows) {
  auto gen = ftest::rng(17);
  const int h = 77, w = 133;  // not multiples of 8, more rows than one 32-row chunk
  std::vector<std::uint8_t> gray(static_cast<std::size_t>(h) * w);
  // Three bands: mid grey with a rare step (most coefficients round to 0), small noise around it,
  // full-range noise (few do), so the counts span the range the test compares.
  for (int y = 0; y < h; ++y)
    for (int x = 0; x < w; ++x) {
      const unsigned r = static_cast<unsigned>(gen());
      gray[static_cast<std::size_t>(y) * w + x] =
          static_cast<std::uint8_t>(x < w / 3 ? 128 + (r % 16 == 0) : x < 2 * w / 3 ? 126 + r % 5 : r % 256);
    }
  const std::vector<float> c = cosines();
  const int oh = h - 7, ow = w - 7;
  for (int threads : {1, 2}) {
    std::vector<std::uint8_t> out(static_cast<std::size_t>(oh) * ow, 255);
    focal::grid_zero_counts(gray.data(), h, w, c.data(), threads, out.data());
    int low = 63, high = 0;
    for (int y = 0; y < oh; ++y)
      for (int x = 0; x < ow; ++x) {
        const int got = out[static_cast<std::size_t>(y) * ow + x], want = naive(gray.data(), w, y, x, c);
        low = got < low ? got : low;
        high = got > high ? got : high;
        CHECK(got == want, "origin " << y << "," << x << ": " << got << " vs " << want << " (" << threads
                                     << " threads)");
      }
    CHECK(low < 5 && high > 30, "counts only span " << low << ".." << high << ": the check covers too little");
  }
}

FTEST(gridzeros, refuses_planes_under_one_window) {
  std::vector<std::uint8_t> gray(7 * 20, 128);
  std::vector<std::uint8_t> out(20);
  const std::vector<float> c = cosines();
  bool refused = false;
  try {
    focal::grid_zero_counts(gray.data(), 7, 20, c.data(), 1, out.data());
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  CHECK(refused, "a 7-row plane accepted");
}

FTEST(gridzeros, cell_votes_and_window_hits_match_naive_loops) {
  auto gen = ftest::rng(23);
  const int oh = 61, ow = 90;  // 7 x 11 cells, a ragged edge
  std::vector<std::uint8_t> z(static_cast<std::size_t>(oh) * ow);
  const int zmax = 56, margin = 2, ch = oh / 8, cw = ow / 8;
  for (auto& v : z) v = static_cast<std::uint8_t>(gen() % 40);
  // Most cells get one window that stands out (a vote), some of them by too little (a tie).
  for (int i = 0; i < ch; ++i)
    for (int j = 0; j < cw; ++j)
      if ((i + j) % 4 != 0) z[static_cast<std::size_t>(8 * i + gen() % 8) * ow + 8 * j + gen() % 8] = 40 + gen() % 3;
  for (int x = 0; x < ow; ++x) z[static_cast<std::size_t>(3) * ow + x] = 60;  // a smooth row: refused cells
  std::vector<std::int8_t> votes(static_cast<std::size_t>(ch) * cw);
  focal::grid_cell_votes(z.data(), oh, ow, zmax, margin, 2, votes.data());
  int voted = 0;
  for (int i = 0; i < ch; ++i)
    for (int j = 0; j < cw; ++j) {
      int best = -1, arg = -1;
      for (int k = 0; k < 64; ++k) {
        const int v = z[static_cast<std::size_t>(8 * i + k / 8) * ow + 8 * j + k % 8];
        if (v > best) best = v, arg = k;
      }
      int others_close = 0;
      for (int k = 0; k < 64; ++k)
        if (k != arg && z[static_cast<std::size_t>(8 * i + k / 8) * ow + 8 * j + k % 8] > best - margin) ++others_close;
      const int want = (others_close > 0 || best == 0 || best > zmax) ? -1 : arg;
      voted += want >= 0;
      CHECK(votes[static_cast<std::size_t>(i) * cw + j] == want, "cell " << i << "," << j);
    }
  // Window hits over votes with one grid dense: a brute-force box sum per window.
  std::vector<std::int8_t> field(static_cast<std::size_t>(13) * 17);
  for (auto& v : field) v = static_cast<std::int8_t>(gen() % 3 == 0 ? 9 : static_cast<int>(gen() % 65) - 1);
  const std::int64_t grids[2] = {9, 40};
  const double bounds[2] = {6.5, 0.5};
  for (int window : {1, 4, 5}) {
    const focal::GridHits hits = focal::grid_window_hits(field.data(), 13, 17, grids, bounds, 2, window, 2);
    std::size_t n = 0;
    for (int g = 0; g < 2; ++g)
      for (int i = 0; i < 13; ++i)
        for (int j = 0; j < 17; ++j) {
          int count = 0;
          for (int a = i - window / 2; a <= i + window - 1 - window / 2; ++a)
            for (int b = j - window / 2; b <= j + window - 1 - window / 2; ++b)
              if (a >= 0 && a < 13 && b >= 0 && b < 17) count += field[static_cast<std::size_t>(a) * 17 + b] == grids[g];
          if (count <= bounds[g]) continue;
          CHECK(n < hits.grid.size() && hits.grid[n] == g && hits.y[n] == i && hits.x[n] == j && hits.count[n] == count,
                "window " << window << ": hit " << n << " (grid " << g << ", " << i << "," << j << ")");
          ++n;
        }
    CHECK(n == hits.grid.size() && n > 0, "window " << window << ": " << hits.grid.size() << " hits, " << n << " wanted");
  }
  CHECK(voted > 5 && voted < ch * cw, voted << " cells voted: the check covers too little");
}
