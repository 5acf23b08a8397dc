// The user service. Built so far: API keys (issue, list, revoke; stored hashed, mirrored to Redis
// for the gateway), the operator's key issuing, and the profile. Wallet sign-in (CIP-30,
// EIP-4361) and sessions arrive with the rest of issue #6.
#include "user_app.hpp"

#include "hydrox/auth/tokens.hpp"
#include "hydrox/core/clock.hpp"
#include "hydrox/core/secret.hpp"
#include "hydrox/core/text.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/http/client.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/log/log.hpp"

namespace hydrox::user {

namespace {

constexpr db::Query kInsertKey{"api_key_insert",
                               "INSERT INTO api_keys (id, user_id, key_hash, prefix, scope, label)"
                               " VALUES ($1::uuid, $2::uuid, decode($3, 'hex'), $4, $5, $6)"};
constexpr db::Query kListKeys{
    "api_key_list",
    "SELECT id, prefix, scope, label,"
    " to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " (extract(epoch FROM created_at) * 1000000)::bigint"
    " FROM api_keys WHERE user_id = $1::uuid"
    " AND ($2::bigint IS NULL OR (extract(epoch FROM created_at) * 1000000)::bigint < $2::bigint)"
    " ORDER BY created_at DESC, id DESC LIMIT $3::int"};
constexpr db::Query kFindKey{
    "api_key_find",
    "SELECT encode(key_hash, 'hex') FROM api_keys WHERE id = $1::uuid AND user_id = $2::uuid"
    " AND revoked_at IS NULL"};
constexpr db::Query kRevokeKey{"api_key_revoke",
                               "UPDATE api_keys SET revoked_at = now() WHERE id = $1::uuid AND user_id = $2::uuid"
                               " AND revoked_at IS NULL RETURNING encode(key_hash, 'hex')"};
constexpr db::Query kActiveKeys{"api_keys_active",
                                "SELECT encode(key_hash, 'hex'), user_id, scope FROM api_keys WHERE revoked_at IS NULL"};
constexpr db::Query kActiveSessions{
    "sessions_active",
    "SELECT encode(token_hash, 'hex'), user_id, (extract(epoch from expires_at) * 1000)::bigint FROM sessions"
    " WHERE revoked_at IS NULL AND expires_at > now()"};
constexpr db::Query kCredential{
    "credential_lookup",
    "SELECT user_id::text, 'api_key', scope, 0::bigint FROM api_keys WHERE key_hash = decode($1, 'hex') AND revoked_at IS NULL"
    " UNION ALL SELECT user_id::text, 'session', 'trade', (extract(epoch from expires_at) * 1000)::bigint FROM sessions"
    " WHERE token_hash = decode($1, 'hex') AND revoked_at IS NULL AND expires_at > now() LIMIT 1"};
constexpr db::Query kProfile{
    "profile",
    "SELECT id, wallet_address, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
    " FROM users WHERE id = $1::uuid"};



using service::caller;

Result<json::Value> body_object(const http::Request& req, std::initializer_list<std::string_view> allowed) {
  return json::parse_object(req.body, allowed);
}

// Issues a key: PostgreSQL first (the record), then Redis (what the gateway reads).
Result<http::Response> issue_key(State& st, const UserId& user, const json::Value& doc) {
  auth::Scope scope = auth::Scope::read;
  if (const auto* s = doc.find("scope")) {
    auto parsed = s->is_string() ? auth::parse_scope(s->as_string()) : std::nullopt;
    if (!parsed) return fail(Code::invalid_field, "scope must be read or trade", "scope");
    scope = *parsed;
  }
  std::string label;
  if (const auto* l = doc.find("label")) {
    if (!l->is_string() || l->as_string().size() > 64)
      return fail(Code::invalid_field, "label must be a string of at most 64 bytes", "label");
    if (auto ok = check_text(l->as_string(), "label", 64, true); !ok) return ok.error();
    label = l->as_string();
  }
  const std::string key = auth::new_token(auth::Kind::api_key);
  const std::string hash = auth::hash_hex(key);
  const Uuid id = Uuid::random_v7(SystemClock::instance().now_ms());
  auto lease = st.ctx->db->acquire();
  if (!lease) return lease.error();
  auto ins = (*lease)->exec(kInsertKey, {id.to_string(), user.value().to_string(), hash, key.substr(0, 8),
                                         std::string(auth::scope_name(scope)), label});
  if (!ins) return ins.error();
  auto r = st.ctx->redis->set(auth::redis_key(hash), auth::encode({user, auth::Kind::api_key, scope, 0}),
                              std::chrono::hours(24 * 365 * 10));
  if (!r) return r.error();  // the key exists in PostgreSQL and is loaded into Redis at the next start
  json::Writer w;
  w.begin_object().field("id", id.to_string()).field("key", key).field("prefix", key.substr(0, 8));
  w.field("scope", auth::scope_name(scope)).field("label", label).field("user_id", user.value().to_string()).end_object();
  return http::Response::json(201, w.take());
}

// Authorization: Bearer <OPERATOR_TOKEN>, compared in constant time.
bool operator_call(const http::Request& req, const std::string& token) {
  auto h = req.header("Authorization");
  constexpr std::string_view kBearer = "Bearer ";
  return !token.empty() && h && h->starts_with(kBearer) &&
         constant_time_equal(h->substr(kBearer.size()), token);
}

Result<void> load_credentials(service::Context& ctx) {
  auto lease = ctx.db->acquire();
  if (!lease) return lease.error();
  auto keys = (*lease)->exec(kActiveKeys);
  if (!keys) return keys.error();
  for (int i = 0; i < keys->size(); ++i) {
    auto scope = auth::parse_scope(keys->get(i, 2)).value_or(auth::Scope::read);
    auto uid = Uuid::parse(keys->get(i, 1));
    if (!uid) continue;
    if (auto r = ctx.redis->set(auth::redis_key(keys->get(i, 0)), auth::encode({UserId{*uid}, auth::Kind::api_key, scope, 0}),
                                std::chrono::hours(24 * 365 * 10));
        !r) {
      return r.error();
    }
  }
  auto sessions = (*lease)->exec(kActiveSessions);
  if (!sessions) return sessions.error();
  for (int i = 0; i < sessions->size(); ++i) {
    auto uid = Uuid::parse(sessions->get(i, 1));
    const std::int64_t expires = std::stoll(std::string(sessions->get(i, 2)));
    const std::int64_t ttl = expires - SystemClock::instance().now_ms();
    if (!uid || ttl <= 0) continue;
    (void)ctx.redis->set(auth::redis_key(sessions->get(i, 0)),
                         auth::encode({UserId{*uid}, auth::Kind::session, auth::Scope::trade, expires}),
                         std::chrono::milliseconds(ttl));
  }
  if (auto r = ctx.redis->set(std::string(auth::kLoadedMarker), "1", std::chrono::hours(24 * 365 * 10)); !r) return r.error();
  return {};
}

}  // namespace

Result<void> setup(service::Context& ctx) {
  static State st;
  st.ctx = &ctx;
  auto token = ctx.env.string("OPERATOR_TOKEN", "");
  if (!token) return token.error();
  st.operator_token = *token;
  auto trading = ctx.env.endpoint("TRADING_SERVICE_URL", "http://localhost:8082");
  if (!trading) return trading.error();
  st.trading = *trading;
  http::ClientOptions co;
  co.request_timeout = std::chrono::milliseconds(3000);
  st.client = std::make_shared<http::Client>(*ctx.runtime, co);
  ctx.on_stop.push_back([] { st.client.reset(); });  // its sockets belong to the runtime

  // Redis is never the source of truth: make it hold every live credential, and again whenever
  // it comes back empty (a restart without persistence): the marker key says it is loaded.
  if (auto loaded = load_credentials(ctx); !loaded) return loaded.error();
  ctx.runtime->every(std::chrono::seconds(2), [&ctx] {
    (void)ctx.runtime->try_blocking([&ctx] {
      auto marker = ctx.redis->get(std::string(auth::kLoadedMarker));
      if (marker && !*marker) {
        log::warn("Redis has lost the credentials (restarted empty?): loading them again");
        if (auto r = load_credentials(ctx); !r) log::warn("loading credentials failed", {{"error", r.error().message}});
      }
    });
  });

  auto& r = *ctx.router;
  if (auto si = register_sign_in(st, r); !si) return si.error();
  r.post("/internal/v1/api-keys", [](http::Request& req, http::Respond respond) {
    if (!operator_call(req, st.operator_token)) {
      return respond(http::Response::error(fail(Code::unauthenticated, "operator token required"), req.request_id));
    }
    service::respond_blocking(*st.ctx, req, respond, [body = req.body]() -> Result<http::Response> {
      http::Request tmp;
      tmp.body = body;
      auto doc = body_object(tmp, {"user_id", "scope", "label"});
      if (!doc) return doc.error();
      const auto* u = doc->find("user_id");
      auto uid = u && u->is_string() ? Uuid::parse(u->as_string()) : std::nullopt;
      if (!uid) return fail(Code::invalid_field, "user_id must be a UUID", "user_id");
      return issue_key(st, UserId{*uid}, *doc);
    });
  });

  // The gateway's way to a credential when Redis cannot answer (down, or restarted empty): by the
  // SHA-256 of the secret, so it tells nothing to anyone who does not hold the secret already.
  // Internal port only (the gateway does not route /internal).
  r.get("/internal/v1/credentials/{hash}", [](http::Request& req, http::Respond respond) {
    // The gateway's (and market's) own call: the internal token, or the operator's.
    if (st.ctx->internal_token.empty()
            ? false
            : !service::from_gateway(*st.ctx, req) && !operator_call(req, st.operator_token)) {
      return respond(http::Response::error(
          fail(Code::unauthenticated, "internal or operator token required"), req.request_id));
    }
    const std::string hash(req.path_param("hash"));
    if (hash.size() != 64 || hash.find_first_not_of("0123456789abcdef") != std::string::npos) {
      return respond(http::Response::error(fail(Code::invalid_field, "hash must be 64 lowercase hex digits", "hash"), req.request_id));
    }
    service::respond_blocking(*st.ctx, req, respond, [hash]() -> Result<http::Response> {
      auto lease = st.ctx->db->acquire();
      if (!lease) return lease.error();
      auto rows = (*lease)->exec(kCredential, {hash});
      if (!rows) return rows.error();
      if (rows->size() == 0) return fail(Code::not_found, "no live credential with this hash");
      auto uid = Uuid::parse(rows->get(0, 0));
      if (!uid) return fail(Code::internal, "bad user id");
      auth::Credential c{UserId{*uid}, rows->get(0, 1) == "api_key" ? auth::Kind::api_key : auth::Kind::session,
                         auth::parse_scope(rows->get(0, 2)).value_or(auth::Scope::read),
                         std::stoll(std::string(rows->get(0, 3)))};
      return http::Response::json(200, auth::encode(c));
    });
  });

  r.post("/api/v1/users/api-keys", [](http::Request& req, http::Respond respond) {
    auto user = caller(req);
    if (!user) return respond(http::Response::error(user.error(), req.request_id));
    // Keys are made from a signed-in session, never from another key, and never in legacy client
    // mode (a key made then would outlive the mode).
    if (req.header(service::kLegacyModeHeader)) {
      return respond(http::Response::error(
          fail(Code::forbidden, "no API keys in legacy client mode (HYDROX_LEGACY_CLIENT_AUTH=1)"),
          req.request_id));
    }
    const auto kind = req.header("X-Auth-Kind").value_or("");
    if (kind == "api_key") {
      return respond(http::Response::error(fail(Code::forbidden, "API keys cannot create API keys"), req.request_id));
    }
    if (kind == "legacy") {
      return respond(http::Response::error(
          fail(Code::forbidden, "sign in with a wallet to create API keys"), req.request_id));
    }
    auto doc = body_object(req, {"scope", "label"});
    if (!doc) return respond(http::Response::error(doc.error(), req.request_id));
    service::respond_blocking(*st.ctx, req, respond, [u = *user, d = *doc]() { return issue_key(st, u, d); });
  });

  r.get("/api/v1/users/api-keys", [](http::Request& req, http::Respond respond) {
    auto user = caller(req);
    if (!user) return respond(http::Response::error(user.error(), req.request_id));
    // Newest first; limit (default 50, at most 1000) and before (X-Next-Cursor) like every list.
    auto page = service::page_params(req, 50, "an API key cursor (X-Next-Cursor)");
    if (!page) return respond(http::Response::error(page.error(), req.request_id));
    service::respond_blocking(*st.ctx, req, respond, [u = *user, page = *page]() -> Result<http::Response> {
      auto lease = st.ctx->db->acquire();
      if (!lease) return lease.error();
      auto rows = (*lease)->exec(kListKeys, {u.value().to_string(), page.before, std::to_string(page.limit)});
      if (!rows) return rows.error();
      json::Writer w;
      w.begin_array();
      for (int i = 0; i < rows->size(); ++i) {
        w.begin_object().field("id", rows->get(i, 0)).field("prefix", rows->get(i, 1)).field("scope", rows->get(i, 2));
        w.field("label", rows->get(i, 3)).field("created_at", rows->get(i, 4)).key("revoked_at");
        if (rows->is_null(i, 5)) w.null(); else w.string(rows->get(i, 5));
        w.end_object();
      }
      w.end_array();
      auto res = http::Response::json(200, w.take());
      if (rows->size() == page.limit) res.set_header("X-Next-Cursor", rows->get(rows->size() - 1, 6));
      return res;
    });
  });

  r.del("/api/v1/users/api-keys/{id}", [](http::Request& req, http::Respond respond) {
    auto user = caller(req);
    if (!user) return respond(http::Response::error(user.error(), req.request_id));
    auto id = Uuid::parse(req.path_param("id"));
    if (!id) return respond(http::Response::error(fail(Code::not_found, "no such key"), req.request_id));
    service::respond_blocking(*st.ctx, req, respond, [u = *user, id = *id]() -> Result<http::Response> {
      auto lease = st.ctx->db->acquire();
      if (!lease) return lease.error();
      auto found = (*lease)->exec(kFindKey, {id.to_string(), u.value().to_string()});
      if (!found) return found.error();
      if (found->size() == 0) return fail(Code::not_found, "no such active key");
      // Out of Redis first: if Redis cannot answer, nothing is revoked yet and the caller retries
      // (a key revoked in PostgreSQL but still in Redis would keep working). With the credentials
      // marked loaded, a key missing from Redis is a key that does not exist.
      const std::string hash(found->get(0, 0));
      if (auto d = st.ctx->redis->del(auth::redis_key(hash)); !d) return d.error();
      auto rows = (*lease)->exec(kRevokeKey, {id.to_string(), u.value().to_string()});
      if (!rows) return rows.error();
      if (rows->size() == 0) return fail(Code::not_found, "no such active key");
      (void)st.ctx->redis->del(auth::redis_key(hash));  // again: a reload in between put it back
      return http::Response::json(200, "{\"status\":\"revoked\"}");
    });
  });

  // The user's balances across accounts: the trading account, then one entry per vault holding
  // (available = the value of its unlocked shares, locked = the rest, at the vault's NAV now).
  r.get("/api/v1/users/balances", [](http::Request& req, http::Respond respond) {
    auto user = caller(req);
    if (!user) return respond(http::Response::error(user.error(), req.request_id));
    service::respond_blocking(
        *st.ctx, req, respond, [u = *user, rid = req.request_id]() -> Result<http::Response> {
          std::vector<http::Header> as_user{{"X-User-ID", u.value().to_string()},
                                            {"X-Request-ID", rid}};
          for (auto& h : service::internal_headers(*st.ctx)) as_user.push_back(std::move(h));
          auto own = st.client->request_sync(
              st.trading, {http::Method::get, "/api/v1/balances", std::move(as_user), {}});
          if (!own || own->status != 200)
            return fail(Code::upstream_unavailable, "trading balances unavailable");
          auto vaults = st.client->request_sync(
              st.trading,
              {http::Method::get,
               "/internal/v1/users/" + u.value().to_string() + "/vaults",
               {{"Authorization", "Bearer " + st.operator_token}, {"X-Request-ID", rid}},
               {}});
          if (!vaults || vaults->status != 200)
            return fail(Code::upstream_unavailable, "vault holdings unavailable");
          auto doc = json::parse(own->body);
          auto held = json::parse(vaults->body);
          if (!doc || !doc->is_array() || !held || !held->is_array())
            return fail(Code::internal, "bad balances");
          json::Writer w;
          w.begin_array();
          for (const auto& b : doc->items()) {
            w.begin_object().field("account", "trading");
            for (const auto& m : b.members()) {
              w.key(m.key);
              if (m.value.is_string())
                w.string(m.value.as_string());
              else
                w.raw_number(m.value.number_text());
            }
            w.end_object();
          }
          for (const auto& h : held->items()) {
            auto units = [&](std::string_view k) {
              const json::Value* v = h.find(k);
              auto d = v ? v->as_decimal() : Result<decimal::Decimal>(fail(Code::internal, ""));
              auto u6 = d ? decimal::to_units(*d, 6, decimal::Rounding::down)
                          : Result<std::int64_t>(fail(Code::internal, ""));
              return u6 ? *u6 : std::int64_t{0};
            };
            const std::int64_t value = units("value"), free = units("unlocked_value");
            w.begin_object()
                .field("account", "vault")
                .field("vault_id", h.find("vault_id")->as_string())
                .field("asset", "USDM");
            w.key("available")
                .raw_number(decimal::format(free, 6))
                .key("locked")
                .raw_number(decimal::format(value - free, 6));
            w.key("total")
                .raw_number(decimal::format(value, 6))
                .key("shares")
                .raw_number(h.find("shares")->number_text());
            w.end_object();
          }
          w.end_array();
          return http::Response::json(200, w.take());
        });
  });

  r.get("/api/v1/users/profile", [](http::Request& req, http::Respond respond) {
    auto user = caller(req);
    if (!user) return respond(http::Response::error(user.error(), req.request_id));
    service::respond_blocking(*st.ctx, req, respond, [u = *user]() -> Result<http::Response> {
      auto lease = st.ctx->db->acquire();
      if (!lease) return lease.error();
      auto rows = (*lease)->exec(kProfile, {u.value().to_string()});
      if (!rows) return rows.error();
      if (rows->size() == 0) return fail(Code::not_found, "no profile: this account has not signed in with a wallet");
      json::Writer w;
      w.begin_object().field("id", rows->get(0, 0)).field("wallet_address", rows->get(0, 1));
      w.field("created_at", rows->get(0, 2)).end_object();
      return http::Response::json(200, w.take());
    });
  });
  return {};
}

}  // namespace hydrox::user
