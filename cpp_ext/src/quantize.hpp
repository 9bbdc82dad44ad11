// Values in: the finiteness check every stored or query vector passes, and int8 quantization
// with one scale per vector (rows when stored, queries when searched).
#pragma once
#include <cstddef>
#include <cstdint>
#include <vector>

#include "kernels_isa.hpp"

namespace sfcore {

// Throws std::invalid_argument naming `what` if any of the `count` values is NaN or infinite.
void check_finite(const float* x, std::size_t count, const char* what);

// Quantizes one vector to int8 with a per-vector scale (max |x| maps to 127); returns the scale.
float quantize(const float* x, std::size_t d, std::int8_t* q);

// A batch of queries quantized for the int8 kernels, with the views the kernels read.
class QuantizedQueries {
public:
    QuantizedQueries(const float* queries, std::size_t m, std::size_t d);
    // The kernels' view of queries [q0, ...).
    QueriesI8 from(std::size_t q0) const {
        return QueriesI8{q_.data() + q0 * d_, wide_.data() + q0 * d_, scale_.data() + q0,
                         sum_.data() + q0};
    }

private:
    std::size_t d_;
    std::vector<std::int8_t> q_;
    std::vector<std::int16_t> wide_;  // the same values widened (AVX2 path)
    std::vector<float> scale_;
    std::vector<std::int32_t> sum_;   // undoes the +128 offset of the stored rows
};

}  // namespace sfcore
