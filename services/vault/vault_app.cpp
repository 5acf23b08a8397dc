// The vault service (issue #8, api-contract "Vault service", perp-rules "Vaults"). Money and
// shares live in trading's engine: every deposit, withdrawal and creation is an engine command
// sent through trading's internal API with an idempotency key derived from the client's
// (`Idempotency-Key` header or `idempotency_key` field, namespaced by user), so a retry after any
// crash neither duplicates nor loses it. This service adds the catalogue (PostgreSQL `vaults`,
// written by trading's persister with the creating command), the history
// (`vault_transactions`, idem), the performance series (sampled here every VAULT_SAMPLE_MS into
// `vault_performance`) and the derived figures (TVL, APY, daily/weekly/monthly change).
#include "vault_app.hpp"

#include "hydrox/core/text.hpp"

#include <cstdlib>

#include "hydrox/auth/tokens.hpp"
#include "hydrox/core/clock.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/http/client.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/log/log.hpp"

namespace hydrox::vault {

namespace {

using i128 = __int128;

struct State {
  service::Context* ctx = nullptr;
  config::Endpoint trading;
  std::string operator_token;
  std::shared_ptr<http::Client> client;
  bool fault_exit_after_trading = false;  // tests only: die between trading's answer and ours
};

constexpr db::Query kVaults{
    "vault_rows",
    "SELECT v.id, v.name, v.description, v.address, v.leader_user_id, coalesce(u.wallet_address, v.leader_user_id::text),"
    " v.lock_period_ms, v.status, v.is_protocol,"
    " to_char(v.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " (SELECT nav_per_share::text FROM vault_performance p WHERE p.vault_id = v.id AND p.time <= now() - interval '1 day'"
    "   ORDER BY p.time DESC LIMIT 1),"
    " (SELECT nav_per_share::text FROM vault_performance p WHERE p.vault_id = v.id AND p.time <= now() - interval '7 days'"
    "   ORDER BY p.time DESC LIMIT 1),"
    " (SELECT nav_per_share::text FROM vault_performance p WHERE p.vault_id = v.id AND p.time <= now() - interval '30 days'"
    "   ORDER BY p.time DESC LIMIT 1),"
    " (SELECT nav_per_share::text FROM vault_performance p WHERE p.vault_id = v.id ORDER BY p.time LIMIT 1),"
    " (SELECT extract(epoch FROM now() - p.time)::bigint FROM vault_performance p WHERE p.vault_id = v.id"
    "   AND p.time >= now() - interval '30 days' ORDER BY p.time LIMIT 1),"
    " (SELECT nav_per_share::text FROM vault_performance p WHERE p.vault_id = v.id"
    "   AND p.time >= now() - interval '30 days' ORDER BY p.time LIMIT 1),"
    " (extract(epoch FROM v.created_at) * 1000000)::bigint"
    " FROM vaults v LEFT JOIN users u ON u.id = v.leader_user_id"
    " WHERE ($1::uuid IS NULL OR v.id = $1::uuid)"
    " AND ($2::bigint IS NULL OR (extract(epoch FROM v.created_at) * 1000000)::bigint < $2::bigint)"
    " ORDER BY v.created_at DESC, v.id DESC LIMIT $3::int"};

constexpr db::Query kVaultExists{"vault_exists", "SELECT 1 FROM vaults WHERE id = $1::uuid"};
constexpr db::Query kNameTaken{"vault_name_taken", "SELECT 1 FROM vaults WHERE lower(name) = lower($1)"};

constexpr db::Query kTransactions{
    "vault_transactions",
    "SELECT t.seq, t.type, t.amount::text, t.fee::text, t.paid::text, t.shares::text, t.user_id,"
    " coalesce(u.wallet_address, t.user_id::text),"
    " to_char(t.time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    " FROM vault_transactions t LEFT JOIN users u ON u.id = t.user_id"
    " WHERE t.vault_id = $1::uuid AND ($2::bigint IS NULL OR t.seq < $2::bigint)"
    " ORDER BY t.seq DESC, t.type = 'profit_share' LIMIT $3::int + 2"};

constexpr db::Query kPerformance{
    "vault_performance",
    "SELECT to_char(time AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'), extract(epoch FROM time)::bigint,"
    " nav_per_share::text, nav::text, pnl::text FROM ("
    "  SELECT DISTINCT ON (date_bin($2::interval, time, timestamptz 'epoch')) time, nav_per_share, nav, pnl"
    "  FROM vault_performance WHERE vault_id = $1::uuid AND time >= now() - $3::interval"
    "  ORDER BY date_bin($2::interval, time, timestamptz 'epoch'), time DESC) s ORDER BY time"};

constexpr db::Query kSample{
    "vault_sample",
    "INSERT INTO vault_performance (vault_id, time, nav, total_shares, nav_per_share, pnl)"
    " SELECT $1::uuid, now(), $2::numeric, $3::numeric, $4::numeric, $2::numeric - coalesce((SELECT sum(CASE type"
    "   WHEN 'deposit' THEN amount WHEN 'withdrawal' THEN -paid ELSE 0 END) FROM vault_transactions WHERE vault_id = $1::uuid), 0)"
    // Operator deposits into (withdrawals from) the vault's account are capital too.
    "   - coalesce((SELECT sum(l.delta) FROM ledger l JOIN vaults v ON v.account_user_id = l.user_id"
    "      WHERE v.id = $1::uuid AND l.reason IN ('DEPOSIT', 'WITHDRAWAL')), 0)"
    " ON CONFLICT DO NOTHING"};

using service::caller;

// USDM text → 1e-6 units (nav_per_share = nav / total_shares, rounded down; 1 before any share).
std::int64_t units(std::string_view text) {
  auto u = decimal::parse_units(text, 6, decimal::Rounding::down);
  return u ? *u : 0;
}
std::string nav_per_share(std::int64_t nav, std::int64_t total) {
  if (total <= 0) return "1";
  return decimal::format(static_cast<std::int64_t>(static_cast<i128>(nav) * 1'000'000 / total), 6);
}
// (now - then) / then in percent, 2 decimals, half even; 0 without a reference.
std::string change_percent(std::int64_t now_nps, std::optional<std::int64_t> then) {
  if (!then || *then <= 0) return "0";
  auto r = decimal::div_round(static_cast<i128>(now_nps - *then) * 10'000, *then, decimal::Rounding::half_even);
  return decimal::format(r ? static_cast<std::int64_t>(*r) : 0, 2);
}

// Trading's internal API, blocking (called on the blocking pool).
Result<http::Response> trading(State& st, http::Method method, std::string target, std::string body = {}) {
  return st.client->request_sync(st.trading, {method, std::move(target),
                                              {{"Authorization", "Bearer " + st.operator_token},
                                               {"Content-Type", "application/json"}},
                                              std::move(body)});
}

// Live numbers of every vault, by id.
Result<std::map<std::string, json::Value>> live(State& st) {
  auto r = trading(st, http::Method::get, "/internal/v1/vaults");
  if (!r) return fail(Code::upstream_unavailable, "trading unavailable");
  if (r->status != 200) return fail(Code::upstream_unavailable, "trading answered " + std::to_string(r->status));
  auto doc = json::parse(r->body);
  if (!doc || !doc->is_array()) return fail(Code::upstream_unavailable, "trading answered nonsense");
  std::map<std::string, json::Value> out;
  for (const auto& v : doc->items()) {
    if (const auto* id = v.find("id"); id && id->is_string()) out.emplace(id->as_string(), v);
  }
  return out;
}

std::int64_t int_of(const json::Value* v) {
  if (!v) return 0;
  auto i = v->as_int(INT64_MIN, INT64_MAX);
  return i ? *i : 0;
}

std::string text_of(const json::Value& v, std::string_view k) {
  const json::Value* f = v.find(k);
  if (!f) return "0";
  if (f->is_string()) return f->as_string();
  if (auto d = f->as_decimal()) return decimal::format(*d);
  return "0";
}

// One vault as the contract has it, from its catalogue row and the engine's live numbers.
void write_vault(json::Writer& w, const db::Rows& rows, int r, const json::Value& lv) {
  auto opt = [&](int c) -> std::optional<std::int64_t> {
    if (rows.is_null(r, c)) return std::nullopt;
    return units(rows.get(r, c));
  };
  const std::int64_t nav = units(text_of(lv, "nav"));
  const std::int64_t total = units(text_of(lv, "total_shares"));
  const std::int64_t nps = total > 0 ? static_cast<std::int64_t>(static_cast<i128>(nav) * 1'000'000 / total) : 1'000'000;
  // APY: the NAV-per-share change over the last 30 days (or since the first sample), annualized
  // without compounding, in percent.
  std::string apy = "0";
  if (!rows.is_null(r, 14) && !rows.is_null(r, 15)) {
    const std::int64_t elapsed = std::stoll(std::string(rows.get(r, 14)));
    const std::int64_t then = units(rows.get(r, 15));
    if (elapsed >= 3600 && then > 0) {
      auto a = decimal::div_round(static_cast<i128>(nps - then) * 100 * 100 * 365 * 86'400, static_cast<i128>(then) * elapsed,
                                  decimal::Rounding::half_even);
      apy = decimal::format(a ? static_cast<std::int64_t>(*a) : 0, 2);
    }
  }
  const std::int64_t lock_ms = std::stoll(std::string(rows.get(r, 6)));
  w.begin_object().field("id", rows.get(r, 0)).field("name", rows.get(r, 1)).field("description", rows.get(r, 2));
  w.field("address", rows.get(r, 3));
  w.key("tvl").raw_number(decimal::format(std::max<std::int64_t>(nav, 0), 6)).key("apy").raw_number(apy);
  w.key("capacity").raw_number(text_of(lv, "capacity")).key("min_deposit").raw_number(text_of(lv, "min_deposit"));
  w.key("lock_period_days").raw_number(decimal::format(static_cast<std::int64_t>(static_cast<i128>(lock_ms) * 1'000'000 / 86'400'000), 6));
  w.field("lock_period_seconds", lock_ms / 1000);
  w.key("management_fee").raw_number(text_of(lv, "management_fee"));
  w.key("performance_fee").raw_number(text_of(lv, "performance_fee"));
  w.field("status", rows.get(r, 7));
  const json::Value* dep = lv.find("depositors");
  w.field("depositors", int_of(dep));
  w.key("daily_change").raw_number(change_percent(nps, opt(10) ? opt(10) : opt(13)));
  w.key("weekly_change").raw_number(change_percent(nps, opt(11) ? opt(11) : opt(13)));
  w.key("monthly_change").raw_number(change_percent(nps, opt(12) ? opt(12) : opt(13)));
  w.field("leader", rows.get(r, 5)).field("leader_id", rows.get(r, 4));
  w.key("nav_per_share").raw_number(decimal::format(nps, 6));
  w.key("total_shares").raw_number(text_of(lv, "total_shares"));
  w.field("is_protocol", rows.get(r, 8) == std::string_view("t"));
  w.field("created_at", rows.get(r, 9));
  w.end_object();
}

// The vault list (newest first, a page of `limit` after the cursor `before`: a creation time in
// Unix microseconds; `next` gets the cursor of the page after this one when it is full), or one
// vault.
Result<std::string> vaults_json(State& st, std::optional<std::string> only, std::int64_t limit = 1000,
                                std::optional<std::string> before = std::nullopt, std::string* next = nullptr) {
  auto lv = live(st);
  if (!lv) return lv.error();
  auto lease = st.ctx->db->acquire();
  if (!lease) return lease.error();
  db::Param id;
  if (only) id = *only;
  auto rows = (*lease)->exec(kVaults, {id, before, std::to_string(limit)});
  if (!rows) return rows.error();
  if (next && rows->size() == limit) *next = rows->get(rows->size() - 1, 16);
  json::Writer w;
  if (!only) w.begin_array();
  int written = 0;
  for (int r = 0; r < rows->size(); ++r) {
    auto it = lv->find(std::string(rows->get(r, 0)));
    if (it == lv->end()) continue;  // not (yet) in the engine
    write_vault(w, *rows, r, it->second);
    ++written;
  }
  if (!only) w.end_array();
  if (only && written == 0) return fail(Code::not_found, "no such vault");
  return w.take();
}

// The idempotency key of a request, namespaced by its user: header first, then the body field.
// At most kMaxIdempotencyKeyBytes of text (hydrox/core/text.hpp), or 400 naming idempotency_key.
constexpr std::size_t kMaxIdempotencyKeyBytes = 120;  // with the user's id: within trading's 160
Result<std::string> idempotency_key(const http::Request& req, const json::Value* body,
                                    const UserId& user) {
  std::string key;
  if (auto h = req.header("Idempotency-Key"); h && !h->empty()) {
    key = std::string(*h);
  } else if (const json::Value* k = body ? body->find("idempotency_key") : nullptr;
             k && !k->is_null()) {
    if (!k->is_string())
      return fail(Code::invalid_field, "idempotency_key must be a string", "idempotency_key");
    key = k->as_string();
  }
  if (!key.empty()) {
    if (auto ok = check_text(key, "idempotency_key", kMaxIdempotencyKeyBytes); !ok)
      return ok.error();
  }
  if (key.empty()) key = Uuid::random_v4().to_string();  // no retry protection asked for
  return user.value().to_string() + ":" + key;
}

Result<std::int64_t> amount_units(const json::Value& doc, std::string_view field, bool required) {
  const json::Value* v = doc.find(field);
  if (!v || v->is_null()) {
    if (required) return fail(Code::missing_field, std::string(field) + " is required", std::string(field));
    return std::int64_t{-1};
  }
  auto d = v->as_decimal();
  if (!d) return fail(Code::invalid_field, std::string(field) + " must be a decimal number", std::string(field));
  auto u = decimal::to_units(*d, 6, decimal::Rounding::exact);
  if (!u) return fail(u.error().code, std::string(field) + " must have at most 6 decimals", std::string(field));
  if (*u <= 0) return fail(Code::invalid_field, std::string(field) + " must be positive", std::string(field));
  if (*u > 1'000'000'000'000LL * 1'000'000) return fail(Code::number_out_of_range, std::string(field) + " is out of range", std::string(field));
  return *u;
}

// Trading's refusal passes through with its stable code; anything else is a 503.
http::Response pass_through(const Result<http::Response>& r, const std::string& rid) {
  if (!r) return http::Response::error(fail(Code::upstream_unavailable, "trading unavailable"), rid);
  if (r->status == 422 || r->status == 404 || r->status == 400) {
    http::Response out = http::Response::json(r->status, r->body);
    return out;
  }
  return http::Response::error(fail(Code::upstream_unavailable, "trading answered " + std::to_string(r->status)), rid);
}

void money_route(State& st, http::Router& router, bool deposit) {
  router.post(deposit ? "/api/v1/vaults/{id}/deposit" : "/api/v1/vaults/{id}/withdraw",
              [&st, deposit](http::Request& req, http::Respond respond) {
    auto user = caller(req);
    if (!user) return respond(http::Response::error(user.error(), req.request_id));
    auto id = Uuid::parse(req.path_param("id"));
    if (!id) return respond(http::Response::error(fail(Code::not_found, "no such vault"), req.request_id));
    auto doc = json::parse_object(req.body, {"amount", "idempotency_key"});
    if (!doc) return respond(http::Response::error(doc.error(), req.request_id));
    auto amount = amount_units(*doc, "amount", true);
    if (!amount) return respond(http::Response::error(amount.error(), req.request_id));
    auto key_or = idempotency_key(req, &*doc, *user);
    if (!key_or) return respond(http::Response::error(key_or.error(), req.request_id));
    const std::string key = *key_or;
    service::respond_blocking(*st.ctx, req, respond, [&st, deposit, id = *id, user = *user, amount = *amount, key,
                                                      rid = req.request_id]() -> Result<http::Response> {
      json::Writer b;
      b.begin_object().field("user_id", user.value().to_string()).key("amount").raw_number(decimal::format(amount, 6));
      b.field("idempotency_key", key).end_object();
      auto r = trading(st, http::Method::post,
                       "/internal/v1/vaults/" + id.to_string() + (deposit ? "/deposits" : "/withdrawals"), b.take());
      if (!r || r->status != 200) return pass_through(r, rid);
      if (st.fault_exit_after_trading) {
        log::error("VAULT_FAULT_EXIT_AFTER_TRADING: exiting before answering", {{"request_id", rid}});
        std::_Exit(75);
      }
      auto o = json::parse(r->body);
      if (!o || !o->is_object()) return fail(Code::upstream_unavailable, "trading answered nonsense");
      const std::int64_t nav = units(text_of(*o, "nav")), total = units(text_of(*o, "total_shares"));
      json::Writer w;
      w.begin_object().field("status", "COMPLETED");
      w.field("transaction_id", std::to_string(int_of(o->find("transaction_id"))));
      w.key("shares").raw_number(text_of(*o, "shares")).key("nav_per_share").raw_number(nav_per_share(nav, total));
      w.key("amount").raw_number(text_of(*o, deposit ? "amount" : "paid"));
      if (!deposit) w.key("gross").raw_number(text_of(*o, "amount")).key("fee").raw_number(text_of(*o, "fee"));
      w.key("user_shares").raw_number(text_of(*o, "user_shares"));
      if (deposit) {
        const std::int64_t unlock = int_of(o->find("unlock_ms"));
        w.field("locked_until", format_rfc3339_ms(unlock));
      }
      w.end_object();
      auto res = http::Response::json(200, w.take());
      if (http::find_header(r->headers, "Idempotent-Replay")) res.set_header("Idempotent-Replay", "true");
      return res;
    });
  });
}

void sample(State& st) {
  auto lv = live(st);
  if (!lv) {
    static std::atomic<int> failures{0};
    if (failures.fetch_add(1) % 30 == 0) log::warn("vault sample skipped", {{"error", lv.error().message}});
    return;
  }
  auto lease = st.ctx->db->acquire();
  if (!lease) return;
  for (const auto& [id, v] : *lv) {
    const std::int64_t nav = units(text_of(v, "nav")), total = units(text_of(v, "total_shares"));
    (void)(*lease)->exec(kSample, {id, text_of(v, "nav"), text_of(v, "total_shares"), nav_per_share(nav, total)});
  }
}

}  // namespace

Result<void> setup(service::Context& ctx) {
  static State state;
  State& st = state;
  st.ctx = &ctx;
  auto token = ctx.env.string("OPERATOR_TOKEN", "");
  auto trading_url = ctx.env.endpoint("TRADING_SERVICE_URL", "http://localhost:8082");
  auto sample_ms = ctx.env.integer("VAULT_SAMPLE_MS", 60'000, 100, 3'600'000);
  auto fault = ctx.env.boolean("VAULT_FAULT_EXIT_AFTER_TRADING", false);
  if (!token) return token.error();
  if (!trading_url) return trading_url.error();
  if (!sample_ms) return sample_ms.error();
  if (!fault) return fault.error();
  st.operator_token = *token;
  st.trading = *trading_url;
  st.fault_exit_after_trading = *fault;
  if (st.operator_token.empty()) log::warn("OPERATOR_TOKEN is unset: the vault service cannot reach trading's vault API");
  http::ClientOptions co;
  co.connect_timeout = std::chrono::milliseconds(500);
  co.request_timeout = std::chrono::milliseconds(5000);
  st.client = std::make_shared<http::Client>(*ctx.runtime, co);
  ctx.on_stop.push_back([&st] { st.client.reset(); });
  http::Router& r = *ctx.router;

  // Newest first; limit (default 50, at most 1000) and before (X-Next-Cursor) like every list.
  r.get("/api/v1/vaults", [&st](http::Request& req, http::Respond respond) {
    auto page = service::page_params(req, 50, "a vault cursor (X-Next-Cursor)");
    if (!page) return respond(http::Response::error(page.error(), req.request_id));
    service::respond_blocking(*st.ctx, req, respond, [&st, page = *page]() -> Result<http::Response> {
      std::string next;
      auto body = vaults_json(st, std::nullopt, page.limit, page.before, &next);
      if (!body) return body.error();
      auto res = http::Response::json(200, *body);
      if (!next.empty()) res.set_header("X-Next-Cursor", next);
      return res;
    });
  });

  r.get("/api/v1/vaults/{id}", [&st](http::Request& req, http::Respond respond) {
    auto id = Uuid::parse(req.path_param("id"));
    if (!id) return respond(http::Response::error(fail(Code::not_found, "no such vault"), req.request_id));
    service::respond_blocking(*st.ctx, req, respond, [&st, id = *id]() -> Result<http::Response> {
      auto body = vaults_json(st, id.to_string());
      if (!body) return body.error();
      return http::Response::json(200, *body);
    });
  });

  r.post("/api/v1/vaults", [&st](http::Request& req, http::Respond respond) {
    auto user = caller(req);
    if (!user) return respond(http::Response::error(user.error(), req.request_id));
    auto doc = json::parse_object(req.body, {"name", "description", "initial_deposit", "performance_fee", "management_fee",
                                             "lock_period_days", "lock_period_seconds", "capacity", "min_deposit",
                                             "idempotency_key"});
    if (!doc) return respond(http::Response::error(doc.error(), req.request_id));
    auto bad = [&](Code c, std::string msg, std::string field) {
      respond(http::Response::error(fail(c, std::move(msg), std::move(field)), req.request_id));
    };
    const json::Value* name = doc->find("name");
    if (!name || !name->is_string()) return bad(Code::missing_field, "name is required", "name");
    const std::string n = name->as_string();
    if (n.size() < 3 || n.size() > 64)
      return bad(Code::invalid_field, "name must be 3 to 64 bytes", "name");
    if (auto ok = check_text(n, "name", 64); !ok)
      return respond(http::Response::error(ok.error(), req.request_id));
    std::string description;
    if (const json::Value* d = doc->find("description"); d && !d->is_null()) {
      if (!d->is_string() || d->as_string().size() > 1000)
        return bad(Code::invalid_field, "description: at most 1000 bytes", "description");
      description = d->as_string();
      if (auto ok = check_text(description, "description", 1000, true); !ok) {
        return respond(http::Response::error(ok.error(), req.request_id));
      }
    }
    auto initial = amount_units(*doc, "initial_deposit", true);
    if (!initial) return respond(http::Response::error(initial.error(), req.request_id));
    auto capacity = amount_units(*doc, "capacity", false);
    if (!capacity) return respond(http::Response::error(capacity.error(), req.request_id));
    auto min_deposit = amount_units(*doc, "min_deposit", false);
    if (!min_deposit) return respond(http::Response::error(min_deposit.error(), req.request_id));
    std::int64_t lock_ms = 86'400'000;
    if (const json::Value* s = doc->find("lock_period_seconds"); s && !s->is_null()) {
      auto v = s->as_int(0, 366LL * 86'400);
      if (!v) return bad(Code::invalid_field, "lock_period_seconds must be 0 to 366 days", "lock_period_seconds");
      lock_ms = *v * 1000;
    } else if (const json::Value* d = doc->find("lock_period_days"); d && !d->is_null()) {
      auto v = d->as_int(0, 366);
      if (!v) return bad(Code::invalid_field, "lock_period_days must be an integer from 0 to 366", "lock_period_days");
      lock_ms = *v * 86'400'000;
    }
    auto fee_text = [&](std::string_view k, std::string dflt) -> Result<std::string> {
      const json::Value* f = doc->find(k);
      if (!f || f->is_null()) return dflt;
      auto d = f->as_decimal();
      auto u = d ? decimal::to_units(*d, 4, decimal::Rounding::exact) : Result<std::int64_t>(fail(Code::invalid_field, ""));
      if (!u || *u < 0 || *u > (k == "performance_fee" ? 500'000 : 50'000)) {
        return fail(Code::invalid_field, std::string(k) + (k == "performance_fee" ? " must be a percent from 0 to 50" : " must be a percent from 0 to 5"),
                    std::string(k));
      }
      return decimal::format(*u, 4);
    };
    auto perf = fee_text("performance_fee", "10");
    if (!perf) return respond(http::Response::error(perf.error(), req.request_id));
    auto mgmt = fee_text("management_fee", "0");
    if (!mgmt) return respond(http::Response::error(mgmt.error(), req.request_id));
    // The vault's id and account come from the idempotency key: a retried create is the same vault.
    auto key_or = idempotency_key(req, &*doc, *user);
    if (!key_or) return respond(http::Response::error(key_or.error(), req.request_id));
    const std::string key = *key_or;
    const std::string h = auth::hash_hex("vault:" + key);
    auto as_uuid = [](std::string hex, char version) {
      hex[12] = version;
      hex[16] = '8';
      return hex.substr(0, 8) + "-" + hex.substr(8, 4) + "-" + hex.substr(12, 4) + "-" + hex.substr(16, 4) + "-" + hex.substr(20, 12);
    };
    const std::string vault_id = as_uuid(h.substr(0, 32), '8');
    const std::string account_id = as_uuid(h.substr(32, 32), '8');
    json::Writer b;
    b.begin_object().field("vault_id", vault_id).field("leader_id", user->value().to_string()).field("account_id", account_id);
    b.field("name", n).field("description", description).key("initial_deposit").raw_number(decimal::format(*initial, 6));
    b.field("lock_period_ms", lock_ms).key("performance_fee").raw_number(*perf).key("management_fee").raw_number(*mgmt);
    if (*capacity > 0) b.key("capacity").raw_number(decimal::format(*capacity, 6));
    if (*min_deposit > 0) b.key("min_deposit").raw_number(decimal::format(*min_deposit, 6));
    b.field("idempotency_key", key).end_object();
    service::respond_blocking(*st.ctx, req, respond, [&st, n, vault_id, body = b.take(), rid = req.request_id]() -> Result<http::Response> {
      {
        auto lease = st.ctx->db->acquire();
        if (!lease) return lease.error();
        auto taken = (*lease)->exec(kNameTaken, {n});
        if (!taken) return taken.error();
        // (A retry of this very create finds its own name: the engine answers it from the key.)
        if (taken->size() > 0) {
          auto mine = vaults_json(st, vault_id);
          if (!mine) return fail(Code::conflict, "a vault with this name exists", "name");
        }
      }
      auto answer = trading(st, http::Method::post, "/internal/v1/vaults", body);
      if (!answer || answer->status != 200) return pass_through(answer, rid);
      auto v = vaults_json(st, vault_id);
      if (!v) return v.error();
      return http::Response::json(201, *v);
    });
  });

  money_route(st, r, true);
  money_route(st, r, false);

  r.get("/api/v1/vaults/{id}/user", [&st](http::Request& req, http::Respond respond) {
    auto user = caller(req);
    if (!user) return respond(http::Response::error(user.error(), req.request_id));
    auto id = Uuid::parse(req.path_param("id"));
    if (!id) return respond(http::Response::error(fail(Code::not_found, "no such vault"), req.request_id));
    service::respond_blocking(*st.ctx, req, respond, [&st, id = *id, user = *user, rid = req.request_id]() -> Result<http::Response> {
      auto answer = trading(st, http::Method::get, "/internal/v1/vaults/" + id.to_string() + "/holders/" + user.value().to_string());
      if (!answer || answer->status != 200) return pass_through(answer, rid);
      auto o = json::parse(answer->body);
      if (!o || !o->is_object()) return fail(Code::upstream_unavailable, "trading answered nonsense");
      const std::int64_t locked = int_of(o->find("locked_until_ms"));
      json::Writer w;
      w.begin_object().key("balance").raw_number(text_of(*o, "value")).key("shares").raw_number(text_of(*o, "shares"));
      w.key("pnl").raw_number(text_of(*o, "pnl")).key("cost").raw_number(text_of(*o, "cost"));
      w.key("unlocked_shares").raw_number(text_of(*o, "unlocked_shares")).key("locked_until");
      if (locked > 0) w.string(format_rfc3339_ms(locked)); else w.null();
      w.end_object();
      return http::Response::json(200, w.take());
    });
  });

  r.get("/api/v1/vaults/{id}/transactions", [&st](http::Request& req, http::Respond respond) {
    auto id = Uuid::parse(req.path_param("id"));
    if (!id) return respond(http::Response::error(fail(Code::not_found, "no such vault"), req.request_id));
    auto page = service::page_params(req, 50, "a transaction id");
    if (!page) return respond(http::Response::error(page.error(), req.request_id));
    const std::int64_t limit = page->limit;
    const std::optional<std::string> before = page->before;
    // Anyone may read a vault's transactions; who made them is shown to that user only (the
    // others' rows carry no user id and no address).
    auto me = caller(req);
    const std::string viewer = me ? me->value().to_string() : std::string();
    service::respond_blocking(
        *st.ctx, req, respond, [&st, id = *id, limit, before, viewer]() -> Result<http::Response> {
          auto lease = st.ctx->db->acquire();
          if (!lease) return lease.error();
          auto rows =
              (*lease)->exec(kTransactions, {id.to_string(), before, std::to_string(limit)});
          if (!rows) return rows.error();
          // Two rows more than the page were read: a withdrawal and its profit share (one seq) are
          // never split across pages (the page then holds limit + 1), so `before` = seq loses none.
          int shown = std::min<int>(rows->size(), static_cast<int>(limit));
          if (rows->size() > limit && rows->get(shown, 0) == rows->get(shown - 1, 0)) ++shown;
          const bool more = rows->size() > shown;
          json::Writer w;
          w.begin_array();
          for (int i = 0; i < shown; ++i) {
            const bool withdrawal = rows->get(i, 1) == std::string_view("withdrawal");
            std::string type(
                rows->get(i, 1));  // api-contract spelling: DEPOSIT, WITHDRAWAL (, MANAGEMENT_FEE)
            for (auto& ch : type)
              ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
            // A profit share has its withdrawal's sequence: its id says which it is.
            const std::string tx_id = type == "PROFIT_SHARE"
                                          ? std::string(rows->get(i, 0)) + "-profit-share"
                                          : std::string(rows->get(i, 0));
            w.begin_object().field("id", tx_id).field("type", type);
            w.key("amount").raw_number(
                decimal::format(*decimal::parse(withdrawal ? rows->get(i, 4) : rows->get(i, 2))));
            w.key("fee").raw_number(decimal::format(*decimal::parse(rows->get(i, 3))));
            w.key("shares").raw_number(decimal::format(*decimal::parse(rows->get(i, 5))));
            if (!viewer.empty() && rows->get(i, 6) == viewer) {
              w.field("user_id", rows->get(i, 6)).field("address", rows->get(i, 7));
            } else {
              w.key("user_id").null().key("address").null();
            }
            w.field("status", "COMPLETED");
            w.field("created_at", rows->get(i, 8)).end_object();
          }
          w.end_array();
          auto res = http::Response::json(200, w.take());
          if (more) res.set_header("X-Next-Cursor", rows->get(shown - 1, 0));
          return res;
        });
  });

  r.get("/api/v1/vaults/{id}/performance", [&st](http::Request& req, http::Respond respond) {
    auto id = Uuid::parse(req.path_param("id"));
    if (!id) return respond(http::Response::error(fail(Code::not_found, "no such vault"), req.request_id));
    for (const auto& name : req.query_names()) {
      if (name != "period") {
        return respond(http::Response::error(fail(Code::unknown_field, "unknown query parameter " + name, name), req.request_id));
      }
    }
    std::string period = "week";
    if (auto p = req.query_param("period"); p && !p->empty()) period = std::string(*p);
    // Downsampling: the last sample of each bucket.
    static const std::map<std::string, std::pair<std::string, std::string>> kPeriods{
        {"day", {"15 minutes", "1 day"}}, {"week", {"1 hour", "7 days"}},
        {"month", {"6 hours", "30 days"}}, {"all", {"1 day", "100 years"}}};
    auto it = kPeriods.find(period);
    if (it == kPeriods.end()) {
      return respond(http::Response::error(fail(Code::invalid_field, "period must be day, week, month or all", "period"), req.request_id));
    }
    service::respond_blocking(*st.ctx, req, respond, [&st, id = *id, spec = it->second]() -> Result<http::Response> {
      auto lease = st.ctx->db->acquire();
      if (!lease) return lease.error();
      auto exists = (*lease)->exec(kVaultExists, {id.to_string()});  // (no call to trading for this)
      if (!exists) return exists.error();
      if (exists->size() == 0) return fail(Code::not_found, "no such vault");
      auto rows = (*lease)->exec(kPerformance, {id.to_string(), spec.first, spec.second});
      if (!rows) return rows.error();
      json::Writer w;
      w.begin_array();
      for (int i = 0; i < rows->size(); ++i) {
        w.begin_object().field("date", rows->get(i, 0)).key("time").raw_number(rows->get(i, 1));
        w.key("value").raw_number(decimal::format(*decimal::parse(rows->get(i, 2))));
        w.key("tvl").raw_number(decimal::format(*decimal::parse(rows->get(i, 3))));
        w.key("pnl").raw_number(decimal::format(*decimal::parse(rows->get(i, 4))));
        w.end_object();
      }
      w.end_array();
      return http::Response::json(200, w.take());
    });
  });

  // NAV per share, TVL and PnL every VAULT_SAMPLE_MS (off the IO threads).
  ctx.runtime->every(std::chrono::milliseconds(*sample_ms), [&st] {
    st.ctx->runtime->try_blocking([&st] {
      if (st.client) sample(st);
    });
  });
  log::info("vault service ready", {{"sample_ms", *sample_ms}});
  return {};
}

}  // namespace hydrox::vault
