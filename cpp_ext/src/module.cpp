// Python bindings of the matching core: plain arrays in, plain arrays out, GIL released.
#include <nanobind/nanobind.h>
#include <nanobind/ndarray.h>
#include <nanobind/stl/optional.h>
#include <nanobind/stl/pair.h>
#include <nanobind/stl/string.h>
#include <nanobind/stl/vector.h>

#include <cstdint>
#include <cstring>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>

#include "checksum.hpp"
#include "dispatch.hpp"
#include "store.hpp"

namespace nb = nanobind;

using RowsF32 = nb::ndarray<const float, nb::ndim<2>, nb::c_contig, nb::device::cpu>;
using Ids = nb::ndarray<const std::int64_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Flags = nb::ndarray<const bool, nb::ndim<1>, nb::c_contig, nb::device::cpu>;
using Bytes = nb::ndarray<const std::uint8_t, nb::ndim<1>, nb::c_contig, nb::device::cpu>;

template <typename T>
static nb::ndarray<nb::numpy, T, nb::ndim<2>> owned2(T* p, std::size_t a, std::size_t b) {
    nb::capsule own(p, [](void* q) noexcept { delete[] static_cast<T*>(q); });
    return nb::ndarray<nb::numpy, T, nb::ndim<2>>(p, {a, b}, own);
}

static void check_rows(const RowsF32& v, const sfcore::Store& s, const char* what) {
    if (v.shape(1) != s.dim())
        throw std::invalid_argument(std::string(what) + " have dimension " +
                                    std::to_string(v.shape(1)) + " but the index has dimension " +
                                    std::to_string(s.dim()));
}

NB_MODULE(_core, m) {
    m.doc() = "safeface matching core: inner-product kernels and top-k selection";
    m.def("available_isas", &sfcore::available_isas,
          "Kernel sets this CPU can run, narrowest first.");
    m.def("set_isa", &sfcore::set_isa, nb::arg("name"),
          "Force a kernel set ('scalar', 'avx2', 'avx512') or 'auto' for the widest available.");
    m.def("get_isa", []() { return std::string(sfcore::active_kernels().name); },
          "Name of the kernel set in use.");
    m.def("set_num_threads", [](std::size_t n) { sfcore::set_default_threads(n); }, nb::arg("n"),
          "Default search threads (0: hardware concurrency).");
    m.def("get_num_threads", &sfcore::default_threads);
    m.def("checksum64",
          [](Bytes b) {
              nb::gil_scoped_release release;
              return sfcore::checksum64(b.data(), b.shape(0));
          },
          nb::arg("data"), "Fast non-cryptographic 64-bit checksum of a byte array.");

    nb::class_<sfcore::Checksum64>(m, "Checksum64",
                                   "Streaming form of checksum64: update() pieces, then digest().")
        .def(nb::init<>())
        .def(
            "update",
            [](sfcore::Checksum64& c, Bytes b) {
                nb::gil_scoped_release release;
                c.update(b.data(), b.shape(0));
            },
            nb::arg("data"))
        .def("digest", &sfcore::Checksum64::digest);

    nb::class_<sfcore::Store>(m, "Store")
        .def(
            "__init__",
            [](sfcore::Store* self, std::size_t dim, const std::string& dtype, bool keep_f32) {
                new (self) sfcore::Store(dim, sfcore::parse_dtype(dtype), keep_f32);
            },
            nb::arg("dim"), nb::arg("dtype") = "float32", nb::arg("keep_f32") = true)
        .def_prop_ro("dim", &sfcore::Store::dim)
        .def_prop_ro("dtype", [](const sfcore::Store& s) { return std::string(sfcore::dtype_name(s.dtype())); })
        .def_prop_ro("keeps_f32", &sfcore::Store::keeps_f32)
        .def("__len__", &sfcore::Store::size)
        .def(
            "add",
            [](sfcore::Store& s, Ids ids, RowsF32 vecs) {
                check_rows(vecs, s, "vectors");
                if (ids.shape(0) != vecs.shape(0))
                    throw std::invalid_argument("got " + std::to_string(ids.shape(0)) + " ids for " +
                                                std::to_string(vecs.shape(0)) + " vectors");
                nb::gil_scoped_release release;
                s.add(ids.data(), vecs.data(), ids.shape(0));
            },
            nb::arg("ids"), nb::arg("vectors"))
        .def(
            "remove",
            [](sfcore::Store& s, Ids ids) {
                nb::gil_scoped_release release;
                return s.remove(ids.data(), ids.shape(0));
            },
            nb::arg("ids"))
        .def(
            "search",
            [](const sfcore::Store& s, RowsF32 queries, std::size_t k, std::optional<float> threshold,
               std::optional<Flags> allowed, bool rerank, std::size_t candidates, std::size_t threads) {
                check_rows(queries, s, "queries");
                sfcore::SearchOptions opt;
                opt.k = k;
                opt.has_threshold = threshold.has_value();
                opt.threshold = threshold.value_or(0.f);
                opt.rerank = rerank;
                opt.candidates = candidates;
                opt.threads = threads;
                if (allowed) {
                    if (allowed->shape(0) != s.size())
                        throw std::invalid_argument("the allowed mask has " +
                                                    std::to_string(allowed->shape(0)) +
                                                    " entries but the index has " +
                                                    std::to_string(s.size()) + " rows");
                    opt.allowed = reinterpret_cast<const std::uint8_t*>(allowed->data());
                }
                const std::size_t mq = queries.shape(0);
                float* sc = new float[mq * k];
                std::int64_t* id = new std::int64_t[mq * k];
                try {
                    nb::gil_scoped_release release;
                    s.search(queries.data(), mq, opt, sc, id);
                } catch (...) {
                    delete[] sc;
                    delete[] id;
                    throw;
                }
                return std::make_pair(owned2(sc, mq, k), owned2(id, mq, k));
            },
            nb::arg("queries"), nb::arg("k"), nb::arg("threshold") = nb::none(),
            nb::arg("allowed") = nb::none(), nb::arg("rerank") = true, nb::arg("candidates") = 0,
            nb::arg("threads") = 0,
            "Top-k per query: (scores float32 (m,k), ids int64 (m,k)); -inf / -1 pad. `allowed`"
            " is a boolean mask over row positions.")
        .def(
            "mask_of_ids",
            [](const sfcore::Store& s, Ids ids) {
                std::shared_lock lock(s.mutex());
                const std::size_t n = s.size();
                auto* p = new bool[n ? n : 1]();
                for (std::size_t i = 0; i < ids.shape(0); ++i) {
                    const std::int64_t pos = s.position(ids.data()[i]);
                    if (pos >= 0) p[pos] = true;
                }
                nb::capsule own(p, [](void* q) noexcept { delete[] static_cast<bool*>(q); });
                return nb::ndarray<nb::numpy, bool, nb::ndim<1>>(p, {n}, own);
            },
            "Boolean mask over row positions: true where the row's id is among `ids`.")
        .def(
            "ids",
            [](const sfcore::Store& s) {
                std::shared_lock lock(s.mutex());
                const std::size_t n = s.size();
                auto* p = new std::int64_t[n ? n : 1];
                std::memcpy(p, s.ids(), n * 8);
                nb::capsule own(p, [](void* q) noexcept { delete[] static_cast<std::int64_t*>(q); });
                return nb::ndarray<nb::numpy, std::int64_t, nb::ndim<1>>(p, {n}, own);
            },
            "Copy of the ids in row-position order.")
        .def(
            "raw",
            [](nb::handle self) {
                // Views into the store (owner: the store); only valid while nothing is added.
                const auto& s = nb::cast<const sfcore::Store&>(self);
                const std::size_t n = s.size(), np = s.panel_count();
                using V64 = nb::ndarray<nb::numpy, const std::int64_t, nb::ndim<1>>;
                using VU8 = nb::ndarray<nb::numpy, const std::uint8_t, nb::ndim<1>>;
                using VF = nb::ndarray<nb::numpy, const float, nb::ndim<1>>;
                static const std::int64_t no_i = 0;
                static const std::uint8_t no_b = 0;
                static const float no_f = 0.f;
                nb::dict out;
                out["ids"] = V64(n ? s.ids() : &no_i, {n}, self);
                out["panels"] = VU8(np ? s.panel_data() : &no_b, {np * s.panel_bytes()}, self);
                const bool i8 = s.dtype() == sfcore::Dtype::i8;
                out["scales"] = VF(i8 && np ? s.row_scales() : &no_f, {i8 ? np * 16 : 0}, self);
                out["f32"] = VF(s.keeps_f32() && n ? s.f32_rows() : &no_f,
                                {s.keeps_f32() ? n * s.dim() : 0}, self);
                return out;
            },
            "Views of the raw state (ids, panels, scales, f32) for saving.")
        .def(
            "begin_load",
            [](nb::handle self, std::size_t n) {
                auto& s = nb::cast<sfcore::Store&>(self);
                {
                    nb::gil_scoped_release release;
                    s.begin_load(n);
                }
                // Writable views (owner: the store) for the caller to read the file into.
                using WU8 = nb::ndarray<nb::numpy, std::uint8_t, nb::ndim<1>>;
                using WF = nb::ndarray<nb::numpy, float, nb::ndim<1>>;
                static std::uint8_t no_b = 0;
                static float no_f = 0.f;
                const std::size_t np = (n + 15) / 16;
                const bool i8 = s.dtype() == sfcore::Dtype::i8;
                nb::dict out;
                out["panels"] = WU8(np ? s.panel_data_mut() : &no_b, {np * s.panel_bytes()}, self);
                out["scales"] = WF(i8 && np ? s.row_scales_mut() : &no_f, {i8 ? np * 16 : 0}, self);
                out["f32"] = WF(s.keeps_f32() && n ? s.f32_rows_mut() : &no_f,
                                {s.keeps_f32() ? n * s.dim() : 0}, self);
                return out;
            },
            nb::arg("n"), "Prepare an empty store for n stored rows; returns writable views.")
        .def(
            "finish_load",
            [](sfcore::Store& s, Ids ids) {
                nb::gil_scoped_release release;
                s.finish_load(ids.data(), ids.shape(0));
            },
            nb::arg("ids"), "Index the loaded ids (row-position order) and make the rows live.");
}
