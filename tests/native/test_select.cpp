// The selection and filter kernels of every family against std::nth_element
// and scalar loops (select.hpp): the same answers, bit for bit, in order.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "harness.hpp"
#include "select.hpp"
#include "util.hpp"

using focal::i64;
using focal::Isa;

namespace {

// Arrays of size n with many shapes of ties: random, few distinct values,
// all equal, sorted, reversed, zeros (duplicate points) then random, signed.
std::vector<std::vector<float>> kth_inputs(std::mt19937_64& g, i64 n) {
  std::uniform_real_distribution<float> u(0.0f, 1.0f);
  std::uniform_int_distribution<int> few(0, 4);
  std::vector<std::vector<float>> out(7, std::vector<float>(n));
  for (i64 i = 0; i < n; ++i) {
    out[0][i] = u(g);
    out[1][i] = static_cast<float>(few(g));
    out[2][i] = 0.25f;
    out[3][i] = static_cast<float>(i);
    out[4][i] = static_cast<float>(n - i);
    out[5][i] = i < n * 3 / 4 ? 0.0f : u(g);
    out[6][i] = u(g) - 0.5f;
  }
  return out;
}

FTEST(select, kth_matches_nth_element_on_many_sizes_and_ties) {
  auto g = ftest::rng(11);
  std::vector<i64> sizes;
  for (i64 n = 1; n <= 40; ++n) sizes.push_back(n);
  for (const i64 n : {63, 64, 65, 100, 127, 128, 129, 255, 256, 257, 1000, 1023, 1024, 1025, 4097, 10000})
    sizes.push_back(n);
  focal::SelectScratch scratch;
  for (const Isa isa : ftest::families()) {
    const focal::SelectKernels& K = focal::select_kernels(isa);
    for (const i64 n : sizes)
      for (const std::vector<float>& v : kth_inputs(g, n)) {
        std::vector<i64> ranks = {0, n / 3, n / 2, n - 1, std::min<i64>(n - 1, 200)};
        std::uniform_int_distribution<i64> any(0, n - 1);
        for (int t = 0; t < 3; ++t) ranks.push_back(any(g));
        const std::vector<float> keep = v;
        for (const i64 k : ranks) {
          std::vector<float> w = v;
          std::nth_element(w.begin(), w.begin() + k, w.end());
          const float got = K.kth(v.data(), n, k, scratch);
          CHECK(got == w[k], focal::isa_name(isa) << " n " << n << " k " << k << ": " << got << " vs " << w[k]);
        }
        CHECK(std::equal(v.begin(), v.end(), keep.begin()), focal::isa_name(isa) << " n " << n << ": input modified");
      }
  }
}

FTEST(select, collect_matches_a_scalar_loop) {
  auto g = ftest::rng(12);
  std::uniform_real_distribution<float> u(0.0f, 4.0f);
  for (const Isa isa : ftest::families()) {
    const focal::SelectKernels& K = focal::select_kernels(isa);
    for (const i64 n : {1, 7, 8, 9, 63, 64, 65, 200, 1031}) {
      std::vector<float> row(n);
      for (float& v : row) v = u(g);
      for (const float upto : {-1.0f, 0.5f, row[n / 2], 2.0f, std::numeric_limits<float>::infinity()}) {
        std::vector<float> vals(n + 16);
        std::vector<int> idx(n + 16);
        const i64 c = K.collect(row.data(), n, upto, vals.data(), idx.data());
        i64 want = 0;
        for (i64 j = 0; j < n; ++j) {
          if (!(row[j] <= upto)) continue;
          CHECK(want < c && idx[want] == j && vals[want] == row[j],
                focal::isa_name(isa) << " n " << n << " upto " << upto << ": entry " << want);
          ++want;
        }
        CHECK(c == want, focal::isa_name(isa) << " n " << n << " upto " << upto << ": " << c << " vs " << want);
      }
    }
  }
}

FTEST(select, filter_matches_a_scalar_loop) {
  // Squared distances from inner products, then the threshold: the bits of
  // the dense path's formula, the columns offset by c0.
  auto g = ftest::rng(13);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f), pos(0.5f, 1.5f);
  for (const Isa isa : ftest::families()) {
    const focal::SelectKernels& K = focal::select_kernels(isa);
    for (const i64 w : {1, 8, 15, 16, 17, 100, 1024}) {
      std::vector<float> gr(w), nc(w);
      for (float& v : gr) v = u(g);
      for (float& v : nc) v = pos(g);
      const float nr = pos(g);
      for (const float upto : {0.0f, 1.0f, 2.5f, 9.0f}) {
        std::vector<float> vals(w + 16);
        std::vector<int> idx(w + 16);
        const i64 c0 = 5000;
        const i64 c = K.filter(gr.data(), w, nr, nc.data(), upto, c0, vals.data(), idx.data());
        i64 want = 0;
        for (i64 j = 0; j < w; ++j) {
          float f = (nr + nc[j]) - 2.0f * gr[j];
          f = f > 0.0f ? f : 0.0f;
          if (!(f <= upto)) continue;
          CHECK(want < c && idx[want] == c0 + j && ftest::bits(vals[want]) == ftest::bits(f),
                focal::isa_name(isa) << " w " << w << " upto " << upto << ": entry " << want);
          ++want;
        }
        CHECK(c == want, focal::isa_name(isa) << " w " << w << " upto " << upto << ": " << c << " vs " << want);
      }
    }
  }
}

FTEST(select, band_matches_a_scalar_loop) {
  auto g = ftest::rng(14);
  std::uniform_int_distribution<int> few(0, 20);
  for (const Isa isa : ftest::families()) {
    const focal::SelectKernels& K = focal::select_kernels(isa);
    for (const i64 m : {1, 15, 16, 17, 300}) {
      std::vector<float> vals(m);
      std::vector<int> idx(m);
      for (i64 t = 0; t < m; ++t) {
        vals[t] = 0.25f * few(g);  // ties on the thresholds themselves
        idx[t] = static_cast<int>(1000 + 3 * t);
      }
      for (const auto& lh : {std::pair<float, float>{1.0f, 2.0f}, {0.0f, 0.0f}, {2.25f, 5.0f}, {-1.0f, 10.0f}}) {
        std::vector<int> band(m + 16);
        i64 below = -1;
        const i64 c = K.band(vals.data(), idx.data(), m, lh.first, lh.second, band.data(), &below);
        i64 want_below = 0, want = 0;
        for (i64 t = 0; t < m; ++t) {
          want_below += vals[t] < lh.first;
          if (vals[t] >= lh.first && vals[t] <= lh.second) {
            CHECK(want < c && band[want] == idx[t], focal::isa_name(isa) << " m " << m << ": band entry " << want);
            ++want;
          }
        }
        CHECK(c == want && below == want_below, focal::isa_name(isa) << " m " << m << " [" << lh.first << ", "
                                                                     << lh.second << "]: " << c << "/" << below
                                                                     << " vs " << want << "/" << want_below);
      }
    }
  }
}

FTEST(select, half_rows_collect_and_sample_as_their_float_values) {
  // Every finite half value, in a row; the kernels that read half in place
  // must see what half_to_float gives.
  std::vector<std::uint16_t> row;
  for (std::uint32_t h = 0; h < 65536; ++h)
    if (((h >> 10) & 0x1F) != 0x1F) row.push_back(static_cast<std::uint16_t>(h));
  const i64 n = static_cast<i64>(row.size());
  for (const Isa isa : ftest::families()) {
    const focal::SelectKernels& K = focal::select_kernels(isa);
    for (const float upto : {-2.0f, 0.0f, 0.75f, 65504.0f}) {
      std::vector<float> vals(n + 16);
      std::vector<int> idx(n + 16);
      const i64 c = K.collect_half(row.data(), n, upto, vals.data(), idx.data());
      i64 want = 0;
      bool same = true;
      for (i64 j = 0; j < n; ++j) {
        const float f = focal::half_to_float(row[j]);
        if (!(f <= upto)) continue;
        same = same && want < c && idx[want] == j && ftest::bits(vals[want]) == ftest::bits(f);
        ++want;
      }
      CHECK(same && c == want, focal::isa_name(isa) << " upto " << upto << ": " << c << " vs " << want);
    }
    for (const i64 stride : {1, 3, 16, 255}) {
      std::vector<float> out(n / stride + 32);
      const i64 c = K.sample_half(row.data(), n, stride, out.data());
      bool same = c == (n + stride - 1) / stride;
      for (i64 t = 0; same && t < c; ++t) same = ftest::bits(out[t]) == ftest::bits(focal::half_to_float(row[t * stride]));
      CHECK(same, focal::isa_name(isa) << " stride " << stride << ": " << c << " samples");
    }
  }
}

}  // namespace
