#pragma once
// Open-addressing hash map (linear probing, backward-shift deletion) for the engine's indexes:
// growth is amortized (capacity doubles at 50 % load), so steady-state inserts and erases do not
// allocate.
#include <cstdint>
#include <optional>
#include <utility>
#include <vector>

#include "hydrox/engine/prefetch.hpp"

namespace hydrox::engine {

template <class K, class V, class Hash>
class FlatMap {
 public:
  explicit FlatMap(std::size_t reserve = 1024) { rehash(capacity_for(reserve)); }

  V* find(const K& key) {
    std::size_t i = slot_of(key);
    while (slots_[i].used) {
      if (slots_[i].key == key) return &slots_[i].value;
      i = (i + 1) & mask_;
    }
    return nullptr;
  }
  const V* find(const K& key) const { return const_cast<FlatMap*>(this)->find(key); }

  // Inserts or overwrites.
  void put(const K& key, V value) {
    if ((size_ + 1) * 2 > slots_.size()) rehash(slots_.size() * 2);
    std::size_t i = slot_of(key);
    while (slots_[i].used) {
      if (slots_[i].key == key) {
        slots_[i].value = std::move(value);
        return;
      }
      i = (i + 1) & mask_;
    }
    slots_[i].used = true;
    slots_[i].key = key;
    slots_[i].value = std::move(value);
    ++size_;
  }

  bool erase(const K& key) {
    std::size_t i = slot_of(key);
    while (slots_[i].used) {
      if (slots_[i].key == key) break;
      i = (i + 1) & mask_;
    }
    if (!slots_[i].used) return false;
    // Backward shift: pull later entries of the probe run into the hole.
    std::size_t hole = i;
    std::size_t j = (i + 1) & mask_;
    while (slots_[j].used) {
      std::size_t home = slot_of(slots_[j].key);
      bool movable = hole <= j ? (home <= hole || home > j) : (home <= hole && home > j);
      if (movable) {
        slots_[hole] = std::move(slots_[j]);
        hole = j;
      }
      j = (j + 1) & mask_;
    }
    slots_[hole].used = false;
    --size_;
    return true;
  }

  // Starts loading the key's home slot into cache; call it well before put/find on a large map.
  void prefetch(const K& key) const { prefetch_line(&slots_[slot_of(key)]); }

  std::size_t size() const { return size_; }
  std::size_t memory_bytes() const { return slots_.capacity() * sizeof(Slot); }

  template <class F>
  void for_each(F&& f) const {
    for (const auto& s : slots_) {
      if (s.used) f(s.key, s.value);
    }
  }

  void clear() {
    for (auto& s : slots_) s.used = false;
    size_ = 0;
  }

 private:
  struct Slot {
    K key{};
    V value{};
    bool used = false;
  };
  static std::size_t capacity_for(std::size_t n) {
    std::size_t c = 16;
    while (c < n * 2) c *= 2;
    return c;
  }
  std::size_t slot_of(const K& key) const { return Hash{}(key) & mask_; }
  void rehash(std::size_t capacity) {
    std::vector<Slot> old;
    old.swap(slots_);
    slots_.resize(capacity);
    mask_ = capacity - 1;
    size_ = 0;
    for (auto& s : old) {
      if (s.used) put(s.key, std::move(s.value));
    }
  }

  std::vector<Slot> slots_;
  std::size_t mask_ = 0;
  std::size_t size_ = 0;
};

}  // namespace hydrox::engine
