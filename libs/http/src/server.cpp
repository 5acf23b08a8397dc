#include "hydrox/http/server.hpp"

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <boost/asio/posix/stream_descriptor.hpp>

#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <deque>
#include <list>
#include <map>
#include <mutex>
#include <sstream>

#include "asio.hpp"
#include "ws_session.hpp"
#include "hydrox/core/ids.hpp"
#include "hydrox/log/log.hpp"
#include "hydrox/metrics/metrics.hpp"

namespace hydrox::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

// A request id from the client is kept only when it is short and plain.
bool acceptable_request_id(std::string_view id) {
  if (id.empty() || id.size() > 64) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '-' || c == '_' || c == '.';
    if (!ok) return false;
  }
  return true;
}

// A hand-off datagram: the forwarded request head plus any bytes read behind it. Larger ones go
// through the tunnel instead.
constexpr std::size_t kMaxHandoffBytes = 64 << 10;

std::optional<sockaddr_un> unix_address(const std::string& path) {
  sockaddr_un a{};
  if (path.empty() || path.size() >= sizeof(a.sun_path)) return std::nullopt;
  a.sun_family = AF_UNIX;
  std::memcpy(a.sun_path, path.data(), path.size());
  return a;
}

// Sends `fd` and `payload` in one datagram to the Unix socket at `to`; 0 or an errno value.
int send_fd(int via, const sockaddr_un& to, int fd, std::string_view payload) {
  iovec iov{const_cast<char*>(payload.data()), payload.size()};
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  msghdr msg{};
  msg.msg_name = const_cast<sockaddr_un*>(&to);
  msg.msg_namelen = sizeof(to);
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  cmsghdr* c = CMSG_FIRSTHDR(&msg);
  c->cmsg_level = SOL_SOCKET;
  c->cmsg_type = SCM_RIGHTS;
  c->cmsg_len = CMSG_LEN(sizeof(int));
  std::memcpy(CMSG_DATA(c), &fd, sizeof(int));
  for (;;) {
    if (::sendmsg(via, &msg, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

bhttp::response<bhttp::string_body> to_beast(Response&& r, unsigned version, bool keep_alive,
                                              bool head) {
  bhttp::response<bhttp::string_body> res{static_cast<bhttp::status>(r.status), version};
  for (auto& h : r.headers) res.set(h.name, h.value);
  res.set(bhttp::field::server, "hydrox");
  res.keep_alive(keep_alive);
  if (head) {
    res.content_length(r.body.size());
  } else {
    res.body() = std::move(r.body);
    res.prepare_payload();
  }
  return res;
}

}  // namespace

namespace websocket = boost::beast::websocket;

struct Server::Impl : std::enable_shared_from_this<Server::Impl> {
  Impl(Runtime& rt, ServerOptions o, Router r)
      : runtime(rt), io(rt.impl().io), options(std::move(o)), router(std::move(r)), acceptor(io) {}
  ~Impl() {
    if (handoff_out >= 0) ::close(handoff_out);
  }

  Runtime& runtime;
  asio::io_context& io;
  ServerOptions options;
  Router router;
  std::vector<Middleware> middleware;
  std::vector<Tunnel> tunnels;
  // Hand-offs: the socket this server receives connections on, and the one it sends them from.
  int handoff_in = -1;
  ino_t handoff_inode = 0;  // of the path as bound: stop() removes it only if it is still ours
  std::unique_ptr<asio::posix::stream_descriptor> handoff_wait;
  int handoff_out = -1;
  std::atomic<bool> handoff_failing{false};  // to log a failing hand-off once, not per client
  metrics::Counter& handoffs_received = metrics::Registry::global().counter(
      "http_handoffs_received_total", "Connections received from a gateway on this host");
  metrics::Counter& handoffs_refused = metrics::Registry::global().counter(
      "http_handoffs_refused_total", "Hand-off datagrams refused (foreign sender, malformed, over limits)");
  metrics::Counter& handoffs_sent = metrics::Registry::global().counter(
      "http_tunnel_handoffs_total", "Tunnel connections handed to the upstream's process", {{"result", "sent"}});
  metrics::Counter& handoffs_failed = metrics::Registry::global().counter(
      "http_tunnel_handoffs_total", "Tunnel connections handed to the upstream's process", {{"result", "failed"}});
  struct WsRoute {
    std::string path;
    WsHandlers handlers;
    WsOptions options;
  };
  std::vector<WsRoute> ws_routes;
  std::mutex ws_mu;
  std::map<std::uint64_t, std::weak_ptr<WsSession>> ws_sessions;
  std::atomic<std::uint64_t> ws_next_id{1};
  tcp::acceptor acceptor;
  std::atomic<bool> stopping{false};
  std::atomic<std::size_t> connections{0};

  // Live connections, so that stop() can close the idle ones.
  struct Conn {
    beast::tcp_stream* stream = nullptr;
    asio::strand<asio::io_context::executor_type> strand;
    bool busy = false;  // touched only on the strand
  };
  std::mutex conns_mu;
  std::list<std::shared_ptr<Conn>> conns;

  metrics::Counter& open_total = metrics::Registry::global().counter(
      "http_connections_opened_total", "Accepted TCP connections");
  metrics::Gauge& open_now =
      metrics::Registry::global().gauge("http_connections_open", "Open TCP connections");
  metrics::Counter& rejected_conns = metrics::Registry::global().counter(
      "http_connections_rejected_total", "Connections refused over max_connections");

  awaitable<void> accept_loop() {
    for (;;) {
      auto strand = asio::make_strand(runtime.impl().connection_io());
      auto [ec, socket] = co_await acceptor.async_accept(strand, kTuple);
      if (ec) {
        if (stopping.load() || ec == asio::error::operation_aborted) co_return;
        log::warn("accept failed", {{"error", ec.message()}});
        continue;
      }
      if (connections.load() >= options.max_connections) {
        rejected_conns.inc();
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      asio::co_spawn(strand, session(std::move(socket), strand, {}), asio::detached);
    }
  }

  Result<void> start_handoff() {
    auto address = unix_address(options.handoff_socket);
    if (!address) return fail(Code::internal, "bad hand-off socket path " + options.handoff_socket);
    int fd = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0) return fail(Code::internal, std::string("hand-off socket: ") + std::strerror(errno));
    ::unlink(options.handoff_socket.c_str());  // left behind by a process that was killed
    // Bound with no permission for anyone, then opened to the owner only: no other user can ever
    // send to it (and a sender of another user is refused below all the same).
    const mode_t old_mask = ::umask(0777);
    const int bound = ::bind(fd, reinterpret_cast<const sockaddr*>(&*address), sizeof(*address));
    ::umask(old_mask);
    const int one = 1;
    if (bound != 0 || ::chmod(options.handoff_socket.c_str(), 0600) != 0 ||
        ::setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) != 0) {
      std::string why = std::strerror(errno);
      ::close(fd);
      return fail(Code::internal, "cannot bind hand-off socket " + options.handoff_socket + ": " + why);
    }
    struct stat st{};
    if (::stat(options.handoff_socket.c_str(), &st) == 0) handoff_inode = st.st_ino;
    const int rcvbuf = 4 << 20;  // bursts of connections (10,000 in a second) wait here
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));
    handoff_in = fd;
    handoff_wait = std::make_unique<asio::posix::stream_descriptor>(io, fd);
    asio::co_spawn(io, handoff_loop(), asio::detached);
    log::info("taking hand-offs", {{"socket", options.handoff_socket}});
    return {};
  }

  // Receives handed-off connections until stop() closes the socket.
  awaitable<void> handoff_loop() {
    std::vector<char> data(kMaxHandoffBytes + 1);
    for (;;) {
      auto [ec] = co_await handoff_wait->async_wait(asio::posix::descriptor_base::wait_read, kTuple);
      if (ec || stopping.load()) co_return;
      for (;;) {
        iovec iov{data.data(), data.size()};
        alignas(cmsghdr) char control[CMSG_SPACE(4 * sizeof(int)) + CMSG_SPACE(sizeof(ucred))];
        msghdr msg{};
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control;
        msg.msg_controllen = sizeof(control);
        const ssize_t n = ::recvmsg(handoff_in, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
        if (n < 0) {
          if (errno == EINTR) continue;
          if (errno != EAGAIN && errno != EWOULDBLOCK) log::warn("hand-off receive failed", {{"error", std::strerror(errno)}});
          break;
        }
        std::vector<int> fds;
        std::optional<ucred> sender;
        for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
          if (c->cmsg_level != SOL_SOCKET) continue;
          if (c->cmsg_type == SCM_RIGHTS) {
            const std::size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
            for (std::size_t i = 0; i < count; ++i) {
              int f;
              std::memcpy(&f, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
              fds.push_back(f);
            }
          } else if (c->cmsg_type == SCM_CREDENTIALS) {
            ucred u;
            std::memcpy(&u, CMSG_DATA(c), sizeof(u));
            sender = u;
          }
        }
        const bool ok = sender && sender->uid == ::geteuid() && fds.size() == 1 && n > 0 &&
                        static_cast<std::size_t>(n) <= kMaxHandoffBytes &&
                        (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) == 0;
        if (!ok) {
          for (int f : fds) ::close(f);
          handoffs_refused.inc();
          log::warn("hand-off refused", {{"sender_uid", sender ? static_cast<std::int64_t>(sender->uid) : -1},
                                         {"fds", static_cast<std::int64_t>(fds.size())}, {"bytes", static_cast<std::int64_t>(n)}});
          continue;
        }
        adopt(fds[0], std::string(data.data(), static_cast<std::size_t>(n)));
      }
    }
  }

  // A handed-off connection: served like an accepted one whose first bytes are `initial`.
  void adopt(int fd, std::string initial) {
    sockaddr_storage local{};
    socklen_t len = sizeof(local);
    const bool tcp_socket = ::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
                            (local.ss_family == AF_INET || local.ss_family == AF_INET6);
    if (!tcp_socket || stopping.load() || connections.load() >= options.max_connections) {
      (tcp_socket ? rejected_conns : handoffs_refused).inc();
      ::close(fd);
      return;
    }
    auto strand = asio::make_strand(runtime.impl().connection_io());
    tcp::socket socket(strand);
    boost::system::error_code ec;
    socket.assign(local.ss_family == AF_INET6 ? tcp::v6() : tcp::v4(), fd, ec);
    if (ec) {
      ::close(fd);
      handoffs_refused.inc();
      return;
    }
    handoffs_received.inc();
    asio::co_spawn(strand, session(std::move(socket), strand, std::move(initial)), asio::detached);
  }

  // Passes the client's socket and the request to the upstream's process; false: not done (the
  // caller tunnels instead). The upstream's queue is short (net.unix.max_dgram_qlen, 10 by
  // default): a burst of connections waits for room, up to half a second.
  awaitable<bool> hand_off(beast::tcp_stream& stream, const Tunnel& tunnel, std::string_view payload) {
    auto address = unix_address(tunnel.handoff_socket);
    if (!address || payload.size() > kMaxHandoffBytes || handoff_out < 0) co_return false;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(500);
    auto pause = std::chrono::microseconds(200);
    asio::steady_timer timer(stream.get_executor());
    int err = 0;
    for (;;) {
      err = send_fd(handoff_out, *address, stream.socket().native_handle(), payload);
      if (err != EAGAIN && err != EWOULDBLOCK) break;
      if (std::chrono::steady_clock::now() + pause > deadline) break;
      timer.expires_after(pause);
      co_await timer.async_wait(kTuple);
      pause = std::min(pause * 2, std::chrono::microseconds(20'000));
    }
    if (err != 0) {
      handoffs_failed.inc();
      if (!handoff_failing.exchange(true)) {
        log::warn("hand-off failed; tunnelling", {{"socket", tunnel.handoff_socket}, {"error", std::strerror(err)}});
      }
      co_return false;
    }
    if (handoff_failing.exchange(false)) log::info("hand-off works again", {{"socket", tunnel.handoff_socket}});
    handoffs_sent.inc();
    co_return true;
  }

  awaitable<void> write_error(beast::tcp_stream& stream, const Error& e, unsigned version,
                              std::string_view request_id = {}) {
    std::string rid = request_id.empty() ? Uuid::random_v4().to_string() : std::string(request_id);
    auto res = to_beast(Response::error(e, rid), version, false, false);
    res.set("X-Request-ID", rid);
    stream.expires_after(options.write_timeout);
    co_await bhttp::async_write(stream, res, kTuple);
  }

  awaitable<void> session(tcp::socket socket, asio::strand<asio::io_context::executor_type> strand,
                          std::string initial) {
    connections.fetch_add(1);
    open_total.inc();
    open_now.add(1);
    beast::tcp_stream stream(std::move(socket));
    auto conn = std::make_shared<Conn>(Conn{&stream, strand, false});
    std::list<std::shared_ptr<Conn>>::iterator conn_it;
    {
      std::lock_guard lock(conns_mu);
      conn_it = conns.insert(conns.end(), conn);
    }
    std::string remote;
    {
      boost::system::error_code ec;
      auto ep = stream.socket().remote_endpoint(ec);
      if (!ec) remote = ep.address().to_string();
    }
    beast::flat_buffer buffer;
    if (!initial.empty()) {
      asio::buffer_copy(buffer.prepare(initial.size()), asio::buffer(initial));
      buffer.commit(initial.size());
      std::string().swap(initial);
    }
    bool tunneled = false;
    try {
      tunneled = co_await serve(stream, buffer, *conn, remote);
    } catch (const std::exception& e) {
      log::error("connection failed", {{"error", e.what()}});
    }
    {
      std::lock_guard lock(conns_mu);
      conns.erase(conn_it);
    }
    conn->stream = nullptr;  // a close posted by stop() may still run on this strand
    if (!tunneled) {
      boost::system::error_code ignored;
      stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
      stream.socket().close(ignored);
    }
    connections.fetch_sub(1);
    open_now.add(-1);
  }

  // Returns true when the socket was handed to a tunnel.
  awaitable<bool> serve(beast::tcp_stream& stream, beast::flat_buffer& buffer, Conn& conn,
                        const std::string& remote) {
    for (;;) {
      if (stopping.load()) co_return false;
      // Wait for the first byte of a request under the idle timeout...
      if (buffer.size() == 0) {
        stream.expires_after(options.idle_timeout);
        auto [ec, n] = co_await stream.async_read_some(buffer.prepare(4096), kTuple);
        if (ec) co_return false;  // EOF, reset, idle timeout, or closed by stop()
        buffer.commit(n);
      }
      conn.busy = true;
      // ...then the whole header block under the header timeout (slowloris bound).
      bhttp::request_parser<bhttp::string_body> parser;
      parser.body_limit(options.body_limit);
      parser.header_limit(static_cast<std::uint32_t>(options.header_limit));
      stream.expires_after(options.header_timeout);
      auto [hec, hn] = co_await bhttp::async_read_header(stream, buffer, parser, kTuple);
      if (!hec && !parser.is_done()) {
        stream.expires_after(options.body_timeout);
        std::tie(hec, hn) = co_await bhttp::async_read(stream, buffer, parser, kTuple);
      }
      if (hec) {
        if (hec == bhttp::error::body_limit) {
          co_await write_error(stream, fail(Code::payload_too_large, "request body larger than " +
                                  std::to_string(options.body_limit) + " bytes"), 11);
        } else if (hec == bhttp::error::header_limit) {
          co_await write_error(stream, fail(Code::headers_too_large, "request headers larger than " +
                                  std::to_string(options.header_limit) + " bytes"), 11);
        } else if (hec != beast::error::timeout && hec != bhttp::error::end_of_stream &&
                   hec != asio::error::eof && hec != asio::error::connection_reset &&
                   hec != asio::error::operation_aborted) {
          co_await write_error(stream, fail(Code::bad_request, "malformed HTTP request"), 11);
        }
        co_return false;
      }

      auto& breq = parser.get();
      Request req;
      req.method = parse_method(std::string_view(breq.method_string()));
      req.target = std::string(breq.target());
      auto qpos = req.target.find('?');
      req.path = req.target.substr(0, qpos);
      if (qpos != std::string::npos) req.query = req.target.substr(qpos + 1);
      req.headers.reserve(16);
      for (const auto& f : breq) {
        req.headers.push_back(Header{std::string(f.name_string()), std::string(f.value())});
      }
      req.remote_addr = remote;
      auto rid = req.header("X-Request-ID");
      req.request_id = rid && acceptable_request_id(*rid) ? std::string(*rid)
                                                          : Uuid::random_v4().to_string();
      const unsigned version = breq.version();
      const bool keep_alive = breq.keep_alive();

      if (beast::websocket::is_upgrade(breq)) {
        for (auto& tunnel : tunnels) {
          if (req.path == tunnel.path) {
            co_return co_await run_tunnel(stream, buffer, breq, req, tunnel);
          }
        }
        for (auto& route : ws_routes) {
          if (req.path == route.path) {
            conn.stream = nullptr;  // the socket now belongs to the WebSocket session
            co_return co_await run_websocket(stream, buffer, breq, std::move(req), route);
          }
        }
      }
      req.body = std::move(breq.body());

      const auto started = std::chrono::steady_clock::now();
      std::string route;
      // Query values are user strings like any other: text, bounded, or 400 before any handler.
      Response res;
      if (auto bad = check_query(req)) {
        res = Response::error(*bad, req.request_id);
      } else {
        res = co_await dispatch(req, route, stream.get_executor());
      }
      res.set_header("X-Request-ID", req.request_id);
      observe(req, route, res.status, started);

      const bool keep = keep_alive && !stopping.load();
      auto out = to_beast(std::move(res), version, keep, req.method == Method::head);
      stream.expires_after(options.write_timeout);
      auto [wec, wn] = co_await bhttp::async_write(stream, out, kTuple);
      conn.busy = false;
      if (wec || !keep) co_return false;
    }
  }

  void observe(const Request& req, const std::string& route, int status,
               std::chrono::steady_clock::time_point started) {
    auto us = std::chrono::duration_cast<std::chrono::microseconds>(
                  std::chrono::steady_clock::now() - started)
                  .count();
    auto& reg = metrics::Registry::global();
    std::string label = route.empty() ? "unmatched" : route;
    reg.counter("http_requests_total", "HTTP requests served",
                {{"method", std::string(method_name(req.method))},
                 {"route", label},
                 {"status", std::to_string(status)}})
        .inc();
    reg.histogram("http_request_duration_seconds", "HTTP request latency", {{"route", label}})
        .observe_us(static_cast<std::uint64_t>(us));
    if (log::enabled(log::Level::debug)) {  // access log (LOG_LEVEL=debug)
      log::debug("request", {{"method", method_name(req.method)}, {"path", req.path}, {"status", status},
                             {"duration_us", static_cast<std::int64_t>(us)}, {"request_id", req.request_id},
                             {"remote", req.remote_addr}});
    }
  }

  // Runs middleware and the route's handler; waits (on this strand) for the answer.
  awaitable<Response> dispatch(Request& req, std::string& route,
                               asio::any_io_executor executor) {
    struct Pending {
      explicit Pending(asio::any_io_executor ex) : timer(ex) {}
      asio::steady_timer timer;
      std::optional<Response> response;
    };
    auto pending = std::make_shared<Pending>(executor);
    pending->timer.expires_after(options.handler_timeout);
    Respond respond = [pending, executor](Response r) {
      asio::post(executor, [pending, r = std::move(r)]() mutable {
        if (pending->response) return;  // answered already (or timed out)
        pending->response = std::move(r);
        pending->timer.cancel();
      });
    };

    try {
      bool handled = false;
      for (auto& mw : middleware) {
        if (mw(req, respond)) {
          handled = true;
          break;
        }
      }
      if (!handled) {
        auto match = router.match(req.method, req.path);
        route = match.pattern;
        if (match.handler) {
          req.path_params = std::move(match.params);
          (*match.handler)(req, respond);
        } else if (match.method_not_allowed) {
          respond(Response::error(fail(Code::method_not_allowed, "method not allowed on " + req.path),
                                  req.request_id));
        } else {
          respond(Response::error(fail(Code::route_not_found, "no route for " + req.path),
                                  req.request_id));
        }
      }
    } catch (const ErrorException& e) {
      respond(Response::error(e.error(), req.request_id));
    } catch (const std::exception& e) {
      log::error("handler failed", {{"path", req.path}, {"error", e.what()},
                                    {"request_id", req.request_id}});
      respond(Response::error(fail(Code::internal, "internal error"), req.request_id));
    }

    while (!pending->response) {
      auto [ec] = co_await pending->timer.async_wait(kTuple);
      if (!ec && !pending->response) {
        log::error("handler timed out", {{"path", req.path}, {"request_id", req.request_id}});
        pending->response =
            Response::error(fail(Code::unavailable, "the request took too long"), req.request_id);
      }
    }
    co_return std::move(*pending->response);
  }

  awaitable<bool> run_websocket(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                                bhttp::request<bhttp::string_body>& breq, Request req, WsRoute& route) {
    // Beast answers the upgrade (validation, the 101); the session then speaks the frames itself
    // (ws_session.hpp: one gather write for everything queued).
    {
      websocket::stream<beast::tcp_stream&> handshake(stream);
      handshake.set_option(websocket::stream_base::decorator(
          [](websocket::response_type& res) { res.set(bhttp::field::server, "hydrox"); }));
      stream.expires_after(std::chrono::seconds(10));
      auto [aec] = co_await handshake.async_accept(breq, kTuple);
      if (aec) co_return true;
    }
    stream.expires_never();
    {
      boost::system::error_code ignored;
      stream.socket().set_option(asio::socket_base::send_buffer_size(route.options.socket_send_buffer), ignored);
    }
    const std::uint64_t id = ws_next_id.fetch_add(1);
    // Bytes read behind the upgrade request (a client that did not wait for the 101) are the
    // session's first input.
    const auto early = buffer.data();
    auto session = std::make_shared<WsSession>(
        stream.release_socket(), std::move(req), route.options, id,
        std::string_view(static_cast<const char*>(early.data()), early.size()));
    buffer.consume(buffer.size());
    {
      std::lock_guard lock(ws_mu);
      ws_sessions[id] = session;
    }
    static auto& open_gauge = metrics::Registry::global().gauge("ws_sessions_open", "Open WebSocket sessions");
    open_gauge.add(1);
    if (route.handlers.on_open) route.handlers.on_open(session);
    co_await session->run([&route, &session](std::string_view message) {
      if (route.handlers.on_message) route.handlers.on_message(session, message);
    });
    if (route.handlers.on_close) route.handlers.on_close(session);
    {
      std::lock_guard lock(ws_mu);
      ws_sessions.erase(id);
    }
    open_gauge.add(-1);
    co_return true;
  }

  // Forwards an upgrade request to the resolved upstream and then copies bytes both ways.
  awaitable<bool> run_tunnel(beast::tcp_stream& stream, beast::flat_buffer& buffer,
                             bhttp::request<bhttp::string_body>& breq, Request& req,
                             Tunnel& tunnel) {
    auto& resolver = tunnel.resolver;
    // The resolver may block (the gateway checks a credential in Redis or the user service): it
    // runs on the blocking pool, never on this IO thread, which may be the one its own network
    // calls need.
    struct Pending {
      explicit Pending(asio::any_io_executor ex) : timer(ex) {}
      asio::steady_timer timer;
      std::optional<Result<config::Endpoint>> target;
    };
    auto pending = std::make_shared<Pending>(stream.get_executor());
    pending->timer.expires_at(asio::steady_timer::time_point::max());
    const bool queued = runtime.try_blocking([pending, ex = stream.get_executor(), &resolver, &req] {
      auto result = resolver(req);
      asio::post(ex, [pending, result = std::move(result)]() mutable {
        pending->target = std::move(result);
        pending->timer.cancel();
      });
    });
    if (!queued) {
      co_await write_error(stream, fail(Code::overloaded, "server busy, retry shortly"), breq.version(), req.request_id);
      co_return false;
    }
    while (!pending->target) co_await pending->timer.async_wait(kTuple);  // the resolver always answers
    auto target = std::move(*pending->target);
    if (!target) {
      co_await write_error(stream, target.error(), breq.version(), req.request_id);
      co_return false;
    }
    // The request as edited by the resolver (identity headers), then any bytes already read.
    bhttp::request<bhttp::empty_body> fwd{breq.method(), breq.target(), breq.version()};
    for (const auto& h : req.headers) fwd.set(h.name, h.value);
    fwd.set("X-Request-ID", req.request_id);
    fwd.set("X-Forwarded-For", req.remote_addr);
    if (!tunnel.handoff_socket.empty()) {
      std::ostringstream head;
      head << fwd;
      std::string payload = std::move(head).str();
      const auto early = buffer.data();
      payload.append(static_cast<const char*>(early.data()), early.size());
      if (co_await hand_off(stream, tunnel, payload)) {
        // The connection lives on in the upstream's process: this copy of the socket is closed
        // (never shut down, which would end the connection there too).
        boost::system::error_code ignored;
        stream.socket().close(ignored);
        co_return true;
      }
    }
    tcp::resolver dns(stream.get_executor());
    auto [rec, results] =
        co_await dns.async_resolve(target->host, std::to_string(target->port), kTuple);
    beast::tcp_stream upstream(stream.get_executor());
    upstream.expires_after(std::chrono::seconds(2));
    boost::system::error_code cec = rec;
    if (!rec) std::tie(cec, std::ignore) = co_await upstream.async_connect(results, kTuple);
    if (cec) {
      co_await write_error(stream, fail(Code::upstream_unavailable, "stream service unavailable"),
                           breq.version(), req.request_id);
      co_return false;
    }
    auto [wec, wn] = co_await bhttp::async_write(upstream, fwd, kTuple);
    if (!wec && buffer.size() > 0) {
      std::tie(wec, wn) = co_await asio::async_write(upstream, buffer.data(), kTuple);
      buffer.consume(buffer.size());
    }
    if (wec) co_return false;

    stream.expires_never();
    upstream.expires_never();
    auto a = std::make_shared<tcp::socket>(stream.release_socket());
    auto b = std::make_shared<tcp::socket>(upstream.release_socket());
    using namespace asio::experimental::awaitable_operators;
    co_await (pipe(a, b) || pipe(b, a));
    boost::system::error_code ignored;
    a->close(ignored);
    b->close(ignored);
    co_return true;
  }

  static awaitable<void> pipe(std::shared_ptr<tcp::socket> from, std::shared_ptr<tcp::socket> to) {
    std::array<char, 16384> data;
    for (;;) {
      auto [ec, n] = co_await from->async_read_some(asio::buffer(data), kTuple);
      if (ec) co_return;
      auto [wec, wn] = co_await asio::async_write(*to, asio::buffer(data.data(), n), kTuple);
      if (wec) co_return;
    }
  }
};

Server::Server(Runtime& runtime, ServerOptions options, Router router)
    : impl_(std::make_shared<Impl>(runtime, std::move(options), std::move(router))) {}

Server::~Server() = default;

void Server::use(Middleware mw) { impl_->middleware.push_back(std::move(mw)); }

void Server::tunnel(Tunnel t) { impl_->tunnels.push_back(std::move(t)); }

void Server::websocket(std::string path, WsHandlers handlers, WsOptions options) {
  impl_->ws_routes.push_back(Impl::WsRoute{std::move(path), std::move(handlers), options});
}

Result<std::uint16_t> Server::start() {
  boost::system::error_code ec;
  auto address = asio::ip::make_address(impl_->options.address, ec);
  if (ec) return fail(Code::internal, "bad listen address " + impl_->options.address);
  tcp::endpoint ep(address, impl_->options.port);
  auto& acc = impl_->acceptor;
  acc.open(ep.protocol(), ec);
  if (!ec) acc.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acc.bind(ep, ec);
  if (!ec) acc.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return fail(Code::internal, "cannot listen on " + impl_->options.address + ":" +
                                    std::to_string(impl_->options.port) + ": " + ec.message());
  }
  auto port = acc.local_endpoint().port();
  if (!impl_->options.handoff_socket.empty()) {
    if (auto r = impl_->start_handoff(); !r) return r.error();
  }
  for (const auto& t : impl_->tunnels) {
    if (t.handoff_socket.empty()) continue;
    if (!unix_address(t.handoff_socket)) return fail(Code::internal, "bad hand-off socket path " + t.handoff_socket);
    if (impl_->handoff_out < 0) impl_->handoff_out = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  }
  asio::co_spawn(impl_->io, impl_->accept_loop(), asio::detached);
  log::info("listening", {{"address", impl_->options.address}, {"port", static_cast<int>(port)}});
  return port;
}

void Server::stop(std::chrono::milliseconds drain) {
  auto impl = impl_;
  if (impl->stopping.exchange(true)) return;
  asio::post(impl->io, [impl] {
    boost::system::error_code ignored;
    impl->acceptor.close(ignored);
    if (impl->handoff_wait) {
      impl->handoff_wait->close(ignored);
      // A successor that already bound the path (a restart) keeps it.
      struct stat st{};
      const char* path = impl->options.handoff_socket.c_str();
      if (::stat(path, &st) == 0 && st.st_ino == impl->handoff_inode) ::unlink(path);
    }
  });
  // Close idle keep-alive connections now; busy ones finish their request (they see `stopping`
  // and close after answering) or are closed when the drain window ends.
  auto close_conns = [impl](bool only_idle) {
    std::lock_guard lock(impl->conns_mu);
    for (auto& c : impl->conns) {
      asio::post(c->strand, [c, only_idle] {
        if (c->stream == nullptr || (only_idle && c->busy)) return;
        boost::system::error_code ignored;
        c->stream->socket().cancel(ignored);
      });
    }
  };
  close_conns(true);
  {
    // WebSocket clients are told the service is restarting (1012) and may reconnect elsewhere.
    std::lock_guard lock(impl->ws_mu);
    for (auto& [id, weak] : impl->ws_sessions) {
      if (auto session = weak.lock()) session->close(1012, "service restart");
    }
  }
  // Wait until every connection is gone or the drain window ends, then close the rest.
  asio::co_spawn(
      impl->io,
      [impl, drain, close_conns]() -> awaitable<void> {
        asio::steady_timer t(co_await asio::this_coro::executor);
        auto deadline = std::chrono::steady_clock::now() + drain;
        while (impl->connections.load() > 0 && std::chrono::steady_clock::now() < deadline) {
          t.expires_after(std::chrono::milliseconds(50));
          co_await t.async_wait(kTuple);
        }
        if (impl->connections.load() > 0) {
          close_conns(false);
          std::lock_guard lock(impl->ws_mu);
          for (auto& [id, weak] : impl->ws_sessions) {
            if (auto session = weak.lock()) session->abort();
          }
        }
      },
      asio::detached);
}

}  // namespace hydrox::http
