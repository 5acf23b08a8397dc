#include <atomic>
#include <chrono>
#include <mutex>
#include <unordered_map>

#include "handlers.hpp"
#include "hydrox/json/json.hpp"

namespace hydrox::gateway {

http::Handler make_health(service::Context& ctx, std::vector<Upstream> upstreams,
                          std::shared_ptr<http::Client> client) {
  // Each call asks every service: rate limited per address (kHealthPerSecond), so that a flood
  // of /health cannot turn into a flood of /ready calls behind the gateway.
  constexpr int kHealthPerSecond = 50;
  auto limit = std::make_shared<AddressWindows>(std::chrono::seconds(1));
  return [&ctx, upstreams = std::move(upstreams), client, limit](http::Request& req,
                                                                 http::Respond respond) {
    if (!limit->take(req.remote_addr, kHealthPerSecond)) {
      auto r = http::Response::error(
          fail(Code::rate_limited, "too many health checks; retry later"), req.request_id);
      r.set_header("Retry-After", "1");
      return respond(std::move(r));
    }
    // One slot per service plus the gateway's own Redis; the last answer completes the request.
    struct State {
      std::mutex mu;
      std::vector<std::pair<std::string, std::string>> results;  // name -> "up" or the reason
      std::size_t pending = 0;
      http::Respond respond;
    };
    auto state = std::make_shared<State>();
    state->respond = std::move(respond);
    state->pending = upstreams.size() + 1;
    state->results.emplace_back("gateway", "");
    for (const auto& u : upstreams) state->results.emplace_back(u.name, "");

    auto finish = [state](std::size_t slot, std::string outcome) {
      std::unique_lock lock(state->mu);
      state->results[slot].second = std::move(outcome);
      if (--state->pending != 0) return;
      bool all_up = true;
      json::Writer w;
      w.begin_object().key("services").begin_object();
      for (const auto& [name, outcome_text] : state->results) {
        all_up = all_up && outcome_text == "up";
        w.field(name, outcome_text == "up" ? "up" : "down");
      }
      w.end_object().key("failing").begin_array();
      for (const auto& [name, outcome_text] : state->results) {
        if (outcome_text != "up") w.string(name);
      }
      w.end_array().key("details").begin_object();
      for (const auto& [name, outcome_text] : state->results) {
        if (outcome_text != "up") w.field(name, outcome_text);
      }
      w.end_object().field("status", all_up ? "ok" : "unavailable").end_object();
      auto respond_now = std::move(state->respond);
      lock.unlock();
      respond_now(http::Response::json(all_up ? 200 : 503, w.take()));
    };

    // The gateway itself: Redis reachable (sessions and rate limits live there).
    bool queued = ctx.runtime->try_blocking([&ctx, finish] {
      auto r = ctx.redis->ping();
      finish(0, r ? "up" : r.error().message);
    });
    if (!queued) finish(0, "gateway overloaded");

    for (std::size_t i = 0; i < upstreams.size(); ++i) {
      http::OutgoingRequest ready{http::Method::get, "/ready", {{"X-Request-ID", req.request_id}}, {}};
      client->request(upstreams[i].endpoint, std::move(ready),
                      [finish, slot = i + 1](Result<http::Response> r) {
                        if (!r) {
                          finish(slot, r.error().message);
                        } else if (r->status != 200) {
                          finish(slot, "not ready (" + std::to_string(r->status) + ")");
                        } else {
                          finish(slot, "up");
                        }
                      });
    }
  };
}

}  // namespace hydrox::gateway
