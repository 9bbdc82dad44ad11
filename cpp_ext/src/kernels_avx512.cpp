// AVX-512 kernels (F, BW, VL, VNNI). Register blocking: P panels (16 rows each) times Q queries
// accumulate at once, so each loaded row vector feeds Q multiply-adds and each broadcast query
// value feeds P.
#include <immintrin.h>

#include <cstring>

#include "kernels_isa.hpp"

namespace sfcore {
namespace {

inline void emit(const ScoreOut& o, int q, int p, __m512 v) {
    _mm512_storeu_ps(o.s + q * o.ld + p * kLanes, v);
    o.hit[q * (o.ld / kLanes) + p] =
        static_cast<std::uint16_t>(_mm512_cmp_ps_mask(v, _mm512_set1_ps(o.gate[q]), _CMP_GT_OQ));
}

template <int P, int Q>
inline void block_f32(const float* const* pp, std::size_t d, const float* q0, ScoreOut o0) {
    __m512 acc[P][Q];
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) acc[p][q] = _mm512_setzero_ps();
    for (std::size_t j = 0; j < d; ++j) {
        __m512 r[P];
#pragma GCC unroll 16
        for (int p = 0; p < P; ++p) r[p] = _mm512_load_ps(pp[p] + j * kLanes);
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) {
            const __m512 b = _mm512_set1_ps(q0[q * d + j]);
#pragma GCC unroll 16
            for (int p = 0; p < P; ++p) acc[p][q] = _mm512_fmadd_ps(r[p], b, acc[p][q]);
        }
    }
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) emit(o0, q, p, acc[p][q]);
}

template <int P, int Q>
inline void block_f16(const std::uint16_t* const* pp, std::size_t d, const float* q0,
                      ScoreOut o0) {
    __m512 acc[P][Q];
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) acc[p][q] = _mm512_setzero_ps();
    for (std::size_t j = 0; j < d; ++j) {
        __m512 r[P];
#pragma GCC unroll 16
        for (int p = 0; p < P; ++p)
            r[p] = _mm512_cvtph_ps(
                _mm256_load_si256(reinterpret_cast<const __m256i*>(pp[p] + j * kLanes)));
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) {
            const __m512 b = _mm512_set1_ps(q0[q * d + j]);
#pragma GCC unroll 16
            for (int p = 0; p < P; ++p) acc[p][q] = _mm512_fmadd_ps(r[p], b, acc[p][q]);
        }
    }
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) emit(o0, q, p, acc[p][q]);
}

inline std::int32_t load4(const std::int8_t* p) {
    std::int32_t v;
    std::memcpy(&v, p, 4);
    return v;
}

template <int P, int Q>
inline void block_i8(const std::uint8_t* const* pp, const float* row_scale,
                     const std::uint32_t* pl, std::size_t d, QueriesI8 qs, ScoreOut o0) {
    const std::int8_t* q0 = qs.q;
    const float* qscale = qs.scale;
    const std::int32_t* qsum = qs.sum;
    __m512i acc[P][Q];
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p)
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) acc[p][q] = _mm512_setzero_si512();
    for (std::size_t g = 0; g < d / 4; ++g) {
        __m512i r[P];
#pragma GCC unroll 16
        for (int p = 0; p < P; ++p) r[p] = _mm512_load_si512(pp[p] + g * 64);
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) {
            const __m512i b = _mm512_set1_epi32(load4(q0 + q * d + g * 4));
#pragma GCC unroll 16
            for (int p = 0; p < P; ++p) acc[p][q] = _mm512_dpbusd_epi32(acc[p][q], r[p], b);
        }
    }
#pragma GCC unroll 16
    for (int p = 0; p < P; ++p) {
        const __m512 s = _mm512_loadu_ps(row_scale + pl[p] * kLanes);
#pragma GCC unroll 16
        for (int q = 0; q < Q; ++q) {
            const __m512i c = _mm512_sub_epi32(acc[p][q], _mm512_set1_epi32(128 * qsum[q]));
            const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(c),
                                           _mm512_mul_ps(s, _mm512_set1_ps(qscale[q])));
            emit(o0, q, p, v);
        }
    }
}

// One query: the scan is bound by memory bandwidth. Panels go one at a time as one sequential
// stream, four accumulators break the FMA dependency chain, and the next listed panel is
// prefetched line by line meanwhile (the list may skip panels when a filter is applied).
void one_f32(const float* panels, const std::uint32_t* plist, std::size_t np, std::size_t d,
             const float* q, ScoreOut o) {
    const std::size_t ps = d * kLanes;
    for (std::size_t i = 0; i < np; ++i) {
        const float* p = panels + plist[i] * ps;
        const char* nx = reinterpret_cast<const char*>(panels + plist[i + 1 < np ? i + 1 : i] * ps);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (std::size_t j = 0; j < d; j += 4) {
            _mm_prefetch(nx + j * 64, _MM_HINT_T0);
            _mm_prefetch(nx + j * 64 + 64, _MM_HINT_T0);
            _mm_prefetch(nx + j * 64 + 128, _MM_HINT_T0);
            _mm_prefetch(nx + j * 64 + 192, _MM_HINT_T0);
            a0 = _mm512_fmadd_ps(_mm512_load_ps(p + j * kLanes), _mm512_set1_ps(q[j]), a0);
            a1 = _mm512_fmadd_ps(_mm512_load_ps(p + (j + 1) * kLanes), _mm512_set1_ps(q[j + 1]), a1);
            a2 = _mm512_fmadd_ps(_mm512_load_ps(p + (j + 2) * kLanes), _mm512_set1_ps(q[j + 2]), a2);
            a3 = _mm512_fmadd_ps(_mm512_load_ps(p + (j + 3) * kLanes), _mm512_set1_ps(q[j + 3]), a3);
        }
        emit(o.at(0, i), 0, 0, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
}

void one_f16(const std::uint16_t* panels, const std::uint32_t* plist, std::size_t np,
             std::size_t d, const float* q, ScoreOut o) {
    const std::size_t ps = d * kLanes;
    for (std::size_t i = 0; i < np; ++i) {
        const std::uint16_t* p = panels + plist[i] * ps;
        const char* nx = reinterpret_cast<const char*>(panels + plist[i + 1 < np ? i + 1 : i] * ps);
        __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
        __m512 a2 = _mm512_setzero_ps(), a3 = _mm512_setzero_ps();
        for (std::size_t j = 0; j < d; j += 4) {
            _mm_prefetch(nx + j * 32, _MM_HINT_T0);
            _mm_prefetch(nx + j * 32 + 64, _MM_HINT_T0);
            auto ld = [&](std::size_t jj) {
                return _mm512_cvtph_ps(
                    _mm256_load_si256(reinterpret_cast<const __m256i*>(p + jj * kLanes)));
            };
            a0 = _mm512_fmadd_ps(ld(j), _mm512_set1_ps(q[j]), a0);
            a1 = _mm512_fmadd_ps(ld(j + 1), _mm512_set1_ps(q[j + 1]), a1);
            a2 = _mm512_fmadd_ps(ld(j + 2), _mm512_set1_ps(q[j + 2]), a2);
            a3 = _mm512_fmadd_ps(ld(j + 3), _mm512_set1_ps(q[j + 3]), a3);
        }
        emit(o.at(0, i), 0, 0, _mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    }
}

void one_i8(const std::uint8_t* panels, const float* row_scale, const std::uint32_t* plist,
            std::size_t np, std::size_t d, QueriesI8 qs, ScoreOut o) {
    const std::int8_t* q = qs.q;
    const float qscale = qs.scale[0];
    const std::int32_t qsum = qs.sum[0];
    const std::size_t ps = d * kLanes;
    const __m512i corr = _mm512_set1_epi32(128 * qsum);
    for (std::size_t i = 0; i < np; ++i) {
        const std::uint8_t* p = panels + plist[i] * ps;
        const char* nx = reinterpret_cast<const char*>(panels + plist[i + 1 < np ? i + 1 : i] * ps);
        __m512i a0 = _mm512_setzero_si512(), a1 = _mm512_setzero_si512();
        std::size_t g = 0;
        for (; g + 2 <= d / 4; g += 2) {
            _mm_prefetch(nx + g * 64, _MM_HINT_T0);
            _mm_prefetch(nx + g * 64 + 64, _MM_HINT_T0);
            a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512(p + g * 64), _mm512_set1_epi32(load4(q + g * 4)));
            a1 = _mm512_dpbusd_epi32(a1, _mm512_load_si512(p + g * 64 + 64),
                                     _mm512_set1_epi32(load4(q + g * 4 + 4)));
        }
        if (g < d / 4)
            a0 = _mm512_dpbusd_epi32(a0, _mm512_load_si512(p + g * 64), _mm512_set1_epi32(load4(q + g * 4)));
        const __m512i c = _mm512_sub_epi32(_mm512_add_epi32(a0, a1), corr);
        const __m512 v = _mm512_mul_ps(_mm512_cvtepi32_ps(c),
                                       _mm512_mul_ps(_mm512_loadu_ps(row_scale + plist[i] * kLanes),
                                                     _mm512_set1_ps(qscale)));
        emit(o.at(0, i), 0, 0, v);
    }
}

void to_f16(const float* src, std::uint16_t* dst, std::size_t n) {
    std::size_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                            _mm512_cvtps_ph(_mm512_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    for (; i < n; ++i) {
        const __m128i h = _mm_cvtps_ph(_mm_set_ss(src[i]), _MM_FROUND_TO_NEAREST_INT);
        dst[i] = static_cast<std::uint16_t>(_mm_extract_epi16(h, 0));
    }
}

// 2 panels x up to 12 queries: 24 of the 32 vector registers accumulate.
struct Avx512Shape {
    static constexpr int kQBlock = 12, kPanels = 2, kQBlockI8 = 12, kPanelsI8 = 2;
};

}  // namespace
}  // namespace sfcore

#include "kernels_driver.hpp"

namespace sfcore {

Kernels kernels_avx512() {
    using D = Driver<Avx512Shape>;
    return Kernels{"avx512", D::f32, D::f16, D::i8, to_f16};
}

}  // namespace sfcore
