// Float32 inner-product kernels for X @ X^T on L2-normalised feature rows.
//
// Rows are packed into panels of kPanel rows stored k-major
// (panel p, dimension k, row r at data[(p * d + k) * kPanel + r]), zero
// padded to a whole panel. Every inner product is accumulated in one SIMD
// lane in increasing k, so the same pair of rows always gives the same bits,
// whatever tile or kernel position it lands in; identical rows therefore have
// an exactly zero squared distance n_i + n_j - 2 g_ij.
#pragma once

#include "common.hpp"
#include "isa.hpp"

namespace focal {

constexpr int kPanel = 16;

// Inner products are summed in chunks of kChunk dimensions, each chunk from
// zero, the chunk sums then added in order. The float32 error of a product
// of rows a, b is then at most gamma(gemm_error_terms(d)) * sum_k |a_k b_k|
// (gamma(m) = m u / (1 - m u), u = 2^-24), about kChunk + d / kChunk
// roundings instead of d: the bound the exact refinement relies on.
constexpr int kChunk = 32;
inline int gemm_error_terms(int d) { return kChunk + (d + kChunk - 1) / kChunk + 1; }

struct PackedRows {
  i64 n = 0;       // rows
  int d = 0;       // dimensions
  i64 panels = 0;  // ceil(n / kPanel)
  AlignedBuffer<float> data;
};

// Packs x ([n, d] float32, row-major) into panels.
void pack_rows(const float* x, i64 n, int d, PackedRows& out);

// The inner-product kernels of one family. Every family gives the same bits
// for the same pair of rows wherever it lands in a tile; families differ
// from each other only by FMA contraction (within the bound above).
struct GemmKernels {
  // out[i * ldo + j] = <row(kPanel*pi0 + i), row(kPanel*pj0 + j)> for
  // i < kPanel * npi, j < kPanel * npj (padding rows give zeros).
  void (*gram)(const PackedRows& p, i64 pi0, i64 npi, i64 pj0, i64 npj, float* out, i64 ldo);
  // out[kPanel * q + r] = <v, row(kPanel * q + r)> of a packed buffer
  // (panels [q0, q1) of `panels`, each d * kPanel floats).
  void (*dots)(const float* v, const float* panels, int d, i64 q0, i64 q1, float* out);
};

// The table of family `isa` (which the CPU must run: isa <= cpu_isa()).
const GemmKernels& gemm_kernels(Isa isa);

// The inner-product family the core uses: "avx512", "avx2+fma", "sse2",
// "neon" or "generic" (FOCAL_NATIVE_ISA=generic / =avx2 caps it).
const char* gemm_isa();

}  // namespace focal
