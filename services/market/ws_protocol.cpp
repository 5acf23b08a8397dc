#include "ws_protocol.hpp"

namespace hydrox::market {

bool order_method(std::string_view method) {
  return method == "order.place" || method == "order.cancel" || method == "order.cancel_all";
}

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
  if (order_method(r.method)) {
    if (!params || !params->is_object()) return WsError{r.id, "MALFORMED_REQUEST", "params must be an object"};
    if (r.method == "order.place") {
      r.params = *params;
    } else if (r.method == "order.cancel") {
      const json::Value* id = params->find("id");
      if (!id || !id->is_string() || id->as_string().empty() || id->as_string().size() > 64) {
        return WsError{r.id, "MALFORMED_REQUEST", "params.id must be the order id"};
      }
      r.order_id = id->as_string();
    } else {
      const json::Value* symbol = params->find("symbol");
      if (symbol && (!symbol->is_string() || symbol->as_string().size() > 64)) {
        return WsError{r.id, "MALFORMED_REQUEST", "params.symbol must be a symbol"};
      }
      if (symbol) r.symbol = symbol->as_string();
    }
    return r;
  }
  if (r.method != "SUBSCRIBE" && r.method != "UNSUBSCRIBE") {
    return WsError{r.id, "UNKNOWN_METHOD",
                   "method must be AUTH, SUBSCRIBE, UNSUBSCRIBE, PING, order.place, order.cancel or order.cancel_all"};
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
