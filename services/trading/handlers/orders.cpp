// POST/GET/DELETE /api/v1/orders, GET /api/v1/orders/history, GET /api/v1/fills.
#include <regex>

#include "common.hpp"
#include "order_parse.hpp"
#include "hydrox/core/clock.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/json/json.hpp"
#include "journal.hpp"

namespace hydrox::trading {

using namespace engine;

namespace {

constexpr std::string_view kOrderColumns =
    "SELECT o.id, o.user_id, m.symbol, o.side, o.type, o.time_in_force, o.price::text, o.amount::text,"
    " o.filled::text, o.status, o.reduce_only, o.client_order_id,"
    " round(o.filled_notional / NULLIF(o.filled, 0), 8)::text,"
    " to_char(o.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " to_char(o.updated_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " o.cancel_reason, o.leverage, o.trigger_price::text, o.trigger_by, o.position_tpsl"
    " FROM orders o JOIN markets m ON m.id = o.market_id";

const std::string kListOrders = std::string(kOrderColumns) +
    " WHERE o.user_id = $1::uuid AND o.status = ANY($2::text[])"
    " AND ($3::uuid IS NULL OR o.created_seq < (SELECT created_seq FROM orders WHERE id = $3::uuid AND user_id = $1::uuid))"
    " AND ($4::int IS NULL OR o.market_id = $4::int)"
    " ORDER BY o.created_seq DESC LIMIT $5::int";
const std::string kOneOrder = std::string(kOrderColumns) + " WHERE o.id = $1::uuid AND o.user_id = $2::uuid";

constexpr db::Query kListFills{
    "list_fills",
    "SELECT f.seq, f.order_id, m.symbol, f.side, f.price::text, f.amount::text, f.fee::text,"
    " f.realized_pnl::text, f.liquidity, floor(extract(epoch from f.time))::bigint,"
    " (extract(epoch from f.time) * 1000)::bigint, f.liquidation"
    " FROM fills f JOIN markets m ON m.id = f.market_id"
    " WHERE f.user_id = $1::uuid AND ($2::bigint IS NULL OR f.seq < $2::bigint)"
    " AND ($3::int IS NULL OR f.market_id = $3::int)"
    " ORDER BY f.seq DESC, f.liquidity LIMIT $4::int"};

void write_order_row(json::Writer& w, const db::Rows& rows, int r) {
  w.begin_object();
  w.field("id", rows.get(r, 0)).field("user_id", rows.get(r, 1)).field("symbol", rows.get(r, 2));
  w.field("side", rows.get(r, 3)).field("type", rows.get(r, 4));
  w.key("price");
  if (rows.is_null(r, 6)) w.null(); else w.raw_number(plain(rows.get(r, 6)));
  w.key("amount").raw_number(plain(rows.get(r, 7)));
  w.key("filled").raw_number(plain(rows.get(r, 8)));
  w.field("status", rows.get(r, 9)).field("time_in_force", rows.get(r, 5));
  w.field("reduce_only", rows.get(r, 10) == "t");
  w.key("client_order_id");
  if (rows.is_null(r, 11)) w.null(); else w.string(rows.get(r, 11));
  w.key("trigger_price");
  if (rows.is_null(r, 17)) w.null(); else w.raw_number(plain(rows.get(r, 17)));
  // Trigger orders: the price they watch (mark or last); a position's take-profit / stop-loss.
  w.key("trigger_by");
  if (rows.is_null(r, 18)) w.null(); else w.string(rows.get(r, 18));
  w.field("position_tpsl", rows.get(r, 19) == "t");
  w.key("average_price");
  if (rows.is_null(r, 12)) w.null(); else w.raw_number(plain(rows.get(r, 12)));
  w.field("leverage", std::stoi(std::string(rows.get(r, 16))));
  w.key("cancel_reason");
  if (rows.is_null(r, 15)) w.null(); else w.string(rows.get(r, 15));
  w.field("created_at", rows.get(r, 13)).field("updated_at", rows.get(r, 14));
  w.end_object();
}

// 422 for business rules; 404 for unknown orders.
Error reject_error(Reject r) {
  Error e{Code::unprocessable, std::string(reject_code(r))};
  switch (r) {
    case Reject::insufficient_margin: e.message = "insufficient margin for this order"; break;
    case Reject::post_only_would_cross: e.message = "a post-only order would cross the book"; break;
    case Reject::reduce_only_would_increase: e.message = "a reduce-only order must reduce the position"; break;
    case Reject::fok_not_fillable: e.message = "a fill-or-kill order cannot be filled completely"; break;
    case Reject::below_min_notional: e.message = "the order is below the market's minimum notional"; e.field = "amount"; break;
    case Reject::price_out_of_band: e.message = "the price is too far from the mark price"; e.field = "price"; break;
    case Reject::too_many_open_orders: e.message = "too many open orders"; break;
    case Reject::no_mark_price: e.message = "the market has no mark price yet"; break;
    case Reject::would_trigger_immediately:
      e.message = "the mark price is already past trigger_price";
      e.field = "trigger_price";
      break;
    case Reject::bad_trigger_price: e.message = "trigger_price must be positive"; e.field = "trigger_price"; break;
    case Reject::order_size_too_large:
      e.code = Code::invalid_field;
      e.message =
          "amount is above the market's max_order_size (max_market_order_size for market orders)";
      e.field = "amount";
      break;
    case Reject::order_notional_too_large:
      e.code = Code::invalid_field;
      e.message = "price x amount is above the market's max_order_notional";
      e.field = "amount";
      break;
    case Reject::position_notional_too_large:
      e.message = "the position this order could build is above the market's max_position_notional";
      e.field = "amount";
      break;
    case Reject::amount_too_large:
      e.code = Code::invalid_field;
      e.message = "a value is beyond the exchange's bounds";
      break;
    case Reject::unknown_order: e.code = Code::not_found; e.message = "no such open order"; break;
    case Reject::nothing_to_amend:
      e.code = Code::invalid_field;
      e.message = "the new price and amount are the order's own";
      break;
    case Reject::amend_below_filled:
      e.code = Code::invalid_field;
      e.message = "amount must be above what has already filled";
      e.field = "amount";
      break;
    case Reject::order_not_amendable: e.message = "a held trigger order cannot be amended; cancel it and place another"; break;
    case Reject::bad_timeout:
      e.code = Code::invalid_field;
      e.message = "timeout_ms must be 0 or from 1000 to 86400000";
      e.field = "timeout_ms";
      break;
    case Reject::bad_leverage: e.code = Code::invalid_field; e.message = "leverage is out of range"; e.field = "leverage"; break;
    case Reject::margin_mode_locked:
      e.message = "the margin mode cannot change while the market has a position or open orders";
      e.field = "margin_mode";
      break;
    case Reject::bad_price_tick: e.code = Code::invalid_field; e.message = "price must be positive"; e.field = "price"; break;
    case Reject::bad_quantity_lot: e.code = Code::invalid_field; e.message = "amount must be positive"; e.field = "amount"; break;
    case Reject::position_not_isolated: e.message = "the position is cross: its margin is the account's"; break;
    case Reject::market_halted: e.message = "the market is halted (cancel-only): only cancels and reduce-only orders"; break;
    case Reject::market_delisted: e.message = "the market is delisted: settled and closed"; break;
    case Reject::bad_amount: e.code = Code::invalid_field; e.message = "amount is invalid"; e.field = "amount"; break;
    default: e.message = "order rejected"; break;
  }
  return e;
}

// The answer to an accepted order (POST /orders, an item of POST /orders/batch): its state after
// matching, from its events in [first, end).
void write_placed(json::Writer& w, const Catalog& catalog, const PlaceOrder& placed,
                  const std::vector<Event>& events, std::size_t first, std::size_t end) {
  const MarketInfo& m = catalog.at(placed.market);
  OrderStatus status = OrderStatus::open;
  Qty filled = 0;
  Usdm filled_notional = 0;
  for (std::size_t i = first; i < end; ++i) {
    if (auto* u = std::get_if<OrderUpdated>(&events[i].body); u && u->id == placed.id) {
      status = u->status;
      filled = u->filled;
      filled_notional = u->filled_notional;
    }
  }
  w.begin_object().field("id", placed.id.value().to_string()).field("status", status_name(status));
  w.field("symbol", m.symbol).field("side", side_name(placed.side)).field("type", type_name(placed.type));
  w.key("filled");
  Catalog::write_amount(w, m, filled);
  w.key("filled_notional").raw_number(usdm_text(filled_notional));
  w.key("client_order_id");
  if (placed.client_order_id.empty()) w.null(); else w.string(placed.client_order_id.view());
  w.end_object();
}

// An error object as an item of a batch answer: {"error": {code, message, field?}}.
void write_item_error(json::Writer& w, std::string_view code, std::string_view message, std::string_view field) {
  w.begin_object().key("error").begin_object().field("code", code).field("message", message);
  if (!field.empty()) w.field("field", field);
  w.end_object().end_object();
}

// The first refusal among events [first, end): an order's or a command's.
std::optional<Reject> refusal(const std::vector<Event>& events, std::size_t first, std::size_t end) {
  for (std::size_t i = first; i < end; ++i) {
    if (auto* r = std::get_if<OrderRejected>(&events[i].body)) return r->reason;
    if (auto* r = std::get_if<CommandRejected>(&events[i].body)) return r->reason;
  }
  return std::nullopt;
}

const std::string kOneOrderByClientId = std::string(kOrderColumns) +
    " WHERE o.client_order_id = $1 AND o.user_id = $2::uuid ORDER BY o.created_seq DESC LIMIT 1";

constexpr std::size_t kMaxBatchOrders = 20;
constexpr std::size_t kMaxBatchCancels = 50;

}  // namespace

// The api-contract code for an engine rejection rides in the message's error body as `code`:
// Response::error uses the Code table, so the stable engine reason goes in a header and body.
http::Response rejection_response(Reject r, const http::Request& req) {
  // An unknown order is answered like every other unknown object (404 NOT_FOUND).
  if (r == Reject::unknown_order) return http::Response::error(fail(Code::not_found, "no such open order"), req.request_id);
  Error e = reject_error(r);
  json::Writer w;
  w.begin_object().key("error").begin_object();
  w.field("code", reject_code(r)).field("message", e.message);
  if (!e.field.empty()) w.field("field", e.field);
  w.field("request_id", req.request_id).end_object().end_object();
  const int status = e.code == Code::invalid_field ? 400 : e.code == Code::not_found ? 404 : 422;
  return http::Response::json(status, w.take());
}

// The same as an item of a batch answer.
void write_rejection(json::Writer& w, Reject r) {
  if (r == Reject::unknown_order) return write_item_error(w, api_code(Code::not_found), "no such open order", {});
  Error e = reject_error(r);
  write_item_error(w, reject_code(r), e.message, e.field);
}

void register_order_routes(Services& s, http::Router& router) {
  router.post("/api/v1/orders", [&s](http::Request& req, http::Respond respond) {
    std::optional<std::string> account;
    if (auto body = json::parse(req.body); body && body->is_object()) {
      if (const json::Value* a = body->find("account"); a && !a->is_null()) {
        if (!a->is_string()) return respond(error_response(fail(Code::invalid_field, "account must be a vault id", "account"), req));
        account = a->as_string();
      }
    }
    auto user = acting(s, req, account);
    if (!user) return respond(error_response(user.error(), req));
    auto order = parse_order(s.catalog, req.body, *user, SystemClock::instance().now_ms());
    if (!order) return respond(error_response(order.error(), req));
    const PlaceOrder placed = *order;
    Job job;
    job.command = placed;
    job.done = [&s, respond, req_id = req.request_id, placed, rq = req](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), req_id));
      for (const auto& e : o->events) {
        if (auto* rej = std::get_if<OrderRejected>(&e.body)) {
          if (rej->reason == Reject::duplicate_client_order_id) {
            // The original order, as it stands now; never a second one.
            respond_projected(s, rq.request_id, placed.user, respond,
                                      [&s, rej = *rej, placed]() -> Result<http::Response> {
              auto lease = s.ctx->db->acquire();
              if (!lease) return lease.error();
              auto rows = (*lease)->exec(db::Query{"one_order", kOneOrder},
                                         {rej.original.value().to_string(), placed.user.value().to_string()});
              if (!rows) return rows.error();
              if (rows->size() == 0) return fail(Code::conflict, "duplicate client_order_id", "client_order_id");
              json::Writer w;
              write_order_row(w, *rows, 0);
              return http::Response::json(200, w.take());
            });
            return;
          }
          return respond(rejection_response(rej->reason, rq));
        }
      }
      json::Writer w;
      write_placed(w, s.catalog, placed, o->events, 0, o->events.size());
      respond(http::Response::json(201, w.take()));
    };
    submit(s, req, respond, std::move(job));
  });

  auto list = [&s](std::string statuses) {
    return [&s, statuses](http::Request& req, http::Respond respond) {
      auto user = acting(s, req);
      if (!user) return respond(error_response(user.error(), req));
      auto p = list_params(req, s.catalog);
      if (!p) return respond(error_response(p.error(), req));
      if (p->before && !Uuid::parse(*p->before)) {
        return respond(error_response(fail(Code::invalid_field, "before must be an order id", "before"), req));
      }
      respond_projected(s, req.request_id, *user, respond, [&s, u = *user, p = *p, statuses]() -> Result<http::Response> {
        auto lease = s.ctx->db->acquire();
        if (!lease) return lease.error();
        db::Param market;
        if (p.market) market = std::to_string(p.market->id);
        auto rows = (*lease)->exec(db::Query{"list_orders", kListOrders},
                                   {u.value().to_string(), statuses, p.before, market, std::to_string(p.limit)});
        if (!rows) return rows.error();
        json::Writer w;
        w.begin_array();
        for (int r = 0; r < rows->size(); ++r) write_order_row(w, *rows, r);
        w.end_array();
        auto res = http::Response::json(200, w.take());
        if (rows->size() == p.limit) res.set_header("X-Next-Cursor", rows->get(rows->size() - 1, 0));
        return res;
      });
    };
  };
  router.get("/api/v1/orders", list("{Open,PartiallyFilled,Untriggered}"));
  router.get("/api/v1/orders/history", list("{Filled,Cancelled,Rejected}"));
  // One order, open or historical (404 for an unknown id and for another user's order). The
  // `orders` stream sends this object on every change of the order.
  router.get("/api/v1/orders/{id}", [&s](http::Request& req, http::Respond respond) {
    auto user = acting(s, req);
    if (!user) return respond(error_response(user.error(), req));
    if (!req.query_names().empty() && req.query_names() != std::vector<std::string>{"account"}) {
      return respond(error_response(
          fail(Code::unknown_field, "unknown query parameter", req.query_names().front()), req));
    }
    auto id = Uuid::parse(req.path_param("id"));
    if (!id) return respond(error_response(fail(Code::not_found, "no such order"), req));
    respond_projected(s, req.request_id, *user, respond,
                              [&s, u = *user, id = *id]() -> Result<http::Response> {
                                auto lease = s.ctx->db->acquire();
                                if (!lease) return lease.error();
                                auto rows = (*lease)->exec(db::Query{"one_order", kOneOrder},
                                                           {id.to_string(), u.value().to_string()});
                                if (!rows) return rows.error();
                                if (rows->size() == 0)
                                  return fail(Code::not_found, "no such order");
                                json::Writer w;
                                write_order_row(w, *rows, 0);
                                return http::Response::json(200, w.take());
                              });
  });

  router.del("/api/v1/orders/{id}", [&s](http::Request& req, http::Respond respond) {
    auto user = acting(s, req);
    if (!user) return respond(error_response(user.error(), req));
    auto id = Uuid::parse(req.path_param("id"));
    if (!id) return respond(error_response(fail(Code::not_found, "no such order"), req));
    Job job;
    job.command = CancelOrder{*user, OrderId{*id}, SystemClock::instance().now_ms()};
    job.done = [respond, rid = req.request_id, id = *id](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), rid));
      for (const auto& e : o->events) {
        if (std::holds_alternative<CommandRejected>(e.body)) {
          return respond(http::Response::error(fail(Code::not_found, "no such open order"), rid));
        }
      }
      json::Writer w;
      w.begin_object().field("status", "cancelled").field("id", id.to_string()).end_object();
      respond(http::Response::json(200, w.take()));
    };
    submit(s, req, respond, std::move(job));
  });

  router.del("/api/v1/orders", [&s](http::Request& req, http::Respond respond) {
    auto user = acting(s, req);
    if (!user) return respond(error_response(user.error(), req));
    for (const auto& name : req.query_names()) {
      if (name != "symbol" && name != "account") {
        return respond(error_response(fail(Code::unknown_field, "unknown query parameter " + name, name), req));
      }
    }
    std::int32_t market = -1;
    if (auto sym = req.query_param("symbol"); sym && !sym->empty()) {
      const MarketInfo* m = s.catalog.find(*sym);
      if (!m) return respond(error_response(fail(Code::invalid_field, "unknown symbol " + *sym, "symbol"), req));
      market = static_cast<std::int32_t>(m->index);
    }
    Job job;
    job.command = CancelAll{*user, market, SystemClock::instance().now_ms()};
    job.done = [respond, rid = req.request_id](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), rid));
      std::int64_t n = 0;
      for (const auto& e : o->events) n += std::holds_alternative<OrderUpdated>(e.body);
      json::Writer w;
      w.begin_object().field("status", "cancelled").field("count", n).end_object();
      respond(http::Response::json(200, w.take()));
    };
    submit(s, req, respond, std::move(job));
  });

  router.get("/api/v1/fills", [&s](http::Request& req, http::Respond respond) {
    auto user = acting(s, req);
    if (!user) return respond(error_response(user.error(), req));
    auto p = list_params(req, s.catalog);
    if (!p) return respond(error_response(p.error(), req));
    if (p->before && (p->before->empty() || p->before->find_first_not_of("0123456789") != std::string::npos ||
                      p->before->size() > 18)) {
      return respond(error_response(fail(Code::invalid_field, "before must be a fill id", "before"), req));
    }
    respond_projected(s, req.request_id, *user, respond, [&s, u = *user, p = *p]() -> Result<http::Response> {
      auto lease = s.ctx->db->acquire();
      if (!lease) return lease.error();
      db::Param market;
      if (p.market) market = std::to_string(p.market->id);
      auto rows = (*lease)->exec(kListFills, {u.value().to_string(), p.before, market, std::to_string(p.limit)});
      if (!rows) return rows.error();
      json::Writer w;
      w.begin_array();
      for (int r = 0; r < rows->size(); ++r) {
        w.begin_object();
        w.field("id", rows->get(r, 0)).field("order_id", rows->get(r, 1)).field("symbol", rows->get(r, 2));
        w.field("side", rows->get(r, 3));
        w.key("price").raw_number(plain(rows->get(r, 4)));
        w.key("amount").raw_number(plain(rows->get(r, 5)));
        w.key("fee").raw_number(plain(rows->get(r, 6)));
        w.key("realized_pnl").raw_number(plain(rows->get(r, 7)));
        w.field("liquidity", rows->get(r, 8));
        w.key("time").raw_number(rows->get(r, 9));
        w.key("time_ms").raw_number(rows->get(r, 10));
        // Set when the fill was part of a liquidation: BOOK, BACKSTOP or ADL.
        if (rows->is_null(r, 11)) w.key("liquidation").null(); else w.field("liquidation", rows->get(r, 11));
        w.end_object();
      }
      w.end_array();
      auto res = http::Response::json(200, w.take());
      if (rows->size() == p.limit) res.set_header("X-Next-Cursor", rows->get(rows->size() - 1, 0));
      return res;
    });
  });

  // One order by the client's id (open or historical: the newest with that id).
  router.get("/api/v1/orders/by-client-id/{client_order_id}", [&s](http::Request& req, http::Respond respond) {
    auto user = acting(s, req);
    if (!user) return respond(error_response(user.error(), req));
    auto cid = parse_client_order_id(req.path_param("client_order_id"), "client_order_id");
    if (!cid) return respond(error_response(cid.error(), req));
    respond_projected(s, req.request_id, *user, respond,
                      [&s, u = *user, cid = std::string(cid->view())]() -> Result<http::Response> {
                        auto lease = s.ctx->db->acquire();
                        if (!lease) return lease.error();
                        auto rows = (*lease)->exec(db::Query{"one_order_by_client_id", kOneOrderByClientId},
                                                   {cid, u.value().to_string()});
                        if (!rows) return rows.error();
                        if (rows->size() == 0) return fail(Code::not_found, "no such order");
                        json::Writer w;
                        write_order_row(w, *rows, 0);
                        return http::Response::json(200, w.take());
                      });
  });

  // Cancel by the client's id (the open order that holds it).
  router.del("/api/v1/orders/by-client-id/{client_order_id}", [&s](http::Request& req, http::Respond respond) {
    auto user = acting(s, req);
    if (!user) return respond(error_response(user.error(), req));
    auto cid = parse_client_order_id(req.path_param("client_order_id"), "client_order_id");
    if (!cid) return respond(error_response(cid.error(), req));
    Job job;
    job.command = CancelOrder{*user, OrderId{}, SystemClock::instance().now_ms(), *cid};
    job.done = [respond, rq = req, cid = std::string(cid->view())](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), rq.request_id));
      if (auto why = refusal(o->events, 0, o->events.size())) return respond(rejection_response(*why, rq));
      json::Writer w;
      w.begin_object().field("status", "cancelled");
      for (const auto& e : o->events) {
        if (auto* u = std::get_if<OrderUpdated>(&e.body)) {
          w.field("id", u->id.value().to_string());
          break;
        }
      }
      w.field("client_order_id", cid).end_object();
      respond(http::Response::json(200, w.take()));
    };
    submit(s, req, respond, std::move(job));
  });

  // Amend: {symbol, price?, amount?} (amount: the new total size, filled part included).
  router.patch("/api/v1/orders/{id}", [&s](http::Request& req, http::Respond respond) {
    auto body = json::parse_object(req.body, {"symbol", "price", "amount", "account"});
    if (!body) return respond(error_response(body.error(), req));
    auto user = acting(s, req, body_account(*body));
    if (!user) return respond(error_response(user.error(), req));
    auto id = Uuid::parse(req.path_param("id"));
    if (!id) return respond(error_response(fail(Code::not_found, "no such order"), req));
    const json::Value* sym = body->find("symbol");
    if (!sym || sym->is_null()) return respond(error_response(fail(Code::missing_field, "symbol is required", "symbol"), req));
    if (!sym->is_string()) return respond(error_response(fail(Code::invalid_field, "symbol must be a string", "symbol"), req));
    const MarketInfo* m = s.catalog.find(sym->as_string());
    if (!m) return respond(error_response(fail(Code::invalid_field, "unknown symbol " + sym->as_string(), "symbol"), req));
    AmendOrder amend{*user, OrderId{*id}, m->index, 0, 0, SystemClock::instance().now_ms(), {}};
    const json::Value* price = body->find("price");
    const json::Value* amount = body->find("amount");
    if ((!price || price->is_null()) && (!amount || amount->is_null())) {
      return respond(error_response(fail(Code::missing_field, "price or amount is required", "price"), req));
    }
    if (price && !price->is_null()) {
      auto ticks = Catalog::to_ticks(*m, *price, "price");
      if (!ticks) return respond(error_response(ticks.error(), req));
      amend.price = *ticks;
    }
    if (amount && !amount->is_null()) {
      auto lots = Catalog::to_lots(*m, *amount, "amount");
      if (!lots) return respond(error_response(lots.error(), req));
      amend.qty = *lots;
    }
    Job job;
    job.command = amend;
    job.done = [&s, respond, rq = req, amend](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), rq.request_id));
      if (auto why = refusal(o->events, 0, o->events.size())) return respond(rejection_response(*why, rq));
      const MarketInfo& market = s.catalog.at(amend.market);
      const OrderAmended* am = nullptr;
      const OrderUpdated* last = nullptr;
      for (const auto& e : o->events) {
        if (auto* a = std::get_if<OrderAmended>(&e.body)) am = a;
        if (auto* u = std::get_if<OrderUpdated>(&e.body); u && am && u->id == am->id) last = u;
      }
      if (!am) return respond(http::Response::error(fail(Code::internal, "amend without its event"), rq.request_id));
      json::Writer w;
      w.begin_object().field("id", am->id.value().to_string());
      // Open or PartiallyFilled while it rests; Filled when the repriced order matched in full.
      const Qty filled = last ? last->filled : am->qty - am->remaining;
      const OrderStatus status = last ? last->status : (filled > 0 ? OrderStatus::partially_filled : OrderStatus::open);
      w.field("status", status_name(status)).field("symbol", market.symbol);
      w.key("price");
      Catalog::write_price(w, market, am->price);
      w.key("amount");
      Catalog::write_amount(w, market, am->qty);
      w.key("filled");
      Catalog::write_amount(w, market, filled);
      w.key("remaining");
      Catalog::write_amount(w, market, last ? last->remaining : am->remaining);
      // true: a smaller size at the same price kept the order's place in its queue; false: it was
      // taken out and entered again at the back (cancel-and-replace, same id).
      w.field("kept_priority", am->kept_priority);
      w.end_object();
      respond(http::Response::json(200, w.take()));
    };
    submit(s, req, respond, std::move(job));
  });

  // Up to 20 orders, applied in order as one journaled unit; one result per item, in order.
  router.post("/api/v1/orders/batch", [&s](http::Request& req, http::Respond respond) {
    auto body = json::parse_object(req.body, {"orders", "account"});
    if (!body) return respond(error_response(body.error(), req));
    auto user = acting(s, req, body_account(*body));
    if (!user) return respond(error_response(user.error(), req));
    const json::Value* orders = body->find("orders");
    if (!orders || !orders->is_array()) return respond(error_response(fail(Code::missing_field, "orders must be an array", "orders"), req));
    if (orders->items().empty() || orders->items().size() > kMaxBatchOrders) {
      return respond(error_response(fail(Code::invalid_field, "orders must hold 1 to 20 orders", "orders"), req));
    }
    const std::int64_t now = SystemClock::instance().now_ms();
    // Each item parsed on its own: one that is malformed is answered in its place, the rest go.
    using Entry = std::variant<PlaceOrder, Error>;
    std::vector<Entry> items;
    std::vector<Command> commands;
    for (const auto& item : orders->items()) {
      auto p = parse_order(s.catalog, item, *user, now);
      if (p) {
        commands.push_back(*p);
        items.emplace_back(*p);
      } else {
        items.emplace_back(p.error());
      }
    }
    auto answer = [&s](const std::vector<Entry>& entries, const Outcome* o) {
      json::Writer w;
      w.begin_array();
      std::size_t part = 0;
      for (const auto& item : entries) {
        if (const Error* e = std::get_if<Error>(&item)) {
          write_item_error(w, api_code(e->code), e->message, e->field);
          continue;
        }
        const PlaceOrder& placed = std::get<PlaceOrder>(item);
        const std::size_t first = part == 0 ? 0 : o->parts[part - 1], end = o->parts[part];
        ++part;
        bool rejected = false;
        for (std::size_t i = first; i < end && !rejected; ++i) {
          if (auto* r = std::get_if<OrderRejected>(&o->events[i].body); r && r->id == placed.id) {
            if (r->reason == Reject::duplicate_client_order_id) {
              write_item_error(w, reject_code(r->reason),
                               "duplicate client_order_id; the original order is " + r->original.value().to_string(),
                               "client_order_id");
            } else {
              write_rejection(w, r->reason);
            }
            rejected = true;
          }
        }
        if (!rejected) write_placed(w, s.catalog, placed, o->events, first, end);
      }
      w.end_array();
      return w.take();
    };
    if (commands.empty()) return respond(http::Response::json(200, answer(items, nullptr)));
    Job job;
    job.batch = std::move(commands);
    job.done = [respond, rid = req.request_id, items = std::move(items), answer](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), rid));
      respond(http::Response::json(200, answer(items, &*o)));
    };
    submit(s, req, respond, std::move(job));
  });

  // Up to 50 cancels ({"ids": [...], "client_order_ids": [...]}), applied in order as one unit.
  router.del("/api/v1/orders/batch", [&s](http::Request& req, http::Respond respond) {
    auto body = json::parse_object(req.body, {"ids", "client_order_ids", "account"});
    if (!body) return respond(error_response(body.error(), req));
    auto user = acting(s, req, body_account(*body));
    if (!user) return respond(error_response(user.error(), req));
    struct Target {
      std::string given;
      bool by_client = false;
      std::optional<Error> error;
    };
    std::vector<Target> targets;
    std::vector<Command> commands;
    const std::int64_t now = SystemClock::instance().now_ms();
    for (auto [key, by_client] : {std::pair{"ids", false}, std::pair{"client_order_ids", true}}) {
      const json::Value* given = body->find(key);
      if (!given || given->is_null()) continue;
      if (!given->is_array()) return respond(error_response(fail(Code::invalid_field, std::string(key) + " must be an array", key), req));
      if (given->items().size() > kMaxBatchCancels) break;  // (refused below)
      for (const auto& v : given->items()) {
        Target t;
        t.by_client = by_client;
        if (!v.is_string()) {
          t.error = fail(Code::invalid_field, std::string(key) + " holds strings", key);
        } else if (by_client) {
          t.given = v.as_string();
          if (auto cid = parse_client_order_id(t.given, key)) commands.push_back(CancelOrder{*user, OrderId{}, now, *cid});
          else t.error = cid.error();
        } else {
          t.given = v.as_string();
          if (auto id = Uuid::parse(t.given)) commands.push_back(CancelOrder{*user, OrderId{*id}, now});
          else t.error = fail(Code::not_found, "no such open order");
        }
        targets.push_back(std::move(t));
      }
    }
    const auto count = [&](const char* key) {
      const json::Value* given = body->find(key);
      return given && given->is_array() ? given->items().size() : 0;
    };
    if (count("ids") + count("client_order_ids") == 0 || count("ids") + count("client_order_ids") > kMaxBatchCancels) {
      return respond(error_response(fail(Code::invalid_field, "ids and client_order_ids must hold 1 to 50 orders together", "ids"), req));
    }
    auto answer = [](const std::vector<Target>& wanted, const Outcome* o) {
      json::Writer w;
      w.begin_array();
      std::size_t part = 0;
      for (const auto& t : wanted) {
        if (t.error) {
          write_item_error(w, api_code(t.error->code), t.error->message, t.error->field);
          continue;
        }
        const std::size_t first = part == 0 ? 0 : o->parts[part - 1], end = o->parts[part];
        ++part;
        if (auto why = refusal(o->events, first, end)) {
          write_rejection(w, *why);
          continue;
        }
        w.begin_object().field("status", "cancelled");
        for (std::size_t i = first; i < end; ++i) {
          if (auto* u = std::get_if<OrderUpdated>(&o->events[i].body)) {
            w.field("id", u->id.value().to_string());
            break;
          }
        }
        if (t.by_client) w.field("client_order_id", t.given);
        w.end_object();
      }
      w.end_array();
      return w.take();
    };
    if (commands.empty()) return respond(http::Response::json(200, answer(targets, nullptr)));
    Job job;
    job.batch = std::move(commands);
    job.done = [respond, rid = req.request_id, targets = std::move(targets), answer](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), rid));
      respond(http::Response::json(200, answer(targets, &*o)));
    };
    submit(s, req, respond, std::move(job));
  });

  // The dead man's switch: {"timeout_ms": n}; 0 turns it off. Renew it before it runs out.
  router.post("/api/v1/orders/cancel-all-after", [&s](http::Request& req, http::Respond respond) {
    auto body = json::parse_object(req.body, {"timeout_ms", "account"});
    if (!body) return respond(error_response(body.error(), req));
    auto user = acting(s, req, body_account(*body));
    if (!user) return respond(error_response(user.error(), req));
    const json::Value* t = body->find("timeout_ms");
    if (!t || t->is_null()) return respond(error_response(fail(Code::missing_field, "timeout_ms is required", "timeout_ms"), req));
    auto timeout = t->as_int(0, kMaxCancelAfterMs);
    if (!timeout || (*timeout != 0 && *timeout < kMinCancelAfterMs)) {
      return respond(error_response(fail(Code::invalid_field, "timeout_ms must be 0 or from 1000 to 86400000", "timeout_ms"), req));
    }
    Job job;
    job.command = SetCancelAfter{*user, *timeout, SystemClock::instance().now_ms()};
    job.done = [respond, rq = req](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), rq.request_id));
      if (auto why = refusal(o->events, 0, o->events.size())) return respond(rejection_response(*why, rq));
      json::Writer w;
      w.begin_object();
      for (const auto& e : o->events) {
        if (auto* c = std::get_if<CancelAfterChanged>(&e.body)) {
          w.field("status", c->deadline_ms == 0 ? "off" : "armed");
          w.field("deadline_ms", c->deadline_ms);
          w.key("deadline");
          if (c->deadline_ms == 0) w.null(); else w.string(format_rfc3339_ms(c->deadline_ms));
        }
      }
      w.end_object();
      respond(http::Response::json(200, w.take()));
    };
    submit(s, req, respond, std::move(job));
  });

}

}  // namespace hydrox::trading
