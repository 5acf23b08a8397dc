#pragma once
// Shared pieces of the trading handlers: the service's state, the caller's identity, list
// parameters, and turning engine outcomes into HTTP answers.
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "engine_host.hpp"
#include "mark_funding.hpp"
#include "hydrox/http/message.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/service/service.hpp"
#include "markets.hpp"

namespace hydrox::trading {

struct Services {
  service::Context* ctx = nullptr;
  Catalog catalog;
  std::unique_ptr<EngineHost> host;
  std::string operator_token;  // empty: the operator API is disabled
  std::unique_ptr<redis::Subscriber> index_feed;  // index prices → marks
  std::unique_ptr<MarkFunding> marks;             // mark price and funding clock
  engine::Usdm faucet_amount = 0;
  // Withdrawals: each account's daily limit (0: none), whether any well-formed address is
  // accepted (else only the user's signed-in wallet), the Cardano networks accepted.
  engine::Usdm withdrawal_daily_limit = 0;
  engine::Usdm withdrawal_min = 1'000'000;  // the smallest withdrawal (1 USDM)
  bool withdrawal_any_address = false;
  std::vector<int> cardano_networks{0, 1};
};

// X-User-ID (set by the gateway after authentication): a UUID, else 401.
Result<UserId> caller(const http::Request& req);
// The account a request acts for: the caller's own, or with `account` (a vault id, from the body or
// the query string) the vault's account, for its leader only: 404 for an unknown vault, 403 for
// anyone else.
Result<UserId> acting(const Services& s, const http::Request& req, std::optional<std::string> account = std::nullopt);
// A body's `account` for acting(): nullopt when absent or null; a value that is not a string
// becomes one no vault id parses as (acting() answers 400 naming `account`).
std::optional<std::string> body_account(const json::Value& body);

struct ListParams {
  int limit = 50;
  std::optional<std::string> before;  // cursor: the last id (or sequence) seen
  const MarketInfo* market = nullptr; // optional symbol filter
};
// limit (1..1000, default 50), before, symbol; any other query parameter is a 400.
Result<ListParams> list_params(const http::Request& req, const Catalog& catalog,
                               std::initializer_list<std::string_view> extra_allowed = {});

http::Response error_response(const Error& e, const http::Request& req);
// The operator API's bearer token (OPERATOR_TOKEN): 403 when unset, 401 when missing or wrong.
Result<void> authorize(const Services& s, const http::Request& req);
// A USDM `amount` field: positive, at most 6 decimals, at most 10^9.
Result<engine::Usdm> amount_field(const json::Value& doc);
// A numeric column's text as a plain decimal literal (trailing zeros dropped).
std::string plain(std::string_view numeric);
http::Response json_response(int status, std::string body);

// Read-your-writes for a read of the read tables (orders, fills, positions' times): runs `work` on
// the blocking pool once every command acknowledged that changed `user`'s account is projected.
// Checked at once, then every 5 ms on a timer (no thread waits meanwhile); 503 UNAVAILABLE after
// kProjectionWait, or at once while PostgreSQL is unreachable.
inline constexpr std::chrono::milliseconds kProjectionWait{3000};
void respond_projected(Services& s, std::string request_id, const UserId& user, http::Respond respond,
                       std::function<Result<http::Response>()> work);

// An engine refusal as its answer: 400 for a field's value, 404 for an unknown order, else 422;
// the engine's stable code (e.g. INSUFFICIENT_MARGIN) in the error body.
http::Response rejection_response(engine::Reject r, const http::Request& req);

// Submits a job; a full queue answers 503 at once.
void submit(Services& s, http::Request& req, http::Respond respond, Job job);

void register_order_routes(Services& s, http::Router& r);
void register_position_routes(Services& s, http::Router& r);
void register_internal_routes(Services& s, http::Router& r);
void register_history_routes(Services& s, http::Router& r);
void register_withdrawal_routes(Services& s, http::Router& r);

}  // namespace hydrox::trading
