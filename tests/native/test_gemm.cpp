// The inner-product and distance kernels of every family against a naive
// double-precision reference, and the bit-level promises the exact HDBSCAN
// relies on (gemm.hpp, dmatrix.hpp).
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "dmatrix.hpp"
#include "gemm.hpp"
#include "harness.hpp"
#include "util.hpp"

using focal::i64;
using focal::Isa;
using focal::kPanel;

namespace {

// The documented bound on a float32 product of rows a, b:
// gamma(gemm_error_terms(d)) * sum_k |a_k b_k|, plus the double reference's
// own (far smaller) rounding.
double product_bound(const float* a, const float* b, int d, double* exact) {
  double s = 0.0, sa = 0.0;
  for (int k = 0; k < d; ++k) {
    s += static_cast<double>(a[k]) * b[k];
    sa += std::fabs(static_cast<double>(a[k]) * b[k]);
  }
  *exact = s;
  const double mu = focal::gemm_error_terms(d) * std::ldexp(1.0, -24);
  return (mu / (1.0 - mu)) * sa + d * std::ldexp(1.0, -52) * sa + 1e-300;
}

struct Shape {
  i64 n;
  int d;
};
const Shape kShapes[] = {{1, 1}, {5, 3}, {16, 31}, {17, 32}, {33, 33}, {64, 64}, {100, 100}, {37, 257}, {70, 8}};

FTEST(kernels, gram_within_the_bound_of_the_double_product) {
  auto g = ftest::rng(1);
  for (const Isa isa : ftest::families()) {
    const focal::GemmKernels& K = focal::gemm_kernels(isa);
    for (const Shape& s : kShapes) {
      const std::vector<float> x = ftest::normal_rows(g, s.n, s.d, s.d > 64 ? 3.0 : 1.0);
      focal::PackedRows p;
      focal::pack_rows(x.data(), s.n, s.d, p);
      const i64 w = p.panels * kPanel;
      std::vector<float> out(static_cast<std::size_t>(w * w), -1.0f);
      K.gram(p, 0, p.panels, 0, p.panels, out.data(), w);
      for (i64 i = 0; i < w; ++i)
        for (i64 j = 0; j < w; ++j) {
          const float got = out[i * w + j];
          if (i >= s.n || j >= s.n) {
            CHECK(got == 0.0f, focal::isa_name(isa) << " padding (" << i << ", " << j << ") = " << got);
            continue;
          }
          double exact = 0.0;
          const double bound = product_bound(&x[i * s.d], &x[j * s.d], s.d, &exact);
          CHECK(std::fabs(got - exact) <= bound, focal::isa_name(isa) << " n " << s.n << " d " << s.d << " ("
                                                                      << i << ", " << j << "): " << got << " vs "
                                                                      << exact << ", bound " << bound);
          CHECK(ftest::bits(got) == ftest::bits(out[j * w + i]),
                focal::isa_name(isa) << " g(" << i << ", " << j << ") != g(" << j << ", " << i << ")");
        }
    }
  }
}

FTEST(kernels, gram_bits_do_not_depend_on_the_tile_position) {
  // The same pair of rows gives the same bits from any block of panels: the
  // dense path's blocks and the implicit path's column blocks agree.
  auto g = ftest::rng(2);
  const i64 n = 150;
  const int d = 70;
  const std::vector<float> x = ftest::normal_rows(g, n, d);
  focal::PackedRows p;
  focal::pack_rows(x.data(), n, d, p);
  const i64 w = p.panels * kPanel;
  for (const Isa isa : ftest::families()) {
    const focal::GemmKernels& K = focal::gemm_kernels(isa);
    std::vector<float> full(static_cast<std::size_t>(w * w));
    K.gram(p, 0, p.panels, 0, p.panels, full.data(), w);
    for (const i64 pi0 : {i64{0}, i64{3}, i64{7}})
      for (const i64 pj0 : {i64{0}, i64{2}, i64{5}}) {
        const i64 npi = std::min<i64>(3, p.panels - pi0), npj = std::min<i64>(4, p.panels - pj0);
        std::vector<float> part(static_cast<std::size_t>(npi * kPanel * npj * kPanel));
        K.gram(p, pi0, npi, pj0, npj, part.data(), npj * kPanel);
        for (i64 r = 0; r < npi * kPanel; ++r)
          for (i64 c = 0; c < npj * kPanel; ++c)
            CHECK(ftest::bits(part[r * npj * kPanel + c]) == ftest::bits(full[(pi0 * kPanel + r) * w + pj0 * kPanel + c]),
                  focal::isa_name(isa) << " block (" << pi0 << ", " << pj0 << ") entry (" << r << ", " << c << ")");
      }
  }
}

FTEST(kernels, dots_within_the_bound_of_the_double_product) {
  auto g = ftest::rng(3);
  for (const Isa isa : ftest::families()) {
    const focal::GemmKernels& K = focal::gemm_kernels(isa);
    for (const Shape& s : kShapes) {
      const std::vector<float> x = ftest::normal_rows(g, s.n, s.d);
      focal::PackedRows p;
      focal::pack_rows(x.data(), s.n, s.d, p);
      std::vector<float> out(static_cast<std::size_t>(p.panels * kPanel));
      for (i64 i = 0; i < s.n; i += std::max<i64>(1, s.n / 7)) {
        K.dots(&x[i * s.d], p.data.data(), s.d, 0, p.panels, out.data());
        for (i64 j = 0; j < s.n; ++j) {
          double exact = 0.0;
          const double bound = product_bound(&x[i * s.d], &x[j * s.d], s.d, &exact);
          CHECK(std::fabs(out[j] - exact) <= bound, focal::isa_name(isa) << " n " << s.n << " d " << s.d << " <"
                                                                          << i << ", " << j << ">: " << out[j]
                                                                          << " vs " << exact);
        }
      }
    }
  }
}

// The portable formula of gram_to_d2, evaluated here (no contraction: this
// file is built with -ffp-contract=off, as the kernels).
float d2_formula(float nr, float nc, float g) {
  const float f = (nr + nc) - 2.0f * g;
  return f > 0.0f ? f : 0.0f;
}

FTEST(kernels, gram_to_d2_gives_the_formulas_bits_in_every_family) {
  auto g = ftest::rng(4);
  std::uniform_real_distribution<float> u(-1.5f, 1.5f), pos(0.0f, 2.0f);
  const i64 rows = 21, cols = 37, ld = 48;
  std::vector<float> tile(static_cast<std::size_t>(rows * ld)), nr(rows), nc(cols);
  for (float& v : tile) v = u(g);
  for (float& v : nr) v = pos(g);
  for (float& v : nc) v = pos(g);
  tile[3 * ld + 4] = 0.5f * (nr[3] + nc[4]);  // a zero distance, +0 not -0
  for (const Isa isa : ftest::families()) {
    std::vector<float> t = tile;
    focal::gram_to_d2_kernel(isa)(t.data(), ld, rows, cols, nr.data(), nc.data());
    for (i64 r = 0; r < rows; ++r)
      for (i64 c = 0; c < ld; ++c) {
        const float want = c < cols ? d2_formula(nr[r], nc[c], tile[r * ld + c]) : tile[r * ld + c];
        CHECK(ftest::bits(t[r * ld + c]) == ftest::bits(want),
              focal::isa_name(isa) << " (" << r << ", " << c << "): " << t[r * ld + c] << " vs " << want);
      }
  }
}

FTEST(kernels, identical_rows_are_at_distance_exactly_zero) {
  // Norms from the Gram diagonal, as the MST takes them: duplicates must
  // merge at distance 0 in float32 already.
  auto g = ftest::rng(5);
  const i64 n = 40;
  const int d = 45;
  std::vector<float> x = ftest::normal_rows(g, n, d);
  ftest::normalise(x, n, d);
  for (const i64 j : {i64{7}, i64{19}, i64{33}}) std::copy(&x[2 * d], &x[3 * d], &x[j * d]);
  focal::PackedRows p;
  focal::pack_rows(x.data(), n, d, p);
  const i64 w = p.panels * kPanel;
  for (const Isa isa : ftest::families()) {
    std::vector<float> gm(static_cast<std::size_t>(w * w));
    focal::gemm_kernels(isa).gram(p, 0, p.panels, 0, p.panels, gm.data(), w);
    std::vector<float> norms(w);
    for (i64 i = 0; i < w; ++i) norms[i] = gm[i * w + i];
    focal::gram_to_d2_kernel(isa)(gm.data(), w, n, n, norms.data(), norms.data());
    for (const i64 j : {i64{2}, i64{7}, i64{19}, i64{33}})
      for (const i64 i : {i64{2}, i64{7}, i64{19}, i64{33}})
        CHECK(ftest::bits(gm[i * w + j]) == 0u, focal::isa_name(isa) << " d2(" << i << ", " << j << ") = " << gm[i * w + j]);
  }
}

}  // namespace
