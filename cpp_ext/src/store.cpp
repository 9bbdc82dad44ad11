// Rows of the store: adding, overwriting, removing and loading them in the panel layout.
#include "store.hpp"

#include <algorithm>
#include <cstring>
#include <mutex>
#include <stdexcept>

#include "dispatch.hpp"
#include "quantize.hpp"

namespace sfcore {

Dtype parse_dtype(const std::string& name) {
    if (name == "float32") return Dtype::f32;
    if (name == "float16") return Dtype::f16;
    if (name == "int8") return Dtype::i8;
    throw std::invalid_argument("dtype must be 'float32', 'float16' or 'int8', got '" + name + "'");
}

const char* dtype_name(Dtype dt) {
    switch (dt) {
        case Dtype::f32: return "float32";
        case Dtype::f16: return "float16";
        default: return "int8";
    }
}

Store::Store(std::size_t dim, Dtype dtype, bool keep_f32) : d_(dim), dt_(dtype), keep_f32_(keep_f32) {
    if (dim == 0 || dim % 4 != 0 || dim > 2048)
        throw std::invalid_argument("dim must be a positive multiple of 4 up to 2048, got " +
                                    std::to_string(dim));
    if (dt_ == Dtype::f32) keep_f32_ = false;  // the panels are the float32 rows already
}

std::size_t Store::panel_bytes() const {
    const std::size_t elem = dt_ == Dtype::f32 ? 4 : dt_ == Dtype::f16 ? 2 : 1;
    return d_ * 16 * elem;
}

void Store::ensure_rows(std::size_t rows) {
    if (rows <= cap_rows_) return;
    std::size_t cap = std::max<std::size_t>(cap_rows_ * 3 / 2, 1024);
    cap = std::max(cap, rows);
    cap = (cap + 15) / 16 * 16;
    panels_.reserve(cap / 16 * panel_bytes());
    if (dt_ == Dtype::i8) scales_.reserve(cap * sizeof(float));
    if (keep_f32_) f32_.reserve(cap * d_ * sizeof(float));
    cap_rows_ = cap;
}

void Store::write_row(std::size_t pos, const float* x, std::uint16_t* tmp16) {
    const std::size_t p = pos / 16, lane = pos % 16;
    std::uint8_t* base = panels_.data() + p * panel_bytes();
    if (dt_ == Dtype::f32) {
        float* pf = reinterpret_cast<float*>(base);
        for (std::size_t j = 0; j < d_; ++j) pf[j * 16 + lane] = x[j];
    } else if (dt_ == Dtype::f16) {
        active_kernels().to_f16(x, tmp16, d_);
        auto* ph = reinterpret_cast<std::uint16_t*>(base);
        for (std::size_t j = 0; j < d_; ++j) ph[j * 16 + lane] = tmp16[j];
    } else {
        auto* q = reinterpret_cast<std::int8_t*>(tmp16);
        const float scale = quantize(x, d_, q);
        for (std::size_t j = 0; j < d_; ++j)
            base[(j / 4) * 64 + lane * 4 + j % 4] = static_cast<std::uint8_t>(q[j] + 128);
        reinterpret_cast<float*>(scales_.data())[pos] = scale;
    }
    if (keep_f32_) std::memcpy(reinterpret_cast<float*>(f32_.data()) + pos * d_, x, d_ * 4);
}

void Store::move_row(std::size_t dst, std::size_t src) {
    const std::size_t pd = dst / 16, ld = dst % 16, ps = src / 16, ls = src % 16;
    std::uint8_t* bd = panels_.data() + pd * panel_bytes();
    const std::uint8_t* bs = panels_.data() + ps * panel_bytes();
    if (dt_ == Dtype::f32) {
        auto* fd = reinterpret_cast<float*>(bd);
        auto* fs = reinterpret_cast<const float*>(bs);
        for (std::size_t j = 0; j < d_; ++j) fd[j * 16 + ld] = fs[j * 16 + ls];
    } else if (dt_ == Dtype::f16) {
        auto* hd = reinterpret_cast<std::uint16_t*>(bd);
        auto* hs = reinterpret_cast<const std::uint16_t*>(bs);
        for (std::size_t j = 0; j < d_; ++j) hd[j * 16 + ld] = hs[j * 16 + ls];
    } else {
        for (std::size_t g = 0; g < d_ / 4; ++g)
            std::memcpy(bd + g * 64 + ld * 4, bs + g * 64 + ls * 4, 4);
        auto* sc = reinterpret_cast<float*>(scales_.data());
        sc[dst] = sc[src];
    }
    if (keep_f32_) {
        auto* f = reinterpret_cast<float*>(f32_.data());
        std::memcpy(f + dst * d_, f + src * d_, d_ * 4);
    }
}

void Store::add(const std::int64_t* ids, const float* vecs, std::size_t m) {
    check_finite(vecs, m * d_, "vectors");
    std::unique_lock lock(mu_);
    if (n_ + m >= 0xFFFFFFF0u)
        throw std::invalid_argument("an exact index holds at most about 4 billion rows");
    ensure_rows(n_ + m);
    ids_.reserve(n_ + m);
    pos_.reserve(n_ + m);
    std::vector<std::uint16_t> tmp(d_);
    for (std::size_t i = 0; i < m; ++i) {
        // Fast path: 16 new ids starting a fresh panel are transposed into it in one sweep.
        if (dt_ == Dtype::f32 && n_ % 16 == 0 && i + 16 <= m && append_panel(ids + i, vecs + i * d_)) {
            i += 15;
            continue;
        }
        std::size_t pos = pos_.find(ids[i]);
        if (pos == IdMap::kEmpty) {
            pos = n_++;
            pos_.put(ids[i], static_cast<std::uint32_t>(pos));
            ids_.push_back(ids[i]);
        }
        write_row(pos, vecs + i * d_, tmp.data());
    }
}

void Store::clear_row(std::size_t pos) {
    const std::size_t p = pos / 16, lane = pos % 16;
    std::uint8_t* base = panels_.data() + p * panel_bytes();
    if (dt_ == Dtype::f32) {
        auto* pf = reinterpret_cast<float*>(base);
        for (std::size_t j = 0; j < d_; ++j) pf[j * 16 + lane] = 0.f;
    } else if (dt_ == Dtype::f16) {
        auto* ph = reinterpret_cast<std::uint16_t*>(base);
        for (std::size_t j = 0; j < d_; ++j) ph[j * 16 + lane] = 0;
    } else {
        for (std::size_t g = 0; g < d_ / 4; ++g) std::memset(base + g * 64 + lane * 4, 0, 4);
        reinterpret_cast<float*>(scales_.data())[pos] = 0.f;
    }
    if (keep_f32_) std::memset(f32_.data() + pos * d_ * sizeof(float), 0, d_ * sizeof(float));
}

bool Store::append_panel(const std::int64_t* ids, const float* x) {
    for (std::size_t l = 0; l < 16; ++l) {
        if (pos_.find(ids[l]) != IdMap::kEmpty) return false;
        for (std::size_t r = 0; r < l; ++r)
            if (ids[r] == ids[l]) return false;
    }
    float* panel = reinterpret_cast<float*>(panels_.data() + (n_ / 16) * panel_bytes());
    for (std::size_t j = 0; j < d_; j += 4)
        for (std::size_t l = 0; l < 16; ++l)
            for (std::size_t t = 0; t < 4; ++t) panel[(j + t) * 16 + l] = x[l * d_ + j + t];
    for (std::size_t l = 0; l < 16; ++l) {
        pos_.put(ids[l], static_cast<std::uint32_t>(n_ + l));
        ids_.push_back(ids[l]);
    }
    n_ += 16;
    return true;
}

std::size_t Store::remove(const std::int64_t* ids, std::size_t m) {
    std::unique_lock lock(mu_);
    std::size_t removed = 0;
    for (std::size_t i = 0; i < m; ++i) {
        const std::uint32_t found = pos_.erase(ids[i]);
        if (found == IdMap::kEmpty) continue;
        const std::size_t pos = found, last = n_ - 1;
        if (pos != last) {
            move_row(pos, last);
            ids_[pos] = ids_[last];
            pos_.put(ids_[pos], static_cast<std::uint32_t>(pos));
        }
        clear_row(last);  // a removed vector must not linger in the padding of a saved file
        ids_.pop_back();
        --n_;
        ++removed;
    }
    return removed;
}

void Store::begin_load(std::size_t n) {
    std::unique_lock lock(mu_);
    if (n_ != 0) throw std::invalid_argument("can only load into an empty index");
    if (n >= 0xFFFFFFF0u) throw std::invalid_argument("too many stored rows");
    const std::size_t np = (n + 15) / 16, cap = np * 16;
    // Fresh buffers sized for the stored rows; the caller reads the file straight into them.
    AlignedBuf new_panels, new_scales, new_f32;
    new_panels.reserve(np * panel_bytes(), np * panel_bytes());
    if (dt_ == Dtype::i8) new_scales.reserve(cap * sizeof(float), cap * sizeof(float));
    if (keep_f32_) new_f32.reserve(cap * d_ * sizeof(float), n * d_ * sizeof(float));
    panels_.swap(new_panels);
    scales_.swap(new_scales);
    f32_.swap(new_f32);
    cap_rows_ = cap;
    pos_.clear();
    ids_.clear();
}

void Store::finish_load(const std::int64_t* ids, std::size_t n) {
    std::unique_lock lock(mu_);
    if (n > cap_rows_) throw std::invalid_argument("more ids than rows prepared for loading");
    IdMap pos;
    pos.reserve(n);
    for (std::size_t i = 0; i < n; ++i)
        if (pos.put(ids[i], static_cast<std::uint32_t>(i)) != IdMap::kEmpty)
            throw std::invalid_argument("the stored ids repeat id " + std::to_string(ids[i]));
    ids_.assign(ids, ids + n);
    pos_ = std::move(pos);
    n_ = n;
}

}  // namespace sfcore
