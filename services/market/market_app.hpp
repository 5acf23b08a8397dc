#pragma once
#include <map>
#include <memory>

#include "hydrox/catalog/catalog.hpp"
#include "hydrox/http/client.hpp"
#include "hydrox/service/service.hpp"

namespace hydrox::market {

// Market data routes, the Redis cache in front of them, and the development index feed.
Result<void> setup(service::Context& ctx);

struct Services {
  service::Context* ctx = nullptr;
  catalog::Catalog catalog;
  config::Endpoint trading;
  config::Endpoint user_service;  // credentials when Redis cannot answer (WebSocket AUTH)
  std::shared_ptr<http::Client> client;
  std::chrono::milliseconds ticker_ttl{1000};
  std::chrono::milliseconds klines_ttl{5000};
  // WebSocket: how often an authenticated session's credential is looked up again
  // (WS_AUTH_RECHECK_MS), and how many sessions one client address may hold
  // (WS_MAX_CONNECTIONS_PER_IP; the gateway's X-Forwarded-For, else the peer).
  std::int64_t ws_auth_recheck_ms = 30'000;
  std::int64_t ws_max_connections_per_ip = 1000;
  // Per connection: inbound messages per second beyond which it is closed (1008).
  std::int64_t ws_max_messages_per_s = 50;
  // WebSocket order entry per user: a burst, then this many per second.
  double ws_order_burst = 600, ws_orders_per_s = 50;
};

void register_market_routes(Services& s, http::Router& r);
// One market's ticker (and rules) as JSON, from PostgreSQL (blocking).
Result<std::string> ticker_json(Services& s, const catalog::MarketInfo& m, bool with_rules);
// The newest stored bar of `interval` (the values REST klines shows for it) and the last engine
// sequence it includes; t = -1 when the market has no bar yet. Blocking (PostgreSQL).
struct StoredBar {
  std::int64_t t = -1;
  std::string o, h, l, c, v;
  std::uint64_t last_seq = 0;
  // The engine sequence the read tables were complete up to before the bar was read (trading's
  // projector writes them behind its acknowledgements): every trade up to it is in the bar.
  std::uint64_t projected_seq = 0;
};
Result<StoredBar> latest_bar(Services& s, const catalog::MarketInfo& m,
                             const std::string& interval);
// Kline interval name → SQL expression of a bar's open from a 1-minute bucket.
const std::map<std::string, std::string>& kline_intervals();
// Starts the development index feed (a seeded random walk per market) on the runtime's timer.
Result<void> start_index_feed(Services& s);
// Registers the signed oracle push endpoint (POST /api/v1/oracle/prices).
Result<void> start_oracle_feed(Services& s, http::Router& r);

}  // namespace hydrox::market
