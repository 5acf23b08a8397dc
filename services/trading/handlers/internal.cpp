// The operator API: internal, token-protected, not routed by the gateway. The bridge from the
// chain credits deposits and debits withdrawals; the user service calls the faucet on a first
// sign-in; tests and the price feed set marks.
#include "common.hpp"
#include "hydrox/core/clock.hpp"
#include "hydrox/core/secret.hpp"
#include "hydrox/core/text.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/json/json.hpp"

namespace hydrox::trading {

using namespace engine;

namespace {

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

// The caller's idempotency key (1-160 characters), required on every money command.
Result<std::string> key_field(const json::Value& doc) {
  const json::Value* key = doc.find("idempotency_key");
  if (!key || !key->is_string() || key->as_string().empty() || key->as_string().size() > 160) {
    return fail(Code::invalid_field, "idempotency_key (1-160 bytes) is required",
                "idempotency_key");
  }
  if (auto ok = check_text(key->as_string(), "idempotency_key", 160); !ok) return ok.error();
  return key->as_string();
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

// Vault commands answer with their stored outcome (the same text a retry with the key gets).
void vault_answer(http::Respond respond, const std::string& rid, Result<Outcome> o) {
  if (!o) return respond(http::Response::error(o.error(), rid));
  const bool replay = !o->idempotent_replay.empty();
  const std::string& text = replay ? o->idempotent_replay : o->outcome_text;
  auto doc = json::parse(text);
  if (!doc || !doc->is_object()) return respond(http::Response::error(fail(Code::internal, "no outcome"), rid));
  const json::Value* status = doc->find("status");
  if (status && status->is_string() && status->as_string() == "rejected") {
    const json::Value* reason = doc->find("reason");
    json::Writer w;
    w.begin_object().key("error").begin_object().field("code", reason && reason->is_string() ? reason->as_string() : "REJECTED");
    const json::Value* unlocks = doc->find("unlocks_at_ms");
    if (unlocks && unlocks->is_number()) {
      // In the lockup: when the amount asked for unlocks, and what can be withdrawn now.
      auto at_ms = unlocks->as_int(0, INT64_MAX);
      const std::int64_t at = at_ms ? *at_ms : 0;
      const std::string when = format_rfc3339_ms(at);
      w.field("message", "the shares for this amount are in their lockup until " + when)
          .field("field", "amount");
      w.field("unlocks_at", when);
      if (const json::Value* now = doc->find("withdrawable_now"); now && now->is_number())
        w.key("withdrawable_now").raw_number(now->number_text());
    } else {
      w.field("message", "refused by the engine");
    }
    w.field("request_id", rid).end_object().end_object();
    auto r = http::Response::json(reason && reason->is_string() && reason->as_string() == "VAULT_NOT_FOUND" ? 404 : 422, w.take());
    if (replay) r.set_header("Idempotent-Replay", "true");
    return respond(std::move(r));
  }
  auto r = http::Response::json(200, text);
  if (replay) r.set_header("Idempotent-Replay", "true");
  respond(std::move(r));
}

void write_vault(json::Writer& w, const Engine& e, const Vault& v) {
  const Usdm nav = e.vault_nav(v);
  Usdm leader_shares = 0;
  std::int64_t depositors = 0;
  for (const auto& [ai, h] : v.holders) {
    if (h.shares <= 0) continue;
    if (ai == v.leader) leader_shares = h.shares; else ++depositors;
  }
  w.begin_object().field("id", v.id.to_string()).field("account_id", e.user_of(v.account).value().to_string());
  w.field("leader_id", e.user_of(v.leader).value().to_string()).field("protocol", v.protocol);
  w.key("nav").raw_number(usdm_text(nav)).key("total_shares").raw_number(usdm_text(v.total_shares));
  w.key("leader_shares").raw_number(usdm_text(leader_shares)).field("depositors", depositors);
  w.field("lock_period_ms", v.lock_ms);
  w.key("performance_fee").raw_number(decimal::format(static_cast<std::int64_t>(v.performance_fee_ppm), 4));
  w.key("management_fee").raw_number(decimal::format(static_cast<std::int64_t>(v.management_fee_ppm), 4));
  w.key("min_deposit").raw_number(usdm_text(v.min_deposit)).key("capacity").raw_number(usdm_text(v.capacity));
  w.end_object();
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
      auto key = key_field(*doc);
      if (!key) return respond(error_response(key.error(), req));
      Job job;
      const std::int64_t now = SystemClock::instance().now_ms();
      if (deposit) job.command = Deposit{*user, *amount, now};
      else job.command = Withdraw{*user, *amount, now};
      job.idempotency_key = (deposit ? "deposit:" : "withdrawal:") + *key;
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

  // The market lifecycle: halt (CANCEL_ONLY), resume, delist at a final price (the operator's, or
  // the last index, or the mark), and fees and maximum leverage. Journaled engine commands.
  r.post("/internal/v1/markets/{symbol}/status", [&s](http::Request& req, http::Respond respond) {
    if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
    const MarketInfo* m = s.catalog.find(req.path_param("symbol"));
    if (!m) return respond(error_response(fail(Code::not_found, "no such market"), req));
    auto doc = object_body(req, {"status", "final_price"});
    if (!doc) return respond(error_response(doc.error(), req));
    const json::Value* st = doc->find("status");
    if (!st || !st->is_string()) return respond(error_response(fail(Code::missing_field, "status is required", "status"), req));
    SetMarketStatus c{m->index, MarketStatus::active, 0, SystemClock::instance().now_ms()};
    if (st->as_string() == "HALTED" || st->as_string() == "CANCEL_ONLY") c.status = MarketStatus::halted;
    else if (st->as_string() == "DELISTED") c.status = MarketStatus::delisted;
    else if (st->as_string() != "ACTIVE") {
      return respond(error_response(fail(Code::invalid_field, "status must be ACTIVE, HALTED (CANCEL_ONLY) or DELISTED", "status"), req));
    }
    if (const json::Value* fp = doc->find("final_price"); fp && !fp->is_null()) {
      if (c.status != MarketStatus::delisted) {
        return respond(error_response(fail(Code::invalid_field, "final_price is for DELISTED only", "final_price"), req));
      }
      auto ticks = Catalog::to_ticks(*m, *fp, "final_price");
      if (!ticks) return respond(error_response(ticks.error(), req));
      c.final_price = *ticks;
    } else if (c.status == MarketStatus::delisted) {
      // Not given: the last index while it is fresh; with marks left to the operator
      // (MARK_FROM_INDEX=0), the mark. A stale index (the feed died: often why a market is
      // delisted) is not a price to settle at: the operator must give one.
      const std::int64_t now = SystemClock::instance().now_ms();
      if (s.marks) {
        const auto idx = s.marks->index(m->index);
        if (idx.price > 0 && now - idx.time_ms <= 10'000) c.final_price = idx.price;
      } else {
        c.final_price = s.host->mark(m->index);
      }
      if (c.final_price <= 0) {
        return respond(error_response(fail(Code::missing_field, "final_price is required: there is no fresh index price", "final_price"), req));
      }
    }
    Job job;
    job.command = c;
    job.done = [respond, rid = req.request_id, s = &s, market = m->index](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), rid));
      for (const auto& e : o->events) {
        if (auto* cr = std::get_if<CommandRejected>(&e.body)) {
          json::Writer w;
          w.begin_object().key("error").begin_object().field("code", reject_code(cr->reason));
          w.field("message", "refused by the engine").field("request_id", rid).end_object().end_object();
          return respond(http::Response::json(422, w.take()));
        }
      }
      json::Writer w;
      w.begin_object().field("symbol", s->catalog.at(market).symbol);
      for (const auto& e : o->events) {
        if (auto* mc = std::get_if<MarketChanged>(&e.body)) {
          w.field("status", market_status_code(mc->status));
          w.key("final_price");
          if (mc->final_price > 0) w.raw_number(Catalog::price_text(s->catalog.at(market), mc->final_price)); else w.null();
        }
      }
      w.end_object();
      respond(http::Response::json(200, w.take()));
    };
    submit(s, req, respond, std::move(job));
  });

  r.post("/internal/v1/markets/{symbol}/params", [&s](http::Request& req, http::Respond respond) {
    if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
    const MarketInfo* m = s.catalog.find(req.path_param("symbol"));
    if (!m) return respond(error_response(fail(Code::not_found, "no such market"), req));
    auto doc = object_body(req, {"maker_fee", "taker_fee", "max_leverage"});
    if (!doc) return respond(error_response(doc.error(), req));
    auto rate = [&](std::string_view k) -> Result<std::int32_t> {
      const json::Value* v = doc->find(k);
      if (!v) return fail(Code::missing_field, std::string(k) + " is required", std::string(k));
      auto d = v->as_decimal();
      auto ppm = d ? decimal::to_units(*d, 6, decimal::Rounding::exact) : Result<std::int64_t>(fail(Code::invalid_field, ""));
      if (!ppm || *ppm < 0 || *ppm > kMaxFeePpm) {
        return fail(Code::invalid_field, std::string(k) + " must be a rate from 0 to 0.01 with at most 6 decimals", std::string(k));
      }
      return static_cast<std::int32_t>(*ppm);
    };
    auto maker = rate("maker_fee");
    if (!maker) return respond(error_response(maker.error(), req));
    auto taker = rate("taker_fee");
    if (!taker) return respond(error_response(taker.error(), req));
    const json::Value* lev = doc->find("max_leverage");
    // Up to the maximum the market was listed with (what the order routes bound leverage by before
    // the engine sees it): a cut and a return to it, never above it.
    auto leverage = lev ? lev->as_int(1, m->spec.max_leverage) : Result<std::int64_t>(fail(Code::missing_field, ""));
    if (!leverage) {
      return respond(error_response(fail(Code::invalid_field, "max_leverage must be an integer from 1 to the listed " +
                                                                  std::to_string(m->spec.max_leverage), "max_leverage"), req));
    }
    Job job;
    job.command = SetMarketParams{m->index, *maker, *taker, static_cast<std::int32_t>(*leverage), SystemClock::instance().now_ms()};
    job.done = [respond, rid = req.request_id](Result<Outcome> o) {
      if (!o) return respond(http::Response::error(o.error(), rid));
      for (const auto& e : o->events) {
        if (auto* cr = std::get_if<CommandRejected>(&e.body)) {
          json::Writer w;
          w.begin_object().key("error").begin_object().field("code", reject_code(cr->reason));
          w.field("message", cr->reason == Reject::market_param_unsafe
                                 ? "an open position would be below the maintenance margin of this maximum leverage"
                                 : "refused by the engine");
          w.field("request_id", rid).end_object().end_object();
          return respond(http::Response::json(422, w.take()));
        }
        if (auto* mc = std::get_if<MarketChanged>(&e.body)) {
          json::Writer w;
          w.begin_object().field("status", market_status_code(mc->status));
          w.key("maker_fee").raw_number(decimal::format(static_cast<std::int64_t>(mc->maker_fee_ppm), 6));
          w.key("taker_fee").raw_number(decimal::format(static_cast<std::int64_t>(mc->taker_fee_ppm), 6));
          w.field("max_leverage", static_cast<std::int64_t>(mc->max_leverage)).end_object();
          return respond(http::Response::json(200, w.take()));
        }
      }
      respond(http::Response::error(fail(Code::internal, "no outcome"), rid));
    };
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
    // Every /internal route wants a token: this one market's internal token (or the operator's).
    if (!s.ctx->internal_token.empty() && !service::from_gateway(*s.ctx, req) &&
        !authorize(s, req)) {
      return respond(
          error_response(fail(Code::unauthenticated, "internal or operator token required"), req));
    }
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

  // ---- vaults: the vault service's door to the engine (perp-rules "Vaults") -------------------
  r.post("/internal/v1/vaults", [&s](http::Request& req, http::Respond respond) {
    if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
    auto doc = object_body(req, {"vault_id", "leader_id", "account_id", "name", "description", "initial_deposit",
                                 "lock_period_ms", "performance_fee", "management_fee", "min_deposit", "capacity",
                                 "idempotency_key"});
    if (!doc) return respond(error_response(doc.error(), req));
    auto uuid_of = [&](std::string_view k, bool required) -> Result<std::optional<Uuid>> {
      const json::Value* v = doc->find(k);
      if (!v || v->is_null()) {
        if (required) return fail(Code::missing_field, std::string(k) + " is required", std::string(k));
        return std::optional<Uuid>{};
      }
      auto u = v->is_string() ? Uuid::parse(v->as_string()) : std::nullopt;
      if (!u) return fail(Code::invalid_field, std::string(k) + " must be a UUID", std::string(k));
      return std::optional<Uuid>{*u};
    };
    auto usdm_of = [&](std::string_view k, Usdm dflt) -> Result<Usdm> {
      const json::Value* v = doc->find(k);
      if (!v || v->is_null()) return dflt;
      auto d = v->as_decimal();
      if (!d) return fail(Code::invalid_field, std::string(k) + " must be a decimal number", std::string(k));
      auto units = decimal::to_units(*d, 6, decimal::Rounding::exact);
      if (!units || *units < 0 || *units > 1'000'000'000'000LL * 1'000'000) {
        return fail(Code::invalid_field, std::string(k) + " must be a non-negative USDM amount (6 decimals)", std::string(k));
      }
      return *units;
    };
    auto percent = [&](std::string_view k, std::int64_t dflt) -> Result<std::int32_t> {
      const json::Value* v = doc->find(k);
      if (!v || v->is_null()) return static_cast<std::int32_t>(dflt);
      auto d = v->as_decimal();
      auto units = d ? decimal::to_units(*d, 4, decimal::Rounding::exact) : Result<std::int64_t>(fail(Code::invalid_field, ""));
      if (!units || *units < 0 || *units > 1'000'000) {
        return fail(Code::invalid_field, std::string(k) + " must be a percent from 0 to 100 (4 decimals)", std::string(k));
      }
      return static_cast<std::int32_t>(*units);
    };
    auto vault_id = uuid_of("vault_id", true);
    auto leader = uuid_of("leader_id", true);
    auto account = uuid_of("account_id", true);
    auto initial = usdm_of("initial_deposit", 0);
    auto min_dep = usdm_of("min_deposit", 10'000'000);
    auto cap = usdm_of("capacity", 10'000'000'000'000);
    auto perf = percent("performance_fee", 100'000);
    auto mgmt = percent("management_fee", 0);
    if (!vault_id) return respond(error_response(vault_id.error(), req));
    if (!leader) return respond(error_response(leader.error(), req));
    if (!account) return respond(error_response(account.error(), req));
    if (!initial) return respond(error_response(initial.error(), req));
    if (!min_dep) return respond(error_response(min_dep.error(), req));
    if (!cap) return respond(error_response(cap.error(), req));
    if (!perf) return respond(error_response(perf.error(), req));
    if (!mgmt) return respond(error_response(mgmt.error(), req));
    std::int64_t lock_ms = 86'400'000;
    if (const json::Value* l = doc->find("lock_period_ms"); l && !l->is_null()) {
      auto v = l->as_int(0, 366LL * 86'400'000);
      if (!v) return respond(error_response(fail(Code::invalid_field, "lock_period_ms must be 0..366 days", "lock_period_ms"), req));
      lock_ms = *v;
    }
    auto key = key_field(*doc);
    if (!key) return respond(error_response(key.error(), req));
    json::Writer meta;
    meta.begin_object();
    // The vault's texts end in the vaults row: text or 400, whoever calls (vault checks them too).
    if (const json::Value* n = doc->find("name"); n && n->is_string()) {
      if (auto ok = check_text(n->as_string(), "name", 64); !ok)
        return respond(error_response(ok.error(), req));
      meta.field("name", n->as_string());
    }
    if (const json::Value* d = doc->find("description"); d && d->is_string()) {
      if (auto ok = check_text(d->as_string(), "description", 1000, true); !ok)
        return respond(error_response(ok.error(), req));
      meta.field("description", d->as_string());
    }
    meta.end_object();
    CreateVault c;
    c.vault = **vault_id;
    c.leader = UserId{**leader};
    c.account = UserId{**account};
    c.initial = *initial;
    c.lock_ms = lock_ms;
    c.performance_fee_ppm = *perf;
    c.management_fee_ppm = *mgmt;
    c.min_deposit = *min_dep;
    c.capacity = *cap;
    c.ts_ms = SystemClock::instance().now_ms();
    Job job;
    job.command = c;
    job.meta = meta.take();
    job.idempotency_key = "vault-create:" + *key;
    job.done = [respond, rid = req.request_id](Result<Outcome> o) { vault_answer(respond, rid, std::move(o)); };
    submit(s, req, respond, std::move(job));
  });

  auto vault_money = [&s](bool deposit) {
    return [&s, deposit](http::Request& req, http::Respond respond) {
      if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
      auto vault = Uuid::parse(req.path_param("id"));
      if (!vault) return respond(error_response(fail(Code::not_found, "no such vault"), req));
      auto doc = object_body(req, {"user_id", "amount", "idempotency_key"});
      if (!doc) return respond(error_response(doc.error(), req));
      auto user = user_field(*doc);
      if (!user) return respond(error_response(user.error(), req));
      auto amount = amount_field(*doc);
      if (!amount) return respond(error_response(amount.error(), req));
      auto key = key_field(*doc);
      if (!key) return respond(error_response(key.error(), req));
      Job job;
      const std::int64_t now = SystemClock::instance().now_ms();
      if (deposit) job.command = VaultDeposit{*vault, *user, *amount, now};
      else job.command = VaultWithdraw{*vault, *user, *amount, now};
      job.idempotency_key = (deposit ? "vault-deposit:" : "vault-withdrawal:") + *key;
      job.done = [respond, rid = req.request_id](Result<Outcome> o) { vault_answer(respond, rid, std::move(o)); };
      submit(s, req, respond, std::move(job));
    };
  };
  r.post("/internal/v1/vaults/{id}/deposits", vault_money(true));
  r.post("/internal/v1/vaults/{id}/withdrawals", vault_money(false));

  // Every vault's live numbers (NAV at the marks, shares, depositors).
  r.get("/internal/v1/vaults", [&s](http::Request& req, http::Respond respond) {
    if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
    Job job;
    job.is_read = true;
    job.read = [respond](const Engine& e) -> std::function<void()> {
      json::Writer w;
      w.begin_array();
      for (const Vault& v : e.vaults()) write_vault(w, e, v);
      w.end_array();
      return [respond, body = w.take()]() { respond(http::Response::json(200, body)); };
    };
    submit(s, req, respond, std::move(job));
  });

  // One holder's position in a vault.
  r.get("/internal/v1/vaults/{id}/holders/{user}", [&s](http::Request& req, http::Respond respond) {
    if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
    auto vault = Uuid::parse(req.path_param("id"));
    auto user = Uuid::parse(req.path_param("user"));
    if (!vault || !user) return respond(error_response(fail(Code::not_found, "no such vault or user"), req));
    Job job;
    job.is_read = true;
    const std::int64_t now = SystemClock::instance().now_ms();
    job.read = [respond, rid = req.request_id, vault = *vault, user = UserId{*user}, now](const Engine& e) -> std::function<void()> {
      const Vault* v = e.vault(vault);
      if (!v) return [respond, rid]() { respond(http::Response::error(fail(Code::not_found, "no such vault"), rid)); };
      const Usdm nav = e.vault_nav(*v);
      Usdm shares = 0, cost = 0, unlocked = 0;
      std::int64_t locked_until = 0;
      for (const auto& [ai, h] : v->holders) {
        if (e.user_of(ai) != user) continue;
        shares = h.shares;
        cost = h.cost;
        for (const auto& lot : h.lots) {
          if (lot.unlock_ms <= now) unlocked += lot.shares;
          else locked_until = std::max(locked_until, lot.unlock_ms);
        }
      }
      const Usdm value = e.share_value(*v, shares);
      json::Writer w;
      w.begin_object().field("vault_id", v->id.to_string()).field("user_id", user.value().to_string());
      w.key("shares").raw_number(usdm_text(shares)).key("unlocked_shares").raw_number(usdm_text(unlocked));
      w.key("value").raw_number(usdm_text(value)).key("cost").raw_number(usdm_text(cost));
      w.key("pnl").raw_number(usdm_text(value - cost)).field("locked_until_ms", locked_until);
      w.key("total_shares").raw_number(usdm_text(v->total_shares)).key("nav").raw_number(usdm_text(nav));
      w.end_object();
      return [respond, body = w.take()]() { respond(http::Response::json(200, body)); };
    };
    submit(s, req, respond, std::move(job));
  });

  // Every vault holding of one user (for the user service's balances across accounts).
  r.get("/internal/v1/users/{user}/vaults", [&s](http::Request& req, http::Respond respond) {
    if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
    auto user = Uuid::parse(req.path_param("user"));
    if (!user) return respond(error_response(fail(Code::not_found, "no such user"), req));
    Job job;
    job.is_read = true;
    const std::int64_t now = SystemClock::instance().now_ms();
    job.read = [respond, user = UserId{*user}, now](const Engine& e) -> std::function<void()> {
      json::Writer w;
      w.begin_array();
      for (const Vault& v : e.vaults()) {
        for (const auto& [ai, h] : v.holders) {
          if (e.user_of(ai) != user || h.shares <= 0) continue;
          Usdm unlocked = 0;
          for (const auto& lot : h.lots) unlocked += lot.unlock_ms <= now ? lot.shares : 0;
          const Usdm value = e.share_value(v, h.shares), free = e.share_value(v, unlocked);
          w.begin_object().field("vault_id", v.id.to_string()).key("shares").raw_number(usdm_text(h.shares));
          w.key("value").raw_number(usdm_text(value)).key("unlocked_value").raw_number(usdm_text(free));
          w.key("cost").raw_number(usdm_text(h.cost)).end_object();
        }
      }
      w.end_array();
      return [respond, body = w.take()]() { respond(http::Response::json(200, body)); };
    };
    submit(s, req, respond, std::move(job));
  });
}

}  // namespace hydrox::trading
