#pragma once
// Two order books with one interface, used by the engine's matching code:
//  - FastBook: price-indexed levels in a flat array over a growing price window, FIFO queues
//    threaded through the orders themselves, and a two-level bitmap to find the next best level.
//  - ReferenceBook: std::map of std::list; obviously correct, slow. Tests run both.
// Both hold handles into the engine's OrderPool; the order's side, price and remaining are set
// by the engine before add().
#include <functional>
#include <list>
#include <map>
#include <optional>
#include <unordered_map>
#include <vector>

#include "hydrox/engine/order_pool.hpp"

namespace hydrox::engine {

class FastBook {
 public:
  explicit FastBook(OrderPool& pool) : pool_(&pool) {}
  Qty add(Handle h);               // returns the level's size after
  void remove(Handle h);           // unlink a resting order (its remaining leaves the level)
  // The resting order's remaining dropped by `by`; returns the level's size after.
  Qty reduce(Handle h, Qty by);
  std::optional<Price> best(Side side) const;
  Handle front(Side side, Price price) const;
  Handle next(Handle h) const { return (*pool_)[h].next; }
  Qty level_size(Side side, Price price) const;
  std::size_t order_count() const { return count_; }
  // Levels from the best outward; f(price, size) returns false to stop.
  void for_each_level(Side side, const std::function<bool(Price, Qty)>& f) const;
  std::size_t memory_bytes() const;

 private:
  struct Level {
    Handle head = kNil, tail = kNil;
    Qty size = 0;
  };
  struct Ladder {
    Price base = 0;  // price of levels[0]
    std::vector<Level> levels;
    std::vector<std::uint64_t> words;    // bit per level: non-empty
    std::vector<std::uint64_t> summary;  // bit per word: non-zero
    std::optional<Price> best;
    bool is_bid = false;

    bool contains(Price p) const {
      return p >= base && p < base + static_cast<Price>(levels.size());
    }
    void ensure(Price p) {
      if (!contains(p)) [[unlikely]]
        grow(p);
    }
    void grow(Price p);  // the window widened to cover p
    void set_bit(std::size_t i);
    void clear_bit(std::size_t i);
    // Index of the nearest non-empty level at or beyond `from` (toward worse prices), if any.
    std::optional<std::size_t> scan_down(std::size_t from) const;  // decreasing indices
    std::optional<std::size_t> scan_up(std::size_t from) const;    // increasing indices
  };
  Ladder& ladder(Side s) { return s == Side::buy ? bids_ : asks_; }
  const Ladder& ladder(Side s) const { return s == Side::buy ? bids_ : asks_; }
  void level_emptied(Ladder& l, std::size_t index);

  OrderPool* pool_;
  Ladder bids_{.is_bid = true};
  Ladder asks_{.is_bid = false};
  std::size_t count_ = 0;
};

class ReferenceBook {
 public:
  explicit ReferenceBook(OrderPool& pool) : pool_(&pool) {}
  Qty add(Handle h);
  void remove(Handle h);
  Qty reduce(Handle h, Qty by);
  std::optional<Price> best(Side side) const;
  Handle front(Side side, Price price) const;
  Handle next(Handle h) const;
  Qty level_size(Side side, Price price) const;
  std::size_t order_count() const { return where_.size(); }
  void for_each_level(Side side, const std::function<bool(Price, Qty)>& f) const;
  std::size_t memory_bytes() const { return 0; }

 private:
  using Queue = std::list<Handle>;
  std::map<Price, Queue>& side_map(Side s) { return s == Side::buy ? bids_ : asks_; }
  const std::map<Price, Queue>& side_map(Side s) const { return s == Side::buy ? bids_ : asks_; }
  OrderPool* pool_;
  std::map<Price, Queue> bids_, asks_;
  std::unordered_map<Handle, Queue::iterator> where_;
};

}  // namespace hydrox::engine
