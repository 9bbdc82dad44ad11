// Per-ISA scoring kernels over the panel layout. Each ISA lives in its own translation unit,
// compiled with its own target flags; the units hold only plain C-style code so that no inline
// library template compiled for a wider ISA can be picked by the linker for a narrower path.
//
// Panel layout: rows are grouped in panels of 16 (kLanes). A panel stores, for each dimension,
// the 16 rows' values side by side, so one vector load yields one dimension of 16 rows and a
// query dimension is broadcast: no horizontal reduction is ever needed.
//   float32: panel[j * 16 + lane]                     (d * 16 floats)
//   float16: panel[j * 16 + lane]                     (d * 16 halves, IEEE binary16 bits)
//   int8:    panel[(j / 4) * 64 + lane * 4 + j % 4]   (d * 16 bytes, value + 128 as uint8)
#pragma once
#include <cstddef>
#include <cstdint>

namespace sfcore {

constexpr std::size_t kLanes = 16;

// Queries for the int8 kernels: quantized to int8 with one scale each; `sum` is the sum of the
// quantized components, used to undo the +128 offset of the stored rows.
struct QueriesI8 {
    const std::int8_t* q;    // nq x d
    const std::int16_t* qw;  // nq x d, the same values widened (AVX2 path)
    const float* scale;      // nq
    const std::int32_t* sum; // nq
};

// Where a kernel writes: for query q and the i-th listed panel, 16 scores at
// s[q * ld + i * 16] and at hit[q * (ld / 16) + i] the 16-bit mask of those scores strictly above
// gate[q], so that top-k selection only looks at the rare panels with a hit.
struct ScoreOut {
    float* s;
    std::uint16_t* hit;
    const float* gate;
    std::size_t ld;
    ScoreOut at(std::size_t q, std::size_t i) const {
        return ScoreOut{s + q * ld + i * 16, hit + q * (ld / 16) + i, gate + q, ld};
    }
};

struct Kernels {
    const char* name;
    void (*f32)(const float* panels, const std::uint32_t* plist, std::size_t np, std::size_t d,
                const float* queries, std::size_t nq, ScoreOut out);
    void (*f16)(const std::uint16_t* panels, const std::uint32_t* plist, std::size_t np,
                std::size_t d, const float* queries, std::size_t nq, ScoreOut out);
    void (*i8)(const std::uint8_t* panels, const float* row_scale, const std::uint32_t* plist,
               std::size_t np, std::size_t d, QueriesI8 queries, std::size_t nq, ScoreOut out);
    void (*to_f16)(const float* src, std::uint16_t* dst, std::size_t n);
};

Kernels kernels_scalar();
#if defined(SFCORE_X86)
Kernels kernels_avx2();
Kernels kernels_avx512();
#endif

}  // namespace sfcore
