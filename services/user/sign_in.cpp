// Wallet sign-in, Ethereum (EIP-4361 messages, EIP-191 signatures). GET /auth/nonce issues a
// single-use nonce (5 min, in Redis) and the exact message to sign; POST /auth/connect checks the
// message (domain, URI, chain, times), the signature, and only then consumes the nonce (GETDEL:
// of concurrent submissions exactly one wins); a first sign-in creates the user and asks trading's
// faucet; the answer carries a session token (random, stored hashed, 24 h).
// Cardano (CIP-30): the same message format with "Cardano account", the bech32 address and the
// network id as Chain ID; the signature is the wallet's signData result (COSE_Sign1 + COSE_Key):
// Ed25519 over the exact message, by a key whose BLAKE2b-224 hash is the address's payment or
// stake credential (and the COSE "address" header, when present, is that address).
#include <algorithm>

#include "hydrox/auth/cardano.hpp"
#include "hydrox/auth/siwe.hpp"
#include "hydrox/auth/tokens.hpp"
#include "hydrox/core/clock.hpp"
#include "hydrox/http/client.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/log/log.hpp"
#include "user_app.hpp"

namespace hydrox::user {

namespace {

constexpr std::int64_t kNonceTtlMs = 5 * 60 * 1000;
constexpr std::int64_t kSessionTtlMs = 24 * 3600 * 1000;

constexpr db::Query kCreateUser{"user_create",
                                "INSERT INTO users (id, wallet_address, chain) VALUES ($1::uuid, $2, $3)"
                                " ON CONFLICT (chain, wallet_address) DO NOTHING RETURNING id"};
constexpr db::Query kFindUser{"user_find", "SELECT id FROM users WHERE chain = $1 AND wallet_address = $2"};
constexpr db::Query kCreateSession{"session_create",
                                   "INSERT INTO sessions (token_hash, user_id, expires_at)"
                                   " VALUES (decode($1, 'hex'), $2::uuid, to_timestamp($3::bigint / 1000.0))"};
constexpr db::Query kRevokeSession{"session_revoke",
                                   "UPDATE sessions SET revoked_at = now() WHERE token_hash = decode($1, 'hex')"
                                   " AND user_id = $2::uuid AND revoked_at IS NULL"};

http::Response refusal(int status, std::string_view code, std::string_view message, std::string_view rid,
                       std::string_view field = {}) {
  json::Writer w;
  w.begin_object().key("error").begin_object().field("code", code).field("message", message);
  if (!field.empty()) w.field("field", field);
  w.field("request_id", rid).end_object().end_object();
  return http::Response::json(status, w.take());
}

std::string lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool eth_address(std::string_view a) {
  if (a.size() != 42 || !a.starts_with("0x")) return false;
  for (char c : a.substr(2)) {
    if (!std::isxdigit(static_cast<unsigned char>(c))) return false;
  }
  return true;
}

// The user of a wallet, created on its first connect; a new user gets the test-net faucet once
// (trading dedupes by user as well).
Result<std::string> find_or_create_user(State& st, db::Connection& c, const std::string& chain_name,
                                        const std::string& address) {
  const Uuid fresh = Uuid::random_v7(SystemClock::instance().now_ms());
  auto created = c.exec(kCreateUser, {fresh.to_string(), address, chain_name});
  if (!created) return created.error();
  std::string user_id;
  const bool first = created->size() == 1;
  if (first) {
    user_id = std::string(created->get(0, 0));
  } else {
    auto found = c.exec(kFindUser, {chain_name, address});
    if (!found) return found.error();
    if (found->size() == 0) return fail(Code::internal, "user vanished");
    user_id = std::string(found->get(0, 0));
  }
  if (first && !st.operator_token.empty()) {
    json::Writer f;
    f.begin_object().field("user_id", user_id).end_object();
    auto r =
        st.client->request_sync(st.trading, {http::Method::post,
                                             "/internal/v1/faucet",
                                             {{"Authorization", "Bearer " + st.operator_token}},
                                             f.take()});
    if (!r || (r->status != 200 && r->status != 403))
      log::warn("faucet call failed", {{"user_id", user_id}});
  }
  return user_id;
}

}  // namespace

Result<void> register_sign_in(State& st, http::Router& router) {
  auto domain = st.ctx->env.string("AUTH_DOMAIN", "localhost:8080");
  auto uri = st.ctx->env.string("AUTH_URI", "http://localhost:8080");
  auto chain = st.ctx->env.integer("AUTH_CHAIN_ID", 1, 1, 1'000'000'000'000LL);
  if (!domain) return domain.error();
  if (!uri) return uri.error();
  if (!chain) return chain.error();
  st.auth_domain = *domain;
  st.auth_uri = *uri;
  st.auth_chain_id = *chain;
  auto legacy_mode = st.ctx->env.boolean("HYDROX_LEGACY_CLIENT_AUTH", false);
  if (!legacy_mode) return legacy_mode.error();
  st.legacy_client_auth = *legacy_mode;

  auto networks = st.ctx->env.string("AUTH_CARDANO_NETWORKS", "0,1");
  if (!networks) return networks.error();
  st.cardano_networks.clear();
  for (char c : *networks) {
    if (c == '0' || c == '1') st.cardano_networks.push_back(c - '0');
    else if (c != ',' && c != ' ') return fail(Code::invalid_field, "AUTH_CARDANO_NETWORKS must list 0 and/or 1", "AUTH_CARDANO_NETWORKS");
  }
  auto network_ok = [&st](std::int64_t n) {
    return std::find(st.cardano_networks.begin(), st.cardano_networks.end(), n) != st.cardano_networks.end();
  };

  router.get("/api/v1/auth/nonce", [&st, network_ok](http::Request& req, http::Respond respond) {
    const std::string address = req.query_param("wallet_address").value_or("");
    const std::string chain_name = req.query_param("chain").value_or("ethereum");
    auth::SiweMessage m;
    if (chain_name == "cardano") {
      auto a = auth::parse_cardano_address(address);
      if (!a) return respond(refusal(400, "INVALID_FIELD", "wallet_address: " + a.error().message, req.request_id, "wallet_address"));
      if (!network_ok(a->network)) {
        return respond(refusal(400, "WRONG_CHAIN", "this exchange does not accept that Cardano network", req.request_id, "wallet_address"));
      }
      m.account = "Cardano";
      m.chain_id = a->network;
    } else if (chain_name == "ethereum") {
      if (!eth_address(address)) {
        return respond(refusal(400, "INVALID_FIELD", "wallet_address must be 0x and 40 hex digits", req.request_id, "wallet_address"));
      }
      m.chain_id = st.auth_chain_id;
    } else {
      return respond(refusal(400, "INVALID_FIELD", "chain must be cardano or ethereum", req.request_id, "chain"));
    }
    service::respond_blocking(*st.ctx, req, respond, [&st, address, chain_name, m]() mutable -> Result<http::Response> {
      const std::int64_t now = SystemClock::instance().now_ms();
      m.domain = st.auth_domain;
      m.address = chain_name == "cardano" ? lower(address) : address;
      m.statement = "Sign in to HydroX.";
      m.uri = st.auth_uri;
      m.version = "1";
      m.nonce = auth::hash_hex(auth::new_token(auth::Kind::session)).substr(0, 24);
      m.issued_at_ms = now;
      m.expiration_ms = now + kNonceTtlMs;
      auto set = st.ctx->redis->set("hydrox:nonce:" + m.nonce, chain_name + "|" + lower(address),
                                    std::chrono::milliseconds(kNonceTtlMs));
      if (!set) return set.error();
      json::Writer w;
      w.begin_object().field("nonce", m.nonce).field("message", auth::format_siwe(m));
      w.field("expires_at", format_rfc3339_ms(*m.expiration_ms)).end_object();
      return http::Response::json(200, w.take());
    });
  });

  router.post("/api/v1/auth/connect", [&st, network_ok](http::Request& req, http::Respond respond) {
    auto doc = json::parse_object(req.body, {"wallet_address", "chain", "message", "signature", "key"});
    if (!doc) return respond(http::Response::error(doc.error(), req.request_id));
    auto str = [&](std::string_view k) -> std::string {
      const auto* v = doc->find(k);
      return v && v->is_string() ? v->as_string() : std::string();
    };
    const std::string address = str("wallet_address"), text = str("message"),
                      sig = str("signature");
    std::string chain_name = str("chain");
    // Legacy client mode (the gateway says so, next to the internal token): the original web
    // client connects with its address alone. No session token comes back (one would outlive the
    // mode); the client sends X-User-ID, which the gateway passes on in that mode only.
    const bool legacy = st.legacy_client_auth && service::from_gateway(*st.ctx, req) &&
                        req.header(service::kLegacyModeHeader).has_value();
    if (legacy && sig.empty() && text.empty()) {
      if (chain_name.empty()) chain_name = address.starts_with("0x") ? "ethereum" : "cardano";
      if (chain_name == "cardano") {
        auto a = auth::parse_cardano_address(address);
        if (!a)
          return respond(refusal(400, "INVALID_FIELD", "wallet_address: " + a.error().message,
                                 req.request_id, "wallet_address"));
        if (!network_ok(a->network)) {
          return respond(refusal(400, "WRONG_CHAIN",
                                 "this exchange does not accept that Cardano network",
                                 req.request_id, "wallet_address"));
        }
      } else if (chain_name != "ethereum") {
        return respond(refusal(400, "INVALID_FIELD", "chain must be cardano or ethereum",
                               req.request_id, "chain"));
      } else if (!eth_address(address)) {
        return respond(refusal(400, "INVALID_FIELD", "wallet_address must be 0x and 40 hex digits",
                               req.request_id, "wallet_address"));
      }
      return service::respond_blocking(
          *st.ctx, req, respond,
          [&st, address = lower(address), chain_name]() -> Result<http::Response> {
            auto lease = st.ctx->db->acquire();
            if (!lease) return lease.error();
            auto user = find_or_create_user(st, **lease, chain_name, address);
            if (!user) return user.error();
            json::Writer w;
            w.begin_object()
                .field("user_id", *user)
                .field("wallet_address", address)
                .field("status", "connected");
            w.field("chain", chain_name).end_object();
            return http::Response::json(200, w.take());
          });
    }
    const bool cardano = chain_name == "cardano";
    if (!cardano && chain_name != "ethereum") {
      return respond(refusal(400, "INVALID_FIELD", "chain must be cardano or ethereum", req.request_id, "chain"));
    }
    std::optional<auth::CardanoAddress> ada;
    if (cardano) {
      auto a = auth::parse_cardano_address(address);
      if (!a) return respond(refusal(400, "INVALID_FIELD", "wallet_address: " + a.error().message, req.request_id, "wallet_address"));
      ada = *a;
      if (str("key").empty()) return respond(refusal(400, "MISSING_FIELD", "key (the COSE_Key of signData) is required", req.request_id, "key"));
    } else if (!eth_address(address)) {
      return respond(refusal(400, "INVALID_FIELD", "wallet_address must be 0x and 40 hex digits", req.request_id, "wallet_address"));
    }
    auto m = auth::parse_siwe(text);
    if (!m) return respond(refusal(400, "MALFORMED_MESSAGE", m.error().message, req.request_id, "message"));
    if (m->account != (cardano ? "Cardano" : "Ethereum")) {
      return respond(refusal(400, "MALFORMED_MESSAGE", "the message is for another kind of wallet", req.request_id, "message"));
    }
    const std::string rid = req.request_id;
    if (m->domain != st.auth_domain || m->uri != st.auth_uri) {
      return respond(refusal(401, "WRONG_DOMAIN", "the message is for another site", rid));
    }
    if (cardano ? (!network_ok(m->chain_id) || m->chain_id != ada->network) : m->chain_id != st.auth_chain_id) {
      return respond(refusal(401, "WRONG_CHAIN", "the message is for another chain", rid));
    }
    const std::int64_t now = SystemClock::instance().now_ms();
    if ((m->expiration_ms && now >= *m->expiration_ms) || m->issued_at_ms < now - kNonceTtlMs) {
      return respond(refusal(401, "EXPIRED", "the message has expired", rid));
    }
    if (m->issued_at_ms > now + 60'000 || (m->not_before_ms && now < *m->not_before_ms)) {
      return respond(refusal(401, "NOT_YET_VALID", "the message is not valid yet", rid));
    }
    if (cardano) {
      auto v = auth::verify_cip30(sig, str("key"));
      bool signed_message = false;
      if (v) {
        if (v->hashed) {
          auto h = auth::blake2b_224(reinterpret_cast<const unsigned char*>(text.data()), text.size());
          signed_message = v->payload == std::string(reinterpret_cast<const char*>(h.data()), h.size());
        } else {
          signed_message = v->payload == text;
        }
      }
      if (!v || !signed_message) return respond(refusal(401, "BAD_SIGNATURE", "the signature does not match the message", rid));
      const auto key_hash = auth::blake2b_224(v->public_key.data(), v->public_key.size());
      const bool key_matches = (ada->payment_key && *ada->payment_key == key_hash) || (ada->stake_key && *ada->stake_key == key_hash);
      const bool header_matches = !v->address || *v->address == ada->raw;
      if (!key_matches || !header_matches || lower(m->address) != lower(address)) {
        return respond(refusal(401, "KEY_ADDRESS_MISMATCH", "the signing key is not wallet_address's", rid));
      }
    } else {
      auto signer = auth::recover_eth_address(text, sig);
      if (!signer || *signer != lower(m->address)) return respond(refusal(401, "BAD_SIGNATURE", "the signature does not match the message", rid));
      if (lower(m->address) != lower(address)) {
        return respond(refusal(401, "KEY_ADDRESS_MISMATCH", "the signing key is not wallet_address's", rid));
      }
    }
    service::respond_blocking(*st.ctx, req, respond, [&st, m = *m, address = lower(address), chain_name, rid]() -> Result<http::Response> {
      // Single use: of concurrent submissions of one signed message, exactly one gets the nonce.
      auto issued = st.ctx->redis->command({"GETDEL", "hydrox:nonce:" + m.nonce});
      if (!issued) return issued.error();
      if (issued->type != redis::Reply::Type::string || issued->str != chain_name + "|" + address) {
        return refusal(401, "NONCE_REPLAYED", "the nonce is unknown, used, or was issued for another wallet", rid);
      }
      auto lease = st.ctx->db->acquire();
      if (!lease) return lease.error();
      auto user = find_or_create_user(st, **lease, chain_name, address);
      if (!user) return user.error();
      const std::string user_id = *user;
      const std::string token = auth::new_token(auth::Kind::session);
      const std::string hash = auth::hash_hex(token);
      const std::int64_t expires = SystemClock::instance().now_ms() + kSessionTtlMs;
      auto s = (*lease)->exec(kCreateSession, {hash, user_id, std::to_string(expires)});
      if (!s) return s.error();
      auto uid = Uuid::parse(user_id);
      auto set = st.ctx->redis->set(auth::redis_key(hash), auth::encode({UserId{*uid}, auth::Kind::session, auth::Scope::trade, expires}),
                                    std::chrono::milliseconds(kSessionTtlMs));
      if (!set) return set.error();
      json::Writer w;
      w.begin_object().field("user_id", user_id).field("wallet_address", address).field("status", "connected");
      w.field("token", token).field("expires_at", format_rfc3339_ms(expires)).end_object();
      return http::Response::json(200, w.take());
    });
  });

  router.post("/api/v1/auth/disconnect", [&st](http::Request& req, http::Respond respond) {
    auto user = req.header("X-User-ID");
    auto hash = req.header("X-Auth-Credential");
    // The gateway sets these from a verified session; anything else (a direct caller's junk) is
    // not a session: 401, never a query with a malformed id.
    const auto uid = user ? Uuid::parse(*user) : std::nullopt;
    const bool hash_ok = hash && hash->size() == 64 &&
                         hash->find_first_not_of("0123456789abcdef") == std::string_view::npos;
    if (!uid || !hash_ok || req.header("X-Auth-Kind").value_or("") != "session") {
      return respond(http::Response::error(fail(Code::unauthenticated, "sign in first"), req.request_id));
    }
    service::respond_blocking(
        *st.ctx, req, respond,
        [&st, u = uid->to_string(), h = std::string(*hash)]() -> Result<http::Response> {
          if (auto d = st.ctx->redis->del(auth::redis_key(h)); !d) return d.error();
          auto lease = st.ctx->db->acquire();
          if (!lease) return lease.error();
          if (auto r = (*lease)->exec(kRevokeSession, {h, u}); !r) return r.error();
          return http::Response::json(200, "{\"status\":\"disconnected\"}");
        });
  });
  return {};
}

}  // namespace hydrox::user
