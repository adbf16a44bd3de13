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
// R[y][v][x] = sum over k = 0..3 of C[v][k] * s_k, s_k = d[y][x + k] +
// d[y][x + 7 - k] for even v and d[y][x + k] - d[y][x + 7 - k] for odd v
// (the basis' symmetry C[v][7 - k] = (-1)^v C[v][k]: half the products of
// the 8-tap sum); the column pass the same over the window's rows, raw =
// sum over j = 0..3 of C[u][j] * (R[y + j][v][x] +- R[y + 7 - j][v][x]);
// each sum in index order from the first product (no fused multiply-add:
// -ffp-contract=off); a coefficient is zero when |raw| <= 0.5 (it rounds to
// 0, half to even). Vector lanes run across window origins of one row, never
// across a sum.
#pragma once

#include <cstdint>
#include <vector>

#include "common.hpp"

namespace focal {

// gray: [h, w] uint8 row-major, h, w >= 8. cosines: [8, 8] float32, C[k][n]
// the orthonormal DCT-II basis. out: [h - 7, w - 7] uint8, the number of the
// 63 AC coefficients of the window whose top-left pixel is (y, x) that round to 0.
void grid_zero_counts(const std::uint8_t* gray, int h, int w, const float* cosines, int num_threads,
                      std::uint8_t* out);

// The test's per-cell votes from those counts (jpeggrid.cell_votes before its
// clip rule, which needs the grey plane). z: [oh, ow] uint8 zero counts; cell
// (i, j) holds the 64 windows with origins in rows 8i..8i+7 and columns
// 8j..8j+7. out: [oh / 8, ow / 8] int8, the place 8a + b of the cell's first
// window with the most zeros, or -1 where a second window holds at least
// best - margin + 1 zeros, where the best holds none, or more than zmax.
void grid_cell_votes(const std::uint8_t* z, int oh, int ow, int zmax, int margin, int num_threads, std::int8_t* out);

// The test's windows of window x window cells (window (i, j) spans cells
// i - window / 2 .. i + window - 1 - window / 2, cut at the edges: OpenCV's
// centred box filter) whose votes for grids[g] exceed bounds[g]: per hit the
// index g, the window and its count, grid by grid, then row-major
// (np.nonzero's order over [count, ch, cw]). votes: [ch, cw] int8.
struct GridHits {
  std::vector<std::int32_t> grid, y, x, count;
};
GridHits grid_window_hits(const std::int8_t* votes, int ch, int cw, const std::int64_t* grids, const double* bounds,
                          int count, int window, int num_threads);

}  // namespace focal
