#include "hydrox/service/credentials.hpp"

#include "hydrox/core/clock.hpp"

namespace hydrox::service {

Result<std::optional<auth::Credential>> resolve_credential(Context& ctx, http::Client& client,
                                                           const config::Endpoint& user_service,
                                                           const std::string& hash) {
  auto live = [](std::string_view encoded) -> std::optional<auth::Credential> {
    auto c = auth::decode(encoded);
    if (!c || (c->expires_ms != 0 && c->expires_ms <= SystemClock::instance().now_ms())) return std::nullopt;
    return c;
  };
  auto v = ctx.redis->get(auth::redis_key(hash));
  if (v && *v) return live(**v);
  if (v) {
    auto marker = ctx.redis->get(std::string(auth::kLoadedMarker));
    if (marker && *marker) return std::optional<auth::Credential>();
  }
  auto r = client.request_sync(
      user_service,
      {http::Method::get, "/internal/v1/credentials/" + hash, internal_headers(ctx), {}});
  if (!r || (r->status != 200 && r->status != 404)) return fail(Code::unavailable, "authentication unavailable");
  if (r->status == 404) return std::optional<auth::Credential>();
  return live(r->body);
}

}  // namespace hydrox::service
