// Ring descriptors and the PatchMatch field of the copy-move search
// (copymove.hpp). Every floating-point operation is the reference's, in its
// order: the binding's tests compare the two bit for bit.
#include "copymove.hpp"
#include "isa.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>
#include <string>

namespace focal {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();

// Mirror index of OpenCV's BORDER_REFLECT for |i| folds under n.
inline int reflect(int i, int n) { return i < 0 ? -i - 1 : (i >= n ? 2 * n - i - 1 : i); }

// Largest dx >= 0 with dx^2 + dy^2 < (r + 0.5)^2, in integers: (2dx)^2 + (2dy)^2 < (2r + 1)^2.
int half_width(int r, int dy) {
  const i64 lim = static_cast<i64>(2 * r + 1) * (2 * r + 1) - static_cast<i64>(2 * dy) * (2 * dy);
  int dx = 0;
  while (static_cast<i64>(2 * (dx + 1)) * (2 * (dx + 1)) < lim) ++dx;
  return dx;
}

// Row prefix sums (float64) of the image mirrored by `radius` on each side:
// [h + 2R, w + 2R + 1], entry k of a row the sum of its first k values.
std::vector<double> mirrored_row_prefix(const float* img, int h, int w, int radius) {
  const int pw = w + 2 * radius + 1;
  std::vector<double> prefix(static_cast<std::size_t>(h + 2 * radius) * pw);
  for (int py = 0; py < h + 2 * radius; ++py) {
    const float* row = img + static_cast<i64>(reflect(py - radius, h)) * w;
    double* out = prefix.data() + static_cast<i64>(py) * pw;
    out[0] = 0.0;
    for (int px = 0; px < w + 2 * radius; ++px) out[px + 1] = out[px] + static_cast<double>(row[reflect(px - radius, w)]);
  }
  return prefix;
}

// The search, once for the baseline and once for AVX2 (GCC's target pragma reaches the lambdas
// the search hands its thread team, which a target attribute on one function would not).
namespace search_base {
#include "patchmatch_search.inc"
}  // namespace search_base

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define FOCAL_PATCHMATCH_AVX2 1
#pragma GCC push_options
#pragma GCC target("avx2")
namespace search_avx2 {
#include "patchmatch_search.inc"
}  // namespace search_avx2
#pragma GCC pop_options
#else
#define FOCAL_PATCHMATCH_AVX2 0
#endif

}  // namespace

std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

int ring_descriptor_width(int radius) { return (2 * radius + 1 + 15) / 16 * 16; }

namespace {

// What every row of ring_descriptors reads and writes.
struct RingPlan {
  const double* ps;  // row prefix sums of the mirrored smoothed grey levels
  const double* pm;  // and of the mirrored gradient magnitudes
  int w, radius, p, pw;
  const std::vector<std::vector<int>>* widths;  // per disk r: half widths of its rows dy = -r..r
  const std::vector<double>* counts;            // pixels per ring
  std::int16_t* out;
};

// Descriptor rows [y0, y1). One body for every ISA: the operations per pixel and their order
// are the reference's, vector lanes run across pixels, so every family gives the same bits.
__attribute__((always_inline)) inline void ring_rows_body(const RingPlan& a, i64 y0, i64 y1) {
  const int w = a.w, radius = a.radius, p = a.p, pw = a.pw;
  std::vector<double> disk(w), previous(w);
  for (i64 y = y0; y < y1; ++y) {
    std::int16_t* row_out = a.out + y * w * p;
    for (i64 x = 0; x < w; ++x)
      std::fill(row_out + x * p + 2 * radius + 1, row_out + (x + 1) * p, static_cast<std::int16_t>(0));
    for (int channel = 0; channel < 2; ++channel) {
      const double* prefix = channel == 0 ? a.ps : a.pm;
      // Gradient magnitudes are halved, onto the grey levels' scale.
      const double scale = channel == 0 ? kDescriptorScale : 0.5 * kDescriptorScale;
      std::fill(previous.begin(), previous.end(), 0.0);
      for (int r = 0; r <= radius; ++r) {
        std::fill(disk.begin(), disk.end(), 0.0);
        for (int dy = -r; dy <= r; ++dy) {
          const int hw = (*a.widths)[r][dy + r];
          // Mirrored row y + dy; the disk spans mirrored columns [x + R - hw, x + R + hw].
          const double* pr = prefix + (y + radius + dy) * pw;
          const double* hi = pr + radius + hw + 1;
          const double* lo = pr + radius - hw;
          for (int x = 0; x < w; ++x) disk[x] = disk[x] + (hi[x] - lo[x]);
        }
        if (channel == 0 || r > 0) {
          const int slot = channel == 0 ? r : radius + r;
          // One factor per ring: a product per value where a quotient would cost several.
          const double factor = scale / (*a.counts)[r];
          for (int x = 0; x < w; ++x) {
            // Clipped, then rounded half to even (lrint in the default rounding mode: one
            // conversion instruction, where nearbyint is a library call below SSE4.1).
            const double v = std::clamp((disk[x] - previous[x]) * factor, 0.0,
                                        static_cast<double>(kDescriptorMax));
            row_out[static_cast<i64>(x) * p + slot] = static_cast<std::int16_t>(std::lrint(v));
          }
        }
        std::swap(disk, previous);
      }
    }
  }
}

void ring_rows_generic(const RingPlan& a, i64 y0, i64 y1) { ring_rows_body(a, y0, y1); }

#if defined(__x86_64__) || defined(_M_X64)
// The disk sums, four doubles a lane group instead of SSE2's two.
__attribute__((target("avx2"))) void ring_rows_avx2(const RingPlan& a, i64 y0, i64 y1) { ring_rows_body(a, y0, y1); }
#endif

}  // namespace

void ring_descriptors(const float* smooth, const float* magnitude, int h, int w, int radius, int num_threads,
                      std::int16_t* out) {
  if (radius < 1 || radius > kMaxRadius || radius >= std::min(h, w))
    throw std::invalid_argument("ring_descriptors: need 1 <= radius <= " + std::to_string(kMaxRadius) +
                                " and radius < min(h, w), got radius " + std::to_string(radius) +
                                " for " + std::to_string(h) + " x " + std::to_string(w));
  const int p = ring_descriptor_width(radius);
  const int pw = w + 2 * radius + 1;
  // Row runs of every disk: for disk r, row dy in [-r, r], columns [x - hw, x + hw].
  std::vector<std::vector<int>> widths(radius + 1);
  std::vector<double> counts(radius + 1);
  for (int r = 0; r <= radius; ++r) {
    i64 n = 0;
    for (int dy = -r; dy <= r; ++dy) {
      widths[r].push_back(half_width(r, dy));
      n += 2 * widths[r].back() + 1;
    }
    counts[r] = static_cast<double>(n);
  }
  for (int r = radius; r >= 1; --r) counts[r] -= counts[r - 1];  // ring pixel counts
  const std::vector<double> ps = mirrored_row_prefix(smooth, h, w, radius);
  const std::vector<double> pm = mirrored_row_prefix(magnitude, h, w, radius);
  const RingPlan plan{ps.data(), pm.data(), w, radius, p, pw, &widths, &counts, out};
  void (*rows)(const RingPlan&, i64, i64) = ring_rows_generic;
#if defined(__x86_64__) || defined(_M_X64)
  if (active_isa() >= Isa::avx2) rows = ring_rows_avx2;
#endif
  parallel_for(h, resolve_threads(num_threads), 8, [&](i64 y0, i64 y1, int) { rows(plan, y0, y1); });
}

PatchMatchField patchmatch(const std::int16_t* desc, int h, int w, int p, int stride, int min_offset, int iterations,
                           std::uint64_t seed, int num_threads) {
  if (h < 1 || w < 1 || p < 16 || p % 16 != 0 || p > ring_descriptor_width(kMaxRadius) || stride < 1 ||
      min_offset < 0 || iterations < 0)
    throw std::invalid_argument("patchmatch: need h, w >= 1, p 16 or 32, stride >= 1, min_offset >= 0, "
                                "iterations >= 0; got h " + std::to_string(h) + ", w " + std::to_string(w) + ", p " +
                                std::to_string(p) + ", stride " + std::to_string(stride) + ", min_offset " +
                                std::to_string(min_offset) + ", iterations " + std::to_string(iterations));
#if FOCAL_PATCHMATCH_AVX2
  // A quarter less time on IMD2020's photos than the baseline build (the 16-value distances in one
  // 256-bit multiply-add); the same field.
  if (active_isa() >= Isa::avx2)
    return search_avx2::search(desc, h, w, p, stride, min_offset, iterations, seed, num_threads);
#endif
  return search_base::search(desc, h, w, p, stride, min_offset, iterations, seed, num_threads);
}

}  // namespace focal
