#pragma once
// The publisher's messages: a committed batch's events as Redis PUBLISH commands, on the
// channels and in the encoding of libs/events (market's hub reads the same header). Public:
// trades, book levels, marks, funding. Private, per user: fills, order updates, positions,
// balances. The publisher thread sends them as one pipeline, best effort.
#include <string>
#include <vector>

#include "markets.hpp"
#include "pipeline/batch.hpp"

namespace hydrox::trading {

std::vector<std::vector<std::string>> publish_commands(const Batch& b, const Catalog& catalog);

}  // namespace hydrox::trading
