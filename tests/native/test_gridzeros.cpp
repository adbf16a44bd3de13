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
