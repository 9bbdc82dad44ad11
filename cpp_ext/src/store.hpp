// A gallery of vectors in the panel layout, with caller ids, and its exact top-k search
// (rows: store.cpp; search: search.cpp).
#pragma once
#include <cstddef>
#include <cstdint>
#include <shared_mutex>
#include <string>
#include <vector>

#include "buffer.hpp"
#include "idmap.hpp"

namespace sfcore {

enum class Dtype { f32 = 0, f16 = 1, i8 = 2 };

Dtype parse_dtype(const std::string& name);
const char* dtype_name(Dtype dt);

struct SearchOptions {
    std::size_t k = 10;
    float threshold = 0.f;
    bool has_threshold = false;
    const std::uint8_t* allowed = nullptr;   // n bytes: nonzero = row position i may be returned
    bool rerank = true;                      // int8 / float16: exact float32 re-scoring
    std::size_t candidates = 0;              // re-rank pool per query (0: automatic)
    std::size_t threads = 0;                 // 0: the process default
};

void set_default_threads(std::size_t n);  // 0: hardware concurrency
std::size_t default_threads();

class Store {
public:
    Store(std::size_t dim, Dtype dtype, bool keep_f32);

    std::size_t size() const { return n_; }
    std::size_t dim() const { return d_; }
    Dtype dtype() const { return dt_; }
    bool keeps_f32() const { return keep_f32_; }

    // Adds rows; an id already present is overwritten in place. Throws std::invalid_argument on
    // a non-finite value (nothing is added then).
    void add(const std::int64_t* ids, const float* vecs, std::size_t m);
    // Removes the ids present; returns how many were. The last row moves into each hole.
    std::size_t remove(const std::int64_t* ids, std::size_t m);
    // Scores and ids of the best k rows per query (m queries), descending; -inf / -1 pad.
    void search(const float* queries, std::size_t m, const SearchOptions& opt, float* out_scores,
                std::int64_t* out_ids) const;

    // Raw state for saving and loading (layout documented in kernels_isa.hpp).
    const std::int64_t* ids() const { return ids_.data(); }
    std::size_t panel_count() const { return (n_ + 15) / 16; }
    std::size_t panel_bytes() const;
    const std::uint8_t* panel_data() const { return panels_.data(); }
    const float* row_scales() const { return reinterpret_cast<const float*>(scales_.data()); }
    const float* f32_rows() const { return reinterpret_cast<const float*>(f32_.data()); }
    // Loading: begin_load(n) sizes fresh buffers for n rows (the caller fills them through
    // the writable accessors), finish_load(ids) then indexes the ids and makes the rows live.
    void begin_load(std::size_t n);
    void finish_load(const std::int64_t* ids, std::size_t n);
    std::uint8_t* panel_data_mut() { return panels_.data(); }
    float* row_scales_mut() { return reinterpret_cast<float*>(scales_.data()); }
    float* f32_rows_mut() { return reinterpret_cast<float*>(f32_.data()); }
    std::size_t capacity_rows() const { return cap_rows_; }

    std::shared_mutex& mutex() const { return mu_; }
    // Row position of an id, or -1. Caller holds the mutex.
    std::int64_t position(std::int64_t id) const {
        const std::uint32_t p = pos_.find(id);
        return p == IdMap::kEmpty ? -1 : static_cast<std::int64_t>(p);
    }

private:
    void ensure_rows(std::size_t rows);
    void write_row(std::size_t pos, const float* x, std::uint16_t* tmp16);
    bool append_panel(const std::int64_t* ids, const float* x);
    void move_row(std::size_t dst, std::size_t src);
    void clear_row(std::size_t pos);

    std::size_t d_;
    Dtype dt_;
    bool keep_f32_;
    std::size_t n_ = 0;
    std::size_t cap_rows_ = 0;  // multiple of 16
    AlignedBuf panels_;
    AlignedBuf scales_;  // int8: one float per row slot
    AlignedBuf f32_;     // optional row-major float32 copy
    std::vector<std::int64_t> ids_;
    IdMap pos_;
    mutable std::shared_mutex mu_;
};

}  // namespace sfcore
