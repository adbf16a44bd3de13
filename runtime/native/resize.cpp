// Label-map and fusion resizing (see kernels.hpp).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.hpp"

namespace focal {

namespace {

inline int floor_d(double v) {
  const int i = static_cast<int>(v);
  return i - (static_cast<double>(i) > v);
}

}  // namespace

void resize_nearest_u8(const std::uint8_t* src, int sh, int sw, std::uint8_t* dst, int dh, int dw) {
  const double ifx = 1.0 / (static_cast<double>(dw) / sw);
  const double ify = 1.0 / (static_cast<double>(dh) / sh);
  std::vector<int> xofs(dw);
  for (int x = 0; x < dw; ++x) xofs[x] = std::min(floor_d(x * ifx), sw - 1);
  for (int y = 0; y < dh; ++y) {
    const std::uint8_t* s = src + static_cast<i64>(std::min(floor_d(y * ify), sh - 1)) * sw;
    std::uint8_t* o = dst + static_cast<i64>(y) * dw;
    for (int x = 0; x < dw; ++x) o[x] = s[xofs[x]];
  }
}

namespace {

// torch's nearest source index (upsample_nearest's nearest_idx).
int nearest_src(int out_index, int in_size, int out_size) {
  if (out_size == in_size) return out_index;
  if (out_size == 2 * in_size) return out_index >> 1;
  const float scale = static_cast<float>(in_size) / static_cast<float>(out_size);
  const int s = static_cast<int>(std::floor(static_cast<float>(out_index) * scale));
  return std::min(s, in_size - 1);
}

}  // namespace

void fuse_member(const float* map, int c, int h, int w, int oh, int ow, float* out, i64 ld, i64 col0) {
  std::vector<int> ys(oh), xs(ow);
  for (int y = 0; y < oh; ++y) ys[y] = nearest_src(y, h, oh);
  for (int x = 0; x < ow; ++x) xs[x] = nearest_src(x, w, ow);
  const i64 plane = static_cast<i64>(h) * w;
  std::vector<float> v(c);
  for (int y = 0; y < oh; ++y) {
    for (int x = 0; x < ow; ++x) {
      const i64 p = static_cast<i64>(ys[y]) * w + xs[x];
      double s = 0.0;
      for (int k = 0; k < c; ++k) {
        v[k] = map[k * plane + p];
        s += static_cast<double>(v[k]) * v[k];
      }
      const float norm = std::max(static_cast<float>(std::sqrt(s)), 1e-12f);
      float* o = out + (static_cast<i64>(y) * ow + x) * ld + col0;
      for (int k = 0; k < c; ++k) o[k] = v[k] / norm;
    }
  }
}

}  // namespace focal
