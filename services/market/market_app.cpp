#include "market_app.hpp"

#include "hydrox/log/log.hpp"

namespace hydrox::market {

Result<void> setup(service::Context& ctx) {
  static Services services;  // lives as long as the process: handlers and timers use it
  Services& s = services;
  s.ctx = &ctx;
  auto trading = ctx.env.endpoint("TRADING_SERVICE_URL", "http://localhost:8082");
  if (!trading) return trading.error();
  s.trading = *trading;
  auto lease = ctx.db->acquire();
  if (!lease) return lease.error();
  auto cat = catalog::Catalog::load(**lease);
  if (!cat) return cat.error();
  s.catalog = std::move(*cat);
  http::ClientOptions co;
  co.connect_timeout = std::chrono::milliseconds(500);
  co.request_timeout = std::chrono::milliseconds(2000);
  s.client = std::make_shared<http::Client>(*ctx.runtime, co);
  register_market_routes(s, *ctx.router);
  auto feed = ctx.env.string("INDEX_FEED", "simulated");
  if (!feed) return feed.error();
  if (*feed == "simulated") {
    if (auto r = start_index_feed(s); !r) return r.error();
  } else if (*feed != "none") {
    return fail(Code::invalid_field, "INDEX_FEED must be simulated or none, got \"" + *feed + "\"", "INDEX_FEED");
  }
  return {};
}

}  // namespace hydrox::market
