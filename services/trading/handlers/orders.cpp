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
    " o.cancel_reason, o.leverage, o.trigger_price::text"
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

std::string plain(std::string_view numeric) {
  auto d = decimal::parse(numeric);
  return d ? decimal::format(*d) : std::string(numeric);
}

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
    default: e.message = "order rejected"; break;
  }
  return e;
}

}  // namespace

// The api-contract code for an engine rejection rides in the message's error body as `code`:
// Response::error uses the Code table, so the stable engine reason goes in a header and body.
http::Response rejection_response(Reject r, const http::Request& req) {
  Error e = reject_error(r);
  json::Writer w;
  w.begin_object().key("error").begin_object();
  w.field("code", reject_code(r)).field("message", e.message);
  if (!e.field.empty()) w.field("field", e.field);
  w.field("request_id", req.request_id).end_object().end_object();
  return http::Response::json(e.code == Code::invalid_field ? 400 : 422, w.take());
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
      // Accepted: the order's state after matching.
      const MarketInfo& m = s.catalog.at(placed.market);
      OrderStatus status = OrderStatus::open;
      Qty filled = 0;
      Usdm filled_notional = 0;
      for (const auto& e : o->events) {
        if (auto* u = std::get_if<OrderUpdated>(&e.body); u && u->id == placed.id) {
          status = u->status;
          filled = u->filled;
          filled_notional = u->filled_notional;
        }
      }
      json::Writer w;
      w.begin_object().field("id", placed.id.value().to_string()).field("status", status_name(status));
      w.field("symbol", m.symbol).field("side", side_name(placed.side)).field("type", type_name(placed.type));
      w.key("filled");
      Catalog::write_amount(w, m, filled);
      w.key("filled_notional").raw_number(usdm_text(filled_notional));
      w.key("client_order_id");
      if (placed.client_order_id.empty()) w.null(); else w.string(placed.client_order_id.view());
      w.end_object();
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
}

}  // namespace hydrox::trading
