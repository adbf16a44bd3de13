// Quantised DCT coefficients of a grey plane's 8 x 8 blocks, for the
// double-JPEG cue of focal.runtime.doublejpeg. Plain C++17, no Python headers.
//
// The kernel repeats the NumPy reference (doublejpeg.block_dct_reference)
// operation for operation, so its output is bit-identical to it whatever the
// thread count or ISA: per block, d = pixel - 128 in double precision; the row
// pass T[y][v] = sum over x = 0..7 of d[y][x] * C[v][x], then the column pass
// raw = sum over y = 0..7 of C[u][y] * T[y][v], both summed in index order
// from the first product (no fused multiply-add: -ffp-contract=off); then
// raw / step rounded half to even. Vector lanes run across the blocks of a
// block row, never across a sum.
#pragma once

#include <cstdint>

#include "common.hpp"

namespace focal {

// gray: [h, w] uint8, row-major (the block grid starts at 0, 0; a partial
// block at the right or bottom edge is left out). cosines: [8, 8] float64,
// C[k][n] the orthonormal DCT-II basis. positions: `count` (1..64) indices
// 8 * u + v of the coefficients wanted, steps: their quantisation steps
// (>= 1). out: [h / 8, w / 8, count] int32, round(raw / step).
void block_dct(const std::uint8_t* gray, int h, int w, const double* cosines, const int* positions,
               const int* steps, int count, int num_threads, std::int32_t* out);

}  // namespace focal
