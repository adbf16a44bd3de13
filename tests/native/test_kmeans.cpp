// Cosine k-means (kmeans.hpp) on two separated blobs, and against a naive
// double-precision run of the documented algorithm.
#include <algorithm>
#include <cmath>
#include <vector>

#include "harness.hpp"
#include "kmeans.hpp"
#include "util.hpp"

using focal::i64;

namespace {

double dot(const float* x, const double* c, int d) {
  double s = 0.0;
  for (int k = 0; k < d; ++k) s += static_cast<double>(x[k]) * c[k];
  return s;
}

// The documented algorithm: start at row `first`, then the row least
// similar to the centres so far; assign to the most similar centre (lowest
// index on ties) until nothing changes; a centre is the normalised sum of
// its members.
std::vector<i64> naive_kmeans(const std::vector<float>& x, i64 n, int d, int k, i64 first, int max_iter) {
  std::vector<double> c(static_cast<std::size_t>(k) * d);
  auto set = [&](int j, i64 row) { std::copy(&x[row * d], &x[(row + 1) * d], c.begin() + j * d); };
  set(0, first);
  std::vector<double> best(n);
  for (i64 i = 0; i < n; ++i) best[i] = dot(&x[i * d], c.data(), d);
  for (int j = 1; j < k; ++j) {
    const i64 nxt = std::min_element(best.begin(), best.end()) - best.begin();
    set(j, nxt);
    for (i64 i = 0; i < n; ++i) best[i] = std::max(best[i], dot(&x[i * d], c.data() + j * d, d));
  }
  std::vector<i64> assign(n, -1), fresh(n);
  for (int it = 0; it < max_iter; ++it) {
    for (i64 i = 0; i < n; ++i) {
      int arg = 0;
      double bs = dot(&x[i * d], c.data(), d);
      for (int j = 1; j < k; ++j) {
        const double v = dot(&x[i * d], c.data() + j * d, d);
        if (v > bs) {
          bs = v;
          arg = j;
        }
      }
      fresh[i] = arg;
    }
    if (fresh == assign) break;
    assign = fresh;
    for (int j = 0; j < k; ++j) {
      double* cj = c.data() + j * d;
      if (std::count(assign.begin(), assign.end(), j) > 0) {
        std::fill(cj, cj + d, 0.0);
        for (i64 i = 0; i < n; ++i)
          if (assign[i] == j)
            for (int q = 0; q < d; ++q) cj[q] += x[i * d + q];
      }
      double s = 0.0;
      for (int q = 0; q < d; ++q) s += cj[q] * cj[q];
      const double norm = std::max(std::sqrt(s), 1e-12);
      for (int q = 0; q < d; ++q) cj[q] /= norm;
    }
  }
  return assign;
}

FTEST(kmeans, two_separated_blobs) {
  auto g = ftest::rng(41);
  const i64 n = 300;
  const int d = 16;
  std::vector<float> x = ftest::normal_rows(g, n, d, 0.2);
  std::vector<int> blob(n);
  for (i64 i = 0; i < n; ++i) {
    blob[i] = (g() % 3 == 0) ? 1 : 0;
    x[i * d + blob[i]] += 1.0f;
  }
  ftest::normalise(x, n, d);
  for (const i64 first : {i64{0}, i64{17}, n - 1}) {
    int iterations = -1;
    const std::vector<i64> got = focal::kmeans_cosine(x.data(), n, d, 2, first, 100, 1, &iterations);
    CHECK(iterations >= 1 && iterations < 100, "first " << first << ": " << iterations << " iterations");
    i64 id[2] = {-1, -1};
    bool clean = true;
    for (i64 i = 0; i < n; ++i) {
      if (id[blob[i]] < 0) id[blob[i]] = got[i];
      clean = clean && got[i] == id[blob[i]];
    }
    CHECK(clean && id[0] != id[1] && id[0] >= 0 && id[1] >= 0, "first " << first << ": the blobs are not the clusters");
    CHECK(got == naive_kmeans(x, n, d, 2, first, 100), "first " << first << ": ids differ from the naive run");
  }
}

FTEST(kmeans, matches_the_naive_run_on_overlapping_data) {
  auto g = ftest::rng(42);
  const i64 n = 500;
  const int d = 12;
  std::vector<float> x = ftest::normal_rows(g, n, d);
  ftest::normalise(x, n, d);
  for (const int k : {1, 2, 3, 5}) {
    const std::vector<i64> got = focal::kmeans_cosine(x.data(), n, d, k, 3, 100, 1, nullptr);
    CHECK(got == naive_kmeans(x, n, d, k, 3, 100), "k " << k << ": ids differ from the naive run");
  }
  const std::vector<i64> none = focal::kmeans_cosine(x.data(), n, d, 2, 0, 0, 1, nullptr);
  CHECK(std::all_of(none.begin(), none.end(), [](i64 v) { return v == -1; }), "max_iter 0 must leave all -1");
}

FTEST(kmeans, exact_ties_go_to_the_lowest_centre) {
  // Rows on e0, on e1 and half-way between: the half-way rows are exactly
  // as similar to both first centres (e0, then e1, the least similar), so
  // the first assignment sends them to centre 0, which then keeps them.
  const int d = 4;
  const float h = static_cast<float>(std::sqrt(0.5));
  std::vector<float> x;
  const i64 counts[3] = {10, 10, 5};
  for (int kind = 0; kind < 3; ++kind)
    for (i64 t = 0; t < counts[kind]; ++t) {
      const float row[3][4] = {{1, 0, 0, 0}, {0, 1, 0, 0}, {h, h, 0, 0}};
      x.insert(x.end(), row[kind], row[kind] + d);
    }
  const i64 n = 25;
  const std::vector<i64> got = focal::kmeans_cosine(x.data(), n, d, 2, 0, 100, 1, nullptr);
  for (i64 i = 0; i < n; ++i) {
    const i64 want = (i >= 10 && i < 20) ? 1 : 0;
    CHECK(got[i] == want, "row " << i << ": cluster " << got[i] << ", want " << want);
  }
  CHECK(got == naive_kmeans(x, n, d, 2, 0, 100), "ids differ from the naive run");
}

}  // namespace
