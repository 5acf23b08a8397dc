#pragma once
#include "hydrox/service/service.hpp"

namespace hydrox::user {

// The user service's routes and background work (registered into the shared service main).
Result<void> setup(service::Context& ctx);

}  // namespace hydrox::user
