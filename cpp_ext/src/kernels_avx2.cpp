// AVX2 + FMA + F16C kernels. A 16-row panel is two 8-lane vectors; P panels times Q queries are
// blocked in registers (16 vector registers: at most 12 accumulators).
#include <immintrin.h>

#include <cstring>

#include "kernels_isa.hpp"

namespace sfcore {
namespace {

inline void emit(const ScoreOut& o, int q, int p, __m256 lo, __m256 hi) {
    float* dst = o.s + q * o.ld + p * kLanes;
    _mm256_storeu_ps(dst, lo);
    _mm256_storeu_ps(dst + 8, hi);
    const __m256 g = _mm256_set1_ps(o.gate[q]);
    const int mlo = _mm256_movemask_ps(_mm256_cmp_ps(lo, g, _CMP_GT_OQ));
    const int mhi = _mm256_movemask_ps(_mm256_cmp_ps(hi, g, _CMP_GT_OQ));
    o.hit[q * (o.ld / kLanes) + p] = static_cast<std::uint16_t>(mlo | (mhi << 8));
}

template <int P, int Q>
inline void block_f32(const float* const* pp, std::size_t d, const float* q0, ScoreOut o0) {
    __m256 acc[P][Q][2];
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) acc[p][q][0] = acc[p][q][1] = _mm256_setzero_ps();
    for (std::size_t j = 0; j < d; ++j) {
        __m256 r[P][2];
#pragma GCC unroll 16
        for (int p = 0; p < P; ++p) {
            r[p][0] = _mm256_load_ps(pp[p] + j * kLanes);
            r[p][1] = _mm256_load_ps(pp[p] + j * kLanes + 8);
        }
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) {
            const __m256 b = _mm256_broadcast_ss(q0 + q * d + j);
#pragma GCC unroll 16
            for (int p = 0; p < P; ++p) {
                acc[p][q][0] = _mm256_fmadd_ps(r[p][0], b, acc[p][q][0]);
                acc[p][q][1] = _mm256_fmadd_ps(r[p][1], b, acc[p][q][1]);
            }
        }
    }
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) {
            emit(o0, q, p, acc[p][q][0], acc[p][q][1]);
        }
}

template <int P, int Q>
inline void block_f16(const std::uint16_t* const* pp, std::size_t d, const float* q0, ScoreOut o0) {
    __m256 acc[P][Q][2];
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) acc[p][q][0] = acc[p][q][1] = _mm256_setzero_ps();
    for (std::size_t j = 0; j < d; ++j) {
        __m256 r[P][2];
#pragma GCC unroll 16
        for (int p = 0; p < P; ++p) {
            const __m128i* src = reinterpret_cast<const __m128i*>(pp[p] + j * kLanes);
            r[p][0] = _mm256_cvtph_ps(_mm_load_si128(src));
            r[p][1] = _mm256_cvtph_ps(_mm_load_si128(src + 1));
        }
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) {
            const __m256 b = _mm256_broadcast_ss(q0 + q * d + j);
#pragma GCC unroll 16
            for (int p = 0; p < P; ++p) {
                acc[p][q][0] = _mm256_fmadd_ps(r[p][0], b, acc[p][q][0]);
                acc[p][q][1] = _mm256_fmadd_ps(r[p][1], b, acc[p][q][1]);
            }
        }
    }
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) {
            emit(o0, q, p, acc[p][q][0], acc[p][q][1]);
        }
}

// int8 without VNNI: rows (uint8, value + 128) widen to int16 and multiply-add against the
// widened query, pairs summed into int32 (exact, no saturation). Each 16-byte load holds 4 rows
// x 4 dimensions; four accumulators cover a panel and a final horizontal add folds the pairs.
template <int P, int Q>
inline void block_i8(const std::uint8_t* const* pp, const float* row_scale,
                     const std::uint32_t* pl, std::size_t d, QueriesI8 qs, ScoreOut o0) {
    static_assert(P == 1, "the AVX2 int8 block takes one panel (its registers hold 4 vectors)");
    const std::uint8_t* p = pp[0];
    const float* rs = row_scale + pl[0] * kLanes;
    const std::int16_t* qw0 = qs.qw;
    const float* qscale = qs.scale;
    const std::int32_t* qsum = qs.sum;
    __m256i acc[Q][4];
#pragma GCC unroll 16
    for (int q = 0; q < Q; ++q)
        for (int s = 0; s < 4; ++s) acc[q][s] = _mm256_setzero_si256();
    for (std::size_t g = 0; g < d / 4; ++g) {
        __m256i r[4];
#pragma GCC unroll 4
        for (int s = 0; s < 4; ++s)
            r[s] = _mm256_cvtepu8_epi16(
                _mm_load_si128(reinterpret_cast<const __m128i*>(p + g * 64 + s * 16)));
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) {
            long long w;
            std::memcpy(&w, qw0 + q * d + g * 4, 8);
            const __m256i b = _mm256_set1_epi64x(w);
#pragma GCC unroll 4
            for (int s = 0; s < 4; ++s)
                acc[q][s] = _mm256_add_epi32(acc[q][s], _mm256_madd_epi16(r[s], b));
        }
    }
    const __m256 s0 = _mm256_loadu_ps(rs);
    const __m256 s1 = _mm256_loadu_ps(rs + 8);
#pragma GCC unroll 16
    for (int q = 0; q < Q; ++q) {
        const __m256i corr = _mm256_set1_epi32(128 * qsum[q]);
        const __m256 qs = _mm256_set1_ps(qscale[q]);
        // hadd gives rows (0,1,4,5 | 2,3,6,7); the 64-bit permute puts them in order.
        const __m256i lo = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[q][0], acc[q][1]), 0xD8);
        const __m256i hi = _mm256_permute4x64_epi64(_mm256_hadd_epi32(acc[q][2], acc[q][3]), 0xD8);
        const __m256 vlo = _mm256_cvtepi32_ps(_mm256_sub_epi32(lo, corr));
        const __m256 vhi = _mm256_cvtepi32_ps(_mm256_sub_epi32(hi, corr));
        emit(o0, q, 0, _mm256_mul_ps(vlo, _mm256_mul_ps(s0, qs)), _mm256_mul_ps(vhi, _mm256_mul_ps(s1, qs)));
    }
}

// One query: bandwidth bound. One panel at a time as a single sequential stream, four
// accumulator pairs against the FMA latency, the next listed panel prefetched meanwhile.
template <typename LoadRow>
inline void one_query(std::size_t np, std::size_t d, const float* q, ScoreOut o,
                      const std::uint32_t* plist, LoadRow&& load_row, const char* base,
                      std::size_t panel_bytes, std::size_t bytes_per_dim) {
    for (std::size_t i = 0; i < np; ++i) {
        const char* nx = base + plist[i + 1 < np ? i + 1 : i] * panel_bytes;
        __m256 lo[4], hi[4];
        for (int a = 0; a < 4; ++a) lo[a] = hi[a] = _mm256_setzero_ps();
        for (std::size_t j = 0; j < d; j += 4) {
            for (std::size_t b = 0; b < 4 * bytes_per_dim; b += 64) _mm_prefetch(nx + j * bytes_per_dim + b, _MM_HINT_T0);
#pragma GCC unroll 4
            for (int a = 0; a < 4; ++a) {
                __m256 r0, r1;
                load_row(plist[i], j + a, r0, r1);
                const __m256 b = _mm256_broadcast_ss(q + j + a);
                lo[a] = _mm256_fmadd_ps(r0, b, lo[a]);
                hi[a] = _mm256_fmadd_ps(r1, b, hi[a]);
            }
        }
        emit(o.at(0, i), 0, 0, _mm256_add_ps(_mm256_add_ps(lo[0], lo[1]), _mm256_add_ps(lo[2], lo[3])),
             _mm256_add_ps(_mm256_add_ps(hi[0], hi[1]), _mm256_add_ps(hi[2], hi[3])));
    }
}

void one_f32(const float* panels, const std::uint32_t* plist, std::size_t np, std::size_t d,
             const float* q, ScoreOut o) {
    const std::size_t ps = d * kLanes;
    one_query(np, d, q, o, plist,
              [&](std::size_t pi, std::size_t j, __m256& r0, __m256& r1) {
                  const float* p = panels + pi * ps + j * kLanes;
                  r0 = _mm256_load_ps(p);
                  r1 = _mm256_load_ps(p + 8);
              },
              reinterpret_cast<const char*>(panels), ps * 4, kLanes * 4);
}

void one_f16(const std::uint16_t* panels, const std::uint32_t* plist, std::size_t np,
             std::size_t d, const float* q, ScoreOut o) {
    const std::size_t ps = d * kLanes;
    one_query(np, d, q, o, plist,
              [&](std::size_t pi, std::size_t j, __m256& r0, __m256& r1) {
                  const __m128i* p = reinterpret_cast<const __m128i*>(panels + pi * ps + j * kLanes);
                  r0 = _mm256_cvtph_ps(_mm_load_si128(p));
                  r1 = _mm256_cvtph_ps(_mm_load_si128(p + 1));
              },
              reinterpret_cast<const char*>(panels), ps * 2, kLanes * 2);
}

// int8, one query: no path faster than a block of one query.
void one_i8(const std::uint8_t* panels, const float* row_scale, const std::uint32_t* plist,
            std::size_t np, std::size_t d, QueriesI8 qs, ScoreOut o) {
    for (std::size_t i = 0; i < np; ++i) {
        const std::uint8_t* pp[1] = {panels + plist[i] * d * kLanes};
        block_i8<1, 1>(pp, row_scale, plist + i, d, qs, o.at(0, i));
    }
}

void to_f16(const float* src, std::uint16_t* dst, std::size_t n) {
    std::size_t i = 0;
    for (; i + 8 <= n; i += 8)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i),
                         _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; ++i) {
        const __m128i h = _mm_cvtps_ph(_mm_set_ss(src[i]), _MM_FROUND_TO_NEAREST_INT);
        dst[i] = static_cast<std::uint16_t>(_mm_extract_epi16(h, 0));
    }
}

// A 16-row panel takes two of the 16 vector registers per query: one panel at a time, up to 6
// queries (12 accumulators); int8 widens a panel to four registers, so 3 queries.
struct Avx2Shape {
    static constexpr int kQBlock = 6, kPanels = 1, kQBlockI8 = 3, kPanelsI8 = 1;
};

}  // namespace
}  // namespace sfcore

#include "kernels_driver.hpp"

namespace sfcore {

Kernels kernels_avx2() {
    using D = Driver<Avx2Shape>;
    return Kernels{"avx2", D::f32, D::f16, D::i8, to_f16};
}

}  // namespace sfcore
