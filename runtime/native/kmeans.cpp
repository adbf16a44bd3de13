// Cosine k-means (see kmeans.hpp).
#include <algorithm>
#include <cmath>
#include <limits>

#include "kmeans.hpp"

namespace focal {

namespace {

// out[q] = sum over k of double(x[(i + q) * d + k]) * c[k], added in
// increasing k, for q < m <= 8: eight independent sums advance together,
// which hides the latency of the additions each sum's order imposes (one
// 64-term dot alone waits ~4 cycles per term).
#if (defined(__x86_64__) || defined(_M_X64)) && defined(__GNUC__) && !defined(__clang__)
// One clone per vector width, picked at load time (the eight sums become
// vector lanes; each lane's operations and their order are unchanged, so
// every clone gives the same bits and FOCAL_NATIVE_ISA need not cap this).
__attribute__((target_clones("avx512f", "avx2", "default")))
#endif
void dots8(const float* x, i64 i, i64 m, int d, const double* c, double* out) {
  double s[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  const float* r[8];
  for (int q = 0; q < 8; ++q) r[q] = x + (i + std::min<i64>(q, m - 1)) * d;  // short tail: repeat the last
  for (int k = 0; k < d; ++k) {
    const double ck = c[k];
    for (int q = 0; q < 8; ++q) s[q] += static_cast<double>(r[q][k]) * ck;
  }
  for (i64 q = 0; q < m; ++q) out[q] = s[q];
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
    for (i64 i = a; i < b; i += 8) dots8(x, i, std::min<i64>(8, b - i), d, c.data(), best.data() + i);
  });
  for (int j = 1; j < K; ++j) {
    i64 nxt = 0;
    for (i64 i = 1; i < n; ++i)
      if (best[i] < best[nxt]) nxt = i;
    set_row(j, nxt);
    const double* cj = c.data() + static_cast<std::size_t>(j) * d;
    parallel_for(n, threads, 1024, [&](i64 a, i64 b, int) {
      double v[8];
      for (i64 i = a; i < b; i += 8) {
        const i64 m = std::min<i64>(8, b - i);
        dots8(x, i, m, d, cj, v);
        for (i64 q = 0; q < m; ++q) best[i + q] = std::max(best[i + q], v[q]);
      }
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
      double bs[8], v[8];
      int arg[8];
      for (i64 i = a; i < b; i += 8) {
        const i64 m = std::min<i64>(8, b - i);
        dots8(x, i, m, d, c.data(), bs);
        for (i64 q = 0; q < m; ++q) arg[q] = 0;
        for (int j = 1; j < K; ++j) {
          dots8(x, i, m, d, c.data() + static_cast<std::size_t>(j) * d, v);
          for (i64 q = 0; q < m; ++q)
            if (v[q] > bs[q]) { bs[q] = v[q]; arg[q] = j; }
        }
        for (i64 q = 0; q < m; ++q) {
          fresh[i + q] = arg[q];
          ++cnt[arg[q]];
          const float* xi = x + (i + q) * d;
          double* sj = s + static_cast<std::size_t>(arg[q]) * d;
          for (int t = 0; t < d; ++t) sj[t] += xi[t];
        }
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

}  // namespace focal
