#pragma once
// A binary form of the engine's `Snapshot`, for storing it (the trading service keeps one in
// PostgreSQL so that a restart replays only the journal after it). Explicit field by field,
// little-endian, with a format version and a checksum over the body: decoding a truncated,
// altered or other-version blob is an error, never a different state. A snapshot is a cache of
// the journal: whoever gets an error here replays the journal instead.
#include <string>
#include <string_view>

#include "hydrox/core/error.hpp"
#include "hydrox/engine/engine.hpp"

namespace hydrox::engine {

std::string encode_snapshot(const Snapshot& s);
Result<Snapshot> decode_snapshot(std::string_view bytes);

}  // namespace hydrox::engine
