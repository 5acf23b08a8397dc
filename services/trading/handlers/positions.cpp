// GET /api/v1/positions, POST /api/v1/positions/{id}/close, POST /api/v1/positions/leverage,
// POST /api/v1/positions/{id}/margin, POST /api/v1/positions/{id}/tpsl,
// GET /api/v1/balances.
// Live numbers come from the engine (a read job, answered after earlier writes committed);
// position timestamps from PostgreSQL.
#include <map>

#include "common.hpp"
#include "order_parse.hpp"
#include "hydrox/core/clock.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/engine/risk.hpp"
#include "hydrox/json/json.hpp"
#include "journal.hpp"

namespace hydrox::trading {

using namespace engine;
using decimal::i128;

namespace {

// The market of the caller's position `id` (position ids are derived from user and market), or
// nullptr.
const MarketInfo* position_market(const Services& s, const UserId& user, std::string_view id) {
  auto parsed = Uuid::parse(id);
  if (!parsed) return nullptr;
  for (const auto& m : s.catalog.all()) {
    if (position_id(user, m.id) == *parsed) return &m;
  }
  return nullptr;
}

struct PositionData {
  std::uint32_t market = 0;
  Position position;
  Price mark = 0;
  std::int32_t leverage = 1;
  Usdm margin = 0;  // cross: IM at the mark; isolated: the margin the position holds
  Usdm upnl = 0;
  Price liquidation = 0;
  Usdm maintenance =
      0;  // at the mark: below it (account value, or an isolated position's value) it is liquidated
};

constexpr db::Query kPositionTimes{
    "position_times",
    "SELECT market_id, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " to_char(updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), funding_paid::text"
    " FROM positions WHERE user_id = $1::uuid"};

std::vector<PositionData> positions_of(const Engine& e, const UserId& user) {
  std::vector<PositionData> out;
  const Account* a = e.account(user);
  if (!a) return out;
  for (std::uint32_t m = 0; m < e.market_count(); ++m) {
    const Position& p = a->positions[m];
    if (p.size == 0) continue;
    PositionData d;
    d.market = m;
    d.position = p;
    d.mark = e.mark(m);
    d.leverage = e.leverage_of(*a, m);
    const Qty abs = p.size < 0 ? -p.size : p.size;
    d.upnl = e.notional(m, d.mark, p.size) - p.cost;
    d.maintenance = e.maintenance_margin(m, d.mark, abs);
    if (p.isolated) {
      // Isolated: its own margin above maintenance, with the entry as the mark (perp-rules).
      d.margin = p.margin;
      const Usdm entry_notional = p.cost < 0 ? -p.cost : p.cost;
      const Usdm mm = static_cast<Usdm>((static_cast<i128>(entry_notional) + 2 * e.market(m).max_leverage - 1) /
                                        (2 * e.market(m).max_leverage));
      d.liquidation = liquidation_price(e.market(m), p.size, p.cost, p.margin - mm);
    } else {
      // Cross margin: the whole account's value above maintenance backs every position; the
      // price is the mark at which the engine liquidates, other marks as they are now.
      d.margin = e.initial_margin(m, d.mark, abs, d.leverage);
      d.liquidation = e.cross_liquidation_price(*a, m);
    }
    out.push_back(d);
  }
  return out;
}

// |cost| / |size| in USDM per base unit, to 1e-6.
std::string entry_price(const MarketInfo& m, const Position& p) {
  const i128 lots = p.size < 0 ? -p.size : p.size;
  const i128 cost = p.cost < 0 ? -p.cost : p.cost;
  auto q = decimal::div_round(cost * decimal::pow10(m.lot_scale), lots * m.lot_units, decimal::Rounding::half_even);
  return decimal::format(q ? *q : 0, 6);
}

std::string percent(Usdm part, Usdm whole) {
  if (whole == 0) return "0";
  auto q = decimal::div_round(static_cast<i128>(part) * 10'000, whole, decimal::Rounding::half_even);
  return decimal::format(q ? *q : 0, 2);
}

}  // namespace

void register_position_routes(Services& s, http::Router& r) {
  r.get("/api/v1/positions", [&s](http::Request& req, http::Respond respond) {
    auto user = acting(s, req);
    if (!user) return respond(error_response(user.error(), req));
    for (const auto& name : req.query_names()) {
      if (name != "symbol" && name != "account") {
        return respond(error_response(fail(Code::unknown_field, "unknown query parameter", name), req));
      }
    }
    const MarketInfo* only = nullptr;
    if (auto sym = req.query_param("symbol"); sym && !sym->empty()) {
      only = s.catalog.find(*sym);
      if (!only) return respond(error_response(fail(Code::invalid_field, "unknown symbol " + *sym, "symbol"), req));
    }
    Job job;
    job.is_read = true;
    job.read = [&s, u = *user, respond, rq = req, only](const Engine& e) -> std::function<void()> {
      auto data = positions_of(e, u);
      return [&s, u, respond, rq, only, data = std::move(data)]() mutable {
        respond_projected(s, rq.request_id, u, respond, [&s, u, only, data]() -> Result<http::Response> {
          auto lease = s.ctx->db->acquire();
          if (!lease) return lease.error();
          auto rows = (*lease)->exec(kPositionTimes, {u.value().to_string()});
          if (!rows) return rows.error();
          std::map<int, int> row_of;
          for (int i = 0; i < rows->size(); ++i) row_of[std::stoi(std::string(rows->get(i, 0)))] = i;
          json::Writer w;
          w.begin_array();
          for (const auto& d : data) {
            const MarketInfo& m = s.catalog.at(d.market);
            if (only && only->index != d.market) continue;
            const Qty abs = d.position.size < 0 ? -d.position.size : d.position.size;
            w.begin_object();
            w.field("id", position_id(u, m.id).to_string()).field("user_id", u.value().to_string());
            w.field("symbol", m.symbol).field("side", d.position.size > 0 ? "Long" : "Short");
            w.key("size");
            Catalog::write_amount(w, m, abs);
            w.key("entry_price").raw_number(entry_price(m, d.position));
            w.key("mark_price");
            Catalog::write_price(w, m, d.mark);
            w.field("leverage", d.leverage);
            w.key("liquidation_price");
            Catalog::write_price(w, m, d.liquidation);
            w.key("margin").raw_number(usdm_text(d.margin));
            w.key("maintenance_margin").raw_number(usdm_text(d.maintenance));
            w.key("unrealized_pnl").raw_number(usdm_text(d.upnl));
            w.key("pnl_percent").raw_number(percent(d.upnl, d.margin));
            w.field("margin_mode", d.position.isolated ? "isolated" : "cross");
            w.key("realized_pnl").raw_number(usdm_text(d.position.realized_pnl));
            auto it = row_of.find(m.id);
            w.key("funding_paid").raw_number(usdm_text(d.position.funding));
            const std::string now = format_rfc3339_ms(SystemClock::instance().now_ms());
            w.field("created_at", it == row_of.end() ? now : std::string(rows->get(it->second, 1)));
            w.field("updated_at", it == row_of.end() ? now : std::string(rows->get(it->second, 2)));
            w.end_object();
          }
          w.end_array();
          return http::Response::json(200, w.take());
        });
      };
    };
    submit(s, req, respond, std::move(job));
  });

  r.post("/api/v1/positions/{id}/close", [&s](http::Request& req, http::Respond respond) {
    auto user = acting(s, req);
    if (!user) return respond(error_response(user.error(), req));
    auto id = Uuid::parse(req.path_param("id"));
    if (!id) return respond(error_response(fail(Code::not_found, "no such position"), req));
    Job job;
    job.is_read = true;
    job.read = [&s, u = *user, id = *id, respond, rq = req](const Engine& e) -> std::function<void()> {
      // Find the position behind the id, then close it with a reduce-only market order.
      std::optional<PlaceOrder> close;
      if (const Account* a = e.account(u)) {
        for (const auto& m : s.catalog.all()) {
          const Position& p = a->positions[m.index];
          if (p.size != 0 && position_id(u, m.id) == id) {
            PlaceOrder o;
            o.user = u;
            const std::int64_t now = SystemClock::instance().now_ms();
            o.id = OrderId{Uuid::random_v7(now)};
            o.ts_ms = now;
            o.market = m.index;
            o.side = p.size > 0 ? Side::sell : Side::buy;
            o.type = OrderType::market;
            o.tif = TimeInForce::ioc;
            o.qty = p.size < 0 ? -p.size : p.size;
            o.reduce_only = true;
            close = o;
          }
        }
      }
      return [&s, respond, rq, close]() {
        if (!close) return respond(http::Response::error(fail(Code::not_found, "no such open position"), rq.request_id));
        Job order;
        order.command = *close;
        order.done = [respond, rid = rq.request_id, close](Result<Outcome> o) {
          if (!o) return respond(http::Response::error(o.error(), rid));
          Qty filled = 0;
          bool rejected = false;
          for (const auto& ev : o->events) {
            if (auto* upd = std::get_if<OrderUpdated>(&ev.body); upd && upd->id == close->id) filled = upd->filled;
            rejected = rejected || std::holds_alternative<OrderRejected>(ev.body);
          }
          if (rejected) return respond(http::Response::error(fail(Code::conflict, "the position changed; retry"), rid));
          json::Writer w;
          w.begin_object().field("status", filled == close->qty ? "closed" : "closing");
          w.field("order_id", close->id.value().to_string()).end_object();
          respond(http::Response::json(200, w.take()));
        };
        if (!s.host->submit(std::move(order))) {
          respond(http::Response::error(fail(Code::overloaded, "the order queue is full, retry shortly"), rq.request_id));
        }
      };
    };
    submit(s, req, respond, std::move(job));
  });

  // Isolated margin: {"amount": "+100" | "-50" | 100} added to or taken from the position.
  r.post("/api/v1/positions/{id}/margin", [&s](http::Request& req, http::Respond respond) {
    auto body = json::parse_object(req.body, {"amount", "account"});
    if (!body) return respond(error_response(body.error(), req));
    auto user = acting(s, req, body_account(*body));
    if (!user) return respond(error_response(user.error(), req));
    const MarketInfo* market = position_market(s, *user, req.path_param("id"));
    if (!market) return respond(error_response(fail(Code::not_found, "no such position"), req));
    const json::Value* v = body->find("amount");
    if (!v || v->is_null()) return respond(error_response(fail(Code::missing_field, "amount is required", "amount"), req));
    // A leading '+' (as the API's examples write an addition) is accepted on a string.
    json::Value amount = *v;
    if (v->is_string() && v->as_string().starts_with('+')) amount = json::Value::make_string(v->as_string().substr(1));
    auto d = amount.as_decimal();
    auto units = d ? decimal::to_units(*d, 6, decimal::Rounding::exact) : Result<std::int64_t>(d.error());
    if (!units || *units == 0 || *units > kMaxTotalUsdm || *units < -kMaxTotalUsdm) {
      return respond(error_response(
          fail(Code::invalid_field, "amount must be a non-zero USDM amount with at most 6 decimals, + to add, - to remove",
               "amount"),
          req));
    }
    Job job;
    job.command = AdjustMargin{*user, market->index, *units, SystemClock::instance().now_ms()};
    job.done = [respond, rq = req, symbol = market->symbol, pid = position_id(*user, market->id).to_string()](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), rq.request_id));
      for (const auto& e : o->events) {
        if (auto* cr = std::get_if<CommandRejected>(&e.body)) {
          if (cr->reason == Reject::no_open_position)
            return respond(http::Response::error(fail(Code::not_found, "no such open position"), rq.request_id));
          return respond(rejection_response(cr->reason, rq));
        }
      }
      json::Writer w;
      w.begin_object().field("id", pid).field("symbol", symbol);
      for (const auto& e : o->events) {
        if (auto* m = std::get_if<IsolatedMarginChanged>(&e.body)) {
          w.key("amount").raw_number(usdm_text(m->delta));
          w.key("isolated_margin").raw_number(usdm_text(m->margin));
        }
      }
      w.end_object();
      respond(http::Response::json(200, w.take()));
    };
    submit(s, req, respond, std::move(job));
  });

  // A position's take-profit and/or stop-loss: {take_profit?, stop_loss?, trigger_by?, amount?}.
  r.post("/api/v1/positions/{id}/tpsl", [&s](http::Request& req, http::Respond respond) {
    auto body = json::parse_object(req.body, {"take_profit", "stop_loss", "trigger_by", "amount", "account"});
    if (!body) return respond(error_response(body.error(), req));
    auto user = acting(s, req, body_account(*body));
    if (!user) return respond(error_response(user.error(), req));
    const MarketInfo* market = position_market(s, *user, req.path_param("id"));
    if (!market) return respond(error_response(fail(Code::not_found, "no such position"), req));
    const std::int64_t now = SystemClock::instance().now_ms();
    SetPositionTpSl cmd;
    cmd.user = *user;
    cmd.market = market->index;
    cmd.take_profit_id = OrderId{Uuid::random_v7(now)};
    cmd.stop_loss_id = OrderId{Uuid::random_v7(now)};
    cmd.ts_ms = now;
    for (auto [key, target] : {std::pair{"take_profit", &cmd.take_profit}, std::pair{"stop_loss", &cmd.stop_loss}}) {
      if (const json::Value* v = body->find(key); v && !v->is_null()) {
        auto ticks = Catalog::to_ticks(*market, *v, key);
        if (!ticks) return respond(error_response(ticks.error(), req));
        *target = *ticks;
      }
    }
    if (cmd.take_profit == 0 && cmd.stop_loss == 0) {
      return respond(error_response(fail(Code::missing_field, "take_profit or stop_loss is required", "take_profit"), req));
    }
    if (const json::Value* v = body->find("amount"); v && !v->is_null()) {
      auto lots = Catalog::to_lots(*market, *v, "amount");
      if (!lots) return respond(error_response(lots.error(), req));
      cmd.qty = *lots;
    }
    if (const json::Value* by = body->find("trigger_by"); by && !by->is_null()) {
      auto v = parse_trigger_by(*by);
      if (!v) return respond(error_response(v.error(), req));
      cmd.trigger_by = *v;
    }
    Job job;
    job.command = cmd;
    job.done = [respond, rq = req, cmd](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), rq.request_id));
      for (const auto& e : o->events) {
        if (auto* cr = std::get_if<CommandRejected>(&e.body)) {
          if (cr->reason == Reject::no_open_position)
            return respond(http::Response::error(fail(Code::not_found, "no such open position"), rq.request_id));
          return respond(rejection_response(cr->reason, rq));
        }
      }
      json::Writer w;
      w.begin_object();
      for (auto [key, oid, price] : {std::tuple{"take_profit_order_id", cmd.take_profit_id, cmd.take_profit},
                                     std::tuple{"stop_loss_order_id", cmd.stop_loss_id, cmd.stop_loss}}) {
        w.key(key);
        if (price == 0) w.null(); else w.string(oid.value().to_string());
      }
      w.field("trigger_by", cmd.trigger_by == TriggerBy::last ? "last" : "mark");
      w.end_object();
      respond(http::Response::json(201, w.take()));
    };
    submit(s, req, respond, std::move(job));
  });

  // Leverage and margin mode of the caller's account in one market: {symbol, leverage?,
  // margin_mode?}; orders placed after it inherit them.
  r.post("/api/v1/positions/leverage", [&s](http::Request& req, http::Respond respond) {
    auto body = json::parse_object(req.body, {"symbol", "leverage", "margin_mode", "account"});
    if (!body) return respond(error_response(body.error(), req));
    auto user = acting(s, req, body_account(*body));
    if (!user) return respond(error_response(user.error(), req));
    const json::Value* sym = body->find("symbol");
    if (!sym || sym->is_null()) return respond(error_response(fail(Code::missing_field, "symbol is required", "symbol"), req));
    if (!sym->is_string()) return respond(error_response(fail(Code::invalid_field, "symbol must be a string", "symbol"), req));
    const MarketInfo* m = s.catalog.find(sym->as_string());
    if (!m) return respond(error_response(fail(Code::invalid_field, "unknown symbol " + sym->as_string(), "symbol"), req));
    SetLeverage cmd{*user, m->index, 0, SystemClock::instance().now_ms()};
    if (const json::Value* lev = body->find("leverage"); lev && !lev->is_null()) {
      auto v = lev->as_int(1, m->spec.max_leverage);
      if (!v) {
        return respond(error_response(
            fail(Code::invalid_field, "leverage must be an integer from 1 to " + std::to_string(m->spec.max_leverage), "leverage"), req));
      }
      cmd.leverage = static_cast<std::int32_t>(*v);
    }
    if (const json::Value* mm = body->find("margin_mode"); mm && !mm->is_null()) {
      if (!mm->is_string() || (mm->as_string() != "cross" && mm->as_string() != "isolated")) {
        return respond(error_response(fail(Code::invalid_field, "margin_mode must be cross or isolated", "margin_mode"), req));
      }
      cmd.margin_mode = mm->as_string() == "isolated" ? MarginMode::isolated : MarginMode::cross;
    }
    if (cmd.leverage == 0 && cmd.margin_mode == MarginMode::unchanged) {
      return respond(error_response(fail(Code::missing_field, "leverage or margin_mode is required", "leverage"), req));
    }
    Job job;
    job.command = cmd;
    job.done = [&s, respond, rq = req, cmd](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), rq.request_id));
      for (const auto& e : o->events) {
        if (auto* cr = std::get_if<CommandRejected>(&e.body)) return respond(rejection_response(cr->reason, rq));
      }
      // The account's settings in the market now (the engine's, read after this command).
      Job read;
      read.is_read = true;
      read.read = [&s, respond, rq, cmd](const Engine& e) -> std::function<void()> {
        std::int32_t leverage = 0;
        bool isolated = false;
        if (const Account* a = e.account(cmd.user)) {
          leverage = e.leverage_of(*a, cmd.market);
          isolated = a->positions[cmd.market].isolated;
        }
        const std::string symbol = s.catalog.at(cmd.market).symbol;
        return [respond, leverage, isolated, symbol]() {
          json::Writer w;
          w.begin_object().field("symbol", symbol).field("leverage", leverage);
          w.field("margin_mode", isolated ? "isolated" : "cross").end_object();
          respond(http::Response::json(200, w.take()));
        };
      };
      if (!s.host->submit(std::move(read))) {
        respond(http::Response::error(fail(Code::overloaded, "the order queue is full, retry shortly"), rq.request_id));
      }
    };
    submit(s, req, respond, std::move(job));
  });

  r.get("/api/v1/balances", [&s](http::Request& req, http::Respond respond) {
    auto user = acting(s, req);
    if (!user) return respond(error_response(user.error(), req));
    for (const auto& name : req.query_names()) {
      if (name != "account") return respond(error_response(fail(Code::unknown_field, "unknown query parameter", name), req));
    }
    Job job;
    job.is_read = true;
    job.read = [u = *user, respond](const Engine& e) -> std::function<void()> {
      AccountView v = e.view(u).value_or(AccountView{});
      const Account* a = e.account(u);
      const Usdm withdrawing = a ? a->withdrawing : 0;
      return [v, withdrawing, respond]() {
        // Locked: cross positions' and open orders' margin, and what isolated positions hold.
        const Usdm available = std::max<Usdm>(0, v.account_value - v.position_margin - v.order_margin);
        const Usdm locked = v.position_margin + v.order_margin + v.isolated_margin;
        json::Writer w;
        w.begin_array().begin_object().field("asset", "USDM");
        w.key("available").raw_number(usdm_text(available));
        w.key("locked").raw_number(usdm_text(locked));
        w.key("total").raw_number(usdm_text(available + locked));
        w.key("equity").raw_number(usdm_text(v.equity));
        w.key("collateral").raw_number(usdm_text(v.collateral));
        w.key("unrealized_pnl").raw_number(usdm_text(v.unrealized_pnl + v.isolated_unrealized_pnl));
        w.key("position_margin").raw_number(usdm_text(v.position_margin));
        w.key("isolated_margin").raw_number(usdm_text(v.isolated_margin));
        w.key("order_margin").raw_number(usdm_text(v.order_margin));
        w.key("maintenance_margin").raw_number(usdm_text(v.maintenance_margin));
        // Withdrawals asked for and not yet on chain: no longer in the balance, not yet gone.
        w.key("pending_withdrawal").raw_number(usdm_text(withdrawing));
        w.end_object().end_array();
        respond(http::Response::json(200, w.take()));
      };
    };
    submit(s, req, respond, std::move(job));
  });
}

}  // namespace hydrox::trading
