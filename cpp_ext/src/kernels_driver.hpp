// The query driver shared by the SIMD kernel sets: splits a batch of queries into register
// blocks of compile-time size, walks the listed panels several at a time for each block, and
// sends a lone query to the bandwidth-bound one-query path. An ISA supplies only its blocks.
//
// Include it at the end of a per-ISA translation unit, after that unit has defined, in
// namespace sfcore's unnamed namespace:
//   template <int P, int Q> block_f32(const float* const* pp, size_t d, const float* q0, ScoreOut)
//   template <int P, int Q> block_f16(const uint16_t* const* pp, ...the same)
//   template <int P, int Q> block_i8(const uint8_t* const* pp, const float* row_scale,
//                                    const uint32_t* pl, size_t d, QueriesI8, ScoreOut)
//   one_f32, one_f16, one_i8: the same arguments as the Kernels entries, for one query;
// then take its entries from Driver<Shape>, where Shape gives kQBlock and kPanels (queries x
// panels per float block) and kQBlockI8 and kPanelsI8.
//
// Everything here has internal linkage (the unnamed namespace), so each unit compiles its own
// copy with its own target flags: the linker can never merge an AVX-512 instantiation into the
// AVX2 path.
#pragma once
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "kernels_isa.hpp"

namespace sfcore {
namespace {

// Calls f(std::integral_constant<int, n>) for 1 <= n <= Max: turns a run-time count into the
// compile-time block size the register-blocked kernels need.
template <int Max, typename F>
inline void with_count(std::size_t n, F&& f) {
    if constexpr (Max > 0) {
        if (n == static_cast<std::size_t>(Max))
            f(std::integral_constant<int, Max>{});
        else
            with_count<Max - 1>(n, f);
    }
}

// Queries [0, nq) in blocks of QB, the last one shorter: block(q, std::integral_constant<int, Q>).
template <int QB, typename Block>
inline void for_query_blocks(std::size_t nq, Block&& block) {
    for (std::size_t q = 0; q < nq; q += QB) {
        const std::size_t qn = nq - q < static_cast<std::size_t>(QB) ? nq - q : QB;
        with_count<QB>(qn, [&](auto Q) { block(q, Q); });
    }
}

// The listed panels P at a time, then one at a time: visit(std::integral_constant<int, P>,
// panel pointers, their list entries, the output of the first).
template <int P, typename T, typename Visit>
inline void for_panel_groups(const T* panels, const std::uint32_t* plist, std::size_t np,
                             std::size_t d, ScoreOut o, Visit&& visit) {
    const std::size_t ps = d * kLanes;
    std::size_t i = 0;
    for (; i + P <= np; i += P) {
        const T* pp[P];
        for (int p = 0; p < P; ++p) pp[p] = panels + plist[i + p] * ps;
        visit(std::integral_constant<int, P>{}, pp, plist + i, o.at(0, i));
    }
    for (; i < np; ++i) {
        const T* pp[1] = {panels + plist[i] * ps};
        visit(std::integral_constant<int, 1>{}, pp, plist + i, o.at(0, i));
    }
}

inline QueriesI8 queries_from(const QueriesI8& qs, std::size_t q, std::size_t d) {
    return QueriesI8{qs.q + q * d, qs.qw + q * d, qs.scale + q, qs.sum + q};
}

// The kernel entry points of one ISA (the Kernels table's f32, f16 and i8).
template <class Shape>
struct Driver {
    static void f32(const float* panels, const std::uint32_t* plist, std::size_t np, std::size_t d,
                    const float* queries, std::size_t nq, ScoreOut out) {
        if (nq == 1) return one_f32(panels, plist, np, d, queries, out);
        for_query_blocks<Shape::kQBlock>(nq, [&](std::size_t q, auto Q) {
            const float* q0 = queries + q * d;
            auto visit = [&](auto P, const float* const* pp, const std::uint32_t*, ScoreOut o) {
                block_f32<decltype(P)::value, decltype(Q)::value>(pp, d, q0, o);
            };
            for_panel_groups<Shape::kPanels>(panels, plist, np, d, out.at(q, 0), visit);
        });
    }

    static void f16(const std::uint16_t* panels, const std::uint32_t* plist, std::size_t np,
                    std::size_t d, const float* queries, std::size_t nq, ScoreOut out) {
        if (nq == 1) return one_f16(panels, plist, np, d, queries, out);
        for_query_blocks<Shape::kQBlock>(nq, [&](std::size_t q, auto Q) {
            const float* q0 = queries + q * d;
            auto visit = [&](auto P, const std::uint16_t* const* pp, const std::uint32_t*,
                             ScoreOut o) {
                block_f16<decltype(P)::value, decltype(Q)::value>(pp, d, q0, o);
            };
            for_panel_groups<Shape::kPanels>(panels, plist, np, d, out.at(q, 0), visit);
        });
    }

    static void i8(const std::uint8_t* panels, const float* row_scale, const std::uint32_t* plist,
                   std::size_t np, std::size_t d, QueriesI8 qs, std::size_t nq, ScoreOut out) {
        if (nq == 1) return one_i8(panels, row_scale, plist, np, d, qs, out);
        for_query_blocks<Shape::kQBlockI8>(nq, [&](std::size_t q, auto Q) {
            const QueriesI8 q0 = queries_from(qs, q, d);
            auto visit = [&](auto P, const std::uint8_t* const* pp, const std::uint32_t* pl,
                             ScoreOut o) {
                block_i8<decltype(P)::value, decltype(Q)::value>(pp, row_scale, pl, d, q0, o);
            };
            for_panel_groups<Shape::kPanelsI8>(panels, plist, np, d, out.at(q, 0), visit);
        });
    }
};

}  // namespace
}  // namespace sfcore
