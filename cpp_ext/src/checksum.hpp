// Checksum of a byte stream (64-bit, non-cryptographic, fast): detects corruption of saved
// index files. It is no defence against a deliberate edit; sealing covers that.
#pragma once
#include <cstddef>
#include <cstdint>

namespace sfcore {

class Checksum64 {
public:
    Checksum64();
    void update(const std::uint8_t* p, std::size_t n);
    std::uint64_t digest() const;

private:
    void blocks(const std::uint8_t* p, std::size_t nblocks);
    std::uint64_t h_[4];
    std::uint8_t carry_[32] = {};
    std::size_t carry_len_ = 0;
    std::uint64_t total_ = 0;
};

std::uint64_t checksum64(const std::uint8_t* p, std::size_t n);

}  // namespace sfcore
