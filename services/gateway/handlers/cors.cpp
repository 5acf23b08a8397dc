#include <algorithm>

#include "handlers.hpp"

namespace hydrox::gateway {

http::Middleware make_cors(std::vector<std::string> allowed, bool allow_user_header) {
  // The original web client sends its user id as X-User-ID (legacy mode): a browser sends it only
  // if the preflight allows it.
  std::string allowed_headers = "Authorization, Content-Type, X-Request-ID, Idempotency-Key";
  if (allow_user_header) allowed_headers += ", X-User-ID";
  return [allowed = std::move(allowed), allowed_headers](http::Request& req,
                                                         http::Respond& respond) -> bool {
    auto origin = req.header("Origin");
    if (!origin) return false;
    const bool ok = std::find(allowed.begin(), allowed.end(), *origin) != allowed.end();
    if (req.method == http::Method::options && req.header("Access-Control-Request-Method")) {
      http::Response pre;
      pre.status = ok ? 204 : 403;
      if (ok) {
        pre.set_header("Access-Control-Allow-Origin", *origin);
        pre.set_header("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, OPTIONS");
        pre.set_header("Access-Control-Allow-Headers", allowed_headers);
        pre.set_header("Access-Control-Max-Age", "600");
        pre.set_header("Vary", "Origin");
      } else {
        pre = http::Response::error(fail(Code::forbidden, "origin not allowed"), req.request_id);
      }
      respond(std::move(pre));
      return true;
    }
    if (ok) {
      respond = [inner = std::move(respond), o = std::string(*origin)](http::Response r) {
        r.set_header("Access-Control-Allow-Origin", o);
        r.set_header("Access-Control-Expose-Headers",
                     "X-Request-ID, X-Next-Cursor, RateLimit-Limit, RateLimit-Remaining, "
                     "RateLimit-Reset, Retry-After");
        r.set_header("Vary", "Origin");
        inner(std::move(r));
      };
    }
    return false;
  };
}

}  // namespace hydrox::gateway
