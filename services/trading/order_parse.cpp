// POST /api/v1/orders bodies → engine PlaceOrder, exactly (no floating point), every field
// checked: a pure function (no I/O), shared by the trading service and its fuzz target.
#include "order_parse.hpp"

#include <algorithm>
#include <regex>

#include "hydrox/json/json.hpp"

namespace hydrox::trading {

using namespace engine;

Result<ClientOrderId> parse_client_order_id(std::string_view text, std::string_view field) {
  static const std::regex kPattern("^[A-Za-z0-9_.:-]{1,36}$");
  if (!std::regex_match(text.begin(), text.end(), kPattern)) {
    return fail(Code::invalid_field, "client_order_id must be 1-36 characters of A-Z a-z 0-9 _ . : -",
                std::string(field));
  }
  return ClientOrderId::from(text);
}

Result<TriggerBy> parse_trigger_by(const json::Value& v) {
  if (!v.is_string() || (v.as_string() != "mark" && v.as_string() != "last")) {
    return fail(Code::invalid_field, "trigger_by must be mark or last", "trigger_by");
  }
  return v.as_string() == "last" ? TriggerBy::last : TriggerBy::mark;
}

Result<PlaceOrder> parse_order(const Catalog& catalog, std::string_view body, const UserId& user, std::int64_t now) {
  if (body.empty()) return fail(Code::malformed_json, "the body must be a JSON object");
  auto doc = json::parse(body);
  if (!doc) return doc.error();
  return parse_order(catalog, *doc, user, now, /*allow_account=*/true);
}

Result<PlaceOrder> parse_order(const Catalog& catalog, const json::Value& order, const UserId& user,
                               std::int64_t now, bool allow_account) {
  if (!order.is_object()) return fail(Code::malformed_json, "an order must be a JSON object");
  for (const auto& m : order.members()) {
    static constexpr std::string_view kFields[] = {
        "symbol",      "side",           "type",          "price",       "amount",
        "leverage",    "time_in_force",  "reduce_only",   "client_order_id",
        "trigger_price", "margin_mode",  "max_slippage_bps", "trigger_by"};
    bool known = std::find(std::begin(kFields), std::end(kFields), m.key) != std::end(kFields) ||
                 (allow_account && m.key == "account") || m.key == json::kIgnoredUserIdKey;
    if (!known) return fail(Code::unknown_field, "unknown field " + m.key, m.key);
  }
  const json::Value* doc = &order;
  auto field = [&](std::string_view k) -> const json::Value* {
    const json::Value* v = doc->find(k);
    return (v && !v->is_null()) ? v : nullptr;
  };
  auto need_string = [&](std::string_view k) -> Result<std::string> {
    const json::Value* v = field(k);
    if (!v) return fail(Code::missing_field, std::string(k) + " is required", std::string(k));
    if (!v->is_string()) return fail(Code::invalid_field, std::string(k) + " must be a string", std::string(k));
    return v->as_string();
  };

  PlaceOrder p;
  p.user = user;
  p.id = OrderId{Uuid::random_v7(now)};
  p.ts_ms = now;

  auto symbol = need_string("symbol");
  if (!symbol) return symbol.error();
  const MarketInfo* m = catalog.find(*symbol);
  if (!m) return fail(Code::invalid_field, "unknown symbol " + *symbol, "symbol");
  p.market = m->index;

  auto side = need_string("side");
  if (!side) return side.error();
  if (*side == "Buy") p.side = Side::buy;
  else if (*side == "Sell") p.side = Side::sell;
  else return fail(Code::invalid_field, "side must be Buy or Sell", "side");

  auto type = need_string("type");
  if (!type) return type.error();
  if (*type == "Limit") p.type = OrderType::limit;
  else if (*type == "Market") p.type = OrderType::market;
  else if (*type == "StopLimit") p.type = OrderType::stop_limit;
  else if (*type == "StopMarket") p.type = OrderType::stop_market;
  else if (*type == "TakeProfitLimit") p.type = OrderType::take_profit_limit;
  else if (*type == "TakeProfitMarket") p.type = OrderType::take_profit_market;
  else return fail(Code::invalid_field, "type must be Limit, Market, StopLimit, StopMarket, TakeProfitLimit or TakeProfitMarket", "type");

  const json::Value* amount = field("amount");
  if (!amount) return fail(Code::missing_field, "amount is required", "amount");
  auto lots = Catalog::to_lots(*m, *amount, "amount");
  if (!lots) return lots.error();
  p.qty = *lots;

  const json::Value* price = field("price");
  if (is_limit_like(p.type)) {
    if (!price) return fail(Code::missing_field, "price is required for " + *type + " orders", "price");
    auto ticks = Catalog::to_ticks(*m, *price, "price");
    if (!ticks) return ticks.error();
    p.price = *ticks;
  } else if (price) {
    return fail(Code::invalid_field, "price is not allowed on " + *type + " orders", "price");
  }
  const json::Value* trigger = field("trigger_price");
  if (is_trigger(p.type)) {
    if (!trigger) return fail(Code::missing_field, "trigger_price is required for " + *type + " orders", "trigger_price");
    auto ticks = Catalog::to_ticks(*m, *trigger, "trigger_price");
    if (!ticks) return ticks.error();
    p.trigger_price = *ticks;
  } else if (trigger) {
    return fail(Code::invalid_field, "trigger_price is only for stop and take-profit orders", "trigger_price");
  }

  p.tif = TimeInForce::gtc;
  if (const json::Value* tif = field("time_in_force")) {
    if (!tif->is_string()) return fail(Code::invalid_field, "time_in_force must be a string", "time_in_force");
    const std::string& t = tif->as_string();
    if (t == "GTC") p.tif = TimeInForce::gtc;
    else if (t == "IOC") p.tif = TimeInForce::ioc;
    else if (t == "FOK") p.tif = TimeInForce::fok;
    else if (t == "PostOnly") p.tif = TimeInForce::post_only;
    else return fail(Code::invalid_field, "time_in_force must be GTC, IOC, FOK or PostOnly", "time_in_force");
    if (!is_limit_like(p.type) && p.tif != TimeInForce::ioc && p.tif != TimeInForce::gtc) {
      return fail(Code::invalid_field, *type + " orders are IOC", "time_in_force");
    }
  }
  if (const json::Value* ro = field("reduce_only")) {
    if (!ro->is_bool()) return fail(Code::invalid_field, "reduce_only must be true or false", "reduce_only");
    p.reduce_only = ro->as_bool();
  }
  if (const json::Value* lev = field("leverage")) {
    auto v = lev->as_int(1, m->spec.max_leverage);
    if (!v) {
      return fail(Code::invalid_field,
                  "leverage must be an integer from 1 to " + std::to_string(m->spec.max_leverage), "leverage");
    }
    p.leverage = static_cast<std::int32_t>(*v);
  }
  if (const json::Value* slip = field("max_slippage_bps")) {
    auto v = slip->as_int(1, 5000);
    if (!v) return fail(Code::invalid_field, "max_slippage_bps must be an integer from 1 to 5000", "max_slippage_bps");
    p.max_slippage_bps = static_cast<std::int32_t>(*v);
  }
  if (const json::Value* coid = field("client_order_id")) {
    auto cid = parse_client_order_id(coid->is_string() ? std::string_view(coid->as_string()) : std::string_view(),
                                     "client_order_id");
    if (!cid) return cid.error();
    p.client_order_id = *cid;
  }
  if (const json::Value* by = field("trigger_by")) {
    auto v = parse_trigger_by(*by);
    if (!v) return v.error();
    if (!is_trigger(p.type)) return fail(Code::invalid_field, "trigger_by is only for stop and take-profit orders", "trigger_by");
    p.trigger_by = *v;
  }
  if (const json::Value* mm = field("margin_mode")) {
    if (!mm->is_string() || (mm->as_string() != "cross" && mm->as_string() != "isolated")) {
      return fail(Code::invalid_field, "margin_mode must be cross or isolated", "margin_mode");
    }
    p.margin_mode = mm->as_string() == "isolated" ? MarginMode::isolated : MarginMode::cross;
  }
  return p;
}


}  // namespace hydrox::trading
