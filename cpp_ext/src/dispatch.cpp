#include "dispatch.hpp"

#include <atomic>
#include <stdexcept>

namespace sfcore {
namespace {

enum Level : int { kScalar = 0, kAvx2 = 1, kAvx512 = 2 };

int widest_supported() {
#if defined(SFCORE_X86)
    __builtin_cpu_init();
    // The AVX-512 set needs VNNI for its int8 kernel; CPUs with AVX-512 but no VNNI use AVX2.
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
        __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni"))
        return kAvx512;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return kAvx2;
#endif
    return kScalar;
}

const Kernels* table() {
    static const Kernels tables[3] = {
        kernels_scalar(),
#if defined(SFCORE_X86)
        kernels_avx2(),
        kernels_avx512(),
#else
        kernels_scalar(),
        kernels_scalar(),
#endif
    };
    return tables;
}

std::atomic<int>& chosen() {
    static std::atomic<int> level{widest_supported()};
    return level;
}

const char* const kNames[3] = {"scalar", "avx2", "avx512"};

}  // namespace

std::vector<std::string> available_isas() {
    std::vector<std::string> out;
    const int w = widest_supported();
    for (int i = 0; i <= w; ++i) out.emplace_back(kNames[i]);
    return out;
}

void set_isa(const std::string& name) {
    const int w = widest_supported();
    if (name == "auto") {
        chosen().store(w);
        return;
    }
    for (int i = 0; i < 3; ++i) {
        if (name == kNames[i]) {
            if (i > w)
                throw std::invalid_argument("this CPU cannot run the '" + name +
                                            "' kernels; available: " +
                                            std::string(kNames[0]) + (w >= 1 ? ", avx2" : "") +
                                            (w >= 2 ? ", avx512" : ""));
            chosen().store(i);
            return;
        }
    }
    throw std::invalid_argument("unknown kernel set '" + name +
                                "'; use 'auto', 'scalar', 'avx2' or 'avx512'");
}

const Kernels& active_kernels() { return table()[chosen().load(std::memory_order_relaxed)]; }

}  // namespace sfcore
