#include "kernels.hpp"

#include <algorithm>
#include <limits>
#include <utility>
#include <vector>

namespace sfcore {

namespace {

float dot(const float* a, const float* b, std::size_t d) {
    // Four partial sums let the compiler vectorise without -ffast-math.
    float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
    std::size_t i = 0;
    for (; i + 4 <= d; i += 4) {
        s0 += a[i] * b[i];
        s1 += a[i + 1] * b[i + 1];
        s2 += a[i + 2] * b[i + 2];
        s3 += a[i + 3] * b[i + 3];
    }
    for (; i < d; ++i) s0 += a[i] * b[i];
    return (s0 + s1) + (s2 + s3);
}

}  // namespace

void topk_inner_product_f32(const float* rows, std::size_t n, const float* queries,
                            std::size_t m, std::size_t d, std::size_t k,
                            float* out_scores, std::int64_t* out_idx) {
    using Item = std::pair<float, std::int64_t>;
    auto worse = [](const Item& a, const Item& b) { return a.first > b.first; };
    std::vector<Item> heap;
    for (std::size_t q = 0; q < m; ++q) {
        heap.clear();
        const float* qv = queries + q * d;
        for (std::size_t r = 0; r < n; ++r) {
            float s = dot(rows + r * d, qv, d);
            if (heap.size() < k) {
                heap.emplace_back(s, static_cast<std::int64_t>(r));
                std::push_heap(heap.begin(), heap.end(), worse);
            } else if (k > 0 && s > heap.front().first) {
                std::pop_heap(heap.begin(), heap.end(), worse);
                heap.back() = Item(s, static_cast<std::int64_t>(r));
                std::push_heap(heap.begin(), heap.end(), worse);
            }
        }
        std::sort_heap(heap.begin(), heap.end(), worse);
        for (std::size_t j = 0; j < k; ++j) {
            if (j < heap.size()) {
                out_scores[q * k + j] = heap[j].first;
                out_idx[q * k + j] = heap[j].second;
            } else {
                out_scores[q * k + j] = -std::numeric_limits<float>::infinity();
                out_idx[q * k + j] = -1;
            }
        }
    }
}

}  // namespace sfcore
