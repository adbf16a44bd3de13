// Single linkage, condensed tree, stabilities and excess-of-mass selection,
// each step in the `hdbscan` package's order of operations.
#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>

#include "hdbscan.hpp"

namespace focal {

namespace {

constexpr double kInf = std::numeric_limits<double>::infinity();

// Level-order walk of a scipy-format hierarchy from `root` (points < n are
// leaves), as the package's bfs_from_hierarchy.
void bfs_hierarchy(i64 n, const std::vector<i64>& left, const std::vector<i64>& right, i64 root,
                   std::vector<i64>& out, std::vector<i64>& level, std::vector<i64>& next) {
  out.clear();
  level.assign(1, root);
  while (!level.empty()) {
    out.insert(out.end(), level.begin(), level.end());
    next.clear();
    for (const i64 x : level) {
      if (x >= n) {
        next.push_back(left[x - n]);
        next.push_back(right[x - n]);
      }
    }
    level.swap(next);
  }
}

}  // namespace

void single_linkage(i64 n, const i64* src, const i64* dst, const double* weight, const i64* order,
                    std::vector<i64>& left, std::vector<i64>& right, std::vector<double>& dist,
                    std::vector<i64>& size) {
  const i64 m = n - 1;
  left.resize(m);
  right.resize(m);
  dist.resize(m);
  size.resize(m);
  std::vector<i64> parent(2 * n - 1, -1), csize(2 * n - 1, 0);
  std::fill(csize.begin(), csize.begin() + n, 1);
  auto find = [&](i64 a) {
    i64 r = a;
    while (parent[r] != -1) r = parent[r];
    while (parent[a] != -1 && parent[a] != r) {
      const i64 up = parent[a];
      parent[a] = r;
      a = up;
    }
    return r;
  };
  i64 next_label = n;
  for (i64 t = 0; t < m; ++t) {
    const i64 e = order ? order[t] : t;
    const i64 aa = find(src[e]), bb = find(dst[e]);
    left[t] = aa;
    right[t] = bb;
    dist[t] = weight[e];
    size[t] = csize[aa] + csize[bb];
    csize[next_label] = csize[aa] + csize[bb];
    parent[aa] = next_label;
    parent[bb] = next_label;
    ++next_label;
  }
}

CondensedTree condense_tree(i64 n, const std::vector<i64>& left, const std::vector<i64>& right,
                            const std::vector<double>& dist, const std::vector<i64>& size,
                            i64 min_cluster_size) {
  CondensedTree tree;
  const i64 root = 2 * (n - 1);
  const i64 num_points = n;
  i64 next_label = num_points + 1;
  std::vector<i64> nodes, level, next, sub;
  bfs_hierarchy(n, left, right, root, nodes, level, next);
  std::vector<i64> relabel(root + 1, 0);
  relabel[root] = num_points;
  std::vector<char> ignore(nodes.size() + 1, 0);
  tree.parent.reserve(2 * n);
  tree.child.reserve(2 * n);
  tree.lambda.reserve(2 * n);
  tree.size.reserve(2 * n);
  auto emit = [&](i64 p, i64 c, double l, i64 s) {
    tree.parent.push_back(p);
    tree.child.push_back(c);
    tree.lambda.push_back(l);
    tree.size.push_back(s);
  };
  auto fall_out = [&](i64 node, i64 from, double lambda) {
    bfs_hierarchy(n, left, right, from, sub, level, next);
    for (const i64 s : sub) {
      if (s < num_points) emit(relabel[node], s, lambda, 1);
      ignore[s] = 1;
    }
  };
  for (const i64 node : nodes) {
    if (ignore[node] || node < num_points) continue;
    const i64 row = node - num_points;
    const i64 l = left[row], r = right[row];
    const double lambda = dist[row] > 0.0 ? 1.0 / dist[row] : kInf;
    const i64 lc = l >= num_points ? size[l - num_points] : 1;
    const i64 rc = r >= num_points ? size[r - num_points] : 1;
    if (lc >= min_cluster_size && rc >= min_cluster_size) {
      relabel[l] = next_label++;
      emit(relabel[node], relabel[l], lambda, lc);
      relabel[r] = next_label++;
      emit(relabel[node], relabel[r], lambda, rc);
    } else if (lc < min_cluster_size && rc < min_cluster_size) {
      fall_out(node, l, lambda);
      fall_out(node, r, lambda);
    } else if (lc < min_cluster_size) {
      relabel[r] = relabel[node];
      fall_out(node, l, lambda);
    } else {
      relabel[l] = relabel[node];
      fall_out(node, r, lambda);
    }
  }
  return tree;
}

std::vector<i64> eom_labels(const CondensedTree& tree, i64 n) {
  std::vector<i64> labels(n, -1);
  const i64 rows = static_cast<i64>(tree.parent.size());
  if (rows == 0) return labels;
  const i64 root = *std::min_element(tree.parent.begin(), tree.parent.end());
  const i64 max_parent = *std::max_element(tree.parent.begin(), tree.parent.end());
  const i64 max_child = *std::max_element(tree.child.begin(), tree.child.end());
  const i64 ids = std::max(max_parent, max_child) + 1;

  // Stability, summed in row order as compute_stability does.
  std::vector<double> birth(ids, std::numeric_limits<double>::quiet_NaN());
  for (i64 t = 0; t < rows; ++t) {
    const i64 c = tree.child[t];
    if (std::isnan(birth[c]) || tree.lambda[t] < birth[c]) birth[c] = tree.lambda[t];
  }
  birth[root] = 0.0;
  const i64 nc = max_parent - root + 1;
  std::vector<double> stability(nc, 0.0);
  for (i64 t = 0; t < rows; ++t) {
    const i64 p = tree.parent[t];
    stability[p - root] += (tree.lambda[t] - birth[p]) * static_cast<double>(tree.size[t]);
  }

  // Cluster-to-cluster edges (child_size > 1), children in row order.
  std::vector<std::vector<i64>> children(nc);
  std::vector<i64> cluster_parent(nc, -1);
  for (i64 t = 0; t < rows; ++t) {
    if (tree.size[t] > 1) {
      children[tree.parent[t] - root].push_back(tree.child[t]);
      cluster_parent[tree.child[t] - root] = tree.parent[t];
    }
  }

  // Excess of mass, leaves first (ids grow away from the root); the root is
  // never a candidate (allow_single_cluster=False). The package sums the
  // children's stabilities in a C float, rounding after every addition.
  std::vector<char> selected(nc, 0);
  for (i64 c = 1; c < nc; ++c) selected[c] = 1;
  std::vector<i64> stack;
  for (i64 c = nc - 1; c >= 1; --c) {
    float subtree = 0.0f;
    for (const i64 ch : children[c]) subtree = static_cast<float>(static_cast<double>(subtree) + stability[ch - root]);
    if (static_cast<double>(subtree) > stability[c]) {
      selected[c] = 0;
      stability[c] = static_cast<double>(subtree);
    } else {
      stack.assign(children[c].begin(), children[c].end());
      while (!stack.empty()) {
        const i64 s = stack.back();
        stack.pop_back();
        selected[s - root] = 0;
        for (const i64 g : children[s - root]) stack.push_back(g);
      }
    }
  }

  // Every point takes the label of the nearest selected cluster above it;
  // none (only the root above) means noise.
  std::vector<i64> cluster_label(nc, -1);
  i64 next = 0;
  for (i64 c = 1; c < nc; ++c)
    if (selected[c]) cluster_label[c] = next++;
  for (i64 c = 1; c < nc; ++c)
    if (!selected[c]) cluster_label[c] = cluster_label[cluster_parent[c] - root];
  for (i64 t = 0; t < rows; ++t) {
    const i64 c = tree.child[t];
    if (c < root) labels[c] = cluster_label[tree.parent[t] - root];
  }
  return labels;
}

std::vector<i64> raw_labels_from_mst(i64 n, const i64* src, const i64* dst, const double* weight,
                                     const i64* order, i64 min_cluster_size) {
  if (n < 2) return std::vector<i64>(n, -1);
  std::vector<i64> own;
  if (!order) {
    own.resize(n - 1);
    std::iota(own.begin(), own.end(), 0);
    std::stable_sort(own.begin(), own.end(), [&](i64 a, i64 b) { return weight[a] < weight[b]; });
    order = own.data();
  }
  std::vector<i64> left, right, size;
  std::vector<double> dist;
  single_linkage(n, src, dst, weight, order, left, right, dist, size);
  const CondensedTree tree = condense_tree(n, left, right, dist, size, min_cluster_size);
  return eom_labels(tree, n);
}

}  // namespace focal
