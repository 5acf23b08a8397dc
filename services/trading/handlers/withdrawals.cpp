// Withdrawals to the chain. A user asks (POST /api/v1/withdrawals): the amount leaves the account
// at once (RequestWithdrawal, checked against the free collateral and the daily limit) and waits,
// PENDING, for the bridge. The bridge is the operator's process that talks to the chain, through
// the operator API here (hydrox-admin withdrawals next|complete|reject): `next` hands it the oldest
// PENDING one (PROCESSING), `complete` records the chain's transaction id (COMPLETED: the money
// has left the exchange), `reject` gives the amount back with a reason (REJECTED). A user may
// cancel a PENDING one (DELETE /api/v1/withdrawals/{id}: CANCELLED, the amount back). Every step
// is an engine command, journaled with the withdrawal's row in one transaction.
#include <mutex>
#include <unordered_map>

#include "common.hpp"
#include "hydrox/auth/cardano.hpp"
#include "hydrox/auth/siwe.hpp"
#include "hydrox/core/clock.hpp"
#include "hydrox/core/secret.hpp"
#include "hydrox/core/text.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/json/json.hpp"

namespace hydrox::trading {

using namespace engine;

namespace {

constexpr db::Query kWallet{"withdrawal_wallet", "SELECT chain, wallet_address FROM users WHERE id = $1::uuid"};
constexpr db::Query kWithdrawal{
    "withdrawal_get",
    "SELECT id, user_id, amount::text, address, chain, status, chain_tx_id, reason,"
    " (extract(epoch from created_at) * 1000)::bigint, (extract(epoch from updated_at) * 1000)::bigint"
    " FROM withdrawals WHERE id = $1::uuid"};
constexpr db::Query kOperatorList{
    "withdrawal_operator_list",
    "SELECT id, user_id, amount::text, address, chain, status, chain_tx_id, reason,"
    " (extract(epoch from created_at) * 1000)::bigint, (extract(epoch from updated_at) * 1000)::bigint"
    " FROM withdrawals WHERE status = $1::text AND ($2::uuid IS NULL OR id > $2::uuid) ORDER BY id LIMIT $3::int"};
constexpr db::Query kWithdrawals{
    "withdrawal_list",
    "SELECT id, user_id, amount::text, address, chain, status, chain_tx_id, reason,"
    " (extract(epoch from created_at) * 1000)::bigint, (extract(epoch from updated_at) * 1000)::bigint"
    " FROM withdrawals WHERE user_id = $1::uuid AND ($2::text IS NULL OR status = $2::text)"
    " AND ($3::uuid IS NULL OR id < $3::uuid) ORDER BY id DESC LIMIT $4::int"};

// A wallet never changes its user: read once per user.
struct Wallet {
  std::string chain;    // "cardano" | "ethereum" | "system"
  std::string address;  // as stored at sign-in (lower case)
};
std::mutex wallets_mu;
std::unordered_map<Uuid, Wallet, UuidHash> wallets;

Result<std::optional<Wallet>> wallet_of(Services& s, const UserId& user) {
  {
    std::lock_guard lock(wallets_mu);
    if (auto it = wallets.find(user.value()); it != wallets.end()) return std::optional<Wallet>(it->second);
  }
  auto lease = s.ctx->db->acquire();
  if (!lease) return lease.error();
  auto rows = (*lease)->exec(kWallet, {user.value().to_string()});
  if (!rows) return rows.error();
  if (rows->size() == 0) return std::optional<Wallet>{};
  Wallet w{std::string(rows->get(0, 0)), std::string(rows->get(0, 1))};
  std::lock_guard lock(wallets_mu);
  wallets.emplace(user.value(), w);
  return std::optional<Wallet>(w);
}

http::Response refusal(int status, std::string_view code, std::string_view message, std::string_view field,
                       const std::string& rid) {
  json::Writer w;
  w.begin_object().key("error").begin_object().field("code", code).field("message", message);
  if (!field.empty()) w.field("field", field);
  w.field("request_id", rid).end_object().end_object();
  return http::Response::json(status, w.take());
}

bool is_hex(std::string_view s) { return s.find_first_not_of("0123456789abcdefABCDEF") == std::string_view::npos; }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
  return out;
}

// EIP-55: a mixed-case address must carry the checksum (all lower or all upper case carries none).
bool eip55_ok(std::string_view address) {
  const std::string_view hex = address.substr(2);
  const bool has_lower = hex.find_first_of("abcdef") != std::string_view::npos;
  const bool has_upper = hex.find_first_of("ABCDEF") != std::string_view::npos;
  if (!has_lower || !has_upper) return true;
  const std::string digest = auth::keccak256_hex(lower(hex));
  for (std::size_t i = 0; i < hex.size(); ++i) {
    const char c = hex[i];
    if (!((c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F'))) continue;
    const int nibble = digest[i] >= 'a' ? digest[i] - 'a' + 10 : digest[i] - '0';
    if ((nibble >= 8) != (c >= 'A' && c <= 'F')) return false;
  }
  return true;
}

// The address a withdrawal may go to: well formed for the user's chain (Cardano bech32 on an
// accepted network, or an EIP-55 Ethereum address) and, unless WITHDRAWAL_ANY_ADDRESS, the user's
// own signed-in wallet. The refusal as an answer, or nullopt.
std::optional<http::Response> check_address(const Services& s, const std::optional<Wallet>& wallet,
                                            std::string_view address, const std::string& rid) {
  if (!wallet || wallet->chain == "system") {
    return refusal(422, "ADDRESS_NOT_ALLOWED", "this account has no signed-in wallet to withdraw to", "address", rid);
  }
  if (wallet->chain == "ethereum") {
    if (address.size() != 42 || !address.starts_with("0x") || !is_hex(address.substr(2))) {
      return refusal(400, "INVALID_FIELD", "address must be 0x and 40 hex digits", "address", rid);
    }
    if (!eip55_ok(address)) return refusal(400, "INVALID_FIELD", "address fails its EIP-55 checksum", "address", rid);
  } else {
    auto a = auth::parse_cardano_address(address);
    if (!a) return refusal(400, "INVALID_FIELD", "address: " + a.error().message, "address", rid);
    if (std::find(s.cardano_networks.begin(), s.cardano_networks.end(), a->network) == s.cardano_networks.end()) {
      return refusal(400, "WRONG_CHAIN", "the address is for a Cardano network this exchange does not use", "address", rid);
    }
    if (!lower(address).starts_with("addr")) {
      return refusal(400, "INVALID_FIELD", "a stake (reward) address cannot receive a withdrawal", "address", rid);
    }
  }
  if (!s.withdrawal_any_address && lower(address) != wallet->address) {
    return refusal(422, "ADDRESS_NOT_ALLOWED", "withdrawals go to the wallet you signed in with", "address", rid);
  }
  return std::nullopt;
}

Result<std::string> text_field(const json::Value& doc, std::string_view name, std::size_t max, bool required) {
  const json::Value* v = doc.find(name);
  if (!v || v->is_null()) {
    if (required) return fail(Code::missing_field, std::string(name) + " is required", std::string(name));
    return std::string();
  }
  if (!v->is_string() || v->as_string().empty()) {
    return fail(Code::invalid_field, std::string(name) + " must be a non-empty string", std::string(name));
  }
  if (auto ok = check_text(v->as_string(), name, max); !ok) return ok.error();
  return std::string(v->as_string());
}

void write_row(json::Writer& w, const db::Rows& rows, int i) {
  w.begin_object().field("id", rows.get(i, 0)).field("user_id", rows.get(i, 1));
  w.key("amount").raw_number(plain(rows.get(i, 2))).field("asset", "USDM");
  w.field("address", rows.get(i, 3)).field("chain", rows.get(i, 4)).field("status", rows.get(i, 5));
  w.key("chain_tx_id");
  if (rows.is_null(i, 6)) w.null(); else w.string(rows.get(i, 6));
  w.key("reason");
  if (rows.is_null(i, 7)) w.null(); else w.string(rows.get(i, 7));
  w.key("created_at").raw_number(rows.get(i, 8)).key("updated_at").raw_number(rows.get(i, 9));
  w.end_object();
}

// The withdrawal's row as the answer (read after its command committed: the row is written with it).
Result<http::Response> answer_row(Services& s, const Uuid& id, int status, bool replay = false) {
  auto lease = s.ctx->db->acquire();
  if (!lease) return lease.error();
  auto rows = (*lease)->exec(kWithdrawal, {id.to_string()});
  if (!rows) return rows.error();
  if (rows->size() == 0) return fail(Code::not_found, "no such withdrawal");
  json::Writer w;
  write_row(w, *rows, 0);
  auto r = http::Response::json(status, w.take());
  if (replay) r.set_header("Idempotent-Replay", "true");
  return r;
}

void answer_row_later(Services& s, http::Respond respond, std::string rid, Uuid id, int status, bool replay = false) {
  http::Request r;
  r.request_id = std::move(rid);
  service::respond_blocking(*s.ctx, r, std::move(respond), [&s, id, status, replay] { return answer_row(s, id, status, replay); });
}

// The engine's refusal of a withdrawal command as an answer.
http::Response withdrawal_rejection(Reject r, const std::string& rid) {
  switch (r) {
    case Reject::unknown_withdrawal: return refusal(404, "NOT_FOUND", "no such withdrawal in flight", "", rid);
    case Reject::withdrawal_state:
      return refusal(409, "WITHDRAWAL_STATE", "the withdrawal's status does not allow this", "", rid);
    case Reject::withdrawal_limit:
      return refusal(422, "WITHDRAWAL_LIMIT", "over the daily withdrawal limit", "amount", rid);
    case Reject::insufficient_balance:
      return refusal(422, "INSUFFICIENT_BALANCE", "the collateral does not cover the amount", "amount", rid);
    case Reject::insufficient_margin:
      return refusal(422, "INSUFFICIENT_MARGIN", "open positions and orders need this margin", "amount", rid);
    case Reject::too_many_withdrawals:
      return refusal(422, "TOO_MANY_WITHDRAWALS", "too many withdrawals in flight: wait for the bridge, or cancel one", "", rid);
    default: return refusal(422, reject_code(r), "refused", "", rid);
  }
}

const CommandRejected* rejected_in(const Outcome& o) {
  for (const auto& e : o.events) {
    if (auto* cr = std::get_if<CommandRejected>(&e.body)) return cr;
  }
  return nullptr;
}

// Submits UpdateWithdrawal for the operator or a user and answers with the row (or the refusal).
// A repeated `complete` with the same chain transaction id (a bridge retrying) answers the row
// again, marked as a replay.
void update(Services& s, http::Request& req, http::Respond respond, UpdateWithdrawal cmd, std::string meta,
            std::string replay_tx = {}) {
  Job job;
  job.command = cmd;
  job.meta = std::move(meta);
  job.done = [&s, respond, rid = req.request_id, cmd, replay_tx](Result<Outcome> o) {
    if (!o) return respond(http::Response::error(o.error(), rid));
    if (const CommandRejected* cr = rejected_in(*o)) {
      if (cr->reason == Reject::unknown_withdrawal) {
        // Not in flight: a finished one (answer its row when this very step already happened:
        // a retry whose first answer was lost), or none.
        http::Request r;
        r.request_id = rid;
        return service::respond_blocking(*s.ctx, r, respond, [&s, id = cmd.id, status = cmd.status, user = cmd.user,
                                                              replay_tx, rid]() -> Result<http::Response> {
          auto lease = s.ctx->db->acquire();
          if (!lease) return lease.error();
          auto rows = (*lease)->exec(kWithdrawal, {id.to_string()});
          if (!rows) return rows.error();
          if (rows->size() == 0 || (!user.value().is_nil() && rows->get(0, 1) != user.value().to_string())) {
            return withdrawal_rejection(Reject::unknown_withdrawal, rid);
          }
          const bool same = rows->get(0, 5) == withdrawal_status_code(status) &&
                            (status != WithdrawalStatus::completed || rows->get(0, 6) == replay_tx);
          if (!same) return withdrawal_rejection(Reject::withdrawal_state, rid);
          json::Writer w;
          write_row(w, *rows, 0);
          auto res = http::Response::json(200, w.take());
          res.set_header("Idempotent-Replay", "true");
          return res;
        });
      }
      return respond(withdrawal_rejection(cr->reason, rid));
    }
    answer_row_later(s, respond, rid, cmd.id, 200);
  };
  submit(s, req, respond, std::move(job));
}

std::optional<Uuid> path_id(const http::Request& req) { return Uuid::parse(req.path_param("id")); }

// The bridge's `next`: the oldest PENDING withdrawal, then PROCESSING. When another bridge took it
// first (the update refused), the next one, `left` more times.
void take_next(Services& s, http::Respond respond, std::string rid, int left) {
  Job read;
  read.is_read = true;
  read.read = [&s, respond, rid, left](const Engine& e) -> std::function<void()> {
    auto next = e.next_pending_withdrawal();
    return [&s, respond, rid, left, next] {
      if (!next) return respond(http::Response::json(200, "{\"withdrawal\":null}"));
      Job job;
      job.command = UpdateWithdrawal{*next, UserId{}, WithdrawalStatus::processing, SystemClock::instance().now_ms()};
      job.done = [&s, respond, rid, left, id = *next](Result<Outcome> o) {
        if (!o) return respond(http::Response::error(o.error(), rid));
        if (const CommandRejected* cr = rejected_in(*o)) {
          if (left > 0) return take_next(s, respond, rid, left - 1);
          return respond(withdrawal_rejection(cr->reason, rid));
        }
        http::Request blocking;
        blocking.request_id = rid;
        service::respond_blocking(*s.ctx, blocking, respond, [&s, id]() -> Result<http::Response> {
          auto row = answer_row(s, id, 200);
          if (!row) return row.error();
          return http::Response::json(200, "{\"withdrawal\":" + row->body + "}");
        });
      };
      if (!s.host->submit(std::move(job))) respond(http::Response::error(fail(Code::overloaded, "busy, retry shortly"), rid));
    };
  };
  if (!s.host->submit(std::move(read))) respond(http::Response::error(fail(Code::overloaded, "busy, retry shortly"), rid));
}

}  // namespace

void register_withdrawal_routes(Services& s, http::Router& r) {
  r.post("/api/v1/withdrawals", [&s](http::Request& req, http::Respond respond) {
    auto user = caller(req);
    if (!user) return respond(error_response(user.error(), req));
    // Money out of the exchange takes the wallet's own session: an API key (a bot's) may trade, not withdraw.
    if (auto kind = req.header("X-Auth-Kind"); kind && *kind != "session") {
      return respond(error_response(fail(Code::forbidden, "withdrawals need a signed-in session, not an API key"), req));
    }
    auto doc = json::parse_object(req.body, {"amount", "address", "idempotency_key"});
    if (!doc) return respond(error_response(doc.error(), req));
    auto amount = amount_field(*doc);
    if (!amount) return respond(error_response(amount.error(), req));
    if (*amount < s.withdrawal_min) {
      return respond(refusal(400, "BELOW_MIN_WITHDRAWAL", "the smallest withdrawal is " + usdm_text(s.withdrawal_min) + " USDM",
                             "amount", req.request_id));
    }
    auto address = text_field(*doc, "address", 128, true);
    if (!address) return respond(error_response(address.error(), req));
    auto key = text_field(*doc, "idempotency_key", 64, true);
    if (!key) return respond(error_response(key.error(), req));
    const std::string rid = req.request_id;
    // The wallet is a database read: off the I/O thread, then the engine.
    const bool queued = s.ctx->runtime->try_blocking([&s, respond, rid, u = *user, amount = *amount,
                                                      address = *address, key = *key]() mutable {
      auto wallet = wallet_of(s, u);
      if (!wallet) return respond(http::Response::error(wallet.error(), rid));
      if (auto refused = check_address(s, *wallet, address, rid)) return respond(std::move(*refused));
      json::Writer meta;  // the address as stored: lower case (bech32's canonical form; Ethereum's is case-blind)
      meta.begin_object().field("address", lower(address)).field("chain", (*wallet)->chain).key("amount").raw_number(usdm_text(amount));
      meta.end_object();
      const std::int64_t now = SystemClock::instance().now_ms();
      Job job;
      job.command = RequestWithdrawal{Uuid::random_v7(now), u, amount, s.withdrawal_daily_limit, now};
      job.idempotency_key = "withdrawal-request:" + u.value().to_string() + ":" + key;
      job.meta = meta.take();
      job.done = [&s, respond, rid, amount, address](Result<Outcome> o) {
        if (!o) return respond(http::Response::error(o.error(), rid));
        const bool replay = !o->idempotent_replay.empty();
        auto out = json::parse(replay ? o->idempotent_replay : o->outcome_text);
        if (!out || !out->is_object()) return respond(http::Response::error(fail(Code::internal, "no outcome"), rid));
        // A retry with the key answers the first request, but only for the same request.
        const json::Value* request = out->find("request");
        const json::Value* first_amount = request && request->is_object() ? request->find("amount") : nullptr;
        const json::Value* first_address = request && request->is_object() ? request->find("address") : nullptr;
        if (replay && (!first_amount || first_amount->number_text() != usdm_text(amount) || !first_address ||
                       !first_address->is_string() || first_address->as_string() != lower(address))) {
          return respond(refusal(409, "IDEMPOTENCY_KEY_REUSED",
                                 "this idempotency_key was used for another withdrawal", "idempotency_key", rid));
        }
        const json::Value* status = out->find("status");
        if (status && status->is_string() && status->as_string() == "rejected") {
          const json::Value* reason = out->find("reason");
          const std::string code = reason && reason->is_string() ? reason->as_string() : "REJECTED";
          for (auto why : {Reject::withdrawal_limit, Reject::insufficient_balance, Reject::insufficient_margin,
                           Reject::bad_amount, Reject::withdrawal_state, Reject::too_many_withdrawals}) {
            if (code == reject_code(why)) return respond(withdrawal_rejection(why, rid));
          }
          return respond(refusal(422, code, "refused", "", rid));
        }
        const json::Value* id = out->find("withdrawal_id");
        auto uuid = id && id->is_string() ? Uuid::parse(id->as_string()) : std::nullopt;
        if (!uuid) return respond(http::Response::error(fail(Code::internal, "no withdrawal in the outcome"), rid));
        answer_row_later(s, respond, rid, *uuid, replay ? 200 : 201, replay);
      };
      if (!s.host->submit(std::move(job))) {
        respond(http::Response::error(
            s.host->degraded() ? fail(Code::unavailable, "the database is unavailable; nothing was done, retry shortly")
                               : fail(Code::overloaded, "the order queue is full, retry shortly"),
            rid));
      }
    });
    if (!queued) respond(error_response(fail(Code::overloaded, "server busy, retry shortly"), req));
  });

  r.get("/api/v1/withdrawals", [&s](http::Request& req, http::Respond respond) {
    auto user = caller(req);
    if (!user) return respond(error_response(user.error(), req));
    auto p = list_params(req, s.catalog, {"status"});
    if (!p) return respond(error_response(p.error(), req));
    if (p->market) return respond(error_response(fail(Code::unknown_field, "withdrawals are not per market", "symbol"), req));
    if (req.query_param("account")) {
      return respond(error_response(fail(Code::unknown_field, "a vault's account has no withdrawals", "account"), req));
    }
    db::Param before, status;
    if (p->before) {
      auto b = Uuid::parse(*p->before);
      if (!b) return respond(error_response(fail(Code::invalid_field, "before must be a withdrawal id", "before"), req));
      before = b->to_string();
    }
    if (auto st = req.query_param("status"); st && !st->empty()) {
      bool known = false;
      for (auto v : {WithdrawalStatus::pending, WithdrawalStatus::processing, WithdrawalStatus::completed,
                     WithdrawalStatus::rejected, WithdrawalStatus::cancelled}) {
        known |= *st == withdrawal_status_code(v);
      }
      if (!known) return respond(error_response(fail(Code::invalid_field, "unknown status", "status"), req));
      status = std::string(*st);
    }
    respond_projected(s, req.request_id, *user, respond,
                      [&s, u = *user, before, status, limit = p->limit]() -> Result<http::Response> {
                        auto lease = s.ctx->db->acquire();
                        if (!lease) return lease.error();
                        auto rows = (*lease)->exec(kWithdrawals, {u.value().to_string(), status, before, std::to_string(limit)});
                        if (!rows) return rows.error();
                        json::Writer w;
                        w.begin_array();
                        for (int i = 0; i < rows->size(); ++i) write_row(w, *rows, i);
                        w.end_array();
                        auto res = http::Response::json(200, w.take());
                        if (rows->size() == limit) res.set_header("X-Next-Cursor", rows->get(rows->size() - 1, 0));
                        return res;
                      });
  });

  r.del("/api/v1/withdrawals/{id}", [&s](http::Request& req, http::Respond respond) {
    auto user = caller(req);
    if (!user) return respond(error_response(user.error(), req));
    auto id = path_id(req);
    if (!id || id->is_nil()) return respond(error_response(fail(Code::not_found, "no such withdrawal"), req));
    update(s, req, respond, UpdateWithdrawal{*id, *user, WithdrawalStatus::cancelled, SystemClock::instance().now_ms()}, {});
  });

  // The bridge (operator API).
  r.post("/internal/v1/withdrawals/next", [&s](http::Request& req, http::Respond respond) {
    if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
    take_next(s, respond, req.request_id, 3);
  });

  // What the bridge has in a status (PROCESSING: what it took and has not finished, e.g. after
  // its own crash), oldest first; `after` = the last id seen.
  r.get("/internal/v1/withdrawals", [&s](http::Request& req, http::Respond respond) {
    if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
    const std::string status(req.query_param("status").value_or("PROCESSING"));
    bool known = false;
    for (auto v : {WithdrawalStatus::pending, WithdrawalStatus::processing, WithdrawalStatus::completed,
                   WithdrawalStatus::rejected, WithdrawalStatus::cancelled}) {
      known |= status == withdrawal_status_code(v);
    }
    if (!known) return respond(error_response(fail(Code::invalid_field, "unknown status", "status"), req));
    db::Param after;
    if (auto a = req.query_param("after"); a && !a->empty()) {
      auto u = Uuid::parse(*a);
      if (!u) return respond(error_response(fail(Code::invalid_field, "after must be a withdrawal id", "after"), req));
      after = u->to_string();
    }
    service::respond_blocking(*s.ctx, req, respond, [&s, status, after]() -> Result<http::Response> {
      auto lease = s.ctx->db->acquire();
      if (!lease) return lease.error();
      auto rows = (*lease)->exec(kOperatorList, {status, after, "1000"});
      if (!rows) return rows.error();
      json::Writer w;
      w.begin_array();
      for (int i = 0; i < rows->size(); ++i) write_row(w, *rows, i);
      w.end_array();
      return http::Response::json(200, w.take());
    });
  });

  // The bridge finishing one: COMPLETED with the chain's transaction id, or REJECTED with a reason.
  auto finish = [&s](WithdrawalStatus status, std::string_view field, std::size_t max) {
    return [&s, status, field, max](http::Request& req, http::Respond respond) {
      if (auto a = authorize(s, req); !a) return respond(error_response(a.error(), req));
      auto id = path_id(req);
      if (!id || id->is_nil()) return respond(error_response(fail(Code::not_found, "no such withdrawal"), req));
      auto doc = json::parse_object(req.body, {field});
      if (!doc) return respond(error_response(doc.error(), req));
      auto text = text_field(*doc, field, max, true);
      if (!text) return respond(error_response(text.error(), req));
      json::Writer meta;
      meta.begin_object().field(field, *text).end_object();
      update(s, req, respond, UpdateWithdrawal{*id, UserId{}, status, SystemClock::instance().now_ms()}, meta.take(),
             status == WithdrawalStatus::completed ? *text : std::string());
    };
  };
  r.post("/internal/v1/withdrawals/{id}/complete", finish(WithdrawalStatus::completed, "chain_tx_id", 128));
  r.post("/internal/v1/withdrawals/{id}/reject", finish(WithdrawalStatus::rejected, "reason", 200));
}

}  // namespace hydrox::trading
