// IEEE half: the portable decoder against a reference built from ldexp, and
// the dense matrix's storage round trip (float32 exact; half within the
// bound the exactness argument adds, dmatrix.hpp).
#include <cmath>
#include <limits>
#include <vector>

#include "dmatrix.hpp"
#include "harness.hpp"
#include "select.hpp"
#include "util.hpp"

using focal::i64;
using focal::Isa;

namespace {

float reference_half(std::uint16_t h) {
  const int sign = h >> 15, exp = (h >> 10) & 0x1F, man = h & 0x3FF;
  double v;
  if (exp == 0)
    v = std::ldexp(static_cast<double>(man), -24);
  else if (exp == 31)
    v = man ? std::numeric_limits<double>::quiet_NaN() : std::numeric_limits<double>::infinity();
  else
    v = std::ldexp(static_cast<double>(1024 + man), exp - 25);
  return static_cast<float>(sign ? -v : v);
}

FTEST(half, decoder_matches_the_definition_for_all_65536_patterns) {
  int wrong = 0, first = -1;
  for (std::uint32_t h = 0; h < 65536; ++h) {
    const float got = focal::half_to_float(static_cast<std::uint16_t>(h)), want = reference_half(static_cast<std::uint16_t>(h));
    const bool ok = std::isnan(want) ? std::isnan(got) : ftest::bits(got) == ftest::bits(want);  // signed zeros too
    if (!ok && first < 0) first = static_cast<int>(h);
    wrong += !ok;
  }
  CHECK(wrong == 0, wrong << " patterns decoded wrongly, the first 0x" << std::hex << first);
}

// A symmetric n x n matrix of squared-distance-like values written the way
// the dense path writes it (64 x 64 tiles of the upper triangle, mirrored),
// then read back by rows and by gathers.
void round_trip(Isa isa, bool half, std::mt19937_64& g) {
  const i64 n = 150, B = 64;
  std::uniform_real_distribution<float> u(0.0f, 4.0f);
  std::vector<float> m(static_cast<std::size_t>(n * n));
  for (i64 i = 0; i < n; ++i)
    for (i64 j = i; j < n; ++j) m[i * n + j] = m[j * n + i] = i == j ? 0.0f : (j % 5 == 0 ? 0.5f : u(g));
  m[1 * n + 2] = m[2 * n + 1] = 1e-7f;  // below half's normal range
  focal::DistMatrix D = focal::take_matrix(n, half, isa);
  CHECK(D.half == half, focal::isa_name(isa) << ": asked half " << half << ", got " << D.half);
  focal::AlignedBuffer<float> tile(B * B), tileT(B * B);
  for (i64 r0 = 0; r0 < n; r0 += B)
    for (i64 c0 = r0; c0 < n; c0 += B) {
      const i64 rows = std::min(B, n - r0), cols = std::min(B, n - c0);
      for (i64 r = 0; r < rows; ++r)
        for (i64 c = 0; c < cols; ++c) tile[r * B + c] = m[(r0 + r) * n + c0 + c];
      focal::store_block(tile.data(), B, rows, cols, D, r0, c0, r0 != c0, tileT.data());
    }
  focal::finish_stores(D);
  const double rel = D.rel(), abs = D.abs();
  std::vector<float> buf(n), gathered(n);
  std::vector<int> idx(n);
  for (i64 s = 0; s < n; ++s) idx[s] = static_cast<int>((s * 37) % n);
  int bad = 0;
  for (i64 i = 0; i < n; ++i) {
    const float* row = focal::matrix_row(D, i, buf.data());
    focal::gather_row(D, i, idx.data(), n, gathered.data(), (i + 1) % n);
    for (i64 j = 0; j < n; ++j) {
      const double f = m[i * n + j], s = row[j];
      const bool ok = half ? std::fabs(s - f) <= rel * s + abs : ftest::bits(row[j]) == ftest::bits(m[i * n + j]);
      const bool exact = !(f == 0.5 || f == 0.0) || s == f;  // values a half holds exactly come back exactly
      bad += !(ok && exact && ftest::bits(gathered[j]) == ftest::bits(row[idx[j]]));
    }
  }
  CHECK(bad == 0, focal::isa_name(isa) << (half ? " half" : " float32") << ": " << bad << " of " << n * n
                                       << " values off the storage bound (rel " << rel << ", abs " << abs << ")");
  focal::give_back_matrix(std::move(D));
}

FTEST(half, matrix_storage_round_trip_float32) {
  auto g = ftest::rng(21);
  for (const Isa isa : ftest::families()) round_trip(isa, false, g);
}

FTEST(half, matrix_storage_round_trip_half) {
  auto g = ftest::rng(22);
  bool any = false;
  for (const Isa isa : ftest::families())
    if (focal::half_matrix_supported(isa)) {
      round_trip(isa, true, g);
      any = true;
    }
  if (!any) SKIP("no kernel family here stores the matrix as half (x86-64 F16C only)");
}

}  // namespace
