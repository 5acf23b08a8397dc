#include "hydrox/core/ids.hpp"

#include <array>
#include <random>

namespace hydrox {
namespace {

std::uint64_t random_u64() {
  // One generator per thread, seeded from the OS; ids need uniqueness, not secrecy
  // (session tokens use libsodium's CSPRNG instead).
  thread_local std::mt19937_64 gen{[] {
    std::random_device rd;
    std::seed_seq seq{rd(), rd(), rd(), rd(), rd(), rd(), rd(), rd()};
    return std::mt19937_64(seq);
  }()};
  return gen();
}

int hex_digit(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

}  // namespace

Uuid Uuid::random_v4() {
  Uuid u{random_u64(), random_u64()};
  u.hi = (u.hi & ~0xF000ull) | 0x4000ull;                          // version 4
  u.lo = (u.lo & ~(0xC000ull << 48)) | (0x8000ull << 48);          // variant 10
  return u;
}

Uuid Uuid::random_v7(std::int64_t unix_ms) {
  Uuid u{random_u64(), random_u64()};
  u.hi = (static_cast<std::uint64_t>(unix_ms) << 16) | 0x7000ull | (u.hi & 0x0FFFull);
  u.lo = (u.lo & ~(0xC000ull << 48)) | (0x8000ull << 48);
  return u;
}

std::optional<Uuid> Uuid::parse(std::string_view text) {
  if (text.size() != 36) return std::nullopt;
  Uuid u;
  int nibbles = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (i == 8 || i == 13 || i == 18 || i == 23) {
      if (text[i] != '-') return std::nullopt;
      continue;
    }
    int v = hex_digit(text[i]);
    if (v < 0) return std::nullopt;
    if (nibbles < 16) {
      u.hi = (u.hi << 4) | static_cast<std::uint64_t>(v);
    } else {
      u.lo = (u.lo << 4) | static_cast<std::uint64_t>(v);
    }
    ++nibbles;
  }
  return u;
}

std::string Uuid::to_string() const {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out(36, '-');
  std::size_t pos = 0;
  for (int i = 0; i < 32; ++i) {
    if (pos == 8 || pos == 13 || pos == 18 || pos == 23) ++pos;
    std::uint64_t word = i < 16 ? hi : lo;
    int shift = 60 - 4 * (i % 16);
    out[pos++] = kHex[(word >> shift) & 0xF];
  }
  return out;
}

}  // namespace hydrox
