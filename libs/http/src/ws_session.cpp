#include "ws_session.hpp"

#include <cstring>

#include "hydrox/metrics/metrics.hpp"

namespace hydrox::http {

namespace {

constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);
constexpr auto kCloseWait = std::chrono::seconds(5);
constexpr std::size_t kMaxFramesPerWrite = 1024;

metrics::Counter& writes_metric() {
  static auto& c = metrics::Registry::global().counter("ws_writes_total", "WebSocket gather writes (system calls asked for)");
  return c;
}
metrics::Counter& frames_metric() {
  static auto& c = metrics::Registry::global().counter("ws_frames_sent_total", "WebSocket frames written");
  return c;
}

}  // namespace

// Sessions with frames to write, per IO thread: a burst that reaches thousands of sessions posts
// one job to each thread instead of one per session (each post from another thread costs a lock
// and a wakeup). An Asio service of the thread's io_context, so it lives and dies with it.
class WsSession::FlushQueue : public asio::execution_context::service {
 public:
  using key_type = FlushQueue;
  static inline asio::execution_context::id id;
  explicit FlushQueue(asio::execution_context& ctx)
      : service(ctx), ex_(static_cast<asio::io_context&>(ctx).get_executor()) {}  // Runtime's contexts
  static FlushQueue& of(const asio::any_io_executor& ex) {
    return asio::use_service<FlushQueue>(asio::query(ex, asio::execution::context));
  }
  void schedule(std::shared_ptr<WsSession> session) {
    bool post = false;
    {
      std::lock_guard lock(mu_);
      dirty_.push_back(std::move(session));
      if (!posted_) post = posted_ = true;
    }
    if (post) asio::post(ex_, [this] { drain(); });
  }

 private:
  void shutdown() override {
    std::lock_guard lock(mu_);
    dirty_.clear();
  }
  void drain() {
    {
      std::lock_guard lock(mu_);
      batch_.swap(dirty_);
      posted_ = false;
    }
    for (auto& s : batch_) s->flush();
    batch_.clear();
  }
  asio::io_context::executor_type ex_;
  std::mutex mu_;
  std::vector<std::shared_ptr<WsSession>> dirty_;  // mu_
  bool posted_ = false;                            // mu_
  std::vector<std::shared_ptr<WsSession>> batch_;  // the IO thread only
};

bool valid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const auto* end = p + s.size();
  while (p < end) {
    const unsigned char c = *p;
    if (c < 0x80) {
      ++p;
      continue;
    }
    int n = 0;
    std::uint32_t cp = 0, min = 0;
    if ((c & 0xE0) == 0xC0) {
      n = 1, cp = c & 0x1F, min = 0x80;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2, cp = c & 0x0F, min = 0x800;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3, cp = c & 0x07, min = 0x10000;
    } else {
      return false;
    }
    if (end - p <= n) return false;
    for (int i = 1; i <= n; ++i) {
      if ((p[i] & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (p[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    p += n + 1;
  }
  return true;
}

WsSession::WsSession(asio::ip::tcp::socket socket, Request req, const WsOptions& options, std::uint64_t id,
                     std::string_view early)
    : socket_(std::move(socket)),
      flush_queue_(&FlushQueue::of(socket_.get_executor())),
      req_(std::move(req)),
      options_(options),
      id_(id),
      idle_timer_(socket_.get_executor()),
      close_timer_(socket_.get_executor()) {
  in_.assign(early.begin(), early.end());
  in_end_ = in_.size();
}

bool WsSession::send(std::string text) { return send_shared(std::make_shared<const std::string>(std::move(text))); }

bool WsSession::send_shared(std::shared_ptr<const std::string> text) {
  if (closed_.load()) return false;
  const std::size_t size = text->size();
  if (queued_.load() + 1 > options_.max_queued_messages || bytes_.load() + size > options_.max_queued_bytes) return false;
  queued_.fetch_add(1);
  bytes_.fetch_add(size);
  if (!enqueue(0x1, std::move(text), true)) {
    queued_.fetch_sub(1);
    bytes_.fetch_sub(size);
    return false;
  }
  return true;
}

void WsSession::close(std::uint16_t code, std::string reason) {
  if (closed_.exchange(true)) return;
  enqueue_close(code, reason);
}

void WsSession::abort() {
  closed_.store(true);
  asio::post(socket_.get_executor(), [self = shared_from_this()] { self->shut(); });
}

bool WsSession::enqueue(unsigned char opcode, std::shared_ptr<const std::string> body, bool counted) {
  Frame f;
  const std::size_t n = body ? body->size() : 0;
  f.head[0] = static_cast<unsigned char>(0x80 | opcode);
  if (n < 126) {
    f.head[1] = static_cast<unsigned char>(n);
    f.head_len = 2;
  } else if (n <= 0xFFFF) {
    f.head[1] = 126;
    f.head[2] = static_cast<unsigned char>(n >> 8);
    f.head[3] = static_cast<unsigned char>(n & 0xFF);
    f.head_len = 4;
  } else {
    f.head[1] = 127;
    for (int i = 0; i < 8; ++i) f.head[2 + i] = static_cast<unsigned char>((static_cast<std::uint64_t>(n) >> (56 - 8 * i)) & 0xFF);
    f.head_len = 10;
  }
  f.counted = counted;
  f.is_close = opcode == 0x8;
  f.body = std::move(body);
  bool post = false;
  {
    std::lock_guard lock(mu_);
    if (close_queued_) return false;
    if (f.is_close) close_queued_ = true;
    if (opcode == 0xA) {
      // At most one pong waits: a newer ping's answer replaces one not yet written (RFC 6455
      // 5.5.3 allows answering only the most recent ping), so pings cannot grow the queue.
      for (Frame& queued : pending_) {
        if ((queued.head[0] & 0x0F) == 0xA) {
          queued = std::move(f);
          return true;
        }
      }
    }
    pending_.push_back(std::move(f));
    if (!scheduled_) post = scheduled_ = true;
  }
  if (post) flush_queue_->schedule(shared_from_this());
  return true;
}

void WsSession::enqueue_close(std::uint16_t code, std::string_view reason) {
  auto body = std::make_shared<std::string>();
  body->push_back(static_cast<char>(code >> 8));
  body->push_back(static_cast<char>(code & 0xFF));
  body->append(reason.substr(0, 123));
  enqueue(0x8, std::move(body), false);
}

void WsSession::flush() {
  if (writing_) return;  // the write in flight calls flush() when it completes
  {
    std::lock_guard lock(mu_);
    if (pending_.size() <= kMaxFramesPerWrite) {
      inflight_.swap(pending_);
      scheduled_ = false;
    } else {  // the rest stays scheduled: the completion takes it
      inflight_.assign(std::make_move_iterator(pending_.begin()),
                       std::make_move_iterator(pending_.begin() + kMaxFramesPerWrite));
      pending_.erase(pending_.begin(), pending_.begin() + kMaxFramesPerWrite);
    }
  }
  if (inflight_.empty()) return;
  buffers_.clear();
  for (const Frame& f : inflight_) {
    buffers_.emplace_back(f.head.data(), f.head_len);
    if (f.body && !f.body->empty()) buffers_.emplace_back(f.body->data(), f.body->size());
  }
  writing_ = true;
  asio::async_write(socket_, buffers_,
                    [self = shared_from_this()](boost::system::error_code ec, std::size_t) { self->on_written(ec); });
}

void WsSession::on_written(boost::system::error_code ec) {
  std::size_t msgs = 0, bytes = 0;
  bool close_sent = false;
  for (const Frame& f : inflight_) {
    if (f.counted) {
      ++msgs;
      bytes += f.body->size();
    }
    close_sent = close_sent || f.is_close;
  }
  writes_metric().inc();
  frames_metric().inc(inflight_.size());
  inflight_.clear();
  writing_ = false;
  queued_.fetch_sub(msgs);
  bytes_.fetch_sub(bytes);
  if (ec) {  // the peer is gone: what is queued will never be sent
    closed_.store(true);
    std::vector<Frame> dropped;
    {
      std::lock_guard lock(mu_);
      dropped.swap(pending_);
      close_queued_ = true;
      scheduled_ = false;
    }
    for (const Frame& f : dropped) {
      if (f.counted) {
        queued_.fetch_sub(1);
        bytes_.fetch_sub(f.body->size());
      }
    }
    shut();
    return;
  }
  if (close_sent) {
    close_written_ = true;
    boost::system::error_code ignored;
    socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
    if (peer_closed_) {
      shut();
      return;
    }
    close_timer_.expires_after(kCloseWait);
    close_timer_.async_wait([self = shared_from_this()](boost::system::error_code e) {
      if (!e) self->shut();
    });
    return;
  }
  flush();
}

void WsSession::shut() {
  boost::system::error_code ignored;
  idle_timer_.cancel();
  close_timer_.cancel();
  socket_.close(ignored);
}

asio::awaitable<bool> WsSession::fill(std::size_t need) {
  while (in_end_ - in_begin_ < need) {
    if (in_begin_ > 0) {  // keep the unread bytes at the front
      std::memmove(in_.data(), in_.data() + in_begin_, in_end_ - in_begin_);
      in_end_ -= in_begin_;
      in_begin_ = 0;
    }
    if (in_.size() - in_end_ < 4096 || in_.size() < need) in_.resize(std::max({in_.size() * 2, need + 4096, std::size_t{8192}}));
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(in_.data() + in_end_, in_.size() - in_end_), kTuple);
    if (ec) co_return false;
    in_end_ += n;
    last_rx_ = std::chrono::steady_clock::now();
  }
  co_return true;
}

asio::awaitable<void> WsSession::run(std::function<void(std::string_view)> on_message) {
  auto self = shared_from_this();
  last_rx_ = std::chrono::steady_clock::now();
  if (options_.idle_timeout_s > 0) {
    asio::co_spawn(socket_.get_executor(), [self]() { return self->watch_idle(); }, asio::detached);
  }
  std::string message;
  int message_op = 0;
  bool reading = true;  // false once closing: whatever else arrives is dropped until the socket ends
  // Inbound rate: data messages and control frames (pings, pongs) alike, per second.
  auto window_start = std::chrono::steady_clock::now();
  std::uint32_t window_frames = 0;
  auto over_rate = [&] {
    const auto now = std::chrono::steady_clock::now();
    if (now - window_start >= std::chrono::seconds(1)) {
      window_start = now;
      window_frames = 0;
    }
    return options_.max_inbound_per_second > 0 && ++window_frames > options_.max_inbound_per_second;
  };
  auto fail = [&](std::uint16_t code, std::string_view why) {
    closed_.store(true);
    enqueue_close(code, why);
    reading = false;
  };
  for (;;) {
    if (!reading) {  // drain
      in_begin_ = in_end_;
      if (!co_await fill(1)) break;
      continue;
    }
    if (!co_await fill(2)) break;
    const unsigned char b0 = in_[in_begin_], b1 = in_[in_begin_ + 1];
    const bool fin = (b0 & 0x80) != 0, masked = (b1 & 0x80) != 0;
    const int op = b0 & 0x0F;
    std::uint64_t len = b1 & 0x7F;
    std::size_t head = 2 + (len == 126 ? 2 : len == 127 ? 8 : 0) + (masked ? 4 : 0);
    if (!co_await fill(head)) break;
    const unsigned char* h = in_.data() + in_begin_;
    if (len == 126) {
      len = (static_cast<std::uint64_t>(h[2]) << 8) | h[3];
    } else if (len == 127) {
      len = 0;
      for (int i = 0; i < 8; ++i) len = (len << 8) | h[2 + i];
    }
    if ((b0 & 0x70) != 0 || !masked) {
      fail(1002, "protocol error");
      continue;
    }
    if (op >= 0x8) {
      if (!fin || len > 125 || (op != 0x8 && op != 0x9 && op != 0xA)) {
        fail(1002, "protocol error");
        continue;
      }
    } else if (op > 0x2 || (op == 0x0) == (message_op == 0)) {  // unknown, or a continuation out of place
      fail(1002, "protocol error");
      continue;
    } else if (len > options_.max_message_bytes - std::min(message.size(), options_.max_message_bytes)) {
      fail(1009, "message too big");
      continue;
    }
    if (!co_await fill(head + len)) break;
    unsigned char* data = in_.data() + in_begin_ + head;
    const unsigned char* key = data - 4;
    for (std::size_t i = 0; i < len; ++i) data[i] ^= key[i & 3];
    const std::string_view payload(reinterpret_cast<const char*>(data), len);
    in_begin_ += head + len;

    if (op == 0x8) {  // close: answer with the same code, then the socket ends
      peer_closed_ = true;
      closed_.store(true);
      if (len == 1 || (len > 2 && !valid_utf8(payload.substr(2)))) {
        fail(1002, "protocol error");
        continue;
      }
      const std::uint16_t code = len >= 2 ? static_cast<std::uint16_t>((static_cast<unsigned char>(payload[0]) << 8) |
                                                                       static_cast<unsigned char>(payload[1]))
                                          : 1000;
      if (close_written_) {
        shut();
      } else {
        enqueue_close(code, "");  // no-op when a close of ours is already queued
      }
      reading = false;
      continue;
    }
    if (over_rate()) {  // every frame but a close: messages, fragments (even empty), pings, pongs
      fail(1008,
           "more than " + std::to_string(options_.max_inbound_per_second) + " messages per second");
      continue;
    }
    if (op == 0x9) {
      enqueue(0xA, std::make_shared<const std::string>(payload), false);
      continue;
    }
    if (op == 0xA) continue;
    if (fin && message_op == 0) {  // the common case: a whole message in one frame
      if (op == 0x1 && !valid_utf8(payload)) {
        fail(1007, "invalid UTF-8");
        continue;
      }
      if (on_message) on_message(payload);
      continue;
    }
    if (op != 0x0) message_op = op;
    message.append(payload);
    if (!fin) continue;
    if (message_op == 0x1 && !valid_utf8(message)) {
      fail(1007, "invalid UTF-8");
      continue;
    }
    if (on_message) on_message(message);
    message.clear();
    message_op = 0;
  }
  closed_.store(true);
  shut();
  co_return;
}

asio::awaitable<void> WsSession::watch_idle() {
  auto self = shared_from_this();
  const auto idle = std::chrono::seconds(options_.idle_timeout_s);
  for (;;) {
    idle_timer_.expires_after(idle / 4);
    auto [ec] = co_await idle_timer_.async_wait(kTuple);
    if (ec || !socket_.is_open()) co_return;
    const auto quiet = std::chrono::steady_clock::now() - last_rx_;
    if (quiet >= idle) {  // not even a pong: the peer is gone
      shut();
      co_return;
    }
    if (quiet >= idle / 2) enqueue(0x9, nullptr, false);
  }
}

}  // namespace hydrox::http
