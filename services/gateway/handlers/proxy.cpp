#include <atomic>

#include "handlers.hpp"

namespace hydrox::gateway {

namespace {

// Hop-by-hop headers (RFC 9110 §7.6.1) are not forwarded; Host and Content-Length are rewritten.
bool hop_by_hop(std::string_view name) {
  for (std::string_view h : {"connection", "keep-alive", "proxy-authenticate",
                             "proxy-authorization", "te", "trailer", "transfer-encoding",
                             "upgrade", "host", "content-length"}) {
    if (http::iequals(name, h)) return true;
  }
  return false;
}

}  // namespace

namespace {
std::atomic<bool> g_legacy_client_auth{false};
}  // namespace

void set_legacy_client_auth(bool on) { g_legacy_client_auth.store(on); }

void strip_identity(http::Request& req) {
  // Identity is the gateway's to set (after authentication), never the client's.
  if (g_legacy_client_auth.load()) return;
  http::remove_header(req.headers, "X-User-ID");
}

http::Handler make_proxy(Upstream to, std::shared_ptr<http::Client> client) {
  return [to = std::move(to), client](http::Request& req, http::Respond respond) {
    strip_identity(req);
    http::OutgoingRequest out;
    out.method = req.method;
    out.target = req.target;
    for (auto& h : req.headers) {
      if (!hop_by_hop(h.name)) out.headers.push_back(std::move(h));
    }
    http::set_header(out.headers, "X-Request-ID", req.request_id);
    http::set_header(out.headers, "X-Forwarded-For", req.remote_addr);
    out.body = std::move(req.body);
    client->request(to.endpoint, std::move(out),
                    [respond, rid = req.request_id, name = to.name](Result<http::Response> r) {
                      if (!r) {
                        Error e = r.error();
                        e.message = name + " service unavailable";
                        respond(http::Response::error(e, rid));
                        return;
                      }
                      http::Response res;
                      res.status = r->status;
                      for (auto& h : r->headers) {
                        if (!hop_by_hop(h.name)) res.headers.push_back(std::move(h));
                      }
                      res.body = std::move(r->body);
                      respond(std::move(res));
                    });
  };
}

}  // namespace hydrox::gateway
