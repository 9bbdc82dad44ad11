// 64-byte aligned growable byte buffer: whole panels load with aligned vector loads.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <utility>

namespace sfcore {

class AlignedBuf {
public:
    AlignedBuf() = default;
    AlignedBuf(const AlignedBuf&) = delete;
    AlignedBuf& operator=(const AlignedBuf&) = delete;
    ~AlignedBuf() { std::free(p_); }
    // Grows to at least `bytes`, keeping the content; zero-fills the new part except the first
    // `overwritten` bytes, which the caller fills itself.
    void reserve(std::size_t bytes, std::size_t overwritten = 0);
    void swap(AlignedBuf& o) noexcept {
        std::swap(p_, o.p_);
        std::swap(cap_, o.cap_);
    }
    std::uint8_t* data() { return p_; }
    const std::uint8_t* data() const { return p_; }
    std::size_t capacity() const { return cap_; }

private:
    std::uint8_t* p_ = nullptr;
    std::size_t cap_ = 0;
};

}  // namespace sfcore
