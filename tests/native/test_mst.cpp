// The mutual-reachability MST (hdbscan.hpp) against a naive O(N^2) Prim's
// in double precision with the package's rules: core distance = the k-th
// smallest distance counting the point itself as the 0th (k clipped to
// [1, N - 1]); the tree grows from point 0; a point outside keeps the first
// tree point that reached it with the smallest value (strict-less updates);
// the smallest value joins next, the lowest index among equal values.
// Edges, their order and their weights must be identical, bit for bit.
#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>
#include <string>
#include <vector>

#include "harness.hpp"
#include "hdbscan.hpp"
#include "util.hpp"

using focal::i64;

namespace {

struct Tree {
  std::vector<i64> src, dst;
  std::vector<double> weight, core;
};

double d2(const float* a, const float* b, int d) {
  double s = 0.0;
  for (int k = 0; k < d; ++k) {
    const double t = static_cast<double>(a[k]) - static_cast<double>(b[k]);
    s += t * t;
  }
  return s;
}

Tree naive_prim(const std::vector<float>& x, i64 n, int d, int min_samples) {
  const i64 k = std::max<i64>(1, std::min<i64>(n - 1, min_samples));
  std::vector<double> D(static_cast<std::size_t>(n * n)), c2(n);
  for (i64 i = 0; i < n; ++i)
    for (i64 j = 0; j < n; ++j) D[i * n + j] = d2(&x[i * d], &x[j * d], d);
  for (i64 i = 0; i < n; ++i) {
    std::vector<double> row(D.begin() + i * n, D.begin() + (i + 1) * n);
    std::nth_element(row.begin(), row.begin() + k, row.end());
    c2[i] = row[k];
  }
  Tree t;
  std::vector<double> val(n, std::numeric_limits<double>::infinity());
  std::vector<i64> from(n, 0);
  std::vector<bool> in(n, false);
  i64 cur = 0;
  for (i64 e = 0; e + 1 < n; ++e) {
    in[cur] = true;
    i64 best = -1;
    for (i64 j = 0; j < n; ++j) {
      if (in[j]) continue;
      const double mr = std::max(D[cur * n + j], std::max(c2[cur], c2[j]));
      if (mr < val[j]) {
        val[j] = mr;
        from[j] = cur;
      }
      if (best < 0 || val[j] < val[best]) best = j;
    }
    t.src.push_back(from[best]);
    t.dst.push_back(best);
    t.weight.push_back(std::sqrt(val[best]));
    cur = best;
  }
  for (const double c : c2) t.core.push_back(std::sqrt(c));
  return t;
}

// Gaussian, three blobs, a {0, 1, 2} lattice (exact ties everywhere),
// heavy duplicates; rows L2-normalised as the runtime's.
std::vector<float> inputs(std::mt19937_64& g, int kind, i64 n, int d) {
  std::vector<float> x;
  if (kind == 0) {
    x = ftest::normal_rows(g, n, d);
  } else if (kind == 1) {
    const std::vector<float> c = ftest::normal_rows(g, 3, d), noise = ftest::normal_rows(g, n, d, 0.05);
    x.resize(n * d);
    for (i64 i = 0; i < n; ++i)
      for (int q = 0; q < d; ++q) x[i * d + q] = c[(g() % 3) * d + q] + noise[i * d + q];
  } else if (kind == 2) {
    x.resize(n * d);
    for (float& v : x) v = static_cast<float>(g() % 3);
  } else {
    const i64 m = std::max<i64>(1, n / 10);
    const std::vector<float> base = ftest::normal_rows(g, m, d);
    x.resize(n * d);
    for (i64 i = 0; i < n; ++i) {
      const i64 r = static_cast<i64>(g() % m);
      std::copy(&base[r * d], &base[(r + 1) * d], &x[i * d]);
    }
  }
  ftest::normalise(x, n, d);
  return x;
}

std::string describe(int trial, int kind, i64 n, int d, int k, int path, bool half, int threads) {
  return "trial " + std::to_string(trial) + " kind " + std::to_string(kind) + " n " + std::to_string(n) + " d " +
         std::to_string(d) + " k " + std::to_string(k) + " path " + (path == 1 ? "dense" : "implicit") +
         (half ? " half" : "") + " threads " + std::to_string(threads);
}

void compare(const Tree& want, const focal::MstResult& got, const std::string& what) {
  double tw = 0.0, tg = 0.0;
  for (const double w : want.weight) tw += w;
  for (const double w : got.weight) tg += w;
  CHECK(ftest::bits(tg) == ftest::bits(tw), what << ": total weight " << tg << " vs " << tw);
  CHECK(got.src == want.src && got.dst == want.dst, what << ": edges differ");
  bool same = got.weight.size() == want.weight.size() && got.core.size() == want.core.size();
  for (std::size_t e = 0; same && e < got.weight.size(); ++e) same = ftest::bits(got.weight[e]) == ftest::bits(want.weight[e]);
  for (std::size_t i = 0; same && i < got.core.size(); ++i) same = ftest::bits(got.core[i]) == ftest::bits(want.core[i]);
  CHECK(same, what << ": weights or core distances differ in some bit");
}

FTEST(mst, random_inputs_give_the_naive_prims_tree) {
  auto g = ftest::rng(31);
  for (int trial = 0; trial < 32; ++trial) {
    const int kind = trial % 4;
    const i64 n = 2 + static_cast<i64>(g() % 260);
    const int d = 1 + static_cast<int>(g() % 40), k = 1 + static_cast<int>(g() % 30);
    const std::vector<float> x = inputs(g, kind, n, d);
    const Tree want = naive_prim(x, n, d, k);
    for (const int path : {1, 2})
      for (const bool half : {true, false}) {
        if (path == 2 && half) continue;  // the implicit path keeps no matrix
        focal::MstOptions opt;
        opt.path = path;
        opt.allow_half = half;
        opt.num_threads = 1 + trial % 2;
        compare(want, focal::mutual_reachability_mst(x.data(), n, d, k, opt),
                describe(trial, kind, n, d, k, path, half, opt.num_threads));
      }
  }
}

FTEST(mst, many_column_blocks_give_the_naive_prims_tree) {
  // Past 1024 points the implicit path streams several column blocks and
  // samples the columns for its first thresholds; past 64 rows the dense
  // path writes mirrored off-diagonal blocks.
  auto g = ftest::rng(32);
  const i64 n = 1500;
  const int d = 6, k = 15;
  const std::vector<float> x = inputs(g, 1, n, d);
  const Tree want = naive_prim(x, n, d, k);
  for (const int path : {1, 2}) {
    focal::MstOptions opt;
    opt.path = path;
    opt.num_threads = 2;
    compare(want, focal::mutual_reachability_mst(x.data(), n, d, k, opt), describe(0, 1, n, d, k, path, path == 1, 2));
  }
}

FTEST(mst, two_separated_blobs_give_two_clusters) {
  // The whole chain (tree, condensed tree, excess of mass) on an easy case:
  // each blob one cluster, the two different.
  auto g = ftest::rng(33);
  const i64 na = 120, nb = 80, n = na + nb;
  const int d = 8;
  std::vector<float> x = ftest::normal_rows(g, n, d, 0.05);
  for (i64 i = 0; i < n; ++i) x[i * d + (i < na ? 0 : 1)] += 1.0f;
  ftest::normalise(x, n, d);
  const focal::MstResult t = focal::mutual_reachability_mst(x.data(), n, d, 20, focal::MstOptions{});
  const std::vector<i64> lab = focal::raw_labels_from_mst(n, t.src.data(), t.dst.data(), t.weight.data(), nullptr, 20);
  i64 noise = 0;
  std::vector<i64> ids[2];
  for (i64 i = 0; i < n; ++i) {
    if (lab[i] < 0) ++noise;
    else ids[i < na ? 0 : 1].push_back(lab[i]);
  }
  CHECK(noise < n / 10, noise << " of " << n << " points are noise");
  for (const auto& v : ids)
    CHECK(!v.empty() && std::all_of(v.begin(), v.end(), [&](i64 c) { return c == v[0]; }), "a blob split");
  CHECK(ids[0][0] != ids[1][0], "both blobs in cluster " << ids[0][0]);
}

FTEST(isa, the_cap_follows_FOCAL_NATIVE_ISA) {
  const char* cap = std::getenv("FOCAL_NATIVE_ISA");
  const std::string c = cap ? cap : "";
  const focal::Isa cpu = focal::cpu_isa();
  const focal::Isa want = c == "generic" ? focal::Isa::generic : c == "avx2" ? std::min(cpu, focal::Isa::avx2) : cpu;
  CHECK(focal::active_isa() == want, "FOCAL_NATIVE_ISA=" << c << ": active " << focal::isa_name(focal::active_isa())
                                                         << ", want " << focal::isa_name(want));
}

}  // namespace
