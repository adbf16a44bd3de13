// Kernel families of the native core and the one choice among them. Each
// kernel family exposes a table of function pointers per Isa (gemm.hpp,
// select.hpp, dmatrix.hpp); a caller picks its tables once, at the start of
// a call, and the hot loops call through them without asking again.
#pragma once

namespace focal {

// generic: portable C++ (the compiler's vector extensions: SSE2 on x86-64,
// NEON on aarch64); avx2: x86-64 AVX2 + FMA; avx512: AVX-512F (with AVX2,
// FMA and POPCNT). Ordered: a CPU that runs one family runs those below it.
enum class Isa : int { generic = 0, avx2 = 1, avx512 = 2 };

// The best family this CPU runs, whatever FOCAL_NATIVE_ISA says; generic
// off x86-64.
Isa cpu_isa();

// The family the core uses: cpu_isa() capped by FOCAL_NATIVE_ISA ("generic"
// or "avx2"; other values are ignored), read once per process.
Isa active_isa();

// "avx512", "avx2" or "generic".
const char* isa_name(Isa isa);

}  // namespace focal
