#pragma once
// The WebSocket hub at /ws: SUBSCRIBE / UNSUBSCRIBE / PING with acknowledgements; streams
// ticker, ticker.<S>, trade.<S>, kline.<interval>.<S>, depth.<S>, mark.<S>. Every message is
// {type, channel, seq, data}; seq rises by one per stream; a subscription starts with a snapshot
// ("snapshot": true) at the stream's current seq. Sources: trading's Redis channels (trades, book
// levels, marks) and a one-second ticker timer. A session whose send queue overflows is resynced
// (fresh snapshots once its queue drains); a second overflow within 10 s disconnects it. The hub
// never waits on a session.
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>

#include "hydrox/http/websocket.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/redis/redis.hpp"
#include "market_app.hpp"

namespace hydrox::market {

struct WsRequest;  // ws_protocol.hpp

class Hub : public std::enable_shared_from_this<Hub> {
 public:
  static constexpr std::size_t kMaxSubscriptions = 200;
  // Defaults of the limits the market service reads from its environment (market_app.cpp).
  static constexpr int kMaxInboundPerSecond = 50;
  static constexpr double kOrderBurst = 600, kOrdersPerSecond = 50;

  // max_behind: messages a resyncing session may miss before it is dropped.
  Hub(Services& s, std::size_t max_behind) : s_(s), max_behind_(max_behind) {}
  void start();  // Redis subscription, book snapshots, ticker timer
  void stop();   // drops the subscription and every session (before the runtime goes)
  http::WsHandlers handlers();

 private:
  struct Session {
    std::shared_ptr<http::WsConnection> conn;
    std::set<std::string> streams;
    std::int64_t window_start_ms = 0;
    int window_count = 0;
    bool resyncing = false;
    std::int64_t last_resync_ms = 0;
    std::size_t missed = 0;  // messages dropped while resyncing
    bool dropped = false;    // aborted; on_close removes it
    std::string user;        // X-User-ID set by the gateway at the upgrade; empty: anonymous
    std::string credential;  // its SHA-256 (the upgrade's X-Auth-Credential, or AUTH's token)
    bool auth_pending = false;  // an AUTH is being looked up: no second one meanwhile
    // Each private stream joined, and the per-user key it was joined under: leaving uses this,
    // not `user` (which an AUTH may set later), so no session is ever left behind in a key.
    std::map<std::string, std::string> private_as;
    std::int64_t checked_ms = 0;  // when the credential was last found live
    std::string scope;            // the credential's: `trade` may place orders, `read` may not
    int orders_in_flight = 0;     // order entry requests waiting for trading
    std::string address;          // the client's (X-Forwarded-For from the gateway, else the peer)
  };
  // The sessions of one stream: a vector to walk per message (no tree, no lookup per session),
  // with an index for removal. A Session lives in sessions_ (its node never moves) and leaves
  // every set it is in before it is erased (on_close, UNSUBSCRIBE).
  class Subscribers {
   public:
    void insert(Session* s) {
      if (index_.emplace(s->conn->id(), items_.size()).second) items_.push_back(s);
    }
    void erase(std::uint64_t id) {
      auto it = index_.find(id);
      if (it == index_.end()) return;
      const std::size_t at = it->second;
      index_.erase(it);
      if (at + 1 != items_.size()) {
        items_[at] = items_.back();
        index_[items_[at]->conn->id()] = at;
      }
      items_.pop_back();
    }
    bool empty() const { return items_.empty(); }
    auto begin() const { return items_.begin(); }
    auto end() const { return items_.end(); }

   private:
    std::vector<Session*> items_;
    std::unordered_map<std::uint64_t, std::size_t> index_;
  };
  struct Book {
    bool ready = false;
    std::uint64_t engine_seq = 0;
    std::map<std::string, std::string> bids, asks;  // price text → size text (exact, from trading)
    std::vector<std::string> pending;               // deltas that arrived before the snapshot
  };
  // The open bar of a watched kline stream: loaded from the stored klines when the stream gets
  // its first subscriber (trades arriving meanwhile wait in `pending`), then kept by the trades;
  // a trade already inside the stored bar (seq <= last_seq) is not counted again.
  struct BarTrade {
    std::uint64_t seq;
    std::int64_t t;
    std::string price, amount;
  };
  struct Bar {
    std::int64_t t = -1;
    std::string o, h, l, c, v;  // decimal text
    std::uint64_t last_seq = 0;
    bool ready = false;
    bool loading = false;
    std::uint64_t generation = 0;  // of the load in flight (a reset bar ignores an older load)
    std::vector<BarTrade> pending;
    std::int64_t idle_since_ms = 0;  // the last subscriber left then (0: watched); kept a minute
    // The newest trade seen when this load began: the stored bar must hold it (trades after it
    // are in `pending`). Kept across the load's retries, so a busy market cannot move it away.
    std::uint64_t wait_seq = 0;
  };
  // Loads of stored bars in flight for the whole hub: subscribing to many kline streams cannot
  // fill the blocking pool that market's REST routes share (beyond it a load waits its turn).
  static constexpr int kMaxBarLoadsInFlight = 4;
  static constexpr std::size_t kMaxPendingBarTrades = 10'000;
  static constexpr std::int64_t kIdleBarMs = 60'000;
  int bar_loads_in_flight_ = 0;              // under mu_
  void expire_idle_bars();                   // lock held
  // Order entry (order.place, order.cancel, order.cancel_all) on an authenticated connection:
  // the same trading routes, validation, codes and acknowledgement as REST, answered on the
  // connection as {"id", "status", "result"|"error"}. Per user a token bucket (WS_ORDER_BURST, then
  // WS_ORDERS_PER_S; defaults below; its own budget, beside the gateway's REST one), per connection at most
  // kMaxOrdersInFlight waiting. Lock held.
  void order_entry(Session& session, const WsRequest& request);
  static constexpr int kMaxOrdersInFlight = 32;
  struct OrderBudget {
    double tokens = -1;  // -1: a fresh budget (full)
    std::int64_t at_ms = 0;
  };
  std::unordered_map<std::string, OrderBudget> order_budget_;  // by user
  void load_bar(const std::string& stream, bool again = false);  // lock held; again: a retry of the same load
  // load_bar again after `delay` if that load (`generation`) is still the bar's and not done.
  void load_bar_later(const std::string& stream, std::uint64_t generation, std::chrono::milliseconds delay);
  // `positions` and `balances` updates carry the REST objects: an event from trading for a
  // watched user starts a read of that user's REST answer (one in flight per user and stream;
  // events meanwhile wait for the next), and each position it names, or the balance, goes out
  // as it reads there. Lock held.
  void refresh_private(const std::string& user, const std::string& kind, std::string event);
  void start_refresh(const std::string& user, const std::string& kind);
  void refresh_orders(const std::string& user, const std::string& key,
                      std::shared_ptr<std::vector<std::string>> events);
  struct Refresh {
    bool in_flight = false;
    std::vector<std::string> events;
    bool overflow = false;  // events were dropped: the next round sends fresh snapshots instead
  };
  static constexpr std::size_t kMaxRefreshEvents = 256;
  static constexpr std::size_t kMaxOrderReadsPerRound = 16;
  std::unordered_map<std::string, Refresh> refreshing_;  // by private key
  // Applies one trade to a kline stream's bar; `publish`: broadcast the bar (and a closed one).
  void bar_trade(const std::string& stream, const std::string& interval, Bar& bar,
                 const BarTrade& trade, bool publish);
  std::string bar_json(const std::string& interval, const Bar& bar,
                       std::optional<bool> closed = std::nullopt) const;
  std::uint64_t bar_generation_ = 0;
  // Ticker subscriptions waiting for their first snapshot (no ticker computed yet): sent by the
  // next ticker round, which one such subscription starts at once.
  std::set<std::pair<std::uint64_t, std::string>> ticker_waiting_;
  bool ticker_round_running_ = false;
  std::int64_t ticker_kick_ms_ = 0;  // the last round a waiting subscription started (≤ 1/s)

  void on_message(const std::shared_ptr<http::WsConnection>& c, std::string_view text);
  void on_close(const std::shared_ptr<http::WsConnection>& c);
  void on_redis(std::string_view channel, std::string_view message);
  void subscribe(std::uint64_t session, const std::string& stream);
  // Sends one message of a stream to all its subscribers (lock held).
  void broadcast(const std::string& stream, std::string_view type, const std::string& data);
  // For private streams: `key` is the per-user stream ("u:<user>:orders"), `channel` the public name.
  void broadcast_as(const std::string& key, const std::string& channel, std::string_view type, const std::string& data);
  void subscribe_private(std::uint64_t session, const std::string& user, const std::string& stream, const json::Value* id);
  // Takes the session out of the stream's subscribers (and the user's own stream of that name).
  void leave(Session& session, const std::string& stream);
  // The per-user stream behind a private one: "u:<user>:orders".
  static std::string private_key(const std::string& user, std::string_view stream) {
    return "u:" + user + ":" + std::string(stream);
  }
  void deliver(Session& session, const std::shared_ptr<const std::string>& message, std::int64_t now);
  void send_snapshot(Session& session, const std::string& stream);  // lock held
  void fetch_book(const std::string& symbol);
  void tick();
  void ticker_round();
  // Every WS_AUTH_RECHECK_MS: each authenticated session's credential is looked up again; a revoked
  // or expired one ends its private subscriptions (the connection stays, public streams go on).
  void recheck_credentials();
  std::int64_t last_recheck_ms_ = 0;
  static constexpr int kMaxAuthInFlight = 256;
  std::atomic<int> auth_in_flight_{0};
  std::unordered_map<std::string, std::int64_t> per_address_;  // open sessions by client address
  std::string stream_type(const std::string& stream) const;
  bool valid_stream(const std::string& stream) const;
  static std::int64_t bar_open(const std::string& interval, std::int64_t t_seconds);

  Services& s_;
  std::size_t max_behind_;
  std::mutex mu_;
  std::unordered_map<std::uint64_t, Session> sessions_;
  std::unordered_map<std::string, Subscribers> subscribers_;
  std::unordered_map<std::string, std::uint64_t> seq_;
  std::unordered_map<std::string, Book> books_;                 // by symbol
  std::unordered_map<std::string, Bar> bars_;                   // by kline stream name
  std::unordered_map<std::string, std::string> last_ticker_;    // by symbol, JSON
  std::unordered_map<std::string, std::string> last_mark_;      // by symbol, JSON data
  std::unordered_map<std::string, std::string> last_market_;    // by symbol: status and parameters (market.<S>)
  void load_markets();  // last_market_ from market_state (at start: the stream's first snapshot)
  std::unordered_map<std::string, std::deque<std::string>> recent_trades_;  // by symbol, newest first
  std::unordered_map<std::string, std::uint64_t> last_trade_seq_;  // by symbol: the newest trade seen
  std::unique_ptr<redis::Subscriber> subscriber_;
};

}  // namespace hydrox::market
