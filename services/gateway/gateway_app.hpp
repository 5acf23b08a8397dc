#pragma once
#include "hydrox/service/service.hpp"

namespace hydrox::gateway {

// Route table, proxy, health aggregation, CORS and the /ws tunnel.
Result<void> setup(service::Context& ctx);

}  // namespace hydrox::gateway
