// WebSocket requests: a request or a stable error code, never anything else.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ws_protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto r = hydrox::market::parse_ws_request(text);
  if (auto* e = std::get_if<hydrox::market::WsError>(&r)) {
    if (e->code != "MALFORMED_REQUEST" && e->code != "UNKNOWN_METHOD") __builtin_trap();
    return 0;
  }
  const auto& q = std::get<hydrox::market::WsRequest>(r);
  if (q.streams.size() > 1000 || q.token.size() > 200) __builtin_trap();
  return 0;
}
