#pragma once
// Order id -> handle for every open order. Open addressing with linear probing and backward-shift
// deletion, like FlatMap, but a slot is 8 bytes: 32 bits of the id's hash and the handle. The id
// itself is compared in the order pool, where the order is (and where its caller is about to
// look anyway). With millions of open orders the table is hundreds of megabytes smaller than
// one holding the ids, and it sits on huge pages: an insert or a lookup is about one cache miss.
#include <cstdint>
#include <vector>

#include "hydrox/engine/huge_pages.hpp"
#include "hydrox/engine/order_pool.hpp"
#include "hydrox/engine/prefetch.hpp"

namespace hydrox::engine {

template <class Hash>
class OrderIndex {
 public:
  explicit OrderIndex(std::size_t reserve = 1024) { rehash(capacity_for(reserve)); }

  const Handle* find(const Uuid& id, const OrderPool& pool) const {
    const std::uint32_t h = hash32(id);
    for (std::size_t i = h & mask_; slots_[i].handle != kNil; i = (i + 1) & mask_) {
      if (slots_[i].hash == h && pool[slots_[i].handle].id.value() == id) return &slots_[i].handle;
    }
    return nullptr;
  }

  // Inserts or overwrites.
  void put(const Uuid& id, Handle handle, const OrderPool& pool) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.size() * 2);
    const std::uint32_t h = hash32(id);
    std::size_t i = h & mask_;
    for (; slots_[i].handle != kNil; i = (i + 1) & mask_) {
      if (slots_[i].hash == h && pool[slots_[i].handle].id.value() == id) {
        slots_[i].handle = handle;
        return;
      }
    }
    slots_[i] = {h, handle};
    ++size_;
  }

  bool erase(const Uuid& id, const OrderPool& pool) {
    const std::uint32_t h = hash32(id);
    std::size_t i = h & mask_;
    for (; slots_[i].handle != kNil; i = (i + 1) & mask_) {
      if (slots_[i].hash == h && pool[slots_[i].handle].id.value() == id) break;
    }
    if (slots_[i].handle == kNil) return false;
    std::size_t hole = i;
    for (std::size_t j = (i + 1) & mask_; slots_[j].handle != kNil; j = (j + 1) & mask_) {
      const std::size_t home = slots_[j].hash & mask_;
      const bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
      if (movable) {
        slots_[hole] = slots_[j];
        hole = j;
      }
    }
    slots_[hole].handle = kNil;
    --size_;
    return true;
  }

  void prefetch(const Uuid& id) const { prefetch_line(&slots_[hash32(id) & mask_]); }
  std::size_t size() const { return size_; }
  std::size_t memory_bytes() const { return slots_.capacity() * sizeof(Slot); }
  void clear() {
    for (auto& s : slots_) s.handle = kNil;
    size_ = 0;
  }

 private:
  struct Slot {
    std::uint32_t hash = 0;
    Handle handle = kNil;
  };
  static std::uint32_t hash32(const Uuid& id) { return static_cast<std::uint32_t>(Hash{}(id)); }
  static std::size_t capacity_for(std::size_t n) {
    std::size_t c = 16;
    while (c < n * 2) c *= 2;
    return c;
  }
  void rehash(std::size_t capacity) {
    std::vector<Slot, HugePageAllocator<Slot>> old(capacity);
    old.swap(slots_);
    mask_ = capacity - 1;
    for (const Slot& s : old) {
      if (s.handle == kNil) continue;
      std::size_t i = s.hash & mask_;
      while (slots_[i].handle != kNil) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot, HugePageAllocator<Slot>> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

}  // namespace hydrox::engine
