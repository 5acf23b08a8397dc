#include "trading_app.hpp"

namespace hydrox::trading {

// The engine host (orders, positions, balances, group commit) lands here with issue #4; until
// then the service serves /health, /ready and /metrics.
Result<void> setup(service::Context&) { return {}; }

}  // namespace hydrox::trading
