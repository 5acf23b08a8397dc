#pragma once
#include "hydrox/service/service.hpp"

namespace hydrox::trading {

// The trading service's routes and background work (registered into the shared service main).
Result<void> setup(service::Context& ctx);

}  // namespace hydrox::trading
