// Python binding of the native core: converts arrays, releases the GIL,
// calls the kernels. No algorithm lives here.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "dmatrix.hpp"
#include "gemm.hpp"
#include "hdbscan.hpp"
#include "kernels.hpp"
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

void require_2d(const py::array& a, const char* name) {
  if (a.ndim() != 2) throw std::invalid_argument(std::string(name) + " must be 2-D");
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
  if (n < 2) throw std::invalid_argument("mst needs at least 2 points");
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
  if (n < 1) throw std::invalid_argument("n must be >= 1");
  const i64 m = n - 1;
  if (src.size() != m || dst.size() != m || weight.size() != m)
    throw std::invalid_argument("src, dst and weight must have n - 1 entries");
  for (i64 t = 0; t < m; ++t)
    if (src.data()[t] < 0 || src.data()[t] >= n || dst.data()[t] < 0 || dst.data()[t] >= n)
      throw std::invalid_argument("edge endpoint out of range");
  CArray<i64> ord;
  const i64* op = nullptr;
  if (!order.is_none()) {
    ord = order.cast<CArray<i64>>();
    if (ord.size() != m) throw std::invalid_argument("order must have n - 1 entries");
    op = ord.data();
  }
  std::vector<i64> out;
  {
    py::gil_scoped_release nogil;
    out = focal::raw_labels_from_mst(n, src.data(), dst.data(), weight.data(), op, min_cluster_size);
  }
  return to_numpy(out);
}

py::array_t<std::uint8_t> method_labels(const CArray<i64>& raw, const CArray<float>& x) {
  require_2d(x, "features");
  if (raw.size() != x.shape(0)) throw std::invalid_argument("raw labels and features disagree on N");
  std::vector<std::uint8_t> out;
  {
    py::gil_scoped_release nogil;
    out = focal::method_labels(raw.data(), x.data(), x.shape(0), static_cast<int>(x.shape(1)));
  }
  return to_numpy(out);
}

py::tuple kmeans(const CArray<float>& x, int k, i64 first, int max_iter, int num_threads) {
  require_2d(x, "features");
  const i64 n = x.shape(0);
  if (k < 1) throw std::invalid_argument("k must be >= 1");
  if (n < 1 || first < 0 || first >= n) throw std::invalid_argument("first must index a row");
  std::vector<i64> out;
  int it = 0;
  {
    py::gil_scoped_release nogil;
    out = focal::kmeans_cosine(x.data(), n, static_cast<int>(x.shape(1)), k, first, max_iter, num_threads, &it);
  }
  return py::make_tuple(to_numpy(out), it);
}

py::array_t<float> normalize_rows(const CArray<float>& x, float eps) {
  require_2d(x, "features");
  py::array_t<float> out({x.shape(0), x.shape(1)});
  {
    py::gil_scoped_release nogil;
    focal::normalize_rows(x.data(), x.shape(0), static_cast<int>(x.shape(1)), eps, out.mutable_data());
  }
  return out;
}

void check_size(int h, int w) {
  if (h < 1 || w < 1) throw std::invalid_argument("sizes must be positive");
}

py::array_t<std::uint8_t> resize_nearest_u8(const CArray<std::uint8_t>& src, int H, int W) {
  require_2d(src, "src");
  check_size(H, W);
  py::array_t<std::uint8_t> out({H, W});
  {
    py::gil_scoped_release nogil;
    focal::resize_nearest_u8(src.data(), static_cast<int>(src.shape(0)), static_cast<int>(src.shape(1)),
                             out.mutable_data(), H, W);
  }
  return out;
}

py::array_t<float> fuse_maps(const std::vector<CArray<float>>& maps) {
  if (maps.empty()) throw std::invalid_argument("fuse_maps needs at least one map");
  for (const auto& m : maps)
    if (m.ndim() != 3) throw std::invalid_argument("each map must be [C, h, w]");
  const int oh = static_cast<int>(maps[0].shape(1)), ow = static_cast<int>(maps[0].shape(2));
  i64 total = 0;
  for (const auto& m : maps) total += m.shape(0);
  py::array_t<float> out({static_cast<i64>(oh) * ow, total});
  {
    py::gil_scoped_release nogil;
    i64 col = 0;
    for (const auto& m : maps) {
      focal::fuse_member(m.data(), static_cast<int>(m.shape(0)), static_cast<int>(m.shape(1)),
                         static_cast<int>(m.shape(2)), oh, ow, out.mutable_data(), total, col);
      col += m.shape(0);
    }
  }
  return out;
}

// The selection kernel on its own, for tests against np.partition.
float kth_smallest(const CArray<float>& v, i64 k) {
  if (v.ndim() != 1) throw std::invalid_argument("values must be 1-D");
  const i64 n = v.shape(0);
  if (k < 0 || k >= n) throw std::invalid_argument("k must be in [0, n)");
  focal::SelectScratch s;
  py::gil_scoped_release nogil;
  return focal::kth_smallest(v.data(), n, k, s);
}

// The portable half decoder (the fallback of the half-matrix kernels), for
// tests against NumPy's float16.
py::array_t<float> half_to_float(const CArray<std::uint16_t>& h) {
  if (h.ndim() != 1) throw std::invalid_argument("values must be 1-D");
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
  d["half_matrix"] = focal::half_matrix_supported();
  d["select_isa"] = focal::cpu_avx512() ? "avx512" : (focal::cpu_avx2() ? "avx2" : "generic");
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
  m.doc() = "FOCAL native core: exact HDBSCAN, cosine k-means, resizing (see focal.runtime._native_api)";
  m.def("build_info", &build_info);
  m.def("mst", &mst, py::arg("features"), py::arg("min_samples"), py::arg("num_threads") = 0,
        py::arg("dense_max_points") = 8192, py::arg("path") = 0, py::arg("allow_half") = true);
  m.def("labels_from_mst", &labels_from_mst, py::arg("n"), py::arg("src"), py::arg("dst"), py::arg("weight"),
        py::arg("order"), py::arg("min_cluster_size"));
  m.def("method_labels", &method_labels, py::arg("raw"), py::arg("features"));
  m.def("kmeans_cosine", &kmeans, py::arg("features"), py::arg("k"), py::arg("first"), py::arg("max_iter"),
        py::arg("num_threads") = 0);
  m.def("normalize_rows", &normalize_rows, py::arg("features"), py::arg("eps") = 1e-12f);
  m.def("resize_nearest_u8", &resize_nearest_u8, py::arg("src"), py::arg("height"), py::arg("width"));
  m.def("fuse_maps", &fuse_maps, py::arg("maps"));
  m.def("kth_smallest", &kth_smallest, py::arg("values"), py::arg("k"));
  m.def("half_to_float", &half_to_float, py::arg("bits"));
}
