// Plain-array kernels of the matching core. They know nothing of faces.
#pragma once
#include <cstddef>
#include <cstdint>

namespace sfcore {

// Inner products of m queries against n rows (row-major, dimension d), keeping
// for every query the k best rows in descending score order. Unused slots get
// score -inf and index -1.
void topk_inner_product_f32(const float* rows, std::size_t n, const float* queries,
                            std::size_t m, std::size_t d, std::size_t k,
                            float* out_scores, std::int64_t* out_idx);

}  // namespace sfcore
