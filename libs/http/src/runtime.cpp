#include "asio.hpp"

namespace hydrox::http {

namespace {
thread_local asio::io_context* t_current_io = nullptr;
}  // namespace
asio::io_context* current_io_context() { return t_current_io; }
void set_current_io_context(asio::io_context* io) { t_current_io = io; }

Runtime::Runtime() : Runtime(Options{}) {}
Runtime::Runtime(Options options) : impl_(std::make_unique<Impl>(options)) {}
Runtime::~Runtime() {
  stop();
  {
    std::lock_guard lock(impl_->watchdog_mu);
    impl_->finished = true;
  }
  impl_->watchdog_cv.notify_all();
  if (impl_->watchdog.joinable()) impl_->watchdog.join();
  impl_->blocking_pool.join();
}

void Runtime::post(std::function<void()> fn) { asio::post(impl_->io, std::move(fn)); }

bool Runtime::try_blocking(std::function<void()> fn) {
  if (impl_->blocking_queued.load() >= impl_->options.max_blocking_queue) return false;
  impl_->blocking_queued.fetch_add(1);
  asio::post(impl_->blocking_pool, [this, fn = std::move(fn)] {
    impl_->blocking_running.fetch_add(1);
    impl_->blocking_queued.fetch_sub(1);
    fn();
    impl_->blocking_running.fetch_sub(1);
  });
  return true;
}

bool Runtime::try_blocking(std::function<void()> work, std::function<void()> then) {
  asio::io_context* back = current_io_context();
  if (back == nullptr) back = &impl_->io;
  return try_blocking([back, work = std::move(work), then = std::move(then)]() mutable {
    work();
    asio::post(*back, std::move(then));
  });
}

namespace {
void arm(std::shared_ptr<asio::steady_timer> timer, std::chrono::milliseconds period,
         std::shared_ptr<std::function<void()>> fn, std::atomic<bool>* stopping) {
  timer->expires_after(period);
  timer->async_wait([timer, period, fn, stopping](boost::system::error_code ec) {
    if (ec || stopping->load()) return;
    (*fn)();
    arm(timer, period, fn, stopping);
  });
}
}  // namespace

void Runtime::every(std::chrono::milliseconds period, std::function<void()> fn) {
  auto timer = std::make_shared<asio::steady_timer>(impl_->io);
  {
    std::lock_guard lock(impl_->timers_mu);
    impl_->timers.push_back(timer);
  }
  arm(timer, period, std::make_shared<std::function<void()>>(std::move(fn)), &impl_->stopping);
}

void Runtime::after(std::chrono::milliseconds delay, std::function<void()> fn) {
  if (impl_->stopping.load()) return;
  auto timer = std::make_shared<asio::steady_timer>(impl_->io, delay);
  timer->async_wait([this, timer, fn = std::move(fn)](boost::system::error_code ec) {
    if (!ec && !impl_->stopping.load()) fn();  // nothing new starts once stopping
  });
}

void Runtime::on_signal(std::function<void()> fn) { impl_->signal_handler = std::move(fn); }

void Runtime::run() {
  impl_->signals.async_wait([this](boost::system::error_code ec, int) {
    if (ec) return;
    if (impl_->signal_handler) {
      impl_->signal_handler();
    } else {
      stop();
    }
  });
  if (!impl_->stopping.load()) {
    impl_->guard.emplace(asio::make_work_guard(impl_->io));
    for (auto& c : impl_->conn_ios) impl_->conn_guards.push_back(asio::make_work_guard(*c));
  }
  std::vector<std::thread> threads;
  impl_->conn_threads_running.store(static_cast<int>(impl_->conn_ios.size()));
  for (auto& c : impl_->conn_ios) {
    threads.emplace_back([impl = impl_.get(), ctx = c.get()] {
      set_current_io_context(ctx);
      ctx->run();
      impl->conn_threads_running.fetch_sub(1);
    });
  }
  set_current_io_context(&impl_->io);
  impl_->io.run();
  set_current_io_context(nullptr);
  for (auto& t : threads) t.join();
  {
    std::lock_guard lock(impl_->watchdog_mu);
    impl_->finished = true;
  }
  impl_->watchdog_cv.notify_all();
}

void Runtime::stop() {
  if (impl_->stopping.exchange(true)) return;
  impl_->watchdog = std::thread([impl = impl_.get()] {
    std::unique_lock lock(impl->watchdog_mu);
    if (!impl->watchdog_cv.wait_for(lock, std::chrono::seconds(8), [impl] { return impl->finished; })) {
      impl->io.stop();
      for (auto& c : impl->conn_ios) c->stop();
    }
  });
  asio::post(impl_->io, [this] {
    boost::system::error_code ignored;
    impl_->signals.cancel(ignored);
    {
      std::lock_guard lock(impl_->timers_mu);
      for (auto& t : impl_->timers) t->cancel();
      impl_->timers.clear();
    }
    for (auto& g : impl_->conn_guards) g.reset();
    // `io` ends once the connection threads and the blocking jobs are done (the watchdog bounds it).
    asio::co_spawn(
        impl_->io,
        [impl = impl_.get()]() -> asio::awaitable<void> {
          asio::steady_timer t(co_await asio::this_coro::executor);
          while (impl->conn_threads_running.load() > 0 || impl->blocking_running.load() > 0 ||
                 impl->blocking_queued.load() > 0) {
            t.expires_after(std::chrono::milliseconds(10));
            co_await t.async_wait(asio::as_tuple(asio::use_awaitable));
          }
          impl->guard.reset();
        },
        asio::detached);
  });
}

bool Runtime::stopping() const { return impl_->stopping.load(); }

}  // namespace hydrox::http
