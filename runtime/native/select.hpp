// Selection kernels behind the core distances: the exact k-th smallest of a
// float array and the threshold filters that feed it. The same answers on
// every instruction set; on x86-64 an AVX-512 table (compress instructions:
// a partition pass moves 16 floats per step without branches) and an AVX2
// one exist beside the portable one (isa.hpp), the wheel staying at the
// baseline ISA.
#pragma once

#include <cstdint>

#include "common.hpp"
#include "isa.hpp"

namespace focal {

// Working buffers of kth_smallest, kept per thread across calls.
struct SelectScratch {
  AlignedBuffer<float> buf[3];
  void reserve(i64 n);
};

// The selection kernels of one family; every family gives the same answers.
struct SelectKernels {
  // The k-th smallest value (0-based, 0 <= k < n) of v[0..n), as
  // std::nth_element would place it at v[k]; v is not modified. NaN-free input.
  float (*kth)(const float* v, i64 n, i64 k, SelectScratch& s);
  // Appends the entries of row[0..n) that are <= upto to vals and their
  // positions to idx, in order; both need n + 16 entries of room. Returns
  // how many.
  i64 (*collect)(const float* row, i64 n, float upto, float* vals, int* idx);
  // collect on a row of IEEE half values (compared and returned as float).
  i64 (*collect_half)(const std::uint16_t* row, i64 n, float upto, float* vals, int* idx);
  // out[t] = row[t * stride] as float for t * stride < n (out: room for
  // ceil(n / stride) + 16); returns how many.
  i64 (*sample_half)(const std::uint16_t* row, i64 n, i64 stride, float* out);
  // Squared distances f = max((nr + nc[c]) - 2 g[c], 0) of one row against w
  // columns (float32, these operations in this order); those <= upto are
  // appended to vals, their columns c0 + c to idx (room for w + 16).
  // Returns how many.
  i64 (*filter)(const float* g, i64 w, float nr, const float* nc, float upto, i64 c0, float* vals, int* idx);
  // Splits vals[0..m) at the float thresholds lo <= hi: *below = how many
  // are < lo; the ids (from idx) of those in [lo, hi] are written to band,
  // in order (room for m + 16). Returns how many are in the band.
  i64 (*band)(const float* vals, const int* idx, i64 m, float lo, float hi, int* band, i64* below);
};

// The table of family `isa` (which the CPU must run: isa <= cpu_isa()).
const SelectKernels& select_kernels(Isa isa);

// select_kernels(active_isa()).kth, for the binding's tests.
float kth_smallest(const float* v, i64 n, i64 k, SelectScratch& s);

// IEEE half (binary16 bits) to float, exactly; portable.
float half_to_float(std::uint16_t h);

}  // namespace focal
