// Ring descriptors and the PatchMatch field of the copy-move search
// (copymove.hpp). Every floating-point operation is the reference's, in its
// order: the binding's tests compare the two bit for bit.
#include "copymove.hpp"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <limits>
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

// Squared distance of two descriptors of p values (p a multiple of 16), in
// descriptor units: exact in int32 (kDescriptorMax and kMaxRadius bound it
// below 2^31), so any summation order gives the reference's value. The
// fixed 16-lane blocks let the compiler use multiply-add of 16-bit pairs.
inline std::int32_t distance(const std::int16_t* a, const std::int16_t* b, int p) {
  std::int32_t s = 0;
  for (int k = 0; k < p; k += 16)
    for (int l = 0; l < 16; ++l) {
      const std::int32_t d = static_cast<std::int32_t>(a[k + l]) - b[k + l];
      s += d * d;
    }
  return s;
}

// The cost of a candidate that is not allowed (outside the image, too near).
constexpr std::int32_t kNoMatch = std::numeric_limits<std::int32_t>::max();

struct Grid {
  const std::int16_t* desc;
  int h, w, p, stride, gh, gw;
  i64 min_offset2;

  const std::int16_t* at(int y, int x) const { return desc + (static_cast<i64>(y) * w + x) * p; }

  // Cost of cell (r, c) matching the pixel `offset` away; kNoMatch when the
  // target is outside the image or closer than min_offset. Without branches
  // (the distance to a clamped target is computed and discarded): the
  // validity test then never stalls on a mispredict behind a cache miss.
  std::int32_t cost(int r, int c, std::int32_t oy, std::int32_t ox) const {
    const int y = r * stride, x = c * stride;
    const i64 ty = static_cast<i64>(y) + oy, tx = static_cast<i64>(x) + ox;
    const bool valid = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w) &
                       (static_cast<i64>(oy) * oy + static_cast<i64>(ox) * ox >= min_offset2);
    const int cy = static_cast<int>(std::clamp<i64>(ty, 0, h - 1));
    const int cx = static_cast<int>(std::clamp<i64>(tx, 0, w - 1));
    const std::int32_t d = distance(at(cy, cx), at(y, x), p);
    return valid ? d : kNoMatch;
  }
};

inline std::uint64_t stream_key(std::uint64_t seed, std::uint64_t stream) {
  return splitmix64(splitmix64(seed) + stream);
}

// Uniform integer in [lo, lo + n) for cell `cell` of a stream (n >= 1).
inline std::int32_t draw(std::uint64_t key, std::uint64_t cell, std::int64_t lo, std::int64_t n) {
  return static_cast<std::int32_t>(lo + static_cast<std::int64_t>(splitmix64(key ^ cell) % static_cast<std::uint64_t>(n)));
}

}  // namespace

std::uint64_t splitmix64(std::uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

int ring_descriptor_width(int radius) { return (2 * radius + 1 + 15) / 16 * 16; }

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
  const int nthreads = resolve_threads(num_threads);
  parallel_for(h, nthreads, 8, [&](i64 y0, i64 y1, int) {
    std::vector<double> disk(w), previous(w);
    for (i64 y = y0; y < y1; ++y) {
      std::int16_t* row_out = out + y * w * p;
      for (i64 x = 0; x < w; ++x)
        std::fill(row_out + x * p + 2 * radius + 1, row_out + (x + 1) * p, static_cast<std::int16_t>(0));
      for (int channel = 0; channel < 2; ++channel) {
        const double* prefix = channel == 0 ? ps.data() : pm.data();
        // Gradient magnitudes are halved, onto the grey levels' scale.
        const double scale = channel == 0 ? kDescriptorScale : 0.5 * kDescriptorScale;
        std::fill(previous.begin(), previous.end(), 0.0);
        for (int r = 0; r <= radius; ++r) {
          std::fill(disk.begin(), disk.end(), 0.0);
          for (int dy = -r; dy <= r; ++dy) {
            const int hw = widths[r][dy + r];
            // Mirrored row y + dy; the disk spans mirrored columns [x + R - hw, x + R + hw].
            const double* pr = prefix + (y + radius + dy) * pw;
            const double* hi = pr + radius + hw + 1;
            const double* lo = pr + radius - hw;
            for (int x = 0; x < w; ++x) disk[x] = disk[x] + (hi[x] - lo[x]);
          }
          if (channel == 0 || r > 0) {
            const int slot = channel == 0 ? r : radius + r;
            for (int x = 0; x < w; ++x) {
              // Clipped, then rounded half to even (lrint in the default rounding mode: one
              // conversion instruction, where nearbyint is a library call below SSE4.1).
              const double v = std::clamp((disk[x] - previous[x]) / counts[r] * scale, 0.0,
                                          static_cast<double>(kDescriptorMax));
              row_out[static_cast<i64>(x) * p + slot] = static_cast<std::int16_t>(std::lrint(v));
            }
          }
          std::swap(disk, previous);
        }
      }
    }
  });
}

PatchMatchField patchmatch(const std::int16_t* desc, int h, int w, int p, int stride, int min_offset, int iterations,
                           std::uint64_t seed, int num_threads) {
  if (h < 1 || w < 1 || p < 16 || p % 16 != 0 || p > ring_descriptor_width(kMaxRadius) || stride < 1 ||
      min_offset < 0 || iterations < 0)
    throw std::invalid_argument("patchmatch: need h, w >= 1, p 16 or 32, stride >= 1, min_offset >= 0, "
                                "iterations >= 0; got h " + std::to_string(h) + ", w " + std::to_string(w) + ", p " +
                                std::to_string(p) + ", stride " + std::to_string(stride) + ", min_offset " +
                                std::to_string(min_offset) + ", iterations " + std::to_string(iterations));
  PatchMatchField f;
  f.gh = (h + stride - 1) / stride;
  f.gw = (w + stride - 1) / stride;
  const i64 cells = static_cast<i64>(f.gh) * f.gw;
  const Grid g{desc, h, w, p, stride, f.gh, f.gw, static_cast<i64>(min_offset) * min_offset};
  f.oy.assign(cells, 0);
  f.ox.assign(cells, 0);
  std::vector<std::int32_t> cost(cells, kNoMatch);  // descriptor units squared
  std::vector<std::int32_t> ny(cells), nx(cells);
  const int nthreads = resolve_threads(num_threads);
  const i64 grain = 4;  // rows of cells per task

  // Random start: a target anywhere in the image.
  {
    const std::uint64_t ky = stream_key(seed, 0), kx = stream_key(seed, 1);
    parallel_for(f.gh, nthreads, grain, [&](i64 r0, i64 r1, int) {
      for (i64 r = r0; r < r1; ++r)
        for (int c = 0; c < f.gw; ++c) {
          const i64 i = r * f.gw + c;
          const std::int32_t oy = draw(ky, i, 0, h) - static_cast<std::int32_t>(r * stride);
          const std::int32_t ox = draw(kx, i, 0, w) - c * stride;
          const std::int32_t d = g.cost(static_cast<int>(r), c, oy, ox);
          if (d < cost[i]) f.oy[i] = oy, f.ox[i] = ox, cost[i] = d;
        }
    });
  }
  const int radius0 = std::max(h, w);
  for (int it = 0; it < iterations; ++it) {
    for (int jump : {8, 4, 2, 1})
      for (const auto& shift : {std::array<int, 2>{jump, 0}, {-jump, 0}, {0, jump}, {0, -jump}}) {
        // One direction at a time, each reading the field the previous one
        // left (an offset can travel down, then up, within one jump). Cells
        // read their neighbour's offset from that field (ny, nx are written),
        // so the result does not depend on the order cells are visited in.
        parallel_for(f.gh, nthreads, grain, [&](i64 r0, i64 r1, int) {
          for (i64 r = r0; r < r1; ++r) {
            const i64 sr = std::clamp<i64>(r - shift[0], 0, f.gh - 1);
            for (int c = 0; c < f.gw; ++c) {
              const i64 i = r * f.gw + c;
              const i64 j = sr * f.gw + std::clamp<i64>(c - shift[1], 0, f.gw - 1);
              const std::int32_t oy = f.oy[j], ox = f.ox[j];
              const std::int32_t d = g.cost(static_cast<int>(r), c, oy, ox);
              const bool take = d < cost[i];
              ny[i] = take ? oy : f.oy[i], nx[i] = take ? ox : f.ox[i], cost[i] = take ? d : cost[i];
            }
          }
        });
        f.oy.swap(ny);
        f.ox.swap(nx);
      }
    // Random search around each cell's own offset: no cell reads another's.
    std::vector<std::uint64_t> keys;  // per radius step: the y stream's key, then the x stream's
    int steps = 0;
    for (int radius = radius0; radius >= 1; radius /= 2) ++steps;
    for (int step = 0; step < steps; ++step)
      for (std::uint64_t axis = 0; axis < 2; ++axis)
        keys.push_back(stream_key(seed, 2 + 64 * static_cast<std::uint64_t>(it) + 2 * static_cast<std::uint64_t>(step) + axis));
    parallel_for(f.gh, nthreads, grain, [&](i64 r0, i64 r1, int) {
      for (i64 r = r0; r < r1; ++r)
        for (int c = 0; c < f.gw; ++c) {
          const i64 i = r * f.gw + c;
          // Each candidate is drawn around the best offset so far, so a far
          // lucky hit is refined by the nearer radii of the same round.
          std::int32_t by = f.oy[i], bx = f.ox[i];
          std::int32_t best = cost[i];
          for (int step = 0; step < steps; ++step) {
            const int radius = radius0 >> step;
            const i64 span = 2 * static_cast<i64>(radius) + 1;
            const std::int32_t oy = by + draw(keys[2 * step], i, -radius, span);
            const std::int32_t ox = bx + draw(keys[2 * step + 1], i, -radius, span);
            const std::int32_t d = g.cost(static_cast<int>(r), c, oy, ox);
            const bool take = d < best;
            by = take ? oy : by, bx = take ? ox : bx, best = take ? d : best;
          }
          f.oy[i] = by, f.ox[i] = bx, cost[i] = best;
        }
    });
  }
  // Grey levels squared: the int32 rounded to float32, then an exact division by a power of two.
  constexpr float kUnits = static_cast<float>(kDescriptorScale * kDescriptorScale);
  f.cost.resize(cells);
  for (i64 i = 0; i < cells; ++i) f.cost[i] = cost[i] == kNoMatch ? kInf : static_cast<float>(cost[i]) / kUnits;
  return f;
}

}  // namespace focal
