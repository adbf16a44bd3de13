// Dense zero counts of the 8 x 8 DCT at every window origin of a grey plane,
// for the JPEG-grid test of focal.runtime.jpeggrid. Plain C++17, no Python headers.
//
// A decoded JPEG's blocks hold many DCT coefficients that round to zero; the
// windows of any other grid hold few. Counting them at every origin shows
// which grid each part of a picture carries.
//
// The kernel repeats the NumPy reference (jpeggrid.zero_counts_reference)
// operation for operation in float32, so its counts are identical to it
// whatever the thread count or ISA: d = pixel - 128; the row pass
// R[y][v][x] = sum over k = 0..7 of C[v][k] * d[y][x + k], then the column
// pass raw = sum over j = 0..7 of C[u][j] * R[y + j][v][x], both summed in
// index order from the first product (no fused multiply-add:
// -ffp-contract=off); a coefficient is zero when |raw| <= 0.5 (it rounds to
// 0, half to even). Vector lanes run across window origins of one row, never
// across a sum.
#pragma once

#include <cstdint>

#include "common.hpp"

namespace focal {

// gray: [h, w] uint8 row-major, h, w >= 8. cosines: [8, 8] float32, C[k][n]
// the orthonormal DCT-II basis. out: [h - 7, w - 7] uint8, the number of the
// 63 AC coefficients of the window whose top-left pixel is (y, x) that round to 0.
void grid_zero_counts(const std::uint8_t* gray, int h, int w, const float* cosines, int num_threads,
                      std::uint8_t* out);

}  // namespace focal
