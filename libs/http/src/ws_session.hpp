#pragma once
// Private to libs/http: a server-side WebSocket session on a plain TCP socket (RFC 6455), after
// Beast has answered the upgrade. Written here rather than with Beast's websocket::stream for one
// reason: a fan-out sends the same small message to thousands of sessions, and Beast writes one
// message per async_write, so one system call per message per session (plus the gateway tunnel's
// read and write of each). This session queues frames and writes everything queued in one gather
// write: under load the queue fills while a write is in flight and the next write takes it all.
//
// Threads: send/send_shared/close/abort from any thread; everything else on the socket's
// executor (one IO thread). Frames: server frames are unmasked text; client frames must be masked
// (else close 1002); control frames at most 125 bytes and unfragmented; a data message above
// max_message_bytes is refused from its length (close 1009); a text message must be UTF-8 (close
// 1007). Pings are answered; a ping is sent after idle_timeout/2 of silence and the connection is
// dropped after idle_timeout. A close handshake waits at most 5 s for the peer.
#include <array>
#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include "asio.hpp"
#include "hydrox/http/websocket.hpp"

namespace hydrox::http {

class WsSession final : public WsConnection, public std::enable_shared_from_this<WsSession> {
 public:
  // `early`: bytes the client sent right behind its upgrade request (read with it): the first input.
  WsSession(asio::ip::tcp::socket socket, Request req, const WsOptions& options, std::uint64_t id,
            std::string_view early = {});

  bool send(std::string text) override;
  bool send_shared(std::shared_ptr<const std::string> text) override;
  void close(std::uint16_t code, std::string reason) override;
  void abort() override;
  std::uint64_t id() const override { return id_; }
  std::size_t queued_messages() const override { return queued_.load(); }
  const Request& request() const override { return req_; }

  // Reads until the socket is closed (the session then accepts nothing more); `on_message` gets
  // each complete data message.
  asio::awaitable<void> run(std::function<void(std::string_view)> on_message);

 private:
  struct Frame {
    std::array<unsigned char, 10> head{};
    std::uint8_t head_len = 0;
    bool counted = false;  // a data message: counts against the queue limits until written
    bool is_close = false;
    std::shared_ptr<const std::string> body;
  };
  bool enqueue(unsigned char opcode, std::shared_ptr<const std::string> body, bool counted);
  void enqueue_close(std::uint16_t code, std::string_view reason);
  void flush();
  void on_written(boost::system::error_code ec);
  void shut();
  asio::awaitable<bool> fill(std::size_t need);
  asio::awaitable<void> watch_idle();

  class FlushQueue;
  asio::ip::tcp::socket socket_;
  FlushQueue* flush_queue_;
  Request req_;
  WsOptions options_;
  std::uint64_t id_;

  std::mutex mu_;
  std::vector<Frame> pending_;  // mu_
  bool scheduled_ = false;      // mu_: a flush is posted or will follow the write in flight
  bool close_queued_ = false;   // mu_: nothing is queued after a close frame

  // Executor only.
  std::vector<Frame> inflight_;
  std::vector<asio::const_buffer> buffers_;
  bool writing_ = false;
  bool close_written_ = false;
  bool peer_closed_ = false;
  std::vector<unsigned char> in_;
  std::size_t in_begin_ = 0, in_end_ = 0;
  std::chrono::steady_clock::time_point last_rx_;
  asio::steady_timer idle_timer_;
  asio::steady_timer close_timer_;

  std::atomic<std::size_t> queued_{0};
  std::atomic<std::size_t> bytes_{0};
  std::atomic<bool> closed_{false};  // no more data messages are accepted
};

// Whether `s` is well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF).
bool valid_utf8(std::string_view s);

}  // namespace hydrox::http
