// Runner of the native core's C++ tests (harness.hpp).
//
//   focal_native_tests [group ...]   run those groups (all without arguments)
//
// Prints one line per test and a summary; exits 1 when a test failed or a
// named group has no tests, 0 otherwise.
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <set>
#include <string>

#include "gemm.hpp"
#include "harness.hpp"
#include "isa.hpp"

namespace ftest {

std::vector<Case>& registry() {
  static std::vector<Case> cases;
  return cases;
}

long long& checks() {
  static long long n = 0;
  return n;
}

void fail(const char* file, int line, const std::string& message) {
  throw Failure{std::string(file) + ":" + std::to_string(line) + ": " + message};
}

}  // namespace ftest

int main(int argc, char** argv) {
  std::set<std::string> groups(argv + 1, argv + argc);
  const char* cap = std::getenv("FOCAL_NATIVE_ISA");
  std::printf("focal native tests: cpu isa %s, active isa %s (FOCAL_NATIVE_ISA=%s), inner products %s\n",
              focal::isa_name(focal::cpu_isa()), focal::isa_name(focal::active_isa()), cap ? cap : "",
              focal::gemm_isa());
  int passed = 0, failed = 0, skipped = 0;
  std::set<std::string> seen;
  for (const ftest::Case& c : ftest::registry()) {
    if (!groups.empty() && !groups.count(c.group)) continue;
    seen.insert(c.group);
    ftest::checks() = 0;
    try {
      c.fn();
      if (ftest::checks() == 0) throw ftest::Failure{"the test checked nothing"};
      std::printf("[  OK  ] %s.%s (%lld checks)\n", c.group, c.name, ftest::checks());
      ++passed;
    } catch (const ftest::Skipped& s) {
      std::printf("[ SKIP ] %s.%s: %s\n", c.group, c.name, s.why.c_str());
      ++skipped;
    } catch (const ftest::Failure& f) {
      std::printf("[ FAIL ] %s.%s: %s\n", c.group, c.name, f.what.c_str());
      ++failed;
    } catch (const std::exception& e) {
      std::printf("[ FAIL ] %s.%s: exception: %s\n", c.group, c.name, e.what());
      ++failed;
    }
    std::fflush(stdout);
  }
  for (const std::string& g : groups)
    if (!seen.count(g)) {
      std::printf("[ FAIL ] no tests in group '%s'\n", g.c_str());
      ++failed;
    }
  std::printf("focal native tests: %d passed, %d failed, %d skipped\n", passed, failed, skipped);
  return failed ? 1 : 0;
}
