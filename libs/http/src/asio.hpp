#pragma once
// Private to libs/http: the Asio/Beast side of Runtime.
#include <boost/asio.hpp>

#include <atomic>
#include <condition_variable>
#include <mutex>
#include <optional>
#include <thread>
#include <vector>

#include "hydrox/http/runtime.hpp"

namespace hydrox::http {

namespace asio = boost::asio;

struct Runtime::Impl {
  explicit Impl(const Runtime::Options& o)
      : options(o), io(o.io_threads), blocking_pool(static_cast<std::size_t>(o.blocking_threads)),
        signals(io, SIGINT, SIGTERM) {}
  Runtime::Options options;
  asio::io_context io;
  asio::thread_pool blocking_pool;
  asio::signal_set signals;
  std::atomic<std::size_t> blocking_queued{0};
  std::atomic<bool> stopping{false};
  std::function<void()> signal_handler;
  std::vector<std::shared_ptr<asio::steady_timer>> timers;
  std::mutex timers_mu;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  // After stop(), whatever still runs past the drain window (a stuck peer) does not hold the exit.
  std::thread watchdog;
  std::mutex watchdog_mu;
  std::condition_variable watchdog_cv;
  bool finished = false;
};

}  // namespace hydrox::http
