#pragma once
// A bounded hand-off from one pipeline stage to the next (any number of threads on either side):
// push() waits while `capacity` items are waiting (try_push() refuses instead), pop() waits while
// none are; close() lets pop() drain what is left and then answer nullopt, and makes push() refuse.
#include <condition_variable>
#include <cstddef>
#include <deque>
#include <mutex>
#include <optional>
#include <utility>

namespace hydrox {

template <class T>
class Handoff {
 public:
  explicit Handoff(std::size_t capacity) : capacity_(capacity) {}

  bool push(T item) {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [&] { return items_.size() < capacity_ || closed_; });
    if (closed_) return false;
    items_.push_back(std::move(item));
    lock.unlock();
    not_empty_.notify_one();
    return true;
  }

  // push() without waiting: false (and `item` dropped) when full or closed.
  bool try_push(T item) {
    {
      std::lock_guard lock(mu_);
      if (items_.size() >= capacity_ || closed_) return false;
      items_.push_back(std::move(item));
    }
    not_empty_.notify_one();
    return true;
  }

  std::optional<T> pop() {
    std::unique_lock lock(mu_);
    not_empty_.wait(lock, [&] { return !items_.empty() || closed_; });
    if (items_.empty()) return std::nullopt;
    std::optional<T> item(std::move(items_.front()));
    items_.pop_front();
    lock.unlock();
    not_full_.notify_one();
    return item;
  }

  // pop() without waiting: nullopt when nothing waits.
  std::optional<T> try_pop() {
    std::unique_lock lock(mu_);
    if (items_.empty()) return std::nullopt;
    std::optional<T> item(std::move(items_.front()));
    items_.pop_front();
    lock.unlock();
    not_full_.notify_one();
    return item;
  }

  std::size_t size() {
    std::lock_guard lock(mu_);
    return items_.size();
  }

  // Waits until fewer than `capacity` items wait (or the hand-off is closed): a producer that
  // gathers its next item only then makes it as large as it can be.
  void wait_for_room() {
    std::unique_lock lock(mu_);
    not_full_.wait(lock, [&] { return items_.size() < capacity_ || closed_; });
  }

  void close() {
    {
      std::lock_guard lock(mu_);
      closed_ = true;
    }
    not_empty_.notify_all();
    not_full_.notify_all();
  }

  // Calls f on every waiting item, in order, under the lock.
  template <class F>
  void for_each(F&& f) {
    std::lock_guard lock(mu_);
    for (auto& item : items_) f(item);
  }

 private:
  std::mutex mu_;
  std::condition_variable not_empty_, not_full_;
  std::deque<T> items_;
  std::size_t capacity_;
  bool closed_ = false;
};

}  // namespace hydrox
