#pragma once
// Orders live in one preallocated pool and are addressed by 32-bit handles; the books link them
// intrusively (prev/next), so resting, cancelling and filling allocate nothing.
#include <cassert>
#include <cstdint>
#include <limits>
#include <new>
#include <vector>

#include "hydrox/engine/huge_pages.hpp"
#include "hydrox/engine/types.hpp"

namespace hydrox::engine {

using Handle = std::uint32_t;
inline constexpr Handle kNil = std::numeric_limits<Handle>::max();

struct Order {
  OrderId id;
  std::uint32_t account = 0;
  std::uint32_t market = 0;
  Side side = Side::buy;
  OrderType type = OrderType::limit;
  TimeInForce tif = TimeInForce::gtc;
  OrderStatus status = OrderStatus::open;
  bool reduce_only = false;
  TriggerBy trigger_by = TriggerBy::mark;  // held trigger orders
  std::uint8_t links = 0;                  // kLinkPosition | kLinkOco (a position's TP/SL)
  std::int32_t leverage = 1;
  Price price = 0;
  Qty qty = 0;        // original
  Qty filled = 0;
  Qty remaining = 0;  // resting
  Usdm filled_notional = 0;
  Usdm margin = 0;    // initial margin reserved for the resting remainder
  Seq priority = 0;   // acceptance sequence: time priority, kept across export/load
  Price trigger_price = 0;  // held trigger orders (status untriggered)
  std::int64_t ts_ms = 0;
  ClientOrderId client_order_id;
  Handle prev = kNil, next = kNil;            // within its book level
  Handle acct_prev = kNil, acct_next = kNil;  // within its account's open orders
};

inline constexpr std::uint8_t kLinkPosition = 1;  // goes when its position closes or flips
inline constexpr std::uint8_t kLinkOco = 2;       // has a partner that it cancels when it fires

class OrderPool {
 public:
  // All `reserve` slots are allocated and touched here, so that taking one later costs no page
  // fault; beyond them the pool grows.
  explicit OrderPool(std::size_t reserve = 1 << 16) {
    slots_.resize(reserve);
    free_.reserve(reserve);
    for (std::size_t i = reserve; i > 0; --i) free_.push_back(static_cast<Handle>(i - 1));  // lowest first
  }
  // Takes a slot and builds the order `make()` returns directly in it (no temporary and no copy:
  // the hot path's orders are ~180 bytes); beyond the reserve the pool grows.
  template <class Make>
  Handle alloc_with(Make&& make) {
    if (!free_.empty()) [[likely]] {
      Handle h = free_.back();
      free_.pop_back();
      ::new (static_cast<void*>(&slots_[h])) Order(make());
      return h;
    }
    slots_.push_back(make());
    return static_cast<Handle>(slots_.size() - 1);
  }
  Handle alloc(const Order& init = Order{}) {
    return alloc_with([&] { return init; });
  }
  void release(Handle h) { free_.push_back(h); }
  Order& operator[](Handle h) { return slots_[h]; }
  const Order& operator[](Handle h) const { return slots_[h]; }
  std::size_t live() const { return slots_.size() - free_.size(); }
  std::size_t capacity_bytes() const {
    return slots_.capacity() * sizeof(Order) + free_.capacity() * sizeof(Handle);
  }

 private:
  std::vector<Order, HugePageAllocator<Order>> slots_;
  std::vector<Handle, HugePageAllocator<Handle>> free_;
};

}  // namespace hydrox::engine
