// Helpers shared by the native core's C++ tests.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <random>
#include <vector>

#include "common.hpp"
#include "isa.hpp"

namespace ftest {

// The kernel families this CPU runs (each test loops over them all, whatever
// FOCAL_NATIVE_ISA says: the tables take the family as an argument).
inline std::vector<focal::Isa> families() {
  std::vector<focal::Isa> out;
  for (const focal::Isa isa : {focal::Isa::generic, focal::Isa::avx2, focal::Isa::avx512})
    if (isa <= focal::cpu_isa()) out.push_back(isa);
  return out;
}

// The orthonormal DCT-II basis C[k][n] (row-major [8][8]) in T, as the Python side builds it:
// computed in double, then rounded once to T.
template <typename T>
std::vector<T> dct_basis() {
  const double pi = std::acos(-1.0);
  std::vector<T> c(64);
  for (int k = 0; k < 8; ++k)
    for (int n = 0; n < 8; ++n)
      c[k * 8 + n] = static_cast<T>(std::cos((2 * n + 1) * k * pi / 16) * std::sqrt(2.0 / 8) /
                                    (k == 0 ? std::sqrt(2.0) : 1.0));
  return c;
}

inline std::uint32_t bits(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

inline std::uint64_t bits(double f) {
  std::uint64_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// [n, d] float32 rows of N(0, 1) values times scale.
inline std::vector<float> normal_rows(std::mt19937_64& g, focal::i64 n, int d, double scale = 1.0) {
  std::normal_distribution<double> z(0.0, 1.0);
  std::vector<float> x(static_cast<std::size_t>(n) * d);
  for (float& v : x) v = static_cast<float>(scale * z(g));
  return x;
}

// Rows divided by their norm (accumulated in double), zero rows left zero:
// the runtime's L2-normalised features.
inline void normalise(std::vector<float>& x, focal::i64 n, int d) {
  for (focal::i64 i = 0; i < n; ++i) {
    double s = 0.0;
    for (int k = 0; k < d; ++k) s += static_cast<double>(x[i * d + k]) * x[i * d + k];
    const double norm = std::sqrt(s);
    if (norm > 0)
      for (int k = 0; k < d; ++k) x[i * d + k] = static_cast<float>(x[i * d + k] / norm);
  }
}

}  // namespace ftest
