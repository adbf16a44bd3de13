// HDBSCAN specialised for the runtime's job: dense, exact, Euclidean distance
// on L2-normalised float32 feature rows, with the `hdbscan` package's
// semantics (core distance = distance to the min_samples-th other point,
// counting the point itself as the 0th; Prim's MST over mutual reachability
// starting at point 0, lowest index winning ties; single linkage, condensed
// tree, excess-of-mass selection with allow_single_cluster=False).
//
// Exactness: the N^2 work runs on float32 inner products, and every decision
// that a float32 error could flip is re-decided with the distance computed in
// double exactly as the package's ball-tree path does it
// (sum of squared differences in increasing k). A proven bound on the float32
// error tells which decisions are safe, so the MST edges, their order and
// their weights are those of exact arithmetic. The dense matrix may store the
// float32 values as IEEE half (dmatrix.hpp): the bound then grows by the
// storage's relative error, and only more decisions go to double.
#pragma once

#include <cstdint>
#include <vector>

#include "common.hpp"

namespace focal {

struct MstOptions {
  int num_threads = 0;           // <= 0: default team size
  i64 dense_max_points = 8192;   // above: no N x N matrix (distances recomputed)
  int path = 0;                  // 0 auto, 1 dense, 2 implicit (for tests)
  bool allow_half = true;        // dense matrix as IEEE half where supported and the values fit
};

struct MstStats {
  bool dense = false;
  bool half_matrix = false;     // the dense matrix was stored as IEEE half
  int threads = 1;
  int min_samples = 0;          // after the package's clipping to [1, N - 1]
  double error_bound = 0.0;     // proven bound on |float32 d^2 - exact d^2|
  i64 core_exact = 0;           // exact distances evaluated for core distances
  i64 prim_exact = 0;           // exact distances evaluated in Prim's loop
  double seconds_gram = 0.0, seconds_core = 0.0, seconds_prim = 0.0;
};

struct MstResult {
  std::vector<i64> src, dst;    // edge i joins src[i] (in tree) and dst[i] (added), Prim's order
  std::vector<double> weight;   // mutual reachability distance of each edge
  std::vector<double> core;     // core distance of each point
  MstStats stats;
};

// Mutual-reachability MST of x ([n, d] float32 row-major, n >= 2).
MstResult mutual_reachability_mst(const float* x, i64 n, int d, int min_samples, const MstOptions& opt);

// Exact squared distance, as the package's Euclidean metric computes it.
double exact_d2(const float* a, const float* b, int d);

// ---------------------------------------------------------------- tree part

struct CondensedTree {
  std::vector<i64> parent, child, size;
  std::vector<double> lambda;
};

// Single-linkage hierarchy (scipy format) from MST edges taken in `order`
// (edge indices sorted by weight). Outputs n - 1 rows.
void single_linkage(i64 n, const i64* src, const i64* dst, const double* weight, const i64* order,
                    std::vector<i64>& left, std::vector<i64>& right, std::vector<double>& dist,
                    std::vector<i64>& size);

CondensedTree condense_tree(i64 n, const std::vector<i64>& left, const std::vector<i64>& right,
                            const std::vector<double>& dist, const std::vector<i64>& size,
                            i64 min_cluster_size);

// Excess-of-mass cluster ids (allow_single_cluster=False): -1 noise, clusters
// numbered from 0 in the order of their condensed-tree ids.
std::vector<i64> eom_labels(const CondensedTree& tree, i64 n);

// Whole chain from MST edges to raw cluster ids. order may be null (a stable
// sort by weight is used then).
std::vector<i64> raw_labels_from_mst(i64 n, const i64* src, const i64* dst, const double* weight,
                                     const i64* order, i64 min_cluster_size);

}  // namespace focal
