// Python binding of the native core: converts arrays, releases the GIL,
// calls the kernels. No algorithm lives here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "blockdct.hpp"
#include "copymove.hpp"
#include "dmatrix.hpp"
#include "gemm.hpp"
#include "gridzeros.hpp"
#include "hdbscan.hpp"
#include "isa.hpp"
#include "kmeans.hpp"
#include "select.hpp"

namespace py = pybind11;
using focal::i64;

namespace {

template <class T>
using CArray = py::array_t<T, py::array::c_style | py::array::forcecast>;

template <class T>
py::array_t<T> to_numpy(const std::vector<T>& v) {
  py::array_t<T> a(static_cast<py::ssize_t>(v.size()));
  if (!v.empty()) std::memcpy(a.mutable_data(), v.data(), sizeof(T) * v.size());
  return a;
}

std::string str(i64 v) { return std::to_string(v); }

void require_2d(const py::array& a, const char* name) {
  if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + " must be 2-D, got " + str(a.ndim()) + " dimensions");
}

py::dict stats_dict(const focal::MstStats& s) {
  py::dict d;
  d["dense"] = s.dense;
  d["half_matrix"] = s.half_matrix;
  d["threads"] = s.threads;
  d["min_samples"] = s.min_samples;
  d["error_bound"] = s.error_bound;
  d["core_exact"] = s.core_exact;
  d["prim_exact"] = s.prim_exact;
  d["seconds_gram"] = s.seconds_gram;
  d["seconds_core"] = s.seconds_core;
  d["seconds_prim"] = s.seconds_prim;
  return d;
}

py::tuple mst(const CArray<float>& x, int min_samples, int num_threads, i64 dense_max_points, int path,
              bool allow_half) {
  require_2d(x, "features");
  const i64 n = x.shape(0);
  const int d = static_cast<int>(x.shape(1));
  if (n < 2) throw std::invalid_argument("mst needs at least 2 points, got " + str(n));
  if (path < 0 || path > 2) throw std::invalid_argument("path must be 0 (auto), 1 (dense) or 2 (implicit), got " + str(path));
  focal::MstOptions opt;
  opt.num_threads = num_threads;
  opt.dense_max_points = dense_max_points;
  opt.path = path;
  opt.allow_half = allow_half;
  focal::MstResult r;
  {
    py::gil_scoped_release nogil;
    r = focal::mutual_reachability_mst(x.data(), n, d, min_samples, opt);
  }
  return py::make_tuple(to_numpy(r.src), to_numpy(r.dst), to_numpy(r.weight), to_numpy(r.core),
                        stats_dict(r.stats));
}

py::array_t<i64> labels_from_mst(i64 n, const CArray<i64>& src, const CArray<i64>& dst, const CArray<double>& weight,
                                 const py::object& order, i64 min_cluster_size) {
  if (n < 1) throw std::invalid_argument("n must be >= 1, got " + str(n));
  const i64 m = n - 1;
  if (src.size() != m || dst.size() != m || weight.size() != m)
    throw std::invalid_argument("src, dst and weight must have n - 1 = " + str(m) + " entries, got " +
                                str(src.size()) + ", " + str(dst.size()) + ", " + str(weight.size()));
  for (i64 t = 0; t < m; ++t)
    if (src.data()[t] < 0 || src.data()[t] >= n || dst.data()[t] < 0 || dst.data()[t] >= n)
      throw std::invalid_argument("edge " + str(t) + " (" + str(src.data()[t]) + ", " + str(dst.data()[t]) +
                                  ") has an endpoint outside [0, " + str(n) + ")");
  CArray<i64> ord;
  const i64* op = nullptr;
  if (!order.is_none()) {
    ord = order.cast<CArray<i64>>();
    if (ord.size() != m)
      throw std::invalid_argument("order must have n - 1 = " + str(m) + " entries, got " + str(ord.size()));
    op = ord.data();
  }
  std::vector<i64> out;
  {
    py::gil_scoped_release nogil;
    out = focal::raw_labels_from_mst(n, src.data(), dst.data(), weight.data(), op, min_cluster_size);
  }
  return to_numpy(out);
}

py::tuple kmeans(const CArray<float>& x, int k, i64 first, int max_iter, int num_threads) {
  require_2d(x, "features");
  const i64 n = x.shape(0);
  if (k < 1) throw std::invalid_argument("k must be >= 1, got " + str(k));
  if (n < 1 || first < 0 || first >= n)
    throw std::invalid_argument("first must index one of the " + str(n) + " rows, got " + str(first));
  std::vector<i64> out;
  int it = 0;
  {
    py::gil_scoped_release nogil;
    out = focal::kmeans_cosine(x.data(), n, static_cast<int>(x.shape(1)), k, first, max_iter, num_threads, &it);
  }
  return py::make_tuple(to_numpy(out), it);
}

py::array_t<std::int16_t> ring_descriptors(const CArray<float>& smooth, const CArray<float>& magnitude, int radius,
                                    int num_threads) {
  require_2d(smooth, "smooth");
  require_2d(magnitude, "magnitude");
  if (smooth.shape(0) != magnitude.shape(0) || smooth.shape(1) != magnitude.shape(1))
    throw std::invalid_argument("smooth and magnitude must have one shape, got " + str(smooth.shape(0)) + " x " +
                                str(smooth.shape(1)) + " and " + str(magnitude.shape(0)) + " x " + str(magnitude.shape(1)));
  const int h = static_cast<int>(smooth.shape(0)), w = static_cast<int>(smooth.shape(1));
  if (radius < 1 || radius > focal::kMaxRadius || radius >= std::min(h, w))
    throw std::invalid_argument("radius must be in [1, min(h, w)) and at most " + str(focal::kMaxRadius) + ", got " +
                                str(radius) + " for " + str(h) + " x " + str(w));
  const int p = focal::ring_descriptor_width(radius);
  py::array_t<std::int16_t> out({static_cast<py::ssize_t>(h), static_cast<py::ssize_t>(w), static_cast<py::ssize_t>(p)});
  std::int16_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    focal::ring_descriptors(smooth.data(), magnitude.data(), h, w, radius, num_threads, o);
  }
  return out;
}

py::tuple patchmatch(const CArray<std::int16_t>& desc, int stride, int min_offset, int iterations, std::uint64_t seed,
                     int num_threads) {
  if (desc.ndim() != 3) throw std::invalid_argument("descriptors must be [H, W, P], got " + str(desc.ndim()) + " dimensions");
  const int p = static_cast<int>(desc.shape(2));
  if (p < 16 || p % 16 != 0 || p > focal::ring_descriptor_width(focal::kMaxRadius))
    throw std::invalid_argument("descriptor width must be 16 or 32 (a multiple of 16 up to radius " +
                                str(focal::kMaxRadius) + "), got " + str(p));
  if (stride < 1 || min_offset < 0 || iterations < 0)
    throw std::invalid_argument("need stride >= 1, min_offset >= 0, iterations >= 0; got " + str(stride) + ", " +
                                str(min_offset) + ", " + str(iterations));
  focal::PatchMatchField f;
  {
    py::gil_scoped_release nogil;
    f = focal::patchmatch(desc.data(), static_cast<int>(desc.shape(0)), static_cast<int>(desc.shape(1)), p, stride,
                          min_offset, iterations, seed, num_threads);
  }
  auto grid = [&](auto a) {
    a.resize({static_cast<py::ssize_t>(f.gh), static_cast<py::ssize_t>(f.gw)});
    return a;
  };
  return py::make_tuple(grid(to_numpy(f.oy)), grid(to_numpy(f.ox)), grid(to_numpy(f.cost)));
}

// The double-JPEG cue's quantised block DCT (blockdct.hpp).
py::array_t<std::int32_t> block_dct(const CArray<std::uint8_t>& gray, const CArray<double>& cosines,
                                    const CArray<std::int32_t>& positions, const CArray<std::int32_t>& steps,
                                    int num_threads) {
  require_2d(gray, "gray");
  if (cosines.ndim() != 2 || cosines.shape(0) != 8 || cosines.shape(1) != 8)
    throw std::invalid_argument("cosines must be [8, 8]");
  if (positions.ndim() != 1 || steps.ndim() != 1 || positions.shape(0) != steps.shape(0) || positions.shape(0) < 1 ||
      positions.shape(0) > 64)
    throw std::invalid_argument("positions and steps must be 1-D of one length in 1..64, got " +
                                str(positions.shape(0)) + " and " + str(steps.shape(0)));
  const int h = static_cast<int>(gray.shape(0)), w = static_cast<int>(gray.shape(1));
  const int count = static_cast<int>(positions.shape(0));
  py::array_t<std::int32_t> out(
      {static_cast<py::ssize_t>(h / 8), static_cast<py::ssize_t>(w / 8), static_cast<py::ssize_t>(count)});
  std::int32_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    focal::block_dct(gray.data(), h, w, cosines.data(), positions.data(), steps.data(), count, num_threads, o);
  }
  return out;
}

// The JPEG-grid test's dense DCT zero counts (gridzeros.hpp).
py::array_t<std::uint8_t> grid_zero_counts(const CArray<std::uint8_t>& gray, const CArray<float>& cosines,
                                           int num_threads) {
  require_2d(gray, "gray");
  if (cosines.ndim() != 2 || cosines.shape(0) != 8 || cosines.shape(1) != 8)
    throw std::invalid_argument("cosines must be [8, 8]");
  const int h = static_cast<int>(gray.shape(0)), w = static_cast<int>(gray.shape(1));
  if (h < 8 || w < 8) throw std::invalid_argument("gray must be at least 8 x 8, got " + str(h) + " x " + str(w));
  py::array_t<std::uint8_t> out({static_cast<py::ssize_t>(h - 7), static_cast<py::ssize_t>(w - 7)});
  std::uint8_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    focal::grid_zero_counts(gray.data(), h, w, cosines.data(), num_threads, o);
  }
  return out;
}

// The JPEG-grid test's cell votes from its zero counts (gridzeros.hpp).
py::array_t<std::int8_t> grid_cell_votes(const CArray<std::uint8_t>& z, int zmax, int margin, int num_threads) {
  require_2d(z, "z");
  const int oh = static_cast<int>(z.shape(0)), ow = static_cast<int>(z.shape(1));
  if (oh < 8 || ow < 8) throw std::invalid_argument("z must be at least 8 x 8, got " + str(oh) + " x " + str(ow));
  py::array_t<std::int8_t> out({static_cast<py::ssize_t>(oh / 8), static_cast<py::ssize_t>(ow / 8)});
  std::int8_t* o = out.mutable_data();
  {
    py::gil_scoped_release nogil;
    focal::grid_cell_votes(z.data(), oh, ow, zmax, margin, num_threads, o);
  }
  return out;
}

// The JPEG-grid test's windows past their grid's bound (gridzeros.hpp).
py::tuple grid_window_hits(const CArray<std::int8_t>& votes, const CArray<std::int64_t>& grids,
                           const CArray<double>& bounds, int window, int num_threads) {
  require_2d(votes, "votes");
  if (grids.ndim() != 1 || bounds.ndim() != 1 || grids.shape(0) != bounds.shape(0))
    throw std::invalid_argument("grids and bounds must be 1-D of one length");
  const int ch = static_cast<int>(votes.shape(0)), cw = static_cast<int>(votes.shape(1));
  focal::GridHits hits;
  {
    py::gil_scoped_release nogil;
    hits = focal::grid_window_hits(votes.data(), ch, cw, grids.data(), bounds.data(),
                                   static_cast<int>(grids.shape(0)), window, num_threads);
  }
  auto array = [](const std::vector<std::int32_t>& v) {
    py::array_t<std::int32_t> a(static_cast<py::ssize_t>(v.size()));
    std::copy(v.begin(), v.end(), a.mutable_data());
    return a;
  };
  return py::make_tuple(array(hits.grid), array(hits.y), array(hits.x), array(hits.count));
}

// The selection kernel on its own, for tests against np.partition.
float kth_smallest(const CArray<float>& v, i64 k) {
  if (v.ndim() != 1) throw std::invalid_argument("values must be 1-D, got " + str(v.ndim()) + " dimensions");
  const i64 n = v.shape(0);
  if (k < 0 || k >= n) throw std::invalid_argument("k must be in [0, " + str(n) + "), got " + str(k));
  focal::SelectScratch s;
  py::gil_scoped_release nogil;
  return focal::kth_smallest(v.data(), n, k, s);
}

// The portable half decoder (the fallback of the half-matrix kernels), for
// tests against NumPy's float16.
py::array_t<float> half_to_float(const CArray<std::uint16_t>& h) {
  if (h.ndim() != 1) throw std::invalid_argument("bits must be 1-D, got " + str(h.ndim()) + " dimensions");
  py::array_t<float> out(h.shape(0));
  float* o = out.mutable_data();
  for (py::ssize_t i = 0; i < h.shape(0); ++i) o[i] = focal::half_to_float(h.data()[i]);
  return out;
}

py::dict build_info() {
  py::dict d;
  d["openmp"] = focal::built_with_openmp();
  d["default_threads"] = focal::resolve_threads(0);
  d["gemm_isa"] = focal::gemm_isa();
  d["half_matrix"] = focal::half_matrix_supported(focal::active_isa());
  d["select_isa"] = focal::isa_name(focal::active_isa());
#if defined(__aarch64__)
  d["arch"] = "aarch64";
#elif defined(__x86_64__)
  d["arch"] = "x86_64";
#else
  d["arch"] = "other";
#endif
  return d;
}

}  // namespace

PYBIND11_MODULE(_native, m) {
  m.doc() = "FOCAL native core: exact HDBSCAN, cosine k-means and the copy-move search (see focal.runtime._native_api)";
  m.def("build_info", &build_info);
  m.def("mst", &mst, py::arg("features"), py::arg("min_samples"), py::arg("num_threads") = 0,
        py::arg("dense_max_points") = 8192, py::arg("path") = 0, py::arg("allow_half") = true);
  m.def("labels_from_mst", &labels_from_mst, py::arg("n"), py::arg("src"), py::arg("dst"), py::arg("weight"),
        py::arg("order"), py::arg("min_cluster_size"));
  m.def("kmeans_cosine", &kmeans, py::arg("features"), py::arg("k"), py::arg("first"), py::arg("max_iter"),
        py::arg("num_threads") = 0);
  m.def("ring_descriptors", &ring_descriptors, py::arg("smooth"), py::arg("magnitude"), py::arg("radius"),
        py::arg("num_threads") = 0);
  m.def("patchmatch", &patchmatch, py::arg("descriptors"), py::arg("stride"), py::arg("min_offset"),
        py::arg("iterations"), py::arg("seed"), py::arg("num_threads") = 0);
  m.def("block_dct", &block_dct, py::arg("gray"), py::arg("cosines"), py::arg("positions"), py::arg("steps"),
        py::arg("num_threads") = 0);
  m.def("grid_window_hits", &grid_window_hits, py::arg("votes"), py::arg("grids"), py::arg("bounds"),
        py::arg("window"), py::arg("num_threads") = 0);
  m.def("grid_zero_counts", &grid_zero_counts, py::arg("gray"), py::arg("cosines"), py::arg("num_threads") = 0);
  m.def("grid_cell_votes", &grid_cell_votes, py::arg("z"), py::arg("zmax"), py::arg("margin"),
        py::arg("num_threads") = 0);
  m.def("kth_smallest", &kth_smallest, py::arg("values"), py::arg("k"));
  m.def("half_to_float", &half_to_float, py::arg("bits"));
}
