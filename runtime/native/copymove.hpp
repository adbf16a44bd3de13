// Copy-move search of focal.runtime.copymove: rotation-invariant ring
// descriptors and a seeded PatchMatch field. Plain C++17, no Python headers.
//
// Both kernels repeat the NumPy reference in focal/runtime/copymove.py
// operation for operation (the same double-precision ring sums, integer
// distances, the same counter-based random numbers), so their outputs are
// bit-identical to it whatever the thread count.
//
// Descriptors are int16 in eighths of a grey level: 32 bytes a pixel instead
// of float32's 64. The search reads its targets anywhere in the image, so it
// is bound by cache and TLB misses on the descriptor image, and halving it
// halves the search (docs/evaluation.md, "Copy-moves"); an eighth of a grey
// level is far below the matches it keeps (max_cost: 4 grey levels squared).
#pragma once

#include <cstdint>
#include <vector>

#include "common.hpp"

namespace focal {

// Descriptor width: 2 * radius + 1 values padded with zeros to a multiple of
// 16 (half a 64-byte line per pixel at radius <= 7).
int ring_descriptor_width(int radius);

// Descriptor units per grey level, and the largest value stored: half a
// gradient magnitude of 0-255 grey levels stays under 722 grey levels, and
// 32 squared differences of 0..8191 sum below 2^31 (radius <= 15).
constexpr int kDescriptorScale = 8;
constexpr int kDescriptorMax = 8191;
constexpr int kMaxRadius = 15;

// Ring means of `smooth` (radius 0..R) and half the ring means of
// `magnitude` (radius 1..R) around every pixel, rings being the pixels at a
// distance in [r - 0.5, r + 0.5), the image mirrored at its border
// (OpenCV's BORDER_REFLECT, "fedcba|abcdef"). Each disk sum is a sum of row
// runs of a float64 row prefix sum, in row order; ring = disk(r) - disk(r-1),
// times kDescriptorScale / its pixel count (kDescriptorScale / 2 for the
// halved magnitudes; one float64 factor per ring), then rounded half to even
// and clipped to [0, kDescriptorMax].
// smooth, magnitude: [h, w] float32. out: [h, w, ring_descriptor_width(radius)] int16.
// Needs 1 <= radius <= kMaxRadius and radius < min(h, w) (one mirror fold).
void ring_descriptors(const float* smooth, const float* magnitude, int h, int w, int radius, int num_threads,
                      std::int16_t* out);

struct PatchMatchField {
  std::vector<std::int32_t> oy, ox;  // [gh * gw] offsets to the match, pixels
  std::vector<float> cost;           // [gh * gw] squared descriptor distance, grey levels^2; +inf: never matched
  int gh = 0, gw = 0;
};

// PatchMatch over the cells (i * stride, j * stride) of a [h, w, p] int16
// descriptor image (p 16 or 32): random start, then `iterations`
// rounds of jump-flooding propagation (jumps 8, 4, 2, 1; per jump each cell
// tries its neighbour's offset below, above, right and left in turn, each
// pass reading the field the previous one left) and a random search, each
// candidate drawn around the best offset so far, at radii halving from
// max(h, w). A candidate counts only
// if its target lies inside the image at least `min_offset` pixels away, and
// is taken only when strictly closer (integer squared distances, exact).
PatchMatchField patchmatch(const std::int16_t* desc, int h, int w, int p, int stride, int min_offset, int iterations,
                           std::uint64_t seed, int num_threads);

// The counter-based generator both implementations draw from: splitmix64's
// finaliser of `key ^ counter`, key = mix(mix(seed) + stream).
std::uint64_t splitmix64(std::uint64_t z);

}  // namespace focal
