// Portable kernels: any CPU, any compiler. Plain loops over the 16 lanes, which compilers
// vectorise with the baseline instruction set.
#include <cstring>

#include "kernels_isa.hpp"

namespace sfcore {
namespace {

float half_to_float(std::uint16_t h) {
    const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
    std::uint32_t exp = (h >> 10) & 0x1fu;
    std::uint32_t man = h & 0x3ffu;
    std::uint32_t bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else {  // subnormal half: normalise
            exp = 127 - 15 + 1;
            while ((man & 0x400u) == 0) {
                man <<= 1;
                --exp;
            }
            bits = sign | (exp << 23) | ((man & 0x3ffu) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    std::memcpy(&f, &bits, 4);
    return f;
}

std::uint16_t float_to_half(float f) {
    // Round to nearest even, as the F16C instructions do.
    std::uint32_t x;
    std::memcpy(&x, &f, 4);
    const std::uint16_t sign = static_cast<std::uint16_t>((x >> 16) & 0x8000u);
    x &= 0x7fffffffu;
    if (x >= 0x7f800000u) return sign | 0x7c00u | (x > 0x7f800000u ? 0x200u : 0u);
    if (x >= 0x477ff000u) return sign | 0x7c00u;  // overflows to infinity
    if (x < 0x38800000u) {                         // subnormal or zero half
        if (x < 0x33000000u) return sign;
        const std::uint32_t e = x >> 23;
        std::uint32_t m = (x & 0x7fffffu) | 0x800000u;
        const std::uint32_t shift = 126 - e;  // 14..24
        std::uint32_t r = m >> shift;
        const std::uint32_t rem = m & ((1u << shift) - 1);
        const std::uint32_t halfway = 1u << (shift - 1);
        if (rem > halfway || (rem == halfway && (r & 1u))) ++r;
        return sign | static_cast<std::uint16_t>(r);
    }
    std::uint32_t r = x - 0x38000000u;  // rebias exponent
    const std::uint32_t rem = r & 0x1fffu;
    r >>= 13;
    if (rem > 0x1000u || (rem == 0x1000u && (r & 1u))) ++r;
    return sign | static_cast<std::uint16_t>(r);
}

void emit(const ScoreOut& o, const float* v) {
    std::memcpy(o.s, v, kLanes * sizeof(float));
    unsigned m = 0;
    for (std::size_t l = 0; l < kLanes; ++l) m |= static_cast<unsigned>(v[l] > o.gate[0]) << l;
    *o.hit = static_cast<std::uint16_t>(m);
}

void f32_scores(const float* panels, const std::uint32_t* plist, std::size_t np, std::size_t d,
                const float* queries, std::size_t nq, ScoreOut out) {
    for (std::size_t i = 0; i < np; ++i) {
        const float* p = panels + static_cast<std::size_t>(plist[i]) * d * kLanes;
        for (std::size_t q = 0; q < nq; ++q) {
            const float* qv = queries + q * d;
            float acc[kLanes] = {};
            for (std::size_t j = 0; j < d; ++j) {
                const float b = qv[j];
                const float* r = p + j * kLanes;
                for (std::size_t l = 0; l < kLanes; ++l) acc[l] += r[l] * b;
            }
            emit(out.at(q, i), acc);
        }
    }
}

void f16_scores(const std::uint16_t* panels, const std::uint32_t* plist, std::size_t np,
                std::size_t d, const float* queries, std::size_t nq, ScoreOut out) {
    float buf[kLanes];
    for (std::size_t i = 0; i < np; ++i) {
        const std::uint16_t* p = panels + static_cast<std::size_t>(plist[i]) * d * kLanes;
        for (std::size_t q = 0; q < nq; ++q) {
            const float* qv = queries + q * d;
            float acc[kLanes] = {};
            for (std::size_t j = 0; j < d; ++j) {
                for (std::size_t l = 0; l < kLanes; ++l) buf[l] = half_to_float(p[j * kLanes + l]);
                const float b = qv[j];
                for (std::size_t l = 0; l < kLanes; ++l) acc[l] += buf[l] * b;
            }
            emit(out.at(q, i), acc);
        }
    }
}

void i8_scores(const std::uint8_t* panels, const float* row_scale, const std::uint32_t* plist,
               std::size_t np, std::size_t d, QueriesI8 qs, std::size_t nq, ScoreOut out) {
    for (std::size_t i = 0; i < np; ++i) {
        const std::size_t pi = plist[i];
        const std::uint8_t* p = panels + pi * d * kLanes;
        const float* rs = row_scale + pi * kLanes;
        for (std::size_t q = 0; q < nq; ++q) {
            const std::int8_t* qv = qs.q + q * d;
            std::int32_t acc[kLanes] = {};
            for (std::size_t g = 0; g < d / 4; ++g) {
                const std::uint8_t* r = p + g * 64;
                for (std::size_t l = 0; l < kLanes; ++l) {
                    acc[l] += r[l * 4] * qv[g * 4] + r[l * 4 + 1] * qv[g * 4 + 1] +
                              r[l * 4 + 2] * qv[g * 4 + 2] + r[l * 4 + 3] * qv[g * 4 + 3];
                }
            }
            const std::int32_t corr = 128 * qs.sum[q];
            float v[kLanes];
            for (std::size_t l = 0; l < kLanes; ++l)
                v[l] = static_cast<float>(acc[l] - corr) * qs.scale[q] * rs[l];
            emit(out.at(q, i), v);
        }
    }
}

void to_f16(const float* src, std::uint16_t* dst, std::size_t n) {
    for (std::size_t i = 0; i < n; ++i) dst[i] = float_to_half(src[i]);
}

}  // namespace

Kernels kernels_scalar() { return Kernels{"scalar", f32_scores, f16_scores, i8_scores, to_f16}; }

}  // namespace sfcore
