#include "hydrox/http/client.hpp"

#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>

#include <future>
#include <map>
#include <mutex>

#include "asio.hpp"

namespace hydrox::http {

namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using asio::awaitable;
constexpr auto kTuple = asio::as_tuple(asio::use_awaitable);

namespace {

bool idempotent(Method m) {
  return m == Method::get || m == Method::head || m == Method::put || m == Method::del ||
         m == Method::options;
}

bhttp::verb to_verb(Method m) {
  switch (m) {
    case Method::get: return bhttp::verb::get;
    case Method::head: return bhttp::verb::head;
    case Method::post: return bhttp::verb::post;
    case Method::put: return bhttp::verb::put;
    case Method::patch: return bhttp::verb::patch;
    case Method::del: return bhttp::verb::delete_;
    case Method::options: return bhttp::verb::options;
    case Method::other: return bhttp::verb::unknown;
  }
  return bhttp::verb::unknown;
}

}  // namespace

struct Client::Impl : std::enable_shared_from_this<Client::Impl> {
  Impl(Runtime& rt, ClientOptions o) : io(rt.impl().io), options(o) {}

  struct Idle {
    std::unique_ptr<beast::tcp_stream> stream;
    std::chrono::steady_clock::time_point since;
    std::uint64_t generation = 0;  // of its host when pooled (see drop_idle)
  };
  // Pooled connections belong to the io_context (thread) that made them: a request is run on the
  // caller's IO thread when it has one, so it never hops threads and no thread wakes another for it.
  using PoolKey = std::pair<const asio::io_context*, std::string>;

  asio::io_context& io;  // requests from threads that run no io_context (and request_sync)
  ClientOptions options;
  std::mutex mu;
  std::map<PoolKey, std::vector<Idle>> idle;
  std::map<std::string, std::uint64_t> generation;  // per host: raised when its pooled connections go stale
  std::map<std::string, tcp::resolver::results_type> resolved_hosts;
  std::map<std::string, std::size_t> serving;  // endpoint with standbys → the one that answered last

  // Every thread's pooled connections to the host are stale (it restarted): each thread discards
  // its own as it meets them (a connection is only touched by the thread that owns it).
  void drop_idle(const PoolKey& key) {
    std::lock_guard lock(mu);
    ++generation[key.second];
    idle[key].clear();
  }

  std::unique_ptr<beast::tcp_stream> take_idle(const PoolKey& key) {
    std::lock_guard lock(mu);
    auto& pool = idle[key];
    const std::uint64_t current = generation[key.second];
    auto now = std::chrono::steady_clock::now();
    while (!pool.empty()) {
      Idle it = std::move(pool.back());
      pool.pop_back();
      if (it.generation == current && now - it.since < options.idle_keepalive) return std::move(it.stream);
    }
    return nullptr;
  }

  void give_back(const PoolKey& key, std::unique_ptr<beast::tcp_stream> s) {
    std::lock_guard lock(mu);
    auto& pool = idle[key];
    if (pool.size() < options.max_idle_per_host) {
      pool.push_back(Idle{std::move(s), std::chrono::steady_clock::now(), generation[key.second]});
    }
  }

  awaitable<Result<std::unique_ptr<beast::tcp_stream>>> connect(const config::Endpoint& to,
                                                                 const std::string& key) {
    auto ex = co_await asio::this_coro::executor;
    std::optional<tcp::resolver::results_type> resolved;
    {
      std::lock_guard lock(mu);
      if (auto it = resolved_hosts.find(key); it != resolved_hosts.end()) resolved = it->second;
    }
    if (!resolved) {
      tcp::resolver dns(ex);
      auto [ec, results] = co_await dns.async_resolve(to.host, std::to_string(to.port), kTuple);
      if (ec) co_return fail(Code::upstream_unavailable, "cannot resolve " + to.host);
      resolved = results;
      std::lock_guard lock(mu);
      resolved_hosts[key] = results;
    }
    auto stream = std::make_unique<beast::tcp_stream>(ex);
    stream->expires_after(options.connect_timeout);
    auto [ec, ep] = co_await stream->async_connect(*resolved, kTuple);
    if (ec == beast::error::timeout) {
      co_return fail(Code::upstream_timeout, to.host + ":" + std::to_string(to.port) +
                                                 " did not accept the connection in time");
    }
    if (ec) {
      co_return fail(Code::upstream_unavailable,
                     to.host + ":" + std::to_string(to.port) + " is unavailable");
    }
    stream->socket().set_option(tcp::no_delay(true));
    co_return std::move(stream);
  }

  // Tries the endpoint that answered last, then the others in order, moving on only when a
  // connection could not be made (nothing was sent, so any method may go elsewhere).
  awaitable<Result<Response>> exchange_any(const asio::io_context* ctx, config::Endpoint to, OutgoingRequest req) {
    if (to.standbys.empty()) {
      bool not_sent = false;
      co_return co_await exchange(ctx, to, std::move(req), not_sent);
    }
    std::vector<config::Endpoint> all{to};
    all[0].standbys.clear();
    for (auto& s : to.standbys) all.push_back(s);
    const std::string group = to.to_string();
    std::size_t start = 0;
    {
      std::lock_guard lock(mu);
      start = serving[group] % all.size();
    }
    Result<Response> last = fail(Code::upstream_unavailable, group + " is unavailable");
    for (std::size_t i = 0; i < all.size(); ++i) {
      const std::size_t at = (start + i) % all.size();
      bool not_sent = false;
      OutgoingRequest attempt = req;  // (no conditional expression inside co_await: GCC 12 miscompiles it)
      last = co_await exchange(ctx, all[at], std::move(attempt), not_sent);
      if (last || !not_sent) {
        if (last && at != start) {
          std::lock_guard lock(mu);
          serving[group] = at;
        }
        co_return last;
      }
    }
    co_return last;
  }

  awaitable<Result<Response>> exchange(const asio::io_context* ctx, config::Endpoint to, OutgoingRequest req,
                                       bool& not_sent) {
    const std::string key = to.host + ":" + std::to_string(to.port);
    const PoolKey pool_key{ctx, key};
    bhttp::request<bhttp::string_body> breq{to_verb(req.method), to.base_path + req.target, 11};
    for (const auto& h : req.headers) breq.set(h.name, h.value);
    breq.set(bhttp::field::host, key);
    breq.keep_alive(true);
    breq.body() = std::move(req.body);
    breq.prepare_payload();

    const auto deadline = std::chrono::steady_clock::now() + options.request_timeout;
    for (int attempt = 0; attempt < 2; ++attempt) {
      auto stream = take_idle(pool_key);
      const bool reused = stream != nullptr;
      if (!stream) {
        auto fresh = co_await connect(to, key);
        if (!fresh) {
          not_sent = true;
          co_return fresh.error();
        }
        stream = std::move(*fresh);
      }
      stream->expires_at(deadline);
      auto [wec, wn] = co_await bhttp::async_write(*stream, breq, kTuple);
      beast::flat_buffer buffer;
      bhttp::response_parser<bhttp::string_body> parser;
      parser.body_limit(options.max_response_bytes);
      // An answer to HEAD has the headers of a GET (Content-Length included) and no body: told so,
      // the parser does not wait for one (it would time out, and the gateway answer 503).
      if (req.method == Method::head) parser.skip(true);
      boost::system::error_code rec = wec;
      if (!wec) std::tie(rec, std::ignore) = co_await bhttp::async_read(*stream, buffer, parser, kTuple);
      if (rec) {
        // The other pooled connections to this server are likely closed too (it restarted).
        if (reused && rec != beast::error::timeout) drop_idle(pool_key);
        // A pooled connection the server already closed: retry once on a fresh one when that
        // cannot apply the request twice.
        if (reused && rec != beast::error::timeout && (idempotent(req.method) || wec)) continue;
        if (rec == beast::error::timeout) {
          co_return fail(Code::upstream_timeout, key + " did not answer in time");
        }
        co_return fail(Code::upstream_unavailable, key + " failed: " + rec.message());
      }
      auto& bres = parser.get();
      Response res;
      res.status = static_cast<int>(bres.result_int());
      for (const auto& f : bres) {
        res.headers.push_back(Header{std::string(f.name_string()), std::string(f.value())});
      }
      res.body = std::move(bres.body());
      if (bres.keep_alive()) {
        stream->expires_never();
        give_back(pool_key, std::move(stream));
      }
      co_return res;
    }
    co_return fail(Code::upstream_unavailable, key + " closed the connection");
  }
};

Client::Client(Runtime& runtime, ClientOptions options)
    : impl_(std::make_shared<Impl>(runtime, options)) {}
Client::~Client() = default;

namespace {
// Runs the exchange as a coroutine on `ctx` (run by exactly one thread, so no strand is needed).
void spawn(std::shared_ptr<Client::Impl> impl, asio::io_context& ctx, const config::Endpoint& to, OutgoingRequest req,
           std::function<void(Result<Response>)> done) {
  asio::co_spawn(ctx, impl->exchange_any(&ctx, to, std::move(req)),
                 [impl, done = std::move(done)](std::exception_ptr ep, Result<Response> r) {
                   if (ep) {
                     done(fail(Code::internal, "client request failed"));
                     return;
                   }
                   done(std::move(r));
                 });
}
}  // namespace

void Client::request(const config::Endpoint& to, OutgoingRequest req,
                     std::function<void(Result<Response>)> done) {
  asio::io_context* here = current_io_context();
  spawn(impl_, here ? *here : impl_->io, to, std::move(req), std::move(done));
}

Result<Response> Client::request_sync(const config::Endpoint& to, OutgoingRequest req) {
  auto p = std::make_shared<std::promise<Result<Response>>>();
  auto f = p->get_future();
  // Always on the runtime's own loop: the caller blocks, so it must not be the loop that runs it.
  spawn(impl_, impl_->io, to, std::move(req), [p](Result<Response> r) { p->set_value(std::move(r)); });
  // The client's own timeouts answer first; this bound only matters when the loop that runs the
  // client has ended (a shutdown), where waiting forever would hold the process.
  const auto bound = (impl_->options.connect_timeout + impl_->options.request_timeout) * (1 + to.standbys.size()) +
                     std::chrono::seconds(1);
  if (f.wait_for(bound) != std::future_status::ready) {
    return fail(Code::upstream_timeout, "no answer from " + to.host + ":" + std::to_string(to.port));
  }
  return f.get();
}

}  // namespace hydrox::http
