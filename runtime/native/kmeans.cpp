// Cosine k-means (see kernels.hpp).
#include <algorithm>
#include <cmath>
#include <limits>

#include "kernels.hpp"

namespace focal {

namespace {

inline double dot(const float* a, const double* c, int d) {
  double s = 0.0;
  for (int k = 0; k < d; ++k) s += static_cast<double>(a[k]) * c[k];
  return s;
}

}  // namespace

std::vector<i64> kmeans_cosine(const float* x, i64 n, int d, int k, i64 first, int max_iter, int num_threads,
                               int* iterations) {
  // A pass is n * k * d multiply-adds; below a few million a thread team costs
  // more than it saves (and on a shared machine a late thread stalls the pass).
  const int threads = static_cast<double>(n) * d * std::max(k, 1) < 4e6 ? 1 : resolve_threads(num_threads);
  const int K = static_cast<int>(std::min<i64>(k, n));
  std::vector<double> c(static_cast<std::size_t>(K) * d);
  auto set_row = [&](int j, i64 row) {
    for (int t = 0; t < d; ++t) c[static_cast<std::size_t>(j) * d + t] = x[row * d + t];
  };
  set_row(0, first);
  std::vector<double> best(n);
  parallel_for(n, threads, 1024, [&](i64 a, i64 b, int) {
    for (i64 i = a; i < b; ++i) best[i] = dot(x + i * d, c.data(), d);
  });
  for (int j = 1; j < K; ++j) {
    i64 nxt = 0;
    for (i64 i = 1; i < n; ++i)
      if (best[i] < best[nxt]) nxt = i;
    set_row(j, nxt);
    const double* cj = c.data() + static_cast<std::size_t>(j) * d;
    parallel_for(n, threads, 1024, [&](i64 a, i64 b, int) {
      for (i64 i = a; i < b; ++i) best[i] = std::max(best[i], dot(x + i * d, cj, d));
    });
  }
  std::vector<i64> assign(n, -1), fresh(n);
  std::vector<std::vector<double>> sums(threads, std::vector<double>(static_cast<std::size_t>(K) * d));
  std::vector<std::vector<i64>> counts(threads, std::vector<i64>(K));
  int it = 0;
  for (; it < max_iter; ++it) {
    for (int t = 0; t < threads; ++t) {
      std::fill(sums[t].begin(), sums[t].end(), 0.0);
      std::fill(counts[t].begin(), counts[t].end(), 0);
    }
    parallel_for(n, threads, 512, [&](i64 a, i64 b, int tid) {
      double* s = sums[tid].data();
      i64* cnt = counts[tid].data();
      for (i64 i = a; i < b; ++i) {
        const float* xi = x + i * d;
        int arg = 0;
        double bs = dot(xi, c.data(), d);
        for (int j = 1; j < K; ++j) {
          const double v = dot(xi, c.data() + static_cast<std::size_t>(j) * d, d);
          if (v > bs) { bs = v; arg = j; }
        }
        fresh[i] = arg;
        ++cnt[arg];
        double* sj = s + static_cast<std::size_t>(arg) * d;
        for (int t = 0; t < d; ++t) sj[t] += xi[t];
      }
    });
    if (fresh == assign) break;
    assign.swap(fresh);
    for (int j = 0; j < K; ++j) {
      i64 members = 0;
      for (int t = 0; t < threads; ++t) members += counts[t][j];
      double* cj = c.data() + static_cast<std::size_t>(j) * d;
      if (members > 0) {
        std::fill(cj, cj + d, 0.0);
        for (int t = 0; t < threads; ++t)
          for (int q = 0; q < d; ++q) cj[q] += sums[t][static_cast<std::size_t>(j) * d + q];
      }
      double s = 0.0;
      for (int q = 0; q < d; ++q) s += cj[q] * cj[q];
      const double norm = std::max(std::sqrt(s), 1e-12);
      for (int q = 0; q < d; ++q) cj[q] /= norm;
    }
  }
  if (iterations) *iterations = it;
  return assign;
}

void normalize_rows(const float* x, i64 n, int d, float eps, float* out) {
  for (i64 i = 0; i < n; ++i) {
    const float* xi = x + i * d;
    double s = 0.0;
    for (int k = 0; k < d; ++k) s += static_cast<double>(xi[k]) * xi[k];
    const float norm = std::max(static_cast<float>(std::sqrt(s)), eps);
    float* o = out + i * d;
    for (int k = 0; k < d; ++k) o[k] = xi[k] / norm;
  }
}

}  // namespace focal
