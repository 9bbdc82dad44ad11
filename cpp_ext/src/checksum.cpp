#include "checksum.hpp"

#include <algorithm>
#include <cstring>

namespace sfcore {
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

}  // namespace sfcore
