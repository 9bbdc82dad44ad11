// Python bindings of the matching core: plain arrays in, plain arrays out, GIL released.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/pair.h>

#include <cstdint>
#include <stdexcept>

#include "kernels.hpp"

namespace nb = nanobind;

using RowsF32 = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;

static std::pair<nb::ndarray<nb::numpy, float, nb::ndim<2>>,
                 nb::ndarray<nb::numpy, std::int64_t, nb::ndim<2>>>
topk_ip_f32(RowsF32 rows, RowsF32 queries, std::size_t k) {
    const std::size_t n = rows.shape(0), d = rows.shape(1), m = queries.shape(0);
    if (queries.shape(1) != d) throw std::invalid_argument("queries and rows differ in dimension");
    float* scores = new float[m * k];
    std::int64_t* idx = new std::int64_t[m * k];
    {
        nb::gil_scoped_release release;
        sfcore::topk_inner_product_f32(rows.data(), n, queries.data(), m, d, k, scores, idx);
    }
    nb::capsule own_s(scores, [](void* p) noexcept { delete[] static_cast<float*>(p); });
    nb::capsule own_i(idx, [](void* p) noexcept { delete[] static_cast<std::int64_t*>(p); });
    return {nb::ndarray<nb::numpy, float, nb::ndim<2>>(scores, {m, k}, own_s),
            nb::ndarray<nb::numpy, std::int64_t, nb::ndim<2>>(idx, {m, k}, own_i)};
}

NB_MODULE(_core, m) {
    m.doc() = "safeface matching core: inner-product kernels and top-k selection";
    m.def("topk_ip_f32", &topk_ip_f32, nb::arg("rows"), nb::arg("queries"), nb::arg("k"),
          "Top-k inner products of each query against the rows: (scores, row indices).");
}
