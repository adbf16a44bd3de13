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
  PatchMatchField f;
  f.gh = (h + stride - 1) / stride;
  f.gw = (w + stride - 1) / stride;
  const i64 cells = static_cast<i64>(f.gh) * f.gw;
  const Grid g{desc, h, w, p, stride, f.gh, f.gw, static_cast<i64>(min_offset) * min_offset};
  // Two offset fields: a propagation phase reads one and writes the other, so a cell reads its
  // neighbour's offset as the previous phase left it, whatever the thread split or visiting order.
  std::vector<std::int32_t> oy[2] = {std::vector<std::int32_t>(cells, 0), std::vector<std::int32_t>(cells, 0)};
  std::vector<std::int32_t> ox[2] = {std::vector<std::int32_t>(cells, 0), std::vector<std::int32_t>(cells, 0)};
  std::vector<std::int32_t> cost(cells, kNoMatch);  // descriptor units squared
  const int radius0 = std::max(h, w);
  int steps = 0;
  for (int radius = radius0; radius >= 1; radius /= 2) ++steps;
  // Random-search streams, per round and radius step: the y stream's key, then the x stream's.
  std::vector<std::uint64_t> keys;
  for (int it = 0; it < iterations; ++it)
    for (int step = 0; step < steps; ++step)
      for (std::uint64_t axis = 0; axis < 2; ++axis)
        keys.push_back(stream_key(seed, 2 + 64 * static_cast<std::uint64_t>(it) + 2 * static_cast<std::uint64_t>(step) + axis));
  const std::uint64_t ky0 = stream_key(seed, 0), kx0 = stream_key(seed, 1);
  const std::array<int, 4> jumps{8, 4, 2, 1};

  // One team for the whole search, each thread on the same rows of cells in every phase, with a
  // barrier before each propagation phase: a round has 17 short phases (a few hundred
  // microseconds each on a 512 px image), too short to start a team per phase.
  const int wanted = static_cast<int>(std::min<i64>(resolve_threads(num_threads), f.gh));
  std::unique_ptr<Barrier> barrier;
  int last = 0;  // the field the offsets end in (thread 0 says; every thread flips alike)
  run_team(wanted, [&](int team) { barrier = std::make_unique<Barrier>(team); }, [&](int tid, int team) {
    const i64 r0 = f.gh * tid / team, r1 = f.gh * (tid + 1) / team;
    // Random start: a target anywhere in the image.
    for (i64 r = r0; r < r1; ++r)
      for (int c = 0; c < f.gw; ++c) {
        const i64 i = r * f.gw + c;
        const std::int32_t sy = draw(ky0, i, 0, h) - static_cast<std::int32_t>(r * stride);
        const std::int32_t sx = draw(kx0, i, 0, w) - c * stride;
        const std::int32_t d = g.cost(static_cast<int>(r), c, sy, sx);
        if (d < cost[i]) oy[0][i] = sy, ox[0][i] = sx, cost[i] = d;
      }
    int cur = 0;  // the field holding the offsets so far (every thread flips it alike)
    for (int it = 0; it < iterations; ++it) {
      for (int jump : jumps)
        for (const auto& shift : {std::array<int, 2>{jump, 0}, {-jump, 0}, {0, jump}, {0, -jump}}) {
          // One direction at a time, each reading the field the previous one left (an offset
          // can travel down, then up, within one jump); every row of that field is complete.
          barrier->wait();
          const std::int32_t* fy = oy[cur].data();
          const std::int32_t* fx = ox[cur].data();
          std::int32_t* ny = oy[cur ^ 1].data();
          std::int32_t* nx = ox[cur ^ 1].data();
          for (i64 r = r0; r < r1; ++r) {
            const i64 sr = std::clamp<i64>(r - shift[0], 0, f.gh - 1);
            for (int c = 0; c < f.gw; ++c) {
              const i64 i = r * f.gw + c;
              const i64 j = sr * f.gw + std::clamp<i64>(c - shift[1], 0, f.gw - 1);
              const std::int32_t cy = fy[j], cx = fx[j];
              // The cell's own offset costs what it costs now and would not be taken: inside a
              // region that agrees (a copy, after the first round) most offers are that one.
              if (cy == fy[i] && cx == fx[i]) {
                ny[i] = cy, nx[i] = cx;
                continue;
              }
              const std::int32_t d = g.cost(static_cast<int>(r), c, cy, cx);
              const bool take = d < cost[i];
              ny[i] = take ? cy : fy[i], nx[i] = take ? cx : fx[i], cost[i] = take ? d : cost[i];
            }
          }
          cur ^= 1;
        }
      // Random search around each cell's own offset: no cell reads another's, so it needs no
      // barrier (the next propagation phase waits for every row).
      std::int32_t* fy = oy[cur].data();
      std::int32_t* fx = ox[cur].data();
      const std::uint64_t* round_keys = keys.data() + 2 * static_cast<std::size_t>(steps) * it;
      for (i64 r = r0; r < r1; ++r)
        for (int c = 0; c < f.gw; ++c) {
          const i64 i = r * f.gw + c;
          // Each candidate is drawn around the best offset so far, so a far
          // lucky hit is refined by the nearer radii of the same round.
          std::int32_t by = fy[i], bx = fx[i];
          std::int32_t best = cost[i];
          for (int step = 0; step < steps; ++step) {
            const int radius = radius0 >> step;
            const i64 span = 2 * static_cast<i64>(radius) + 1;
            const std::int32_t cy = by + draw(round_keys[2 * step], i, -radius, span);
            const std::int32_t cx = bx + draw(round_keys[2 * step + 1], i, -radius, span);
            const std::int32_t d = g.cost(static_cast<int>(r), c, cy, cx);
            const bool take = d < best;
            by = take ? cy : by, bx = take ? cx : bx, best = take ? d : best;
          }
          fy[i] = by, fx[i] = bx, cost[i] = best;
        }
    }
    if (tid == 0) last = cur;
  });
  f.oy.swap(oy[last]);
  f.ox.swap(ox[last]);
  // Grey levels squared: the int32 rounded to float32, then an exact division by a power of two.
  constexpr float kUnits = static_cast<float>(kDescriptorScale * kDescriptorScale);
  f.cost.resize(cells);
  for (i64 i = 0; i < cells; ++i) f.cost[i] = cost[i] == kNoMatch ? kInf : static_cast<float>(cost[i]) / kUnits;
  return f;
}

}  // namespace focal
