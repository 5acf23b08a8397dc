#pragma once
// Strong ids: distinct types for distinct things, so an OrderId never passes for a UserId.
#include <compare>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace hydrox {

template <class Tag, class Rep>
class StrongId {
 public:
  using rep_type = Rep;
  constexpr StrongId() = default;
  constexpr explicit StrongId(Rep v) : value_(std::move(v)) {}
  constexpr const Rep& value() const noexcept { return value_; }
  friend constexpr auto operator<=>(const StrongId&, const StrongId&) = default;

 private:
  Rep value_{};
};

// A UUID (RFC 9562), kept as its 16 bytes; rendered lower-case with hyphens.
struct Uuid {
  std::uint64_t hi = 0;
  std::uint64_t lo = 0;
  friend constexpr auto operator<=>(const Uuid&, const Uuid&) = default;

  static Uuid random_v4();
  // Time-ordered (v7): ids created later sort later, which keeps cursor pagination simple.
  static Uuid random_v7(std::int64_t unix_ms);
  static std::optional<Uuid> parse(std::string_view text);
  std::string to_string() const;
  bool is_nil() const { return hi == 0 && lo == 0; }
};

struct UserTag {};
struct OrderTag {};
struct MarketTag {};
struct RequestTag {};
using UserId = StrongId<UserTag, Uuid>;
using OrderId = StrongId<OrderTag, Uuid>;
using MarketId = StrongId<MarketTag, std::uint32_t>;

}  // namespace hydrox

template <class Tag, class Rep>
struct std::hash<hydrox::StrongId<Tag, Rep>> {
  std::size_t operator()(const hydrox::StrongId<Tag, Rep>& id) const noexcept {
    return std::hash<Rep>{}(id.value());
  }
};

template <>
struct std::hash<hydrox::Uuid> {
  std::size_t operator()(const hydrox::Uuid& u) const noexcept {
    return std::hash<std::uint64_t>{}(u.hi ^ (u.lo * 0x9E3779B97F4A7C15ull));
  }
};
