// Best-k keeper of one query: a min-heap whose root is the score to beat once it is full.
// Header-only: push runs in the innermost loop of the search and must inline there.
#pragma once
#include <cstddef>
#include <cstdint>
#include <limits>

namespace sfcore {

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

struct TopK {
    std::size_t cap = 0, size = 0;
    float gate = kNegInf;  // a candidate must score strictly above this
    float* s = nullptr;    // storage for cap scores and rows, owned by the caller
    std::uint32_t* r = nullptr;

    void push(float score, std::uint32_t row) {
        if (size < cap) {
            std::size_t i = size++;
            while (i > 0) {
                const std::size_t parent = (i - 1) / 2;
                if (s[parent] <= score) break;
                s[i] = s[parent];
                r[i] = r[parent];
                i = parent;
            }
            s[i] = score;
            r[i] = row;
            if (size == cap) gate = s[0];
            return;
        }
        std::size_t i = 0;
        for (;;) {
            std::size_t c = 2 * i + 1;
            if (c >= size) break;
            if (c + 1 < size && s[c + 1] < s[c]) ++c;
            if (s[c] >= score) break;
            s[i] = s[c];
            r[i] = r[c];
            i = c;
        }
        s[i] = score;
        r[i] = row;
        gate = s[0];
    }
};

}  // namespace sfcore
