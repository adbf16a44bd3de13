// The dense N x N matrix of approximate squared distances that the core
// distances and Prim's loop read, stored as float32 or, where the CPU
// converts in hardware (x86 F16C) and the values fit, as IEEE half: half the
// memory traffic on the one structure that outgrows the caches. The storage
// error is part of the exactness bound (hdbscan.hpp): a stored value s of a
// float32 value f >= 0 satisfies |s - f| <= rel * s + abs.
#pragma once

#include <cstdint>

#include "common.hpp"
#include "isa.hpp"

namespace focal {

struct DistMatrix {
  i64 n = 0;
  bool half = false;
  bool stream = false;       // whole rows go out with AVX2 streaming stores
  AlignedBuffer<float> buf;  // n * n floats, or n * n halves two per float (+ slack)

  float* f32() { return buf.data(); }
  const float* f32() const { return buf.data(); }
  std::uint16_t* f16() { return reinterpret_cast<std::uint16_t*>(buf.data()); }
  const std::uint16_t* f16() const { return reinterpret_cast<const std::uint16_t*>(buf.data()); }
  double rel() const;  // relative storage error (0 for float32)
  double abs() const;  // absolute storage error (0 for float32)
};

// True when half storage is available to kernel family `isa`: x86-64 with
// AVX2 and F16C (so never under FOCAL_NATIVE_ISA=generic).
bool half_matrix_supported(Isa isa);

// A matrix for n points written by family `isa` (half where asked for and
// supported), reused across calls: the kernel would otherwise zero fresh
// pages for every image. give_back_matrix returns it to that cache.
DistMatrix take_matrix(i64 n, bool half, Isa isa);
void give_back_matrix(DistMatrix&& m);

// Writes rows x cols of a B-wide float32 tile at (r0, c0) and, when mirror,
// its transpose at (c0, r0) (tileT: B * B floats of scratch). Whole rows go
// out with streaming stores where aligned (D.stream): the matrix is read
// again only after it is complete. Call finish_stores(D) on the writing
// thread after.
void store_block(const float* tile, i64 B, i64 rows, i64 cols, DistMatrix& D, i64 r0, i64 c0, bool mirror,
                 float* tileT);
void finish_stores(const DistMatrix& D);

// Inner products to squared distances in place: tile[r * ld + c] =
// max((nr[r] + nc[c]) - 2 tile[r * ld + c], 0), float32, these operations in
// this order (every family gives the same bits), for r < rows, c < cols.
using GramToD2 = void (*)(float* tile, i64 ld, i64 rows, i64 cols, const float* nr, const float* nc);
GramToD2 gram_to_d2_kernel(Isa isa);

// Row i as float32: a pointer into the matrix, or, for half storage, into
// buf (n floats) after converting it.
const float* matrix_row(const DistMatrix& D, i64 i, float* buf);

// out[s] = row i at column idx[s] as float32, s < m; meanwhile the lines of
// row `next` (-1: none) are fetched into L2, one per 8 values gathered, so
// the requests never pile up.
void gather_row(const DistMatrix& D, i64 i, const int* idx, i64 m, float* out, i64 next);

}  // namespace focal
