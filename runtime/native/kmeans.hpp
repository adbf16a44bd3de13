// Cosine k-means, the reference's seeded spherical k-means. Plain C++17, no
// Python headers.
#pragma once

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

}  // namespace focal
