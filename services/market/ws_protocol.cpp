#include "ws_protocol.hpp"

#include <algorithm>

namespace hydrox::market {

bool order_method(std::string_view method) {
  return method == "order.place" || method == "order.cancel" || method == "order.cancel_all" ||
         method == "order.amend" || method == "order.batch_place" || method == "order.batch_cancel" ||
         method == "order.cancel_all_after";
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
    auto str = [&](std::string_view key) -> const json::Value* {
      const json::Value* v = params->find(key);
      return v && v->is_string() && !v->as_string().empty() && v->as_string().size() <= 64 ? v : nullptr;
    };
    if (r.method == "order.place" || r.method == "order.cancel_all_after") {
      r.params = *params;
    } else if (r.method == "order.batch_place" || r.method == "order.batch_cancel") {
      r.params = *params;
      r.weight = 0;
      for (const char* key : {"orders", "ids", "client_order_ids"}) {
        if (const json::Value* list = params->find(key); list && list->is_array()) r.weight += list->items().size();
      }
      r.weight = std::max<std::size_t>(r.weight, 1);
    } else if (r.method == "order.amend") {
      const json::Value* id = str("id");
      if (!id) return WsError{r.id, "MALFORMED_REQUEST", "params.id must be the order id"};
      r.order_id = id->as_string();
      std::vector<json::Member> body;
      for (const auto& m : params->members()) {
        if (m.key != "id") body.push_back(m);
      }
      r.params = json::Value::make_object(std::move(body));
    } else if (r.method == "order.cancel") {
      if (const json::Value* cid = str("client_order_id"); cid && !params->find("id")) {
        r.client_order_id = cid->as_string();
        return r;
      }
      const json::Value* id = str("id");
      if (!id) return WsError{r.id, "MALFORMED_REQUEST", "params.id must be the order id (or client_order_id the client's)"};
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
                   "method must be AUTH, SUBSCRIBE, UNSUBSCRIBE, PING, order.place, order.cancel, order.cancel_all, "
                   "order.amend, order.batch_place, order.batch_cancel or order.cancel_all_after"};
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
