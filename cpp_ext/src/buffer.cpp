#include "buffer.hpp"

#include <algorithm>
#include <cstring>
#include <new>

#if defined(__linux__)
#include <sys/mman.h>
#endif

namespace sfcore {

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

}  // namespace sfcore
