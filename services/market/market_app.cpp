#include "market_app.hpp"

namespace hydrox::market {

// Market data routes (markets, ticker, klines, trades, order book, funding) and the WebSocket hub
// land here with issue #5; until then the service serves /health, /ready and /metrics.
Result<void> setup(service::Context&) { return {}; }

}  // namespace hydrox::market
