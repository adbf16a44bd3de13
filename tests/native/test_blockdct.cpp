// The double-JPEG cue's block DCT (blockdct.hpp) against a naive per-block
// run of its documented arithmetic: the same sums in the same order, so the
// coefficients must match exactly on every ISA and thread count (on aarch64,
// under qemu, this is what checks the NEON build).
#include <cmath>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "blockdct.hpp"
#include "harness.hpp"
#include "util.hpp"

namespace {

std::vector<double> cosines() { return ftest::dct_basis<double>(); }  // as the Python side builds it

std::int32_t naive(const std::uint8_t* gray, int w, int by, int bx, const std::vector<double>& c, int pos, int step) {
  const int u = pos / 8, v = pos % 8;
  double t[8];
  for (int y = 0; y < 8; ++y) {
    const std::uint8_t* line = gray + static_cast<std::size_t>(by * 8 + y) * w + bx * 8;
    double acc = (static_cast<double>(line[0]) - 128.0) * c[v * 8];
    for (int x = 1; x < 8; ++x) acc = acc + (static_cast<double>(line[x]) - 128.0) * c[v * 8 + x];
    t[y] = acc;
  }
  double raw = c[u * 8] * t[0];
  for (int y = 1; y < 8; ++y) raw = raw + c[u * 8 + y] * t[y];
  return static_cast<std::int32_t>(std::nearbyint(raw / step));
}

}  // namespace

FTEST(blockdct, matches_the_naive_blocks) {
  auto gen = ftest::rng(11);
  const int h = 83, w = 141;  // partial blocks at both edges
  std::vector<std::uint8_t> gray(static_cast<std::size_t>(h) * w);
  for (auto& g : gray) g = static_cast<std::uint8_t>(gen() % 256);
  const std::vector<double> c = cosines();
  std::vector<int> positions(64), steps(64);
  for (int j = 0; j < 64; ++j) {
    positions[j] = (j * 37) % 64;  // every position, out of order
    steps[j] = 1 + static_cast<int>(gen() % 30);
  }
  const int bh = h / 8, bw = w / 8;
  for (int threads : {1, 2}) {
    std::vector<std::int32_t> out(static_cast<std::size_t>(bh) * bw * 64, -99999);
    focal::block_dct(gray.data(), h, w, c.data(), positions.data(), steps.data(), 64, threads, out.data());
    long long nonzero = 0;
    for (int by = 0; by < bh; ++by)
      for (int bx = 0; bx < bw; ++bx)
        for (int j = 0; j < 64; ++j) {
          const std::int32_t got = out[(static_cast<std::size_t>(by) * bw + bx) * 64 + j];
          const std::int32_t want = naive(gray.data(), w, by, bx, c, positions[j], steps[j]);
          nonzero += got != 0;
          CHECK(got == want, "block " << by << "," << bx << " position " << positions[j] << ": " << got << " vs "
                                      << want << " (" << threads << " threads)");
        }
    CHECK(nonzero > bh * bw * 16, "only " << nonzero << " nonzero coefficients: the check covers too little");
  }
}

FTEST(blockdct, refuses_bad_positions_and_steps) {
  std::vector<std::uint8_t> gray(64, 128);
  const std::vector<double> c = cosines();
  std::int32_t out[1];
  const int bad_position[1] = {64}, good_step[1] = {1}, good_position[1] = {3}, bad_step[1] = {0};
  bool refused = false;
  try {
    focal::block_dct(gray.data(), 8, 8, c.data(), bad_position, good_step, 1, 1, out);
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  CHECK(refused, "position 64 accepted");
  refused = false;
  try {
    focal::block_dct(gray.data(), 8, 8, c.data(), good_position, bad_step, 1, 1, out);
  } catch (const std::invalid_argument&) {
    refused = true;
  }
  CHECK(refused, "step 0 accepted");
}
