// Thread team: OpenMP where the build found it, std::thread otherwise.
#include "common.hpp"

#include <cstdlib>

#ifdef __linux__
#include <sched.h>
#endif

#ifdef FOCAL_HAVE_OPENMP
#include <omp.h>
#endif

namespace focal {

bool built_with_openmp() {
#ifdef FOCAL_HAVE_OPENMP
  return true;
#else
  return false;
#endif
}

int resolve_threads(int requested) {
  if (requested > 0) return requested;
  if (const char* env = std::getenv("FOCAL_NATIVE_THREADS")) {
    const int v = std::atoi(env);
    if (v > 0) return v;
  }
#ifdef FOCAL_HAVE_OPENMP
  return std::max(1, omp_get_max_threads());
#else
#ifdef __linux__
  // The CPUs this process may run on (taskset, container cpusets), not all online ones.
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof(set), &set) == 0) return std::max(1, CPU_COUNT(&set));
#endif
  return std::max(1u, std::thread::hardware_concurrency());
#endif
}

void run_team(int nthreads, const std::function<void(int)>& setup,
              const std::function<void(int, int)>& fn) {
  nthreads = std::max(1, nthreads);
  if (nthreads == 1) {
    setup(1);
    fn(0, 1);
    return;
  }
#ifdef FOCAL_HAVE_OPENMP
  int team = 1;
#pragma omp parallel num_threads(nthreads)
  {
#pragma omp single
    {
      team = omp_get_num_threads();
      setup(team);
    }  // implicit barrier: setup is visible to every thread
    fn(omp_get_thread_num(), team);
  }
#else
  setup(nthreads);
  std::vector<std::thread> workers;
  workers.reserve(nthreads - 1);
  for (int t = 1; t < nthreads; ++t) workers.emplace_back([&fn, t, nthreads] { fn(t, nthreads); });
  fn(0, nthreads);
  for (auto& w : workers) w.join();
#endif
}

}  // namespace focal
