#pragma once
// The "absurd index sample" rule shared by market's oracle route and trading's index feed: a
// sample further than max_ppm from the last accepted price is refused unless three samples in a
// row agree within 1 % on the new level (a real move gets through on its third sample; a single
// wild one never does, and the feed is never locked out for good).
#include <cstdint>

namespace hydrox::catalog {

class JumpGuard {
 public:
  // Whether `price` may be accepted after `last` (0: nothing accepted yet).
  bool admit(std::int64_t last, std::int64_t price, std::int64_t max_ppm) {
    if (last <= 0 || static_cast<__int128>(distance(last, price)) * 1'000'000 <= static_cast<__int128>(last) * max_ppm) {
      reset();
      return true;
    }
    if (pending_ > 0 && static_cast<__int128>(distance(pending_, price)) * 100 <= pending_) {
      ++count_;
    } else {
      pending_ = price;
      count_ = 1;
    }
    if (count_ < 3) return false;
    reset();
    return true;
  }

 private:
  static std::int64_t distance(std::int64_t a, std::int64_t b) { return a > b ? a - b : b - a; }
  void reset() {
    pending_ = 0;
    count_ = 0;
  }
  std::int64_t pending_ = 0;  // the level a jump is waiting to have confirmed
  int count_ = 0;
};

}  // namespace hydrox::catalog
