#pragma once
// WebSocket sessions behind a Beast-free interface. The server accepts the upgrade on a
// registered path (Server::websocket) and hands the application a WsConnection:
//  - send(text): queued on the connection's strand; a bounded queue (max_queued_messages /
//    max_queued_bytes). When it would overflow, send() returns false and nothing is queued: the
//    application decides (resync, then disconnect).
//  - close(code, reason): a close frame, then the connection ends.
// Limits: inbound text frames up to max_message_bytes (beyond: close 1009), idle timeout with
// pings (a peer that answers nothing is dropped).
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "hydrox/http/message.hpp"

namespace hydrox::http {

class WsConnection {
 public:
  virtual ~WsConnection() = default;
  virtual bool send(std::string text) = 0;
  // The same for a message sent to many connections: one buffer, shared, never copied.
  virtual bool send_shared(std::shared_ptr<const std::string> text) = 0;
  virtual void close(std::uint16_t code, std::string reason) = 0;
  // Drops the connection at once, without a close frame (for a peer that does not read).
  virtual void abort() = 0;
  virtual std::uint64_t id() const = 0;
  virtual std::size_t queued_messages() const = 0;
  // The upgrade request (headers: identity, request id).
  virtual const Request& request() const = 0;
};

struct WsOptions {
  std::size_t max_message_bytes = 64 * 1024;
  std::size_t max_queued_messages = 4096;
  std::size_t max_queued_bytes = 8 << 20;
  std::uint32_t idle_timeout_s = 60;  // no frame (incl. pong) for this long → dropped
  // Inbound frames per second (messages, pings and pongs alike; 0: no limit) → close 1008.
  // At most one pong is queued at any time, whatever the pings.
  std::uint32_t max_inbound_per_second = 50;
  // Kernel send buffer per session (SO_SNDBUF). Explicit, so that 10,000 sessions cannot pin
  // gigabytes of kernel memory, and so that a stalled peer backs up into the bounded queue.
  int socket_send_buffer = 256 * 1024;
};

struct WsHandlers {
  std::function<void(const std::shared_ptr<WsConnection>&)> on_open;
  std::function<void(const std::shared_ptr<WsConnection>&, std::string_view)> on_message;
  std::function<void(const std::shared_ptr<WsConnection>&)> on_close;
};

}  // namespace hydrox::http
