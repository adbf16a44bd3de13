// Cosine k-means and the rest of the post-network path: normalisation,
// fusion resizing, nearest-neighbour label-map resizing. Plain C++17, no
// Python headers. (Bilinear resizing to the image stays with OpenCV: it is
// native already, and its float path - IPP on x86 wheels - rounds in ways no
// other code reproduces bit for bit at the 0.5 threshold.)
#pragma once

#include <cstdint>
#include <vector>

#include "common.hpp"

namespace focal {

// Spherical k-means with the reference's deterministic start: row `first`,
// then repeatedly the row least cosine-similar to the centres so far (lowest
// index on ties); assignments to the most similar centre (lowest index on
// ties) until they stop changing or max_iter passes; a centre is the
// normalised sum of its members, an empty cluster keeps its centre. Returns
// [n] ids in [0, k), all -1 when max_iter is 0. *iterations: passes made.
std::vector<i64> kmeans_cosine(const float* x, i64 n, int d, int k, i64 first, int max_iter, int num_threads,
                               int* iterations);

// out[i] = x[i] / max(|x[i]|, eps), float32 rows (norm accumulated in double).
void normalize_rows(const float* x, i64 n, int d, float eps, float* out);

// cv2.resize(src, (dw, dh), interpolation=cv2.INTER_NEAREST), one channel uint8.
void resize_nearest_u8(const std::uint8_t* src, int sh, int sw, std::uint8_t* dst, int dh, int dw);

// One member of a fusion: [c, h, w] float32 map resized to (oh, ow) with
// torch's F.interpolate(mode="nearest") index rule, each pixel's c-vector
// L2-normalised (eps 1e-12, as F.normalize), written to columns
// [col0, col0 + c) of out ([oh * ow, ld] row-major, pixel y * ow + x).
void fuse_member(const float* map, int c, int h, int w, int oh, int ow, float* out, i64 ld, i64 col0);

}  // namespace focal
