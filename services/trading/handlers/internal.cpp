// The operator API: internal, token-protected, not routed by the gateway. The bridge from the
// chain credits deposits and debits withdrawals; the user service calls the faucet on a first
// sign-in; tests and the price feed set marks.
#include "common.hpp"
#include "hydrox/core/clock.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/json/json.hpp"

namespace hydrox::trading {

using namespace engine;

namespace {

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  unsigned char diff = 0;
  for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
  return diff == 0;
}

Result<void> authorize(const Services& s, const http::Request& req) {
  if (s.operator_token.empty()) return fail(Code::forbidden, "the operator API is disabled (OPERATOR_TOKEN unset)");
  auto h = req.header("Authorization");
  const std::string_view prefix = "Bearer ";
  if (!h || !h->starts_with(prefix) || !constant_time_equal(h->substr(prefix.size()), s.operator_token)) {
    return fail(Code::unauthenticated, "operator token required");
  }
  return {};
}

Result<json::Value> object_body(const http::Request& req, std::initializer_list<std::string_view> allowed) {
  return json::parse_object(req.body, allowed);
}

Result<UserId> user_field(const json::Value& doc) {
  const json::Value* v = doc.find("user_id");
  if (!v || !v->is_string()) return fail(Code::missing_field, "user_id is required", "user_id");
  auto u = Uuid::parse(v->as_string());
  if (!u) return fail(Code::invalid_field, "user_id must be a UUID", "user_id");
  return UserId{*u};
}

Result<Usdm> amount_field(const json::Value& doc) {
  const json::Value* v = doc.find("amount");
  if (!v) return fail(Code::missing_field, "amount is required", "amount");
  auto d = v->as_decimal();
  if (!d) return fail(Code::invalid_field, "amount must be a decimal number", "amount");
  auto units = decimal::to_units(*d, 6, decimal::Rounding::exact);
  if (!units) return fail(units.error().code, "amount must have at most 6 decimals and be in range", "amount");
  if (*units <= 0) return fail(Code::invalid_field, "amount must be positive", "amount");
  if (*units > 1'000'000'000LL * 1'000'000) return fail(Code::number_out_of_range, "amount is out of range", "amount");
  return *units;
}

void money_outcome(http::Respond respond, const std::string& rid, Result<Outcome> o) {
  if (!o) return respond(http::Response::error(o.error(), rid));
  if (!o->idempotent_replay.empty()) {
    auto r = http::Response::json(200, o->idempotent_replay);
    r.set_header("Idempotent-Replay", "true");
    return respond(std::move(r));
  }
  for (const auto& e : o->events) {
    if (auto* bc = std::get_if<BalanceChanged>(&e.body)) {
      json::Writer w;
      w.begin_object().field("status", "completed").field("command_no", static_cast<std::int64_t>(o->command_no));
      w.key("balance").raw_number(usdm_text(bc->balance)).end_object();
      return respond(http::Response::json(200, w.take()));
    }
    if (auto* cr = std::get_if<CommandRejected>(&e.body)) {
      json::Writer w;
      w.begin_object().key("error").begin_object().field("code", reject_code(cr->reason));
      w.field("message", "rejected").field("request_id", rid).end_object().end_object();
      return respond(http::Response::json(422, w.take()));
    }
  }
  respond(http::Response::error(fail(Code::internal, "no outcome"), rid));
}

}  // namespace

void register_internal_routes(Services& s, http::Router& r) {
  auto money = [&s](bool deposit) {
    return [&s, deposit](http::Request& req, http::Respond respond) {
      if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
      auto doc = object_body(req, {"user_id", "amount", "idempotency_key"});
      if (!doc) return respond(error_response(doc.error(), req));
      auto user = user_field(*doc);
      if (!user) return respond(error_response(user.error(), req));
      auto amount = amount_field(*doc);
      if (!amount) return respond(error_response(amount.error(), req));
      const json::Value* key = doc->find("idempotency_key");
      if (!key || !key->is_string() || key->as_string().empty() || key->as_string().size() > 128) {
        return respond(error_response(fail(Code::invalid_field, "idempotency_key (1-128 characters) is required", "idempotency_key"), req));
      }
      Job job;
      const std::int64_t now = SystemClock::instance().now_ms();
      if (deposit) job.command = Deposit{*user, *amount, now};
      else job.command = Withdraw{*user, *amount, now};
      job.idempotency_key = (deposit ? "deposit:" : "withdrawal:") + key->as_string();
      job.done = [respond, rid = req.request_id](Result<Outcome> o) { money_outcome(respond, rid, std::move(o)); };
      submit(s, req, respond, std::move(job));
    };
  };
  r.post("/internal/v1/deposits", money(true));
  r.post("/internal/v1/withdrawals", money(false));

  r.post("/internal/v1/faucet", [&s](http::Request& req, http::Respond respond) {
    if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
    if (s.faucet_amount <= 0) return respond(error_response(fail(Code::forbidden, "the faucet is disabled"), req));
    auto doc = object_body(req, {"user_id"});
    if (!doc) return respond(error_response(doc.error(), req));
    auto user = user_field(*doc);
    if (!user) return respond(error_response(user.error(), req));
    Job job;
    job.command = Deposit{*user, s.faucet_amount, SystemClock::instance().now_ms()};
    job.idempotency_key = "faucet:" + user->value().to_string();  // once per user, ever
    job.done = [respond, rid = req.request_id](Result<Outcome> o) { money_outcome(respond, rid, std::move(o)); };
    submit(s, req, respond, std::move(job));
  });

  r.post("/internal/v1/marks", [&s](http::Request& req, http::Respond respond) {
    if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
    auto doc = object_body(req, {"symbol", "mark_price"});
    if (!doc) return respond(error_response(doc.error(), req));
    const json::Value* sym = doc->find("symbol");
    const MarketInfo* m = sym && sym->is_string() ? s.catalog.find(sym->as_string()) : nullptr;
    if (!m) return respond(error_response(fail(Code::invalid_field, "unknown symbol", "symbol"), req));
    const json::Value* price = doc->find("mark_price");
    if (!price) return respond(error_response(fail(Code::missing_field, "mark_price is required", "mark_price"), req));
    auto ticks = Catalog::to_ticks(*m, *price, "mark_price");
    if (!ticks) return respond(error_response(ticks.error(), req));
    Job job;
    job.command = SetMark{m->index, *ticks, SystemClock::instance().now_ms()};
    job.done = [respond, rid = req.request_id](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), rid));
      respond(http::Response::json(200, "{\"status\":\"ok\"}"));
    };
    submit(s, req, respond, std::move(job));
  });

  // The order book at a known sequence, for the market service (read-only; trading listens on an
  // internal address and the gateway does not route /internal).
  r.get("/internal/v1/orderbook", [&s](http::Request& req, http::Respond respond) {
    auto sym = req.query_param("symbol");
    const MarketInfo* m = sym ? s.catalog.find(*sym) : nullptr;
    if (!m) return respond(error_response(fail(Code::not_found, "unknown symbol"), req));
    std::size_t depth = 50;
    if (auto d = req.query_param("depth")) {
      try {
        depth = std::stoul(*d);
      } catch (...) {
        depth = 0;
      }
      if (depth < 1 || depth > 1000) {
        return respond(error_response(fail(Code::invalid_field, "depth must be from 1 to 1000", "depth"), req));
      }
    }
    Job job;
    job.is_read = true;
    job.read = [m, depth, respond](const Engine& e) -> std::function<void()> {
      json::Writer w;
      w.begin_object().field("symbol", m->symbol).field("seq", static_cast<std::int64_t>(e.last_seq()));
      for (auto [name, side] : {std::pair{"bids", Side::buy}, std::pair{"asks", Side::sell}}) {
        w.key(name).begin_array();
        for (const auto& [price, size] : e.depth(m->index, side, depth)) {
          w.begin_array();
          Catalog::write_price(w, *m, price);
          Catalog::write_amount(w, *m, size);
          w.end_array();
        }
        w.end_array();
      }
      w.key("mark_price");
      Catalog::write_price(w, *m, e.mark(m->index));
      w.end_object();
      return [respond, body = w.take()]() { respond(http::Response::json(200, body)); };
    };
    submit(s, req, respond, std::move(job));
  });

  // The invariants of perp-rules, checked on the live engine (for operators and tests).
  r.get("/internal/v1/invariants", [&s](http::Request& req, http::Respond respond) {
    if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
    Job job;
    job.is_read = true;
    job.read = [respond](const Engine& e) -> std::function<void()> {
      std::string err = e.check_invariants(true);
      json::Writer w;
      w.begin_object().field("ok", err.empty()).field("error", err);
      w.field("last_seq", static_cast<std::int64_t>(e.last_seq()));
      w.key("net_deposits").raw_number(usdm_text(e.net_deposits()));
      w.field("resting_orders", static_cast<std::int64_t>(e.resting_orders()));
      const EngineConfig defaults;
      w.key("insurance_fund").raw_number(usdm_text(e.collateral_of(defaults.insurance_account)));
      w.key("fee_account").raw_number(usdm_text(e.collateral_of(defaults.fee_account)));
      w.key("protocol_vault").raw_number(usdm_text(e.collateral_of(defaults.backstop_account)));
      w.field("state_hash", std::to_string(e.state_hash())).end_object();
      return [respond, body = w.take()]() { respond(http::Response::json(200, body)); };
    };
    submit(s, req, respond, std::move(job));
  });

  // The insurance fund: public, like the large venues publish theirs. It receives the rounding
  // remainder of funding and pays liquidated accounts' shortfalls.
  r.get("/api/v1/insurance", [&s](http::Request& req, http::Respond respond) {
    Job job;
    job.is_read = true;
    job.read = [respond](const Engine& e) -> std::function<void()> {
      const EngineConfig defaults;
      json::Writer w;
      w.begin_object().field("asset", "USDM").field("account_id", defaults.insurance_account.value().to_string());
      w.key("balance").raw_number(usdm_text(e.collateral_of(defaults.insurance_account)));
      w.end_object();
      return [respond, body = w.take()]() { respond(http::Response::json(200, body)); };
    };
    submit(s, req, respond, std::move(job));
  });
}

}  // namespace hydrox::trading
