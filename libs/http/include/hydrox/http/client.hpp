#pragma once
// Keep-alive HTTP/1.1 client pool for service-to-service calls and the gateway's proxy.
// Connect and whole-request timeouts; a refused or silent upstream fails fast with
// upstream_unavailable / upstream_timeout instead of hanging.
#include "hydrox/config/env.hpp"
#include "hydrox/http/message.hpp"
#include "hydrox/http/runtime.hpp"

#include <chrono>
#include <functional>
#include <memory>

namespace hydrox::http {

struct ClientOptions {
  std::chrono::milliseconds connect_timeout{1000};
  std::chrono::milliseconds request_timeout{10'000};
  std::chrono::milliseconds idle_keepalive{20'000};  // below the servers' idle timeout
  std::size_t max_idle_per_host = 256;
  std::size_t max_response_bytes = 64 << 20;
};

struct OutgoingRequest {
  Method method = Method::get;
  std::string target;  // path and query
  std::vector<Header> headers;
  std::string body;
};

class Client {
 public:
  Client(Runtime& runtime, ClientOptions options = {});
  ~Client();
  // Runs on the calling thread's io_context when it is an IO thread of the runtime (so `done` runs
  // there too and the connection it serves never changes threads), else on the runtime's main loop.
  void request(const config::Endpoint& to, OutgoingRequest req,
               std::function<void(Result<Response>)> done);
  // Blocking convenience for tools and tests (not for IO threads).
  Result<Response> request_sync(const config::Endpoint& to, OutgoingRequest req);

  struct Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace hydrox::http
