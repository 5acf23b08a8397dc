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

// The io_context the calling thread runs (set by Runtime::run for each IO thread), or null on
// any other thread (the blocking pool, an engine thread, a Redis reader).
asio::io_context* current_io_context();
void set_current_io_context(asio::io_context* io);

// One io_context per IO thread, each run by exactly that thread: `io` (timers, the acceptor,
// client requests made off the IO threads, and a share of the connections) and `conn_ios` (the other threads' connections). A
// connection stays on one thread for its life, so its work never hops threads and no thread
// wakes another for it; a single io_context shared by several threads spent a fifth of the
// gateway's time in condition-variable wakeups and context switches.
struct Runtime::Impl {
  explicit Impl(const Runtime::Options& o)
      : options(o), io(1), blocking_pool(static_cast<std::size_t>(o.blocking_threads)),
        signals(io, SIGINT, SIGTERM) {
    for (int i = 1; i < o.io_threads; ++i) conn_ios.push_back(std::make_unique<asio::io_context>(1));
  }
  Runtime::Options options;
  asio::io_context io;
  std::vector<std::unique_ptr<asio::io_context>> conn_ios;
  std::atomic<std::size_t> next_conn_io{0};
  // The context for the next connection, round robin over every IO thread.
  asio::io_context& connection_io() {
    const std::size_t n = next_conn_io.fetch_add(1) % (conn_ios.size() + 1);
    return n == 0 ? io : *conn_ios[n - 1];
  }
  asio::thread_pool blocking_pool;
  asio::signal_set signals;
  std::atomic<std::size_t> blocking_queued{0};
  std::atomic<int> blocking_running{0};
  // Connection threads still running. `io` (which runs the clients that blocking jobs call
  // synchronously) is let go only when these are done and no blocking job runs: otherwise a
  // job still waiting on a client would wait for a loop that has ended.
  std::atomic<int> conn_threads_running{0};
  std::atomic<bool> stopping{false};
  std::function<void()> signal_handler;
  std::vector<std::shared_ptr<asio::steady_timer>> timers;
  std::mutex timers_mu;
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> guard;
  std::vector<asio::executor_work_guard<asio::io_context::executor_type>> conn_guards;
  // After stop(), whatever still runs past the drain window (a stuck peer) does not hold the exit.
  std::thread watchdog;
  std::mutex watchdog_mu;
  std::condition_variable watchdog_cv;
  bool finished = false;
};

}  // namespace hydrox::http
