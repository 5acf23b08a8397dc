#pragma once
// The WebSocket request grammar (api-contract "WebSocket"): a pure parser, shared by the hub and
// its fuzz target. {"method": "SUBSCRIBE"|"UNSUBSCRIBE", "params": [stream, ...], "id": any},
// {"method": "PING"}, {"method": "AUTH", "params": {"token": "..."} | ["..."]}; order entry on
// an authenticated connection: {"method": "order.place", "params": {<POST /orders body>}},
// {"method": "order.cancel", "params": {"id": "<order id>"}},
// {"method": "order.cancel_all", "params": {"symbol"?: "..."}}; and (issue 23) order.cancel with
// {"client_order_id": "..."} instead of the id, {"method": "order.amend", "params": {"id", "symbol",
// "price"?, "amount"?}}, {"method": "order.batch_place", "params": {"orders": [...]}},
// {"method": "order.batch_cancel", "params": {"ids"?: [...], "client_order_ids"?: [...]}},
// {"method": "order.cancel_all_after", "params": {"timeout_ms": n}}: each the REST route's body.
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "hydrox/json/json.hpp"

namespace hydrox::market {

struct WsRequest {
  std::string method;                // PING, AUTH, SUBSCRIBE, UNSUBSCRIBE
  std::optional<json::Value> id;     // echoed in the answer
  std::vector<std::string> streams;  // SUBSCRIBE / UNSUBSCRIBE
  std::string token;                 // AUTH
  std::optional<json::Value> params;  // the REST body (checked by trading as on REST)
  std::string order_id;               // order.cancel, order.amend
  std::string client_order_id;        // order.cancel by the client's id
  std::size_t weight = 1;             // order budget it takes: a batch one per item
  std::string symbol;                 // order.cancel_all (empty: every market)
};
bool order_method(std::string_view method);
struct WsError {
  std::optional<json::Value> id;
  std::string code;  // MALFORMED_REQUEST, UNKNOWN_METHOD
  std::string message;
};

std::variant<WsRequest, WsError> parse_ws_request(std::string_view text);

}  // namespace hydrox::market
