#include "vault_app.hpp"

namespace hydrox::vault {

// Vault routes land here with issue #8; until then the service serves /health, /ready, /metrics.
Result<void> setup(service::Context&) { return {}; }

}  // namespace hydrox::vault
