#include <algorithm>
#include <bit>

#include "hydrox/engine/book.hpp"

namespace hydrox::engine {

void FastBook::Ladder::grow(Price p) {
  // Grow to cover the old window and p, with slack on both sides, keeping 64-level alignment.
  Price lo = levels.empty() ? p : std::min(base, p);
  Price hi = levels.empty() ? p : std::max(base + static_cast<Price>(levels.size()) - 1, p);
  Price span = hi - lo + 1;
  Price slack = std::max<Price>(1024, span);
  Price new_base = std::max<Price>(0, lo - slack);
  new_base -= new_base % 64;
  std::size_t new_size = static_cast<std::size_t>(hi + slack - new_base + 1);
  new_size = (new_size + 4095) / 4096 * 4096;
  std::vector<Level> nl(new_size);
  std::vector<std::uint64_t> nw(new_size / 64, 0);
  std::vector<std::uint64_t> ns((nw.size() + 63) / 64, 0);
  for (std::size_t i = 0; i < levels.size(); ++i) {
    if (levels[i].head == kNil) continue;
    std::size_t j = static_cast<std::size_t>(base + static_cast<Price>(i) - new_base);
    nl[j] = levels[i];
    nw[j / 64] |= 1ull << (j % 64);
    ns[j / 4096] |= 1ull << ((j / 64) % 64);
  }
  levels.swap(nl);
  words.swap(nw);
  summary.swap(ns);
  base = new_base;
}

void FastBook::Ladder::set_bit(std::size_t i) {
  words[i / 64] |= 1ull << (i % 64);
  summary[i / 4096] |= 1ull << ((i / 64) % 64);
}

void FastBook::Ladder::clear_bit(std::size_t i) {
  std::size_t w = i / 64;
  words[w] &= ~(1ull << (i % 64));
  if (words[w] == 0) summary[w / 64] &= ~(1ull << (w % 64));
}

std::optional<std::size_t> FastBook::Ladder::scan_up(std::size_t from) const {
  if (from >= levels.size()) return std::nullopt;
  std::size_t w = from / 64;
  std::uint64_t bits = words[w] & (~0ull << (from % 64));
  if (bits) return w * 64 + static_cast<std::size_t>(std::countr_zero(bits));
  // Next non-empty word via the summary.
  std::size_t sw = (w + 1) / 64;
  std::size_t sbit = (w + 1) % 64;
  for (; sw < summary.size(); ++sw, sbit = 0) {
    std::uint64_t s = sbit >= 64 ? 0 : summary[sw] & (~0ull << sbit);
    if (s) {
      std::size_t word = sw * 64 + static_cast<std::size_t>(std::countr_zero(s));
      return word * 64 + static_cast<std::size_t>(std::countr_zero(words[word]));
    }
  }
  return std::nullopt;
}

std::optional<std::size_t> FastBook::Ladder::scan_down(std::size_t from) const {
  if (levels.empty()) return std::nullopt;
  if (from >= levels.size()) from = levels.size() - 1;
  std::size_t w = from / 64;
  std::uint64_t mask = (from % 64 == 63) ? ~0ull : ((1ull << (from % 64 + 1)) - 1);
  std::uint64_t bits = words[w] & mask;
  if (bits) return w * 64 + 63 - static_cast<std::size_t>(std::countl_zero(bits));
  if (w == 0) return std::nullopt;
  // Previous non-empty word via the summary.
  std::size_t target = w - 1;
  for (std::size_t sw = target / 64 + 1; sw-- > 0;) {
    std::uint64_t s = summary[sw];
    if (sw == target / 64) {
      std::size_t b = target % 64;
      s &= (b == 63) ? ~0ull : ((1ull << (b + 1)) - 1);
    }
    if (s) {
      std::size_t word = sw * 64 + 63 - static_cast<std::size_t>(std::countl_zero(s));
      return word * 64 + 63 - static_cast<std::size_t>(std::countl_zero(words[word]));
    }
  }
  return std::nullopt;
}

Qty FastBook::add(Handle h) {
  Order& o = (*pool_)[h];
  Ladder& l = ladder(o.side);
  l.ensure(o.price);
  std::size_t i = static_cast<std::size_t>(o.price - l.base);
  Level& lv = l.levels[i];
  o.next = kNil;
  o.prev = lv.tail;
  if (lv.tail != kNil) {
    (*pool_)[lv.tail].next = h;
  } else {
    lv.head = h;
    l.set_bit(i);
  }
  lv.tail = h;
  lv.size += o.remaining;
  ++count_;
  if (!l.best || (l.is_bid ? o.price > *l.best : o.price < *l.best)) l.best = o.price;
  return lv.size;
}

void FastBook::level_emptied(Ladder& l, std::size_t index) {
  l.clear_bit(index);
  Price p = l.base + static_cast<Price>(index);
  if (l.best && *l.best == p) {
    auto next = l.is_bid ? (index == 0 ? std::nullopt : l.scan_down(index - 1)) : l.scan_up(index + 1);
    l.best = next ? std::optional<Price>(l.base + static_cast<Price>(*next)) : std::nullopt;
  }
}

void FastBook::remove(Handle h) {
  Order& o = (*pool_)[h];
  Ladder& l = ladder(o.side);
  std::size_t i = static_cast<std::size_t>(o.price - l.base);
  Level& lv = l.levels[i];
  if (o.prev != kNil) (*pool_)[o.prev].next = o.next; else lv.head = o.next;
  if (o.next != kNil) (*pool_)[o.next].prev = o.prev; else lv.tail = o.prev;
  o.prev = o.next = kNil;
  lv.size -= o.remaining;
  --count_;
  if (lv.head == kNil) level_emptied(l, i);
}

Qty FastBook::reduce(Handle h, Qty by) {
  const Order& o = (*pool_)[h];
  Ladder& l = ladder(o.side);
  return l.levels[static_cast<std::size_t>(o.price - l.base)].size -= by;
}

std::optional<Price> FastBook::best(Side side) const { return ladder(side).best; }

Handle FastBook::front(Side side, Price price) const {
  const Ladder& l = ladder(side);
  if (!l.contains(price)) return kNil;
  return l.levels[static_cast<std::size_t>(price - l.base)].head;
}

Qty FastBook::level_size(Side side, Price price) const {
  const Ladder& l = ladder(side);
  if (!l.contains(price)) return 0;
  return l.levels[static_cast<std::size_t>(price - l.base)].size;
}

void FastBook::for_each_level(Side side, const std::function<bool(Price, Qty)>& f) const {
  const Ladder& l = ladder(side);
  if (!l.best) return;
  std::optional<std::size_t> i = static_cast<std::size_t>(*l.best - l.base);
  while (i) {
    if (!f(l.base + static_cast<Price>(*i), l.levels[*i].size)) return;
    if (l.is_bid) {
      i = *i == 0 ? std::nullopt : l.scan_down(*i - 1);
    } else {
      i = l.scan_up(*i + 1);
    }
  }
}

std::size_t FastBook::memory_bytes() const {
  std::size_t n = 0;
  for (const Ladder* l : {&bids_, &asks_}) {
    n += l->levels.capacity() * sizeof(Level) + (l->words.capacity() + l->summary.capacity()) * 8;
  }
  return n;
}

// ---- ReferenceBook ----------------------------------------------------------------------------

Qty ReferenceBook::add(Handle h) {
  const Order& o = (*pool_)[h];
  auto& q = side_map(o.side)[o.price];
  q.push_back(h);
  where_[h] = std::prev(q.end());
  return level_size(o.side, o.price);
}

void ReferenceBook::remove(Handle h) {
  const Order& o = (*pool_)[h];
  auto& m = side_map(o.side);
  auto level = m.find(o.price);
  level->second.erase(where_.at(h));
  where_.erase(h);
  if (level->second.empty()) m.erase(level);
}

// Sizes are summed from the orders on demand; the order's remaining drops after this call.
Qty ReferenceBook::reduce(Handle h, Qty by) {
  const Order& o = (*pool_)[h];
  return level_size(o.side, o.price) - by;
}

std::optional<Price> ReferenceBook::best(Side side) const {
  const auto& m = side_map(side);
  if (m.empty()) return std::nullopt;
  return side == Side::buy ? m.rbegin()->first : m.begin()->first;
}

Handle ReferenceBook::front(Side side, Price price) const {
  const auto& m = side_map(side);
  auto it = m.find(price);
  return it == m.end() ? kNil : it->second.front();
}

Handle ReferenceBook::next(Handle h) const {
  const Order& o = (*pool_)[h];
  const auto& q = side_map(o.side).at(o.price);
  auto it = std::next(where_.at(h));
  return it == q.end() ? kNil : *it;
}

Qty ReferenceBook::level_size(Side side, Price price) const {
  const auto& m = side_map(side);
  auto it = m.find(price);
  if (it == m.end()) return 0;
  Qty total = 0;
  for (Handle h : it->second) total += (*pool_)[h].remaining;
  return total;
}

void ReferenceBook::for_each_level(Side side, const std::function<bool(Price, Qty)>& f) const {
  const auto& m = side_map(side);
  auto visit = [&](const auto& entry) {
    Qty total = 0;
    for (Handle h : entry.second) total += (*pool_)[h].remaining;
    return f(entry.first, total);
  };
  if (side == Side::buy) {
    for (auto it = m.rbegin(); it != m.rend(); ++it) {
      if (!visit(*it)) return;
    }
  } else {
    for (auto it = m.begin(); it != m.end(); ++it) {
      if (!visit(*it)) return;
    }
  }
}

}  // namespace hydrox::engine
