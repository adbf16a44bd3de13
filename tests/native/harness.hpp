// A minimal test harness for the native core's C++ tests: no framework to
// download. FTEST(group, name) registers a test; CHECK(cond, message) fails
// it with the message (a stream expression: CHECK(a == b, "n " << n)), and
// SKIP(reason) ends it as skipped. The runner (test_main.cpp) runs the
// groups named on its command line, or all of them.
#pragma once

#include <cstdint>
#include <random>
#include <sstream>
#include <string>
#include <vector>

namespace ftest {

struct Case {
  const char* group;
  const char* name;
  void (*fn)();
};

std::vector<Case>& registry();

struct Register {
  Register(const char* group, const char* name, void (*fn)()) { registry().push_back({group, name, fn}); }
};

struct Failure {
  std::string what;
};
struct Skipped {
  std::string why;
};

// Checks made so far (the runner reports them per test: a test that checks
// nothing is reported as a failure).
long long& checks();

[[noreturn]] void fail(const char* file, int line, const std::string& message);

// A seeded generator per test, so that a failure repeats.
inline std::mt19937_64 rng(std::uint64_t seed) { return std::mt19937_64(seed * 0x9E3779B97F4A7C15ull + 1); }

}  // namespace ftest

#define FTEST(group, name)                                                                      \
  static void ftest_##group##_##name();                                                         \
  static const ftest::Register ftest_reg_##group##_##name(#group, #name, ftest_##group##_##name); \
  static void ftest_##group##_##name()

#define CHECK(cond, message)                                                 \
  do {                                                                       \
    ++ftest::checks();                                                       \
    if (!(cond)) {                                                           \
      std::ostringstream ftest_os_;                                          \
      ftest_os_ << "CHECK(" #cond ") failed: " << message;                   \
      ftest::fail(__FILE__, __LINE__, ftest_os_.str());                      \
    }                                                                        \
  } while (0)

#define SKIP(reason)                    \
  do {                                  \
    std::ostringstream ftest_os_;       \
    ftest_os_ << reason;                \
    throw ftest::Skipped{ftest_os_.str()}; \
  } while (0)
