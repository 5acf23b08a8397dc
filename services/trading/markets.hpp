#pragma once
// The trading service uses the shared market catalog (libs/catalog).
#include "hydrox/catalog/catalog.hpp"

namespace hydrox::trading {
using catalog::Catalog;
using catalog::MarketInfo;
using catalog::usdm_text;
}  // namespace hydrox::trading
