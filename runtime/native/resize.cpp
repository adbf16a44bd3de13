// Label-map and fusion resizing (see kernels.hpp). Built with
// -ffp-contract=off: OpenCV's float path rounds after every multiply and add.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#include "kernels.hpp"

namespace focal {

namespace {

inline int floor_f(float v) {
  const int i = static_cast<int>(v);
  return i - (static_cast<float>(i) > v);
}
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

void resize_linear_f32(const float* src, int sh, int sw, float* dst, int dh, int dw) {
  if (sh == dh && sw == dw) {
    std::memcpy(dst, src, sizeof(float) * static_cast<std::size_t>(sh) * sw);
    return;
  }
  const double scale_x = 1.0 / (static_cast<double>(dw) / sw);
  const double scale_y = 1.0 / (static_cast<double>(dh) / sh);
  // OpenCV turns an exact 2x downscale into its area average.
  if (sw == 2 * dw && sh == 2 * dh) {
    for (int y = 0; y < dh; ++y) {
      const float* s0 = src + static_cast<i64>(2 * y) * sw;
      const float* s1 = s0 + sw;
      float* o = dst + static_cast<i64>(y) * dw;
      for (int x = 0; x < dw; ++x) o[x] = (s0[2 * x] + s0[2 * x + 1] + s1[2 * x] + s1[2 * x + 1]) * 0.25f;
    }
    return;
  }
  std::vector<int> xofs(dw);
  std::vector<float> a0(dw), a1(dw);
  int xmax = dw;
  for (int dx = 0; dx < dw; ++dx) {
    float fx = static_cast<float>((dx + 0.5) * scale_x - 0.5);
    int sx = floor_f(fx);
    fx -= static_cast<float>(sx);
    if (sx < 0) {
      fx = 0.f;
      sx = 0;
    }
    if (sx + 1 >= sw) {
      xmax = std::min(xmax, dx);
      if (sx >= sw - 1) {
        fx = 0.f;
        sx = sw - 1;
      }
    }
    xofs[dx] = sx;
    a0[dx] = 1.f - fx;
    a1[dx] = fx;
  }
  // Horizontally resized source rows, computed once each.
  std::vector<float> rows(static_cast<std::size_t>(sh) * dw);
  std::vector<char> done(sh, 0);
  auto hrow = [&](int r) -> const float* {
    float* o = rows.data() + static_cast<std::size_t>(r) * dw;
    if (!done[r]) {
      const float* s = src + static_cast<i64>(r) * sw;
      int dx = 0;
      for (; dx < xmax; ++dx) o[dx] = s[xofs[dx]] * a0[dx] + s[xofs[dx] + 1] * a1[dx];
      for (; dx < dw; ++dx) o[dx] = s[xofs[dx]] * a0[dx];
      done[r] = 1;
    }
    return o;
  };
  for (int dy = 0; dy < dh; ++dy) {
    float fy = static_cast<float>((dy + 0.5) * scale_y - 0.5);
    const int sy = floor_f(fy);
    fy -= static_cast<float>(sy);
    const float b0 = 1.f - fy, b1 = fy;
    const int r0 = std::min(std::max(sy, 0), sh - 1);
    const int r1 = std::min(std::max(sy + 1, 0), sh - 1);
    const float* h0 = hrow(r0);
    const float* h1 = hrow(r1);
    float* o = dst + static_cast<i64>(dy) * dw;
    for (int x = 0; x < dw; ++x) o[x] = h0[x] * b0 + h1[x] * b1;
  }
}

void labels_to_mask(const std::uint8_t* labels, int h, int w, std::uint8_t* mask, int H, int W) {
  std::vector<float> src(static_cast<std::size_t>(h) * w);
  for (std::size_t i = 0; i < src.size(); ++i) src[i] = labels[i];
  std::vector<float> soft(static_cast<std::size_t>(H) * W);
  resize_linear_f32(src.data(), h, w, soft.data(), H, W);
  for (std::size_t i = 0; i < soft.size(); ++i) mask[i] = soft[i] >= 0.5f ? 255 : 0;
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
