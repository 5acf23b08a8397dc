#include "hydrox/core/error.hpp"

#include <array>
#include <cstdlib>

namespace hydrox {
namespace {

constexpr std::array kCodes{
    CodeInfo{Code::bad_request, 400, "BAD_REQUEST"},
    CodeInfo{Code::malformed_json, 400, "MALFORMED_JSON"},
    CodeInfo{Code::invalid_field, 400, "INVALID_FIELD"},
    CodeInfo{Code::missing_field, 400, "MISSING_FIELD"},
    CodeInfo{Code::unknown_field, 400, "UNKNOWN_FIELD"},
    CodeInfo{Code::number_out_of_range, 400, "NUMBER_OUT_OF_RANGE"},
    CodeInfo{Code::too_many_decimals, 400, "TOO_MANY_DECIMALS"},
    CodeInfo{Code::unauthenticated, 401, "UNAUTHENTICATED"},
    CodeInfo{Code::forbidden, 403, "FORBIDDEN"},
    CodeInfo{Code::not_found, 404, "NOT_FOUND"},
    CodeInfo{Code::route_not_found, 404, "ROUTE_NOT_FOUND"},
    CodeInfo{Code::method_not_allowed, 405, "METHOD_NOT_ALLOWED"},
    CodeInfo{Code::conflict, 409, "CONFLICT"},
    CodeInfo{Code::payload_too_large, 413, "PAYLOAD_TOO_LARGE"},
    CodeInfo{Code::unsupported_media_type, 415, "UNSUPPORTED_MEDIA_TYPE"},
    CodeInfo{Code::unprocessable, 422, "UNPROCESSABLE"},
    CodeInfo{Code::rate_limited, 429, "RATE_LIMITED"},
    CodeInfo{Code::headers_too_large, 431, "HEADERS_TOO_LARGE"},
    CodeInfo{Code::internal, 500, "INTERNAL"},
    CodeInfo{Code::unavailable, 503, "SERVICE_UNAVAILABLE"},
    CodeInfo{Code::upstream_unavailable, 503, "UPSTREAM_UNAVAILABLE"},
    CodeInfo{Code::upstream_timeout, 503, "UPSTREAM_TIMEOUT"},
    CodeInfo{Code::overloaded, 503, "OVERLOADED"},
};

constexpr bool table_in_enum_order() {
  for (std::size_t i = 0; i < kCodes.size(); ++i) {
    if (static_cast<std::size_t>(kCodes[i].code) != i) return false;
  }
  return static_cast<std::size_t>(Code::overloaded) + 1 == kCodes.size();
}
static_assert(table_in_enum_order(), "kCodes must list every Code in enum order");

}  // namespace

std::span<const CodeInfo> all_codes() { return kCodes; }

const CodeInfo& info(Code code) { return kCodes[static_cast<std::size_t>(code)]; }
int http_status(Code code) { return info(code).http_status; }
std::string_view api_code(Code code) { return info(code).api_code; }

void throw_exception_from_error(const Error& e, const boost::source_location&) {
  throw ErrorException(e);
}

}  // namespace hydrox
