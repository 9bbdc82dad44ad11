// AVX2 + FMA + F16C kernels. A 16-row panel is two 8-lane vectors; P panels times Q queries are
// blocked in registers (16 vector registers: at most 12 accumulators).
#include <immintrin.h>

#include <cstring>

#include "kernels_isa.hpp"

namespace sfcore {
namespace {

constexpr int kQBlock = 6;

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
template <int Q>
inline void block_i8(const std::uint8_t* p, const float* rs, std::size_t d, const std::int16_t* qw0,
                     const float* qscale, const std::int32_t* qsum, ScoreOut o0) {
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

template <int P, int Q>
void group_f32(const float* panels, const std::uint32_t* plist, std::size_t np, std::size_t d,
               const float* q0, ScoreOut o0) {
    const std::size_t ps = d * kLanes;
    std::size_t i = 0;
    for (; i + P <= np; i += P) {
        const float* pp[P];
        for (int p = 0; p < P; ++p) pp[p] = panels + plist[i + p] * ps;
        block_f32<P, Q>(pp, d, q0, o0.at(0, i));
    }
    for (; i < np; ++i) {
        const float* pp[1] = {panels + plist[i] * ps};
        block_f32<1, Q>(pp, d, q0, o0.at(0, i));
    }
}

template <int P, int Q>
void group_f16(const std::uint16_t* panels, const std::uint32_t* plist, std::size_t np,
               std::size_t d, const float* q0, ScoreOut o0) {
    const std::size_t ps = d * kLanes;
    std::size_t i = 0;
    for (; i + P <= np; i += P) {
        const std::uint16_t* pp[P];
        for (int p = 0; p < P; ++p) pp[p] = panels + plist[i + p] * ps;
        block_f16<P, Q>(pp, d, q0, o0.at(0, i));
    }
    for (; i < np; ++i) {
        const std::uint16_t* pp[1] = {panels + plist[i] * ps};
        block_f16<1, Q>(pp, d, q0, o0.at(0, i));
    }
}

template <int Q>
void group_i8(const std::uint8_t* panels, const float* row_scale, const std::uint32_t* plist,
              std::size_t np, std::size_t d, const std::int16_t* qw0, const float* qscale,
              const std::int32_t* qsum, ScoreOut o0) {
    for (std::size_t i = 0; i < np; ++i)
        block_i8<Q>(panels + plist[i] * d * kLanes, row_scale + plist[i] * kLanes, d, qw0, qscale,
                    qsum, o0.at(0, i));
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

#define SF_QCASES(X) X(1) X(2) X(3) X(4) X(5) X(6)

void f32_scores(const float* panels, const std::uint32_t* plist, std::size_t np, std::size_t d,
                const float* queries, std::size_t nq, ScoreOut out) {
    for (std::size_t q = 0; q < nq; q += kQBlock) {
        const std::size_t qn = nq - q < static_cast<std::size_t>(kQBlock) ? nq - q : kQBlock;
        const float* q0 = queries + q * d;
        const ScoreOut o0 = out.at(q, 0);
        if (nq == 1) {
            one_f32(panels, plist, np, d, q0, o0);
            continue;
        }
        switch (qn) {
#define SF_CASE(N) \
    case N: group_f32<1, N>(panels, plist, np, d, q0, o0); break;
            SF_QCASES(SF_CASE)
#undef SF_CASE
            default: break;
        }
    }
}

void f16_scores(const std::uint16_t* panels, const std::uint32_t* plist, std::size_t np,
                std::size_t d, const float* queries, std::size_t nq, ScoreOut out) {
    for (std::size_t q = 0; q < nq; q += kQBlock) {
        const std::size_t qn = nq - q < static_cast<std::size_t>(kQBlock) ? nq - q : kQBlock;
        const float* q0 = queries + q * d;
        const ScoreOut o0 = out.at(q, 0);
        if (nq == 1) {
            one_f16(panels, plist, np, d, q0, o0);
            continue;
        }
        switch (qn) {
#define SF_CASE(N) \
    case N: group_f16<1, N>(panels, plist, np, d, q0, o0); break;
            SF_QCASES(SF_CASE)
#undef SF_CASE
            default: break;
        }
    }
}

void i8_scores(const std::uint8_t* panels, const float* row_scale, const std::uint32_t* plist,
               std::size_t np, std::size_t d, QueriesI8 qs, std::size_t nq, ScoreOut out) {
    constexpr std::size_t kQ = 3;
    for (std::size_t q = 0; q < nq; q += kQ) {
        const std::size_t qn = nq - q < kQ ? nq - q : kQ;
        const std::int16_t* qw0 = qs.qw + q * d;
        const ScoreOut o0 = out.at(q, 0);
        if (qn == 3)
            group_i8<3>(panels, row_scale, plist, np, d, qw0, qs.scale + q, qs.sum + q, o0);
        else if (qn == 2)
            group_i8<2>(panels, row_scale, plist, np, d, qw0, qs.scale + q, qs.sum + q, o0);
        else
            group_i8<1>(panels, row_scale, plist, np, d, qw0, qs.scale + q, qs.sum + q, o0);
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

}  // namespace

Kernels kernels_avx2() { return Kernels{"avx2", f32_scores, f16_scores, i8_scores, to_f16}; }

}  // namespace sfcore
