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

// Squared distance of two descriptors of p floats (p a multiple of 16): the
// 16-lane blocks summed lane-wise in block order, then the lanes by halving
// (8, 4, 2, 1). A fixed tree, so that NumPy repeats it exactly, and short
// dependency chains where a sequential sum would serialise.
inline float distance(const float* a, const float* b, int p) {
  float s[16];
  for (int l = 0; l < 16; ++l) {
    const float d = a[l] - b[l];
    s[l] = d * d;
  }
  for (int k = 16; k < p; k += 16)
    for (int l = 0; l < 16; ++l) {
      const float d = a[k + l] - b[k + l];
      s[l] = s[l] + d * d;
    }
  for (int l = 0; l < 8; ++l) s[l] = s[l] + s[l + 8];
  for (int l = 0; l < 4; ++l) s[l] = s[l] + s[l + 4];
  for (int l = 0; l < 2; ++l) s[l] = s[l] + s[l + 2];
  return s[0] + s[1];
}

struct Grid {
  const float* desc;
  int h, w, p, stride, gh, gw;
  i64 min_offset2;

  const float* at(int y, int x) const { return desc + (static_cast<i64>(y) * w + x) * p; }

  // Cost of cell (r, c) matching the pixel `offset` away; +inf when the
  // target is outside the image or closer than min_offset. Without branches
  // (the distance to a clamped target is computed and discarded): the
  // validity test then never stalls on a mispredict behind a cache miss.
  float cost(int r, int c, std::int32_t oy, std::int32_t ox) const {
    const int y = r * stride, x = c * stride;
    const i64 ty = static_cast<i64>(y) + oy, tx = static_cast<i64>(x) + ox;
    const bool valid = (ty >= 0) & (ty < h) & (tx >= 0) & (tx < w) &
                       (static_cast<i64>(oy) * oy + static_cast<i64>(ox) * ox >= min_offset2);
    const int cy = static_cast<int>(std::clamp<i64>(ty, 0, h - 1));
    const int cx = static_cast<int>(std::clamp<i64>(tx, 0, w - 1));
    const float d = distance(at(cy, cx), at(y, x), p);
    return valid ? d : kInf;
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
                      float* out) {
  if (radius < 1 || radius >= std::min(h, w))
    throw std::invalid_argument("ring_descriptors: need 1 <= radius < min(h, w), got radius " + std::to_string(radius) +
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
      float* row_out = out + y * w * p;
      for (i64 x = 0; x < w; ++x) std::fill(row_out + x * p + 2 * radius + 1, row_out + (x + 1) * p, 0.0f);
      for (int channel = 0; channel < 2; ++channel) {
        const double* prefix = channel == 0 ? ps.data() : pm.data();
        const double scale = channel == 0 ? 1.0 : 0.5;  // gradient magnitudes on the grey levels' scale
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
            for (int x = 0; x < w; ++x)
              row_out[static_cast<i64>(x) * p + slot] = static_cast<float>((disk[x] - previous[x]) / counts[r] * scale);
          }
          std::swap(disk, previous);
        }
      }
    }
  });
}

PatchMatchField patchmatch(const float* desc, int h, int w, int p, int stride, int min_offset, int iterations,
                           std::uint64_t seed, int num_threads) {
  if (h < 1 || w < 1 || p < 16 || p % 16 != 0 || stride < 1 || min_offset < 0 || iterations < 0)
    throw std::invalid_argument("patchmatch: need h, w >= 1, p a positive multiple of 16, stride >= 1, min_offset >= 0, "
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
  f.cost.assign(cells, kInf);
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
          const float cost = g.cost(static_cast<int>(r), c, oy, ox);
          if (cost < f.cost[i]) f.oy[i] = oy, f.ox[i] = ox, f.cost[i] = cost;
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
              const float cost = g.cost(static_cast<int>(r), c, oy, ox);
              const bool take = cost < f.cost[i];
              ny[i] = take ? oy : f.oy[i], nx[i] = take ? ox : f.ox[i], f.cost[i] = take ? cost : f.cost[i];
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
          float best = f.cost[i];
          for (int step = 0; step < steps; ++step) {
            const int radius = radius0 >> step;
            const i64 span = 2 * static_cast<i64>(radius) + 1;
            const std::int32_t oy = by + draw(keys[2 * step], i, -radius, span);
            const std::int32_t ox = bx + draw(keys[2 * step + 1], i, -radius, span);
            const float cost = g.cost(static_cast<int>(r), c, oy, ox);
            const bool take = cost < best;
            by = take ? oy : by, bx = take ? ox : bx, best = take ? cost : best;
          }
          f.oy[i] = by, f.ox[i] = bx, f.cost[i] = best;
        }
    });
  }
  return f;
}

}  // namespace focal
