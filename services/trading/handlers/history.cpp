// A user's own money history: GET /api/v1/ledger (every change of the balance: deposits,
// withdrawals, fees, funding, realized PnL, liquidation, vault moves, isolated margin) and
// GET /api/v1/funding/payments (per interval and market: the amount, the rate, the position's size).
// Both read the projected tables after the caller's acknowledged commands are in them, newest
// first, cursor-paginated like every list (limit ≤ 1000, X-Next-Cursor, before).
#include <charconv>

#include "common.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/json/json.hpp"

namespace hydrox::trading {

using namespace engine;

namespace {

// The ledger's reasons (the BalanceReason codes and the trade rows' TRADING_FEE, FEE_INCOME,
// REALIZED_PNL): what `kind` may name.
constexpr std::string_view kLedgerKinds[] = {
    "DEPOSIT",           "WITHDRAWAL",       "TRADING_FEE",   "FEE_INCOME",     "REALIZED_PNL",
    "TRANSFER",          "FUNDING",          "FUNDING_REMAINDER", "LIQUIDATION_MARGIN", "INSURANCE_PAYOUT",
    "VAULT_DEPOSIT",     "VAULT_WITHDRAWAL", "ISOLATED_MARGIN", "WITHDRAWAL_RETURNED", "PROTOCOL_LOSS", "SETTLEMENT"};

constexpr db::Query kLedger{
    "list_ledger",
    "SELECT l.seq, l.reason, l.delta::text, l.reference, floor(extract(epoch from l.time))::bigint,"
    " (extract(epoch from l.time) * 1000)::bigint"
    " FROM ledger l WHERE l.user_id = $1::uuid"
    " AND ($2::text[] IS NULL OR l.reason = ANY($2::text[]))"
    " AND ($3::bigint IS NULL OR l.time >= to_timestamp($3::bigint))"
    " AND ($4::bigint IS NULL OR l.time <= to_timestamp($4::bigint))"
    " AND ($5::bigint IS NULL OR (l.seq, l.reason) < ($5::bigint, $6::text))"
    " ORDER BY l.seq DESC, l.reason DESC LIMIT $7::int"};

constexpr db::Query kFundingPayments{
    "list_funding_payments",
    "SELECT p.seq, m.symbol, p.amount::text, p.position_size::text, r.rate::text, r.rate_8h::text,"
    " r.mark_price::text, floor(extract(epoch from p.time))::bigint, (extract(epoch from p.time) * 1000)::bigint"
    " FROM funding_payments p JOIN markets m ON m.id = p.market_id"
    " LEFT JOIN funding_rates r ON r.market_id = p.market_id AND r.time = p.time"
    " WHERE p.user_id = $1::uuid AND ($2::int IS NULL OR p.market_id = $2::int)"
    " AND ($3::bigint IS NULL OR p.time >= to_timestamp($3::bigint))"
    " AND ($4::bigint IS NULL OR p.time <= to_timestamp($4::bigint))"
    " AND ($5::bigint IS NULL OR p.seq < $5::bigint)"
    " ORDER BY p.seq DESC LIMIT $6::int"};

// The insurance fund's account: every change, with the balance after it (public).
constexpr db::Query kInsuranceHistory{
    "insurance_history",
    "SELECT seq, reason, delta::text, balance::text, floor(extract(epoch from time))::bigint,"
    " (extract(epoch from time) * 1000)::bigint FROM ("
    "   SELECT l.seq, l.reason, l.delta, l.time, sum(l.delta) OVER (ORDER BY l.seq, l.reason) AS balance"
    "   FROM ledger l WHERE l.user_id = $1::uuid) h"
    " WHERE ($2::bigint IS NULL OR seq < $2::bigint) ORDER BY seq DESC, reason DESC LIMIT $3::int"};

// A Unix-seconds query value (start, end), 0 .. 10^11.
Result<db::Param> seconds_param(const http::Request& req, std::string_view name) {
  auto v = req.query_param(name);
  if (!v) return db::Param{};
  std::int64_t s = 0;
  auto [ptr, ec] = std::from_chars(v->data(), v->data() + v->size(), s);
  if (ec != std::errc{} || ptr != v->data() + v->size() || s < 0 || s > 100'000'000'000) {
    return fail(Code::invalid_field, std::string(name) + " must be Unix seconds", std::string(name));
  }
  return db::Param{std::to_string(s)};
}

// A sequence cursor: digits, at most 18.
bool is_seq(std::string_view s) {
  return !s.empty() && s.size() <= 18 && s.find_first_not_of("0123456789") == std::string_view::npos;
}

}  // namespace

void register_history_routes(Services& s, http::Router& r) {
  r.get("/api/v1/ledger", [&s](http::Request& req, http::Respond respond) {
    auto user = acting(s, req);
    if (!user) return respond(error_response(user.error(), req));
    auto p = list_params(req, s.catalog, {"kind", "start", "end"});
    if (!p) return respond(error_response(p.error(), req));
    if (p->market) {
      return respond(error_response(fail(Code::unknown_field, "the ledger is not per market", "symbol"), req));
    }
    // Cursor: "<seq>-<KIND>" (the id of the last entry seen).
    db::Param before_seq, before_kind;
    if (p->before) {
      const auto dash = p->before->find('-');
      if (dash == std::string::npos || !is_seq(std::string_view(*p->before).substr(0, dash))) {
        return respond(error_response(fail(Code::invalid_field, "before must be a ledger entry id", "before"), req));
      }
      before_seq = p->before->substr(0, dash);
      before_kind = p->before->substr(dash + 1);
    }
    db::Param kinds;
    if (auto k = req.query_param("kind"); k && !k->empty()) {
      std::string list = "{";
      std::string_view rest = *k;
      while (!rest.empty()) {
        const auto comma = rest.find(',');
        const std::string_view one = rest.substr(0, comma);
        if (std::find(std::begin(kLedgerKinds), std::end(kLedgerKinds), one) == std::end(kLedgerKinds)) {
          return respond(error_response(fail(Code::invalid_field, "unknown kind " + std::string(one.substr(0, 40)), "kind"), req));
        }
        list += (list.size() > 1 ? "," : "") + std::string(one);
        rest = comma == std::string_view::npos ? std::string_view{} : rest.substr(comma + 1);
      }
      kinds = list + "}";
    }
    auto start = seconds_param(req, "start");
    if (!start) return respond(error_response(start.error(), req));
    auto end = seconds_param(req, "end");
    if (!end) return respond(error_response(end.error(), req));
    respond_projected(s, req.request_id, *user, respond,
                      [&s, u = *user, kinds, start = *start, end = *end, before_seq, before_kind,
                       limit = p->limit]() -> Result<http::Response> {
                        auto lease = s.ctx->db->acquire();
                        if (!lease) return lease.error();
                        auto rows = (*lease)->exec(kLedger, {u.value().to_string(), kinds, start, end, before_seq,
                                                             before_kind, std::to_string(limit)});
                        if (!rows) return rows.error();
                        json::Writer w;
                        w.begin_array();
                        std::string last;
                        for (int i = 0; i < rows->size(); ++i) {
                          last = std::string(rows->get(i, 0)) + "-" + std::string(rows->get(i, 1));
                          w.begin_object().field("id", last).field("kind", rows->get(i, 1));
                          w.key("amount").raw_number(plain(rows->get(i, 2)));
                          w.key("reference");
                          if (rows->is_null(i, 3) || rows->get(i, 3).empty()) w.null(); else w.string(rows->get(i, 3));
                          w.key("time").raw_number(rows->get(i, 4)).key("time_ms").raw_number(rows->get(i, 5));
                          w.end_object();
                        }
                        w.end_array();
                        auto res = http::Response::json(200, w.take());
                        if (rows->size() == limit) res.set_header("X-Next-Cursor", last);
                        return res;
                      });
  });

  // The insurance fund's history (public, like its balance at GET /insurance): what came in
  // (funding remainders, liquidated accounts' remaining margin) and what it paid out, newest
  // first, each with the fund's balance after it. It never goes below zero (perp-rules).
  r.get("/api/v1/insurance/history", [&s](http::Request& req, http::Respond respond) {
    for (const auto& name : req.query_names()) {
      if (name != "limit" && name != "before") {
        return respond(error_response(fail(Code::unknown_field, "unknown query parameter " + name, name), req));
      }
    }
    auto p = list_params(req, s.catalog);
    if (!p) return respond(error_response(p.error(), req));
    if (p->before && !is_seq(*p->before)) {
      return respond(error_response(fail(Code::invalid_field, "before must be an entry's seq", "before"), req));
    }
    service::respond_blocking(*s.ctx, req, respond, [&s, before = p->before, limit = p->limit]() -> Result<http::Response> {
      auto lease = s.ctx->db->acquire();
      if (!lease) return lease.error();
      const EngineConfig defaults;
      auto rows = (*lease)->exec(kInsuranceHistory, {defaults.insurance_account.value().to_string(),
                                                     before ? db::Param{*before} : db::Param{}, std::to_string(limit)});
      if (!rows) return rows.error();
      json::Writer w;
      w.begin_array();
      for (int i = 0; i < rows->size(); ++i) {
        w.begin_object().field("id", rows->get(i, 0)).field("kind", rows->get(i, 1));
        w.key("amount").raw_number(plain(rows->get(i, 2))).key("balance").raw_number(plain(rows->get(i, 3)));
        w.key("time").raw_number(rows->get(i, 4)).key("time_ms").raw_number(rows->get(i, 5));
        w.end_object();
      }
      w.end_array();
      auto res = http::Response::json(200, w.take());
      if (rows->size() == limit) res.set_header("X-Next-Cursor", rows->get(rows->size() - 1, 0));
      return res;
    });
  });

  r.get("/api/v1/funding/payments", [&s](http::Request& req, http::Respond respond) {
    auto user = acting(s, req);
    if (!user) return respond(error_response(user.error(), req));
    auto p = list_params(req, s.catalog, {"start", "end"});
    if (!p) return respond(error_response(p.error(), req));
    if (p->before && !is_seq(*p->before)) {
      return respond(error_response(fail(Code::invalid_field, "before must be a payment id", "before"), req));
    }
    auto start = seconds_param(req, "start");
    if (!start) return respond(error_response(start.error(), req));
    auto end = seconds_param(req, "end");
    if (!end) return respond(error_response(end.error(), req));
    db::Param market;
    if (p->market) market = std::to_string(p->market->id);
    respond_projected(s, req.request_id, *user, respond,
                      [&s, u = *user, market, start = *start, end = *end, before = p->before,
                       limit = p->limit]() -> Result<http::Response> {
                        auto lease = s.ctx->db->acquire();
                        if (!lease) return lease.error();
                        auto rows = (*lease)->exec(kFundingPayments, {u.value().to_string(), market, start, end, before,
                                                                      std::to_string(limit)});
                        if (!rows) return rows.error();
                        json::Writer w;
                        w.begin_array();
                        for (int i = 0; i < rows->size(); ++i) {
                          const std::string size = plain(rows->get(i, 3));
                          const bool short_side = !size.empty() && size.front() == '-';
                          w.begin_object().field("id", rows->get(i, 0)).field("symbol", rows->get(i, 1));
                          w.key("amount").raw_number(plain(rows->get(i, 2)));
                          w.field("side", short_side ? "Short" : "Long");
                          w.key("position_size").raw_number(short_side ? size.substr(1) : size);
                          for (auto [key, col] : {std::pair{"rate", 4}, std::pair{"rate_8h", 5}, std::pair{"mark_price", 6}}) {
                            w.key(key);
                            if (rows->is_null(i, col)) w.null(); else w.raw_number(plain(rows->get(i, col)));
                          }
                          w.key("time").raw_number(rows->get(i, 7)).key("time_ms").raw_number(rows->get(i, 8));
                          w.end_object();
                        }
                        w.end_array();
                        auto res = http::Response::json(200, w.take());
                        if (rows->size() == limit) res.set_header("X-Next-Cursor", rows->get(rows->size() - 1, 0));
                        return res;
                      });
  });
}

}  // namespace hydrox::trading
