#pragma once
// HTTP/1.1 server: one coroutine per connection on its own strand, explicit limits (body 1 MiB →
// 413, headers 16 KiB → 431, header/idle/handler timeouts), request ids, per-route metrics,
// middleware, a TCP tunnel for WebSocket upgrades (the gateway's /ws) that hands the client's
// socket itself to a server on the same host when it can, graceful shutdown.
#include "hydrox/config/env.hpp"
#include "hydrox/http/message.hpp"
#include "hydrox/http/router.hpp"
#include "hydrox/http/runtime.hpp"
#include "hydrox/http/websocket.hpp"

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace hydrox::http {

struct ServerOptions {
  std::string service = "hydrox";
  std::string address = "0.0.0.0";
  std::uint16_t port = 0;  // 0: any free port
  std::size_t body_limit = 1 << 20;
  std::size_t header_limit = 16 << 10;
  std::chrono::milliseconds idle_timeout{60'000};    // keep-alive connection with no request
  std::chrono::milliseconds header_timeout{10'000};  // from the first byte to the end of headers
  std::chrono::milliseconds body_timeout{30'000};
  std::chrono::milliseconds handler_timeout{30'000};
  std::chrono::milliseconds write_timeout{30'000};
  std::size_t max_connections = 20'000;
  // A Unix datagram socket on which this server also takes connections that a gateway on the same
  // host accepted: the client's socket (SCM_RIGHTS) with the request as the gateway forwards it.
  // Created mode 0600 and only a sender of this process's user is accepted. Empty: none.
  std::string handoff_socket;
};

// Runs before routing. Returns true when it answered the request itself; may replace `respond`
// with a wrapper to edit the answer (CORS, rate-limit headers).
using Middleware = std::function<bool(Request&, Respond&)>;

// Decides where an upgrade request on a tunnel path goes; may edit the request's headers.
using TunnelResolver = std::function<Result<config::Endpoint>(Request&)>;

struct Tunnel {
  std::string path;
  TunnelResolver resolver;
  // The upstream's `ServerOptions::handoff_socket`, when it runs on this host: the client's
  // socket is passed to it and the upstream speaks to the client directly. Empty, or when the
  // hand-off fails (no such socket, its queue full): the bytes are copied both ways.
  std::string handoff_socket;
};

class Server {
 public:
  Server(Runtime& runtime, ServerOptions options, Router router);
  ~Server();
  void use(Middleware mw);
  void tunnel(Tunnel t);
  // Accepts WebSocket upgrades on `path` and runs sessions with these handlers.
  void websocket(std::string path, WsHandlers handlers, WsOptions options = {});
  // Binds and listens; the port actually bound.
  Result<std::uint16_t> start();
  // Stops accepting, lets in-flight requests finish (up to `drain`), closes idle connections.
  void stop(std::chrono::milliseconds drain = std::chrono::milliseconds(5000));

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace hydrox::http
