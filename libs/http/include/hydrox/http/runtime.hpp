#pragma once
// The event loop of a service: IO threads for networking and timers, plus a bounded pool for
// blocking work (libpq, hiredis). Asio stays behind this interface.
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>

namespace hydrox::http {

class Runtime {
 public:
  struct Options {
    int io_threads = 1;
    int blocking_threads = 4;
    std::size_t max_blocking_queue = 4096;  // beyond this, try_blocking refuses (caller answers 503)
  };
  Runtime();
  explicit Runtime(Options options);
  ~Runtime();
  Runtime(const Runtime&) = delete;
  Runtime& operator=(const Runtime&) = delete;

  void post(std::function<void()> fn);
  // Runs fn on the blocking pool; false when the pool's queue is full.
  bool try_blocking(std::function<void()> fn);
  // Runs `work` on the blocking pool, then `then` on the IO thread that called this (the main loop
  // when called from another thread); false when the pool's queue is full (neither runs).
  bool try_blocking(std::function<void()> work, std::function<void()> then);
  // fn every period on an IO thread, first after one period, until stop().
  void every(std::chrono::milliseconds period, std::function<void()> fn);
  void after(std::chrono::milliseconds delay, std::function<void()> fn);

  // SIGINT/SIGTERM call on_signal (default: stop()).
  void on_signal(std::function<void()> fn);
  // Blocks running the IO threads until stop().
  void run();
  void stop();
  bool stopping() const;

  struct Impl;
  Impl& impl() { return *impl_; }

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace hydrox::http
