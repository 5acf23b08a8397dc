#pragma once
// The command journal: every command the engine applied, in order, as JSON. The engine is
// deterministic, so replaying the journal rebuilds exactly the state that was acknowledged.
#include <string>

#include "hydrox/core/error.hpp"
#include "hydrox/engine/types.hpp"
#include "markets.hpp"

namespace hydrox::trading {

std::string command_kind(const engine::Command& c);
std::string encode_command(const engine::Command& c, const Catalog& catalog);
Result<engine::Command> decode_command(std::string_view json, const Catalog& catalog);

// Names used on the wire (api-contract enums).
std::string_view side_name(engine::Side s);
std::string_view type_name(engine::OrderType t);
std::string_view tif_name(engine::TimeInForce t);
std::string_view status_name(engine::OrderStatus s);

}  // namespace hydrox::trading
