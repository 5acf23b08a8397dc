#include "ws_protocol.hpp"

namespace hydrox::market {

std::variant<WsRequest, WsError> parse_ws_request(std::string_view text) {
  json::Limits limits;
  limits.max_depth = 4;
  limits.max_elements = 1000;
  auto doc = json::parse(text, limits);
  if (!doc || !doc->is_object()) return WsError{std::nullopt, "MALFORMED_REQUEST", "expected a JSON object with method"};
  WsRequest r;
  if (const json::Value* id = doc->find("id")) r.id = *id;
  const json::Value* method = doc->find("method");
  if (!method || !method->is_string()) return WsError{r.id, "MALFORMED_REQUEST", "method is required"};
  r.method = method->as_string();
  if (r.method == "PING") return r;
  const json::Value* params = doc->find("params");
  if (r.method == "AUTH") {
    const json::Value* token = nullptr;
    if (params && params->is_object()) token = params->find("token");
    if (params && params->is_array() && params->items().size() == 1) token = &params->items()[0];
    if (!token || !token->is_string() || token->as_string().empty() || token->as_string().size() > 200) {
      return WsError{r.id, "MALFORMED_REQUEST", "params must carry the token"};
    }
    r.token = token->as_string();
    return r;
  }
  if (r.method != "SUBSCRIBE" && r.method != "UNSUBSCRIBE") {
    return WsError{r.id, "UNKNOWN_METHOD", "method must be AUTH, SUBSCRIBE, UNSUBSCRIBE or PING"};
  }
  if (!params || !params->is_array()) return WsError{r.id, "MALFORMED_REQUEST", "params must be an array of stream names"};
  for (const auto& p : params->items()) {
    if (!p.is_string() || p.as_string().empty() || p.as_string().size() > 128) {
      return WsError{r.id, "MALFORMED_REQUEST", "params must be an array of stream names"};
    }
    r.streams.push_back(p.as_string());
  }
  return r;
}

}  // namespace hydrox::market
