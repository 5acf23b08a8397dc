#pragma once
#include <cstdint>
#include <string_view>

#include "hydrox/core/error.hpp"
#include "hydrox/engine/types.hpp"
#include "hydrox/json/json.hpp"
#include "markets.hpp"

namespace hydrox::trading {

// A client order id (1-36 of A-Z a-z 0-9 _ . : -), else a 400 naming `field`.
Result<engine::ClientOrderId> parse_client_order_id(std::string_view text, std::string_view field);
// "mark" or "last", else a 400 naming trigger_by.
Result<engine::TriggerBy> parse_trigger_by(const json::Value& v);

// The order of a POST /api/v1/orders body for `user`, with a fresh id (UUIDv7 at `now`) and
// timestamp `now`; a 400-class error naming the field otherwise. `account` is accepted (resolved
// by the route) and otherwise ignored here.
Result<engine::PlaceOrder> parse_order(const Catalog& catalog, std::string_view body, const UserId& user, std::int64_t now);
// The same from a parsed object (an item of POST /orders/batch: `account` is the batch's, not
// the item's); unknown fields are refused.
Result<engine::PlaceOrder> parse_order(const Catalog& catalog, const json::Value& order, const UserId& user,
                                       std::int64_t now, bool allow_account = false);

}  // namespace hydrox::trading
