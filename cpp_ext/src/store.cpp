#include "store.hpp"

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <limits>
#include <mutex>
#include <new>
#include <stdexcept>
#include <thread>

#include "dispatch.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__linux__)
#include <sys/mman.h>
#endif

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

void AlignedBuf::reserve(std::size_t bytes, std::size_t overwritten) {
    if (bytes <= cap_) return;
    // Large galleries: 2 MiB alignment and a transparent-huge-page hint cut page faults 512-fold.
    const std::size_t align = bytes >= (4u << 20) ? (2u << 20) : 64;
    const std::size_t rounded = (bytes + align - 1) / align * align;
    auto* np = static_cast<std::uint8_t*>(std::aligned_alloc(align, rounded));
    if (!np) throw std::bad_alloc();
#if defined(__linux__) && defined(MADV_HUGEPAGE)
    if (align > 64) madvise(np, rounded, MADV_HUGEPAGE);
#endif
    if (p_) std::memcpy(np, p_, cap_);
    // Zero what the caller will not overwrite: no stale heap bytes ever reach a saved file.
    const std::size_t from = std::max(cap_, std::min(overwritten, rounded));
    std::memset(np + from, 0, rounded - from);
    std::free(p_);
    p_ = np;
    cap_ = rounded;
}

namespace {

std::atomic<std::size_t>& threads_setting() {
    static std::atomic<std::size_t> t{0};
    return t;
}

constexpr float kNegInf = -std::numeric_limits<float>::infinity();

// Quantizes one vector to int8 with a per-vector scale (max |x| maps to 127).
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

// Best-k keeper: a min-heap whose root is the score to beat once it is full.
struct TopK {
    std::size_t cap = 0, size = 0;
    float gate = kNegInf;  // a candidate must score strictly above this
    float* s = nullptr;
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

float dot_f32(const float* a, const float* b, std::size_t d) {
    // The simd pragma allows a reordered (vectorised) sum; rounding differs from a sequential
    // sum by far less than the 1e-5 the scores promise.
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (std::size_t j = 0; j < d; ++j) s += a[j] * b[j];
    return s;
}

// The 16 allowed-flags of one full panel as a bit mask.
inline std::uint32_t flags16(const std::uint8_t* m) {
#if defined(__SSE2__)
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(m));
    return static_cast<std::uint32_t>(_mm_movemask_epi8(_mm_cmpeq_epi8(v, _mm_setzero_si128()))) ^
           0xFFFFu;
#else
    std::uint32_t b = 0;
    for (int l = 0; l < 16; ++l) b |= static_cast<std::uint32_t>(m[l] != 0) << l;
    return b;
#endif
}

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

}  // namespace

void set_default_threads(std::size_t n) { threads_setting().store(n); }

std::size_t default_threads() {
    const std::size_t t = threads_setting().load();
    if (t) return t;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw ? hw : 1;
}

namespace {
constexpr std::uint64_t kC1 = 0x9E3779B185EBCA87ull, kC2 = 0xC2B2AE3D27D4EB4Full;
inline std::uint64_t rotl64(std::uint64_t x, int r) { return (x << r) | (x >> (64 - r)); }
}  // namespace

Checksum64::Checksum64() : h_{kC1, kC2, kC1 ^ 0x1234567ull, kC2 ^ 0x89abcdefull} {}

void Checksum64::blocks(const std::uint8_t* p, std::size_t nblocks) {
    // Four independent multiply-rotate lanes over 8-byte words.
    for (std::size_t b = 0; b < nblocks; ++b, p += 32) {
        for (int l = 0; l < 4; ++l) {
            std::uint64_t w;
            std::memcpy(&w, p + 8 * l, 8);
            h_[l] = rotl64(h_[l] + w * kC2, 31) * kC1;
        }
    }
}

void Checksum64::update(const std::uint8_t* p, std::size_t n) {
    total_ += n;
    if (carry_len_) {
        const std::size_t take = std::min<std::size_t>(32 - carry_len_, n);
        std::memcpy(carry_ + carry_len_, p, take);
        carry_len_ += take;
        p += take;
        n -= take;
        if (carry_len_ < 32) return;
        blocks(carry_, 1);
        carry_len_ = 0;
    }
    blocks(p, n / 32);
    std::memcpy(carry_, p + n / 32 * 32, n % 32);
    carry_len_ = n % 32;
}

std::uint64_t Checksum64::digest() const {
    std::uint64_t acc = rotl64(h_[0], 1) + rotl64(h_[1], 7) + rotl64(h_[2], 12) + rotl64(h_[3], 18);
    for (std::size_t i = 0; i < carry_len_; ++i) acc = rotl64(acc ^ (carry_[i] * kC1), 11) * kC2;
    acc ^= total_;
    acc ^= acc >> 33;
    acc *= kC2;
    acc ^= acc >> 29;
    acc *= kC1;
    acc ^= acc >> 32;
    return acc;
}

std::uint64_t checksum64(const std::uint8_t* p, std::size_t n) {
    Checksum64 c;
    c.update(p, n);
    return c.digest();
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

void Store::search(const float* queries, std::size_t m, const SearchOptions& opt,
                   float* out_scores, std::int64_t* out_ids) const {
    const std::size_t k = opt.k;
    check_finite(queries, m * d_, "queries");
    if (opt.has_threshold && std::isnan(opt.threshold))
        throw std::invalid_argument("threshold must be a number, got NaN");
    for (std::size_t i = 0; i < m * k; ++i) {
        out_scores[i] = kNegInf;
        out_ids[i] = -1;
    }
    std::shared_lock lock(mu_);
    const std::size_t n = n_;
    if (n == 0 || k == 0 || m == 0) return;

    const Kernels& K = active_kernels();
    const bool rerank = opt.rerank && dt_ != Dtype::f32 && keep_f32_;
    const std::size_t pool =
        rerank ? std::max(k, opt.candidates ? opt.candidates : std::max<std::size_t>(4 * k, 40)) : k;
    const std::size_t kc = std::min(pool, n);
    // Quantized scores are approximate: with re-ranking the threshold waits for exact scores.
    const float thr = opt.has_threshold ? opt.threshold : kNegInf;
    const float scan_gate = (opt.has_threshold && !rerank) ? std::nextafter(thr, kNegInf) : kNegInf;

    // int8 queries.
    std::vector<std::int8_t> qi8;
    std::vector<std::int16_t> qi16;
    std::vector<float> qscale;
    std::vector<std::int32_t> qsum;
    if (dt_ == Dtype::i8) {
        qi8.resize(m * d_);
        qi16.resize(m * d_);
        qscale.resize(m);
        qsum.resize(m);
        for (std::size_t q = 0; q < m; ++q) {
            qscale[q] = quantize(queries + q * d_, d_, qi8.data() + q * d_);
            std::int32_t s = 0;
            for (std::size_t j = 0; j < d_; ++j) {
                s += qi8[q * d_ + j];
                qi16[q * d_ + j] = qi8[q * d_ + j];
            }
            qsum[q] = s;
        }
    }

    const std::size_t npanels = (n + 15) / 16;
    const std::size_t pbytes = panel_bytes();
    // Tiles of panels sized for the L2 cache, shared by every query of the batch.
    const std::size_t tile = std::clamp<std::size_t>((192u << 10) / pbytes, 2, 64);
    const std::size_t qchunk = 256;
    std::size_t threads = opt.threads ? opt.threads : default_threads();
    threads = std::max<std::size_t>(1, std::min(threads, npanels / 16));

    std::vector<float> heap_s(threads * m * kc);
    std::vector<std::uint32_t> heap_r(threads * m * kc);
    std::vector<TopK> heaps(threads * m);
    for (std::size_t i = 0; i < heaps.size(); ++i) {
        heaps[i].cap = kc;
        heaps[i].gate = scan_gate;
        heaps[i].s = heap_s.data() + i * kc;
        heaps[i].r = heap_r.data() + i * kc;
    }
    const std::size_t qc_max = std::min(m, qchunk);
    std::vector<float> bufs(threads * qc_max * tile * 16);
    std::vector<std::uint32_t> plists(threads * tile);
    std::vector<std::uint16_t> masks(threads * tile);
    std::vector<std::uint16_t> hitbufs(threads * qc_max * tile);
    std::vector<float> gatebufs(threads * qc_max);

    // Rows of panel p that exist and are allowed, as a 16-bit mask.
    auto panel_bits = [&](std::size_t p) -> std::uint32_t {
        const std::size_t rows = std::min<std::size_t>(16, n - p * 16);
        if (!opt.allowed) return rows == 16 ? 0xFFFFu : (1u << rows) - 1;
        if (rows == 16) return flags16(opt.allowed + p * 16);
        std::uint32_t b = 0;
        for (std::size_t l = 0; l < rows; ++l) b |= static_cast<std::uint32_t>(opt.allowed[p * 16 + l] != 0) << l;
        return b;
    };
    // Threads take tiles from a shared counter rather than fixed ranges: on a busy machine a
    // thread that gets the core late simply takes fewer tiles instead of holding up the call.
    std::atomic<std::size_t> next_tile{0};
    auto worker = [&](std::size_t t) {
        float* buf = bufs.data() + t * qc_max * tile * 16;
        std::uint32_t* plist = plists.data() + t * tile;
        std::uint16_t* mask = masks.data() + t * tile;
        std::uint16_t* hits = hitbufs.data() + t * qc_max * tile;
        float* gates = gatebufs.data() + t * qc_max;
        TopK* hp = heaps.data() + t * m;
        for (;;) {
            const std::size_t p0 = next_tile.fetch_add(tile, std::memory_order_relaxed);
            if (p0 >= npanels) break;
            const std::size_t p1 = std::min(npanels, p0 + tile);
            // Each panel's allowed rows, worked out once per tile (the mask array holds them in
            // panel order first, so no panel's bits are computed twice).
            std::size_t np = 0;
            for (std::size_t p = p0; p < p1; ++p) {
                const std::uint32_t bits = panel_bits(p);
                mask[p - p0] = static_cast<std::uint16_t>(bits);
                np += bits != 0;
            }
            if (!np) continue;
            if (np * 4 >= (p1 - p0) * 3) {
                // Most panels of the tile hold an allowed row: reading the tile as one run keeps
                // the hardware prefetcher streaming, and costs less than the skipped panels save.
                np = p1 - p0;
                for (std::size_t i = 0; i < np; ++i) plist[i] = static_cast<std::uint32_t>(p0 + i);
            } else {
                np = 0;  // only panels with an allowed row are read (compacted in place)
                for (std::size_t p = p0; p < p1; ++p) {
                    if (!mask[p - p0]) continue;
                    plist[np] = static_cast<std::uint32_t>(p);
                    mask[np] = mask[p - p0];
                    ++np;
                }
            }
            const std::size_t ld = np * 16;
            for (std::size_t q0 = 0; q0 < m; q0 += qchunk) {
                const std::size_t nq = std::min(qchunk, m - q0);
                for (std::size_t q = 0; q < nq; ++q) gates[q] = hp[q0 + q].gate;
                const ScoreOut out{buf, hits, gates, ld};
                if (dt_ == Dtype::f32) {
                    K.f32(reinterpret_cast<const float*>(panels_.data()), plist, np, d_,
                          queries + q0 * d_, nq, out);
                } else if (dt_ == Dtype::f16) {
                    K.f16(reinterpret_cast<const std::uint16_t*>(panels_.data()), plist, np, d_,
                          queries + q0 * d_, nq, out);
                } else {
                    QueriesI8 qs{qi8.data() + q0 * d_, qi16.data() + q0 * d_, qscale.data() + q0,
                                 qsum.data() + q0};
                    K.i8(panels_.data(), reinterpret_cast<const float*>(scales_.data()), plist,
                         np, d_, qs, nq, out);
                }
                // The kernels flagged scores above each query's gate as it stood before this
                // tile; the gate only rises, so the flags are a superset of what qualifies.
                for (std::size_t q = 0; q < nq; ++q) {
                    TopK& h = hp[q0 + q];
                    const std::uint16_t* hq = hits + q * np;
                    for (std::size_t i = 0; i < np; ++i) {
                        std::uint32_t hit = hq[i] & mask[i];
                        if (!hit) continue;
                        const float* s = buf + q * ld + i * 16;
                        while (hit) {
                            const int l = __builtin_ctz(hit);
                            hit &= hit - 1;
                            if (s[l] > h.gate) h.push(s[l], plist[i] * 16 + static_cast<std::uint32_t>(l));
                        }
                    }
                }
            }
        }
    };

    if (threads == 1) {
        worker(0);
    } else {
        std::vector<std::thread> pool_threads;
        pool_threads.reserve(threads - 1);
        for (std::size_t t = 1; t < threads; ++t) pool_threads.emplace_back(worker, t);
        worker(0);
        for (auto& th : pool_threads) th.join();
    }

    // Merge the per-thread keepers, re-rank if asked, apply the threshold, write out.
    std::vector<std::pair<float, std::uint32_t>> cand;
    const float* f32rows = reinterpret_cast<const float*>(f32_.data());
    for (std::size_t q = 0; q < m; ++q) {
        cand.clear();
        for (std::size_t t = 0; t < threads; ++t) {
            const TopK& h = heaps[t * m + q];
            for (std::size_t i = 0; i < h.size; ++i) cand.emplace_back(h.s[i], h.r[i]);
        }
        auto better = [](const std::pair<float, std::uint32_t>& a,
                         const std::pair<float, std::uint32_t>& b) {
            return a.first > b.first || (a.first == b.first && a.second < b.second);
        };
        if (rerank) {
            if (cand.size() > kc) {
                std::nth_element(cand.begin(), cand.begin() + kc, cand.end(), better);
                cand.resize(kc);
            }
            const float* qv = queries + q * d_;
            for (auto& c : cand) c.first = dot_f32(f32rows + static_cast<std::size_t>(c.second) * d_, qv, d_);
        }
        std::sort(cand.begin(), cand.end(), better);
        std::size_t j = 0;
        for (const auto& c : cand) {
            if (j == k) break;
            if (opt.has_threshold && !(c.first >= thr)) break;
            out_scores[q * k + j] = c.first;
            out_ids[q * k + j] = ids_[c.second];
            ++j;
        }
    }
}

}  // namespace sfcore
