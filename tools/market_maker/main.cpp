// hydrox-market-maker: quotes a two-sided ladder around each market's index price through the
// public API (the gateway) with an API key, and re-quotes as the index moves. With a second key
// (TAKER_API_KEY) it also sends small market orders now and then, so a development stack has
// trades, moving klines and tickers.
//
// Environment: GATEWAY_URL (http://localhost:8080), MM_API_KEY (required), TAKER_API_KEY,
// MM_SYMBOLS (comma list; default every market), MM_LEVELS (5), MM_SPREAD_BPS (10),
// MM_STEP_BPS (5), MM_LEVEL_NOTIONAL (2000 USDM), MM_REQUOTE_MS (3000), MM_SEED (7).
#include <atomic>
#include <chrono>
#include <cstdio>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "hydrox/config/env.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/http/client.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/log/log.hpp"

using namespace hydrox;
using decimal::i128;

namespace {

// SIGTERM / SIGINT (the runtime's signal set): stop quoting, take the quotes off the book, exit 0
// (supervisord's stop). The runtime keeps running until then: the cancels go through it.
std::atomic<bool> g_stop{false};

// Sleeps up to `d`, waking early when a stop signal arrives; false once stopping.
bool pause(std::chrono::milliseconds d) {
  const auto until = std::chrono::steady_clock::now() + d;
  while (!g_stop.load() && std::chrono::steady_clock::now() < until)
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  return !g_stop.load();
}

struct Market {
  std::string symbol;
  decimal::Decimal tick, lot, min_notional;
};

// v rounded to a multiple of step (both exact decimals), down or up; text.
std::string round_to(const decimal::Decimal& v, const decimal::Decimal& step, decimal::Rounding mode) {
  const int scale = std::max(v.scale, step.scale);
  const i128 vu = v.mantissa * decimal::pow10(scale - v.scale);
  const i128 su = step.mantissa * decimal::pow10(scale - step.scale);
  auto q = decimal::div_round(vu, su, mode);
  return decimal::format(q ? *q * su : 0, scale);
}

decimal::Decimal scaled(const decimal::Decimal& v, std::int64_t bps_delta) {
  // v × (10000 + bps_delta) / 10000, kept exact by widening the scale by 4.
  return decimal::Decimal{v.mantissa * (10'000 + bps_delta), v.scale + 4};
}

class Api {
 public:
  Api(http::Client& c, config::Endpoint ep) : client_(c), ep_(std::move(ep)) {}
  Result<http::Response> call(http::Method m, const std::string& target, const std::string& key, std::string body = {}) {
    http::OutgoingRequest r{m, target, {{"Authorization", "Bearer " + key}, {"Content-Type", "application/json"}}, std::move(body)};
    return client_.request_sync(ep_, std::move(r));
  }

 private:
  http::Client& client_;
  config::Endpoint ep_;
};

}  // namespace

int main() {
  log::init("market-maker");
  config::Env env;
  auto gateway = env.endpoint("GATEWAY_URL", "http://localhost:8080");
  auto key = env.required("MM_API_KEY");
  auto taker = env.string("TAKER_API_KEY", "");
  auto levels = env.integer("MM_LEVELS", 5, 1, 50);
  auto spread = env.integer("MM_SPREAD_BPS", 10, 1, 1000);
  auto step = env.integer("MM_STEP_BPS", 5, 1, 1000);
  auto notional = env.string("MM_LEVEL_NOTIONAL", "2000");
  auto requote = env.integer("MM_REQUOTE_MS", 3000, 100, 600'000);
  auto seed = env.integer("MM_SEED", 7, 0, INT64_MAX);
  auto symbols = env.string("MM_SYMBOLS", "");
  for (const Result<std::int64_t>* r : {&levels, &spread, &step, &requote, &seed}) {
    if (!*r) {
      std::fprintf(stderr, "init config failed: %s\n", r->error().message.c_str());
      return 1;
    }
  }
  if (!gateway || !key || !taker || !notional || !symbols) {
    std::fprintf(stderr, "init config failed: %s\n",
                 (!gateway ? gateway.error() : !key ? key.error() : Error{Code::invalid_field, "bad value"}).message.c_str());
    return 1;
  }
  auto level_notional = decimal::parse(*notional);
  if (!level_notional) {
    std::fprintf(stderr, "init config failed: MM_LEVEL_NOTIONAL must be a decimal\n");
    return 1;
  }

  http::Runtime runtime(http::Runtime::Options{1, 1, 16});
  runtime.on_signal([] { g_stop.store(true); });
  http::Client client(runtime);
  std::thread io([&] { runtime.run(); });
  Api api(client, *gateway);
  std::mt19937_64 rng(static_cast<std::uint64_t>(*seed));

  auto finish = [&](int code) {
    runtime.stop();
    io.join();
    return code;
  };
  std::vector<Market> markets;
  for (int attempt = 0; markets.empty() && !g_stop.load(); ++attempt) {
    auto r = api.call(http::Method::get, "/api/v1/markets", *key);
    if (r && r->status == 200) {
      auto doc = json::parse(r->body);
      for (const auto& m : doc->items()) {
        const std::string& sym = m.find("symbol")->as_string();
        if (!symbols->empty() && ("," + *symbols + ",").find("," + sym + ",") == std::string::npos) continue;
        markets.push_back(Market{sym, *m.find("tick_size")->as_decimal(), *m.find("lot_size")->as_decimal(),
                                 *m.find("min_notional")->as_decimal()});
      }
    }
    if (markets.empty()) pause(std::chrono::seconds(1));
    if (attempt > 120) {
      std::fprintf(stderr, "init markets failed: the gateway did not list markets\n");
      return finish(1);
    }
  }
  if (g_stop.load()) return finish(0);
  log::info("quoting", {{"markets", static_cast<int>(markets.size())}, {"levels", static_cast<int>(*levels)}});

  while (!g_stop.load()) {
    for (const auto& m : markets) {
      if (g_stop.load()) break;
      auto t = api.call(http::Method::get, "/api/v1/markets/" + m.symbol + "/ticker", *key);
      if (!t || t->status != 200) continue;
      auto doc = json::parse(t->body);
      if (!doc || !doc->find("index_price")) continue;
      auto index = doc->find("index_price")->as_decimal();
      if (!index || index->mantissa <= 0) continue;
      api.call(http::Method::del, "/api/v1/orders?symbol=" + m.symbol, *key);
      for (std::int64_t i = 0; i < *levels; ++i) {
        const std::int64_t off = *spread + i * *step;
        for (bool buy : {true, false}) {
          const std::string price = round_to(scaled(*index, buy ? -off : off), m.tick,
                                             buy ? decimal::Rounding::down : decimal::Rounding::up);
          // amount = notional / price, down to the lot (at least one lot).
          auto p = decimal::parse(price);
          const int scale = 12;
          const i128 n = level_notional->mantissa * decimal::pow10(scale - level_notional->scale);
          const i128 pu = p->mantissa * decimal::pow10(scale - p->scale);
          const i128 qty_units = n * decimal::pow10(m.lot.scale) / pu;  // amount at the lot's scale
          i128 lots = qty_units / m.lot.mantissa;
          if (lots < 1) lots = 1;
          const std::string amount = decimal::format(lots * m.lot.mantissa, m.lot.scale);
          json::Writer w;
          w.begin_object().field("symbol", m.symbol).field("side", buy ? "Buy" : "Sell").field("type", "Limit");
          w.field("price", price).field("amount", amount).field("time_in_force", "PostOnly").end_object();
          api.call(http::Method::post, "/api/v1/orders", *key, w.take());
        }
      }
      if (!taker->empty() && rng() % 2 == 0) {
        // A small market order: a few times the minimum notional.
        const i128 min_units = m.min_notional.mantissa * decimal::pow10(12 - m.min_notional.scale) * static_cast<i128>(1 + rng() % 3);
        const i128 pu = index->mantissa * decimal::pow10(12 - index->scale);
        i128 lots = (min_units * decimal::pow10(m.lot.scale) / pu) / m.lot.mantissa + 1;
        json::Writer w;
        w.begin_object().field("symbol", m.symbol).field("side", rng() % 2 ? "Buy" : "Sell").field("type", "Market");
        w.field("amount", decimal::format(lots * m.lot.mantissa, m.lot.scale)).end_object();
        api.call(http::Method::post, "/api/v1/orders", *taker, w.take());
      }
    }
    pause(std::chrono::milliseconds(*requote));
  }
  // Stopping: the quotes leave the book with the quoter.
  for (const auto& m : markets)
    api.call(http::Method::del, "/api/v1/orders?symbol=" + m.symbol, *key);
  log::info("stopped: quotes cancelled");
  return finish(0);
}
