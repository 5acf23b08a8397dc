// hydrox-ws-load: the WebSocket fan-out benchmark's client (issue #5). Opens N connections to
// ws://HOST:PORT/ws (the gateway), subscribes each to STREAMS, then counts every message received
// for DURATION seconds and, for trade messages, the delay from the trade's time_ms (set by the
// engine before the commit, so the figure includes the commit) to receipt.
//
//   hydrox-ws-load HOST PORT CONNECTIONS DURATION_S STREAM[,STREAM...] [THREADS]
//
// READY_FILE (optional): a file created once every connection is up.
// Prints one line of key=value figures: connections opened and lost, messages, deliveries/s over
// the measured window, trade deliveries and their p50/p99/max latency in ms.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

std::int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

struct Stats {
  std::atomic<std::int64_t> opened{0}, failed{0}, lost{0}, messages{0}, trades{0};
  std::atomic<bool> measuring{false};
  std::mutex mu;
  std::vector<std::int32_t> latencies;  // ms, trade messages while measuring
};

// The trade's "time_ms" in a message {"type":"trade",...,"data":{...,"time_ms":1795...}}.
std::int64_t trade_time(std::string_view m) {
  if (m.find("\"type\":\"trade\"") == std::string_view::npos) return -1;
  const auto at = m.rfind("\"time_ms\":");
  if (at == std::string_view::npos) return -1;
  std::int64_t v = 0;
  for (std::size_t i = at + 10; i < m.size() && m[i] >= '0' && m[i] <= '9'; ++i) v = v * 10 + (m[i] - '0');
  return v;
}

asio::awaitable<void> session(std::string host, std::string port, std::string subscribe, Stats& st) {
  auto ex = co_await asio::this_coro::executor;
  websocket::stream<beast::tcp_stream> ws(ex);
  try {
    tcp::resolver resolver(ex);
    auto results = co_await resolver.async_resolve(host, port, asio::use_awaitable);
    beast::get_lowest_layer(ws).expires_after(std::chrono::seconds(30));
    co_await beast::get_lowest_layer(ws).async_connect(results, asio::use_awaitable);
    beast::get_lowest_layer(ws).expires_never();
    ws.set_option(websocket::stream_base::timeout::suggested(beast::role_type::client));
    co_await ws.async_handshake(host + ":" + port, "/ws", asio::use_awaitable);
    co_await ws.async_write(asio::buffer(subscribe), asio::use_awaitable);
  } catch (const std::exception&) {
    st.failed.fetch_add(1);
    co_return;
  }
  st.opened.fetch_add(1);
  // From here the frames are read straight off the socket (a server's frames are not masked), many
  // per read: the client must cost far less per message than what it measures.
  tcp::socket sock = ws.next_layer().release_socket();
  std::vector<char> in(1 << 16);
  std::size_t begin = 0, end = 0;
  std::vector<std::int32_t> lat;
  for (;;) {
    if (begin > 0) {
      std::memmove(in.data(), in.data() + begin, end - begin);
      end -= begin;
      begin = 0;
    }
    if (end == in.size()) in.resize(in.size() * 2);
    auto [ec, n] = co_await sock.async_read_some(asio::buffer(in.data() + end, in.size() - end),
                                                 asio::as_tuple(asio::use_awaitable));
    if (ec) break;
    end += n;
    const bool measuring = st.measuring.load(std::memory_order_relaxed);
    const std::int64_t now = measuring ? now_ms() : 0;
    std::int64_t messages = 0, trades = 0;
    bool closed = false;
    for (;;) {
      const auto* p = reinterpret_cast<const unsigned char*>(in.data() + begin);
      const std::size_t avail = end - begin;
      if (avail < 2) break;
      std::uint64_t len = p[1] & 0x7F;
      std::size_t head = 2;
      if (len == 126) {
        if (avail < 4) break;
        len = (static_cast<std::uint64_t>(p[2]) << 8) | p[3];
        head = 4;
      } else if (len == 127) {
        if (avail < 10) break;
        len = 0;
        for (int i = 0; i < 8; ++i) len = (len << 8) | p[2 + i];
        head = 10;
      }
      if (avail < head + len) break;
      const int op = p[0] & 0x0F;
      const std::string_view m(in.data() + begin + head, len);
      begin += head + len;
      if (op == 0x8) {
        closed = true;
        break;
      }
      if (op == 0x9) {  // a ping: the pong carries its payload, masked (a client's frames are)
        std::string pong{static_cast<char>(0x8A), static_cast<char>(0x80 | m.size()), 0, 0, 0, 0};
        pong += m;
        co_await asio::async_write(sock, asio::buffer(pong), asio::as_tuple(asio::use_awaitable));
        continue;
      }
      if (op != 0x1 && op != 0x0) continue;
      if (!measuring) continue;
      ++messages;
      if (const auto t = trade_time(m); t > 0) {
        ++trades;
        lat.push_back(static_cast<std::int32_t>(now - t));
      }
    }
    if (messages > 0) st.messages.fetch_add(messages, std::memory_order_relaxed);
    if (trades > 0) {
      st.trades.fetch_add(trades, std::memory_order_relaxed);
      std::lock_guard lock(st.mu);
      st.latencies.insert(st.latencies.end(), lat.begin(), lat.end());
    }
    lat.clear();
    if (closed) break;
  }
  if (st.measuring.load()) st.lost.fetch_add(1);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 6) {
    std::fprintf(stderr, "usage: %s HOST PORT CONNECTIONS DURATION_S STREAM[,STREAM...] [THREADS]\n", argv[0]);
    return 2;
  }
  const std::string host = argv[1], port = argv[2];
  const int connections = std::atoi(argv[3]);
  const int duration_s = std::atoi(argv[4]);
  std::string params;
  for (std::string_view rest = argv[5]; !rest.empty();) {
    const auto comma = rest.find(',');
    params += std::string(params.empty() ? "" : ",") + "\"" + std::string(rest.substr(0, comma)) + "\"";
    rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
  }
  const std::string subscribe = "{\"method\":\"SUBSCRIBE\",\"params\":[" + params + "],\"id\":1}";
  const int threads = argc > 6 ? std::max(1, std::atoi(argv[6])) : 1;

  asio::io_context io(threads);
  Stats st;
  auto guard = asio::make_work_guard(io);
  std::vector<std::thread> pool;
  for (int i = 0; i < threads; ++i) pool.emplace_back([&io] { io.run(); });

  // Connect in waves of 250 so that no listen backlog overflows.
  const auto setup_started = std::chrono::steady_clock::now();
  for (int started = 0; started < connections;) {
    const int wave = std::min(250, connections - started);
    for (int i = 0; i < wave; ++i) asio::co_spawn(io, session(host, port, subscribe, st), asio::detached);
    started += wave;
    while (st.opened.load() + st.failed.load() < started &&
           std::chrono::steady_clock::now() - setup_started < std::chrono::seconds(300)) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  const double setup_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - setup_started).count();
  // READY_FILE: created once every connection is up (the benchmark starts its trades then).
  if (const char* ready = std::getenv("READY_FILE")) {
    if (FILE* f = std::fopen(ready, "w")) std::fclose(f);
  }
  std::this_thread::sleep_for(std::chrono::seconds(2));  // snapshots delivered
  st.measuring.store(true);
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(duration_s));
  st.measuring.store(false);
  const double window = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const std::int64_t messages = st.messages.load(), trades = st.trades.load();
  io.stop();
  for (auto& t : pool) t.join();

  std::vector<std::int32_t> lat;
  {
    std::lock_guard lock(st.mu);
    lat = st.latencies;
  }
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) { return lat.empty() ? -1 : lat[std::min(lat.size() - 1, static_cast<std::size_t>(p * lat.size()))]; };
  std::printf("connections=%d opened=%lld failed=%lld lost=%lld setup_s=%.1f window_s=%.1f messages=%lld "
              "deliveries_per_s=%.0f trade_deliveries=%lld trade_latency_ms_p50=%d p99=%d max=%d\n",
              connections, static_cast<long long>(st.opened.load()), static_cast<long long>(st.failed.load()),
              static_cast<long long>(st.lost.load()), setup_s, window, static_cast<long long>(messages),
              static_cast<double>(messages) / window, static_cast<long long>(trades), pct(0.5), pct(0.99),
              lat.empty() ? -1 : lat.back());
  return st.opened.load() == connections ? 0 : 1;
}
