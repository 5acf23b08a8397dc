// The production index feed: signed pushes from oracles. POST /api/v1/oracle/prices with
// {symbol, price, timestamp_ms, key_id, signature}; the signature is Ed25519 (hex) over the UTF-8
// text "<symbol>|<price>|<timestamp_ms>" exactly as sent, by one of the keys in
// ORACLE_PUBLIC_KEYS ("key_id:hex,key_id:hex"). Refused, each with its own code and a log line:
// unknown key, bad signature, stale (older than 10 s) or from the future (> 2 s ahead), out of
// order (not newer than the last accepted sample of the symbol), absurd (further from the last
// accepted price than ORACLE_MAX_JUMP_PPM, default 10 %, unless three samples in a row agree within
// 1 % on the new level: a real crash is accepted on its third sample, a single wild one never, and
// a feed is never locked out for good by a move it refused).
// Trading applies the same rules again to what it receives. Accepted samples go to Redis like the
// simulated feed's.
#include <sodium.h>

#include <map>
#include <mutex>

#include "hydrox/catalog/jump_guard.hpp"
#include "hydrox/core/clock.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/events/events.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/log/log.hpp"
#include "market_app.hpp"

namespace hydrox::market {

namespace {

struct Last {
  std::int64_t ts = 0;
  std::int64_t price_units = 0;  // 1e-8
  catalog::JumpGuard jumps;
};

struct Oracle {
  std::map<std::string, std::array<unsigned char, crypto_sign_PUBLICKEYBYTES>> keys;
  std::mutex mu;
  std::map<std::string, Last> last;  // by symbol
  std::int64_t max_jump_ppm = 100'000;
};

Error refused(std::string code_text, std::string message) {
  log::warn("oracle sample refused", {{"reason", code_text}, {"detail", message}});
  return Error{Code::unprocessable, code_text + ": " + message};
}

http::Response rejection(const http::Request& req, int status, std::string_view code, std::string_view message) {
  json::Writer w;
  w.begin_object().key("error").begin_object().field("code", code).field("message", message);
  w.field("request_id", req.request_id).end_object().end_object();
  return http::Response::json(status, w.take());
}

}  // namespace

Result<void> start_oracle_feed(Services& s, http::Router& r) {
  auto spec = s.ctx->env.string("ORACLE_PUBLIC_KEYS", "");
  if (!spec) return spec.error();
  if (sodium_init() < 0) return fail(Code::internal, "libsodium failed to initialize");
  auto oracle = std::make_shared<Oracle>();
  auto jump = s.ctx->env.integer("ORACLE_MAX_JUMP_PPM", 100'000, 1000, 10'000'000);
  if (!jump) return jump.error();
  oracle->max_jump_ppm = *jump;
  std::string_view rest = *spec;
  while (!rest.empty()) {
    auto comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    auto colon = item.find(':');
    std::array<unsigned char, crypto_sign_PUBLICKEYBYTES> key{};
    std::size_t len = 0;
    if (colon == std::string_view::npos ||
        sodium_hex2bin(key.data(), key.size(), item.data() + colon + 1, item.size() - colon - 1, nullptr, &len, nullptr) != 0 ||
        len != key.size()) {
      return fail(Code::invalid_field, "ORACLE_PUBLIC_KEYS must be key_id:hex(32-byte Ed25519 key),...", "ORACLE_PUBLIC_KEYS");
    }
    oracle->keys[std::string(item.substr(0, colon))] = key;
  }
  if (oracle->keys.empty()) return fail(Code::invalid_field, "INDEX_FEED=oracle needs ORACLE_PUBLIC_KEYS", "ORACLE_PUBLIC_KEYS");

  r.post("/api/v1/oracle/prices", [&s, oracle](http::Request& req, http::Respond respond) {
    auto doc = json::parse_object(req.body, {"symbol", "price", "timestamp_ms", "key_id", "signature"});
    if (!doc) return respond(http::Response::error(doc.error(), req.request_id));
    auto str = [&](std::string_view k) -> std::string {
      const auto* v = doc->find(k);
      return v && v->is_string() ? v->as_string() : std::string();
    };
    const std::string symbol = str("symbol"), key_id = str("key_id"), sig_hex = str("signature");
    const json::Value* price_v = doc->find("price");
    const json::Value* ts_v = doc->find("timestamp_ms");
    const catalog::MarketInfo* m = s.catalog.find(symbol);
    if (!m) return respond(http::Response::error(fail(Code::invalid_field, "unknown symbol", "symbol"), req.request_id));
    if (!price_v || !price_v->is_string()) {
      return respond(http::Response::error(fail(Code::invalid_field, "price must be a decimal string", "price"), req.request_id));
    }
    auto ts = ts_v ? ts_v->as_int(0, INT64_MAX) : Result<std::int64_t>(fail(Code::missing_field, "timestamp_ms is required"));
    if (!ts) return respond(http::Response::error(fail(Code::invalid_field, "timestamp_ms must be Unix milliseconds", "timestamp_ms"), req.request_id));
    auto ticks = catalog::Catalog::to_ticks(*m, *price_v, "price");
    if (!ticks) return respond(http::Response::error(ticks.error(), req.request_id));
    auto key = oracle->keys.find(key_id);
    if (key == oracle->keys.end()) {
      log::warn("oracle sample refused", {{"reason", "UNKNOWN_ORACLE_KEY"}, {"key_id", key_id}});
      return respond(rejection(req, 401, "UNKNOWN_ORACLE_KEY", "no such oracle key"));
    }
    unsigned char sig[crypto_sign_BYTES];
    std::size_t sig_len = 0;
    const std::string message = symbol + "|" + price_v->as_string() + "|" + std::to_string(*ts);
    if (sodium_hex2bin(sig, sizeof sig, sig_hex.data(), sig_hex.size(), nullptr, &sig_len, nullptr) != 0 ||
        sig_len != sizeof sig ||
        crypto_sign_verify_detached(sig, reinterpret_cast<const unsigned char*>(message.data()), message.size(),
                                    key->second.data()) != 0) {
      log::warn("oracle sample refused", {{"reason", "BAD_SIGNATURE"}, {"symbol", symbol}});
      return respond(rejection(req, 401, "BAD_SIGNATURE", "the signature does not verify"));
    }
    const std::int64_t now = SystemClock::instance().now_ms();
    const std::int64_t units = *decimal::parse_units(price_v->as_string(), 8, decimal::Rounding::half_even);
    {
      std::lock_guard lock(oracle->mu);
      Last& last = oracle->last[symbol];
      Error e;
      bool bad = true;
      if (*ts < now - 10'000) e = refused("STALE_SAMPLE", "older than 10 s");
      else if (*ts > now + 2'000) e = refused("FUTURE_SAMPLE", "more than 2 s ahead of this clock");
      else if (*ts <= last.ts) e = refused("OUT_OF_ORDER", "not newer than the last accepted sample");
      else if (!last.jumps.admit(last.price_units, units, oracle->max_jump_ppm)) {
        e = refused("ABSURD_SAMPLE", "too far from the last accepted price (confirmed after three agreeing samples)");
      } else {
        bad = false;
      }
      if (bad) {
        const std::string code = e.message.substr(0, e.message.find(':'));
        return respond(rejection(req, 422, code, e.message.substr(code.size() + 2)));
      }
      last.ts = *ts;
      last.price_units = units;
    }
    std::string body = events::encode(events::IndexMessage{
        m->symbol, catalog::Catalog::price_text(*m, *ticks), *ts, "oracle:" + key_id});
    service::respond_blocking(*s.ctx, req, respond, [&s, symbol, body]() -> Result<http::Response> {
      auto p =
          s.ctx->redis->pipeline({{"PUBLISH", events::index_channel(symbol), body},
                                  {"SET", events::index_last_key(symbol), body, "PX", "60000"}});
      if (!p) return p.error();
      return http::Response::json(200, "{\"status\":\"accepted\"}");
    });
  });
  log::info("index feed started", {{"source", "oracle"}, {"keys", static_cast<int>(oracle->keys.size())}});
  return {};
}

}  // namespace hydrox::market
