#include "user_app.hpp"

namespace hydrox::user {

// Wallet sign-in, sessions, profile and API keys land here with issue #6; until then the service
// serves /health, /ready and /metrics.
Result<void> setup(service::Context&) { return {}; }

}  // namespace hydrox::user
