// CPU feature detection and the FOCAL_NATIVE_ISA cap (see isa.hpp).
#include "isa.hpp"

#include <cstdlib>
#include <cstring>

namespace focal {

namespace {

Isa detect_cpu() {
#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__))
  __builtin_cpu_init();
  if (!(__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))) return Isa::generic;
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("popcnt")) return Isa::avx512;
  return Isa::avx2;
#else
  return Isa::generic;
#endif
}

Isa detect_active() {
  const Isa cpu = cpu_isa();
  const char* cap = std::getenv("FOCAL_NATIVE_ISA");
  if (cap && std::strcmp(cap, "generic") == 0) return Isa::generic;
  if (cap && std::strcmp(cap, "avx2") == 0 && cpu > Isa::avx2) return Isa::avx2;
  return cpu;
}

}  // namespace

Isa cpu_isa() {
  static const Isa isa = detect_cpu();
  return isa;
}

Isa active_isa() {
  static const Isa isa = detect_active();
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::avx512: return "avx512";
    case Isa::avx2: return "avx2";
    default: return "generic";
  }
}

}  // namespace focal
