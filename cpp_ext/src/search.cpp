// Exact top-k search over the panel layout, in three steps: plan the call (pool sizes, tiles,
// threads), scan (threads take tiles of panels, the kernels score every query of the batch
// against a tile, flagged scores go to per-thread keepers), then merge the keepers per query,
// re-rank exactly if asked and write the results.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <thread>
#include <utility>
#include <vector>

#include "dispatch.hpp"
#include "quantize.hpp"
#include "store.hpp"
#include "topk.hpp"

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace sfcore {
namespace {

std::atomic<std::size_t>& threads_setting() {
    static std::atomic<std::size_t> t{0};
    return t;
}

// How one call runs, fixed before the scan.
struct Plan {
    std::size_t k;         // results asked per query
    std::size_t kc;        // candidates kept per query: k, or the re-rank pool
    bool rerank;           // quantized scores are re-scored against the float32 rows
    float scan_gate;       // a score must be strictly above this to be kept by the scan
    std::size_t npanels;
    std::size_t tile;      // panels per tile
    std::size_t qchunk;    // queries scored per kernel call
    std::size_t qc_max;    // min(m, qchunk): the scratch size per thread
    std::size_t threads;
};

Plan plan_search(const SearchOptions& opt, std::size_t n, std::size_t m, Dtype dt, bool keep_f32,
                 std::size_t panel_bytes) {
    Plan p;
    p.k = opt.k;
    p.rerank = opt.rerank && dt != Dtype::f32 && keep_f32;
    const std::size_t pool =
        p.rerank ? std::max(p.k, opt.candidates ? opt.candidates : std::max<std::size_t>(4 * p.k, 40))
                 : p.k;
    p.kc = std::min(pool, n);
    // Quantized scores are approximate: with re-ranking the threshold waits for exact scores.
    p.scan_gate = (opt.has_threshold && !p.rerank) ? std::nextafter(opt.threshold, kNegInf) : kNegInf;
    p.npanels = (n + 15) / 16;
    // Tiles of panels sized for the L2 cache, shared by every query of the batch.
    p.tile = std::clamp<std::size_t>((192u << 10) / panel_bytes, 2, 64);
    p.qchunk = 256;
    p.qc_max = std::min(m, p.qchunk);
    const std::size_t threads = opt.threads ? opt.threads : default_threads();
    p.threads = std::max<std::size_t>(1, std::min(threads, p.npanels / 16));
    return p;
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

// Rows of panel p that exist (n rows in all) and are allowed (null: all), as a 16-bit mask.
inline std::uint32_t panel_bits(const std::uint8_t* allowed, std::size_t n, std::size_t p) {
    const std::size_t rows = std::min<std::size_t>(16, n - p * 16);
    if (!allowed) return rows == 16 ? 0xFFFFu : (1u << rows) - 1;
    if (rows == 16) return flags16(allowed + p * 16);
    std::uint32_t b = 0;
    for (std::size_t l = 0; l < rows; ++l) b |= static_cast<std::uint32_t>(allowed[p * 16 + l] != 0) << l;
    return b;
}

// The keepers of every (thread, query) pair, with their storage.
class Keepers {
public:
    Keepers(const Plan& plan, std::size_t m)
        : m_(m), s_(plan.threads * m * plan.kc), r_(plan.threads * m * plan.kc), heaps_(plan.threads * m) {
        for (std::size_t i = 0; i < heaps_.size(); ++i) {
            heaps_[i].cap = plan.kc;
            heaps_[i].gate = plan.scan_gate;
            heaps_[i].s = s_.data() + i * plan.kc;
            heaps_[i].r = r_.data() + i * plan.kc;
        }
    }
    TopK* of_thread(std::size_t t) { return heaps_.data() + t * m_; }
    const TopK& at(std::size_t t, std::size_t q) const { return heaps_[t * m_ + q]; }

private:
    std::size_t m_;
    std::vector<float> s_;
    std::vector<std::uint32_t> r_;
    std::vector<TopK> heaps_;
};

// What a scan reads.
struct ScanInput {
    Dtype dt;
    std::size_t d, n;
    const std::uint8_t* panels;
    const float* row_scales;        // int8 only
    const std::uint8_t* allowed;    // null: every row
    const float* queries;
    std::size_t m;
    const QuantizedQueries* qi8;    // int8 only
};

// One thread's part of the scan: takes tiles from a shared counter until none are left, with
// its own scratch (kernel scores, hit masks, the listed panels of the tile).
class TileScanner {
public:
    TileScanner(const ScanInput& in, const Plan& plan, TopK* keepers)
        : in_(in), plan_(plan), keep_(keepers), K_(active_kernels()),
          scores_(plan.qc_max * plan.tile * 16), plist_(plan.tile), mask_(plan.tile),
          hits_(plan.qc_max * plan.tile), gates_(plan.qc_max) {}

    // Threads take tiles from a shared counter rather than fixed ranges: on a busy machine a
    // thread that gets the core late simply takes fewer tiles instead of holding up the call.
    void run(std::atomic<std::size_t>& next_tile) {
        for (;;) {
            const std::size_t p0 = next_tile.fetch_add(plan_.tile, std::memory_order_relaxed);
            if (p0 >= plan_.npanels) break;
            const std::size_t np = list_panels(p0, std::min(plan_.npanels, p0 + plan_.tile));
            if (!np) continue;
            for (std::size_t q0 = 0; q0 < in_.m; q0 += plan_.qchunk) {
                const std::size_t nq = std::min(plan_.qchunk, in_.m - q0);
                score(q0, nq, np);
                keep_hits(q0, nq, np);
            }
        }
    }

private:
    // Lists the panels of tile [p0, p1) to score in plist_, with their allowed rows in mask_;
    // returns how many.
    std::size_t list_panels(std::size_t p0, std::size_t p1) {
        std::uint32_t* plist = plist_.data();
        std::uint16_t* mask = mask_.data();
        // Each panel's allowed rows, worked out once per tile (the mask array holds them in
        // panel order first, so no panel's bits are computed twice).
        std::size_t np = 0;
        for (std::size_t p = p0; p < p1; ++p) {
            const std::uint32_t bits = panel_bits(in_.allowed, in_.n, p);
            mask[p - p0] = static_cast<std::uint16_t>(bits);
            np += bits != 0;
        }
        if (!np) return 0;
        if (np * 4 >= (p1 - p0) * 3) {
            // Most panels of the tile hold an allowed row: reading the tile as one run keeps
            // the hardware prefetcher streaming, and costs less than the skipped panels save.
            np = p1 - p0;
            for (std::size_t i = 0; i < np; ++i) plist[i] = static_cast<std::uint32_t>(p0 + i);
            return np;
        }
        np = 0;  // only panels with an allowed row are read (compacted in place)
        for (std::size_t p = p0; p < p1; ++p) {
            if (!mask[p - p0]) continue;
            plist[np] = static_cast<std::uint32_t>(p);
            mask[np] = mask[p - p0];
            ++np;
        }
        return np;
    }

    // Scores queries [q0, q0 + nq) against the np listed panels, flagging the scores above
    // each query's gate as it stands now.
    void score(std::size_t q0, std::size_t nq, std::size_t np) {
        for (std::size_t q = 0; q < nq; ++q) gates_[q] = keep_[q0 + q].gate;
        const ScoreOut out{scores_.data(), hits_.data(), gates_.data(), np * 16};
        const std::size_t d = in_.d;
        if (in_.dt == Dtype::f32) {
            K_.f32(reinterpret_cast<const float*>(in_.panels), plist_.data(), np, d,
                   in_.queries + q0 * d, nq, out);
        } else if (in_.dt == Dtype::f16) {
            K_.f16(reinterpret_cast<const std::uint16_t*>(in_.panels), plist_.data(), np, d,
                   in_.queries + q0 * d, nq, out);
        } else {
            K_.i8(in_.panels, in_.row_scales, plist_.data(), np, d, in_.qi8->from(q0), nq, out);
        }
    }

    // The kernels flagged scores above each query's gate as it stood before this tile; the
    // gate only rises, so the flags are a superset of what qualifies.
    void keep_hits(std::size_t q0, std::size_t nq, std::size_t np) {
        const std::size_t ld = np * 16;
        const float* scores = scores_.data();
        const std::uint16_t* hits = hits_.data();
        const std::uint16_t* mask = mask_.data();
        const std::uint32_t* plist = plist_.data();
        for (std::size_t q = 0; q < nq; ++q) {
            TopK& h = keep_[q0 + q];
            const std::uint16_t* hq = hits + q * np;
            for (std::size_t i = 0; i < np; ++i) {
                std::uint32_t hit = hq[i] & mask[i];
                if (!hit) continue;
                const float* s = scores + q * ld + i * 16;
                while (hit) {
                    const int l = __builtin_ctz(hit);
                    hit &= hit - 1;
                    if (s[l] > h.gate) h.push(s[l], plist[i] * 16 + static_cast<std::uint32_t>(l));
                }
            }
        }
    }

    const ScanInput& in_;
    const Plan& plan_;
    TopK* keep_;
    const Kernels& K_;
    std::vector<float> scores_;
    std::vector<std::uint32_t> plist_;
    std::vector<std::uint16_t> mask_;
    std::vector<std::uint16_t> hits_;
    std::vector<float> gates_;
};

// Runs the scan on plan.threads threads (the calling one included).
void scan(const ScanInput& in, const Plan& plan, Keepers& keepers) {
    std::vector<TileScanner> scanners;
    scanners.reserve(plan.threads);
    for (std::size_t t = 0; t < plan.threads; ++t)
        scanners.emplace_back(in, plan, keepers.of_thread(t));
    std::atomic<std::size_t> next_tile{0};
    if (plan.threads == 1) {
        scanners[0].run(next_tile);
        return;
    }
    std::vector<std::thread> pool;
    pool.reserve(plan.threads - 1);
    for (std::size_t t = 1; t < plan.threads; ++t)
        pool.emplace_back([&, t] { scanners[t].run(next_tile); });
    scanners[0].run(next_tile);
    for (auto& th : pool) th.join();
}

float dot_f32(const float* a, const float* b, std::size_t d) {
    // The simd pragma allows a reordered (vectorised) sum; rounding differs from a sequential
    // sum by far less than the 1e-5 the scores promise.
    float s = 0.f;
#pragma omp simd reduction(+ : s)
    for (std::size_t j = 0; j < d; ++j) s += a[j] * b[j];
    return s;
}

using Candidate = std::pair<float, std::uint32_t>;  // score, row position

// Higher score first; equal scores: lower row position first (a stable, repeatable order).
inline bool better(const Candidate& a, const Candidate& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
}

// Per query: merges the threads' keepers, re-scores them exactly if asked, and writes the best
// k that pass the threshold (the rest of the row stays padded).
void write_results(const Plan& plan, const SearchOptions& opt, const Keepers& keepers,
                   const float* queries, std::size_t m, std::size_t d, const float* f32rows,
                   const std::int64_t* ids, float* out_scores, std::int64_t* out_ids) {
    const std::size_t k = plan.k;
    std::vector<Candidate> cand;
    for (std::size_t q = 0; q < m; ++q) {
        cand.clear();
        for (std::size_t t = 0; t < plan.threads; ++t) {
            const TopK& h = keepers.at(t, q);
            for (std::size_t i = 0; i < h.size; ++i) cand.emplace_back(h.s[i], h.r[i]);
        }
        if (plan.rerank) {
            if (cand.size() > plan.kc) {
                std::nth_element(cand.begin(), cand.begin() + plan.kc, cand.end(), better);
                cand.resize(plan.kc);
            }
            const float* qv = queries + q * d;
            for (auto& c : cand) c.first = dot_f32(f32rows + static_cast<std::size_t>(c.second) * d, qv, d);
        }
        std::sort(cand.begin(), cand.end(), better);
        std::size_t j = 0;
        for (const auto& c : cand) {
            if (j == k) break;
            if (opt.has_threshold && !(c.first >= opt.threshold)) break;
            out_scores[q * k + j] = c.first;
            out_ids[q * k + j] = ids[c.second];
            ++j;
        }
    }
}

}  // namespace

void set_default_threads(std::size_t n) { threads_setting().store(n); }

std::size_t default_threads() {
    const std::size_t t = threads_setting().load();
    if (t) return t;
    const unsigned hw = std::thread::hardware_concurrency();
    return hw ? hw : 1;
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

    const Plan plan = plan_search(opt, n, m, dt_, keep_f32_, panel_bytes());
    std::optional<QuantizedQueries> qi8;
    if (dt_ == Dtype::i8) qi8.emplace(queries, m, d_);
    const ScanInput in{dt_, d_, n, panels_.data(), reinterpret_cast<const float*>(scales_.data()),
                       opt.allowed, queries, m, qi8 ? &*qi8 : nullptr};
    Keepers keepers(plan, m);
    scan(in, plan, keepers);
    write_results(plan, opt, keepers, queries, m, d_, reinterpret_cast<const float*>(f32_.data()),
                  ids_.data(), out_scores, out_ids);
}

}  // namespace sfcore
