#include "quantize.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

namespace sfcore {

void check_finite(const float* x, std::size_t count, const char* what) {
    // Integer test on the exponent bits: vectorises, unlike std::isfinite in a loop.
    std::uint32_t bad = 0;
    for (std::size_t i = 0; i < count; ++i) {
        std::uint32_t b;
        std::memcpy(&b, x + i, 4);
        bad |= static_cast<std::uint32_t>((b & 0x7f800000u) == 0x7f800000u);
    }
    if (bad)
        throw std::invalid_argument(std::string(what) +
                                    " contain NaN or infinity; every value must be finite");
}

float quantize(const float* x, std::size_t d, std::int8_t* q) {
    float mx = 0.f;
    for (std::size_t j = 0; j < d; ++j) mx = std::max(mx, std::fabs(x[j]));
    const float scale = mx > 0.f ? mx / 127.f : 1.f;
    const float inv = 1.f / scale;
    for (std::size_t j = 0; j < d; ++j) {
        const long v = std::lrint(x[j] * inv);
        q[j] = static_cast<std::int8_t>(std::clamp<long>(v, -127, 127));
    }
    return scale;
}

QuantizedQueries::QuantizedQueries(const float* queries, std::size_t m, std::size_t d)
    : d_(d), q_(m * d), wide_(m * d), scale_(m), sum_(m) {
    for (std::size_t q = 0; q < m; ++q) {
        scale_[q] = quantize(queries + q * d, d, q_.data() + q * d);
        std::int32_t s = 0;
        for (std::size_t j = 0; j < d; ++j) {
            s += q_[q * d + j];
            wide_[q * d + j] = q_[q * d + j];
        }
        sum_[q] = s;
    }
}

}  // namespace sfcore
