// Shared helpers of the native core: aligned buffers and a thread team.
// Plain C++17, no Python headers (style.md, "Native code").
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <condition_variable>
#include <functional>
#include <mutex>
#include <new>
#include <thread>
#include <vector>

namespace focal {

using i64 = std::int64_t;

// 64-byte aligned, uninitialised, move-only array (SIMD loads and whole cache
// lines for the packed panels and the distance matrix).
template <class T>
class AlignedBuffer {
 public:
  AlignedBuffer() = default;
  explicit AlignedBuffer(std::size_t n) { reset(n); }
  AlignedBuffer(const AlignedBuffer&) = delete;
  AlignedBuffer& operator=(const AlignedBuffer&) = delete;
  AlignedBuffer(AlignedBuffer&& o) noexcept : p_(o.p_), n_(o.n_) { o.p_ = nullptr; o.n_ = 0; }
  AlignedBuffer& operator=(AlignedBuffer&& o) noexcept {
    if (this != &o) { release(); p_ = o.p_; n_ = o.n_; o.p_ = nullptr; o.n_ = 0; }
    return *this;
  }
  ~AlignedBuffer() { release(); }

  void reset(std::size_t n) {
    release();
    if (n == 0) return;
    std::size_t bytes = (n * sizeof(T) + 63) / 64 * 64;
    p_ = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (!p_) throw std::bad_alloc();
    n_ = n;
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  std::size_t size() const { return n_; }
  T& operator[](std::size_t i) { return p_[i]; }
  const T& operator[](std::size_t i) const { return p_[i]; }

 private:
  void release() { std::free(p_); p_ = nullptr; n_ = 0; }
  T* p_ = nullptr;
  std::size_t n_ = 0;
};

// Number of worker threads for a request: <= 0 means the default, which is
// FOCAL_NATIVE_THREADS if set, else OpenMP's max threads where built with
// OpenMP (honours OMP_NUM_THREADS), else the CPUs this process may use.
int resolve_threads(int requested);

// True when the library was built with OpenMP.
bool built_with_openmp();

// Runs fn(tid, nthreads) on a team of `nthreads` threads (the caller is
// thread 0) and returns when all have finished. setup(nthreads_actual) runs
// once, before any fn, with the size of the team actually made.
void run_team(int nthreads, const std::function<void(int)>& setup,
              const std::function<void(int, int)>& fn);

// A reusable barrier for the `n` threads of one run_team call. Waiters sleep (no spinning):
// the cores may be shared with ONNX Runtime's threads. A kernel of many short phases runs
// them in one team with a barrier between phases, where one parallel_for per phase would
// start a team (n - 1 threads) each time.
class Barrier {
 public:
  explicit Barrier(int n) : n_(n) {}
  void wait() {
    std::unique_lock<std::mutex> lock(m_);
    const std::uint64_t generation = generation_;
    if (++arrived_ == n_) {
      arrived_ = 0;
      ++generation_;
      cv_.notify_all();
      return;
    }
    cv_.wait(lock, [&] { return generation_ != generation; });
  }

 private:
  std::mutex m_;
  std::condition_variable cv_;
  const int n_;
  int arrived_ = 0;
  std::uint64_t generation_ = 0;
};

// Dynamic parallel loop over [0, n) in chunks of `grain`: f(begin, end, tid).
template <class F>
void parallel_for(i64 n, int nthreads, i64 grain, F&& f) {
  if (n <= 0) return;
  grain = std::max<i64>(1, grain);
  if (nthreads <= 1 || n <= grain) { f(i64{0}, n, 0); return; }
  const int teams = static_cast<int>(std::min<i64>(nthreads, (n + grain - 1) / grain));
  std::atomic<i64> next{0};
  run_team(teams, [](int) {}, [&](int tid, int) {
    for (;;) {
      const i64 b = next.fetch_add(grain, std::memory_order_relaxed);
      if (b >= n) break;
      f(b, std::min(n, b + grain), tid);
    }
  });
}

}  // namespace focal
