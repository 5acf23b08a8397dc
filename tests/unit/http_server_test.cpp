// The HTTP server and client together over loopback: routing, limits, errors as JSON, timeouts.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <thread>

#include "hydrox/http/client.hpp"
#include "hydrox/http/server.hpp"
#include "hydrox/json/json.hpp"

using namespace hydrox;
using namespace hydrox::http;
using namespace std::chrono_literals;

namespace {

// Raw HTTP over a socket, for requests a well-behaved client would never send.
std::string raw_exchange(std::uint16_t port, const std::string& bytes) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "";
  }
  timeval tv{5, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  for (;;) {
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

class HttpServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    Router router;
    router.get("/hello/{name}", [](Request& req, Respond respond) {
      json::Writer w;
      w.begin_object().field("hello", req.path_param("name")).end_object();
      respond(Response::json(200, w.take()));
    });
    router.post("/echo", [](Request& req, Respond respond) {
      respond(Response::json(200, req.body));
    });
    router.get("/later", [this](Request&, Respond respond) {
      // Answered from another thread, after the handler returned.
      runtime_.try_blocking([respond] {
        std::this_thread::sleep_for(20ms);
        respond(Response::json(200, "{\"late\":true}"));
      });
    });
    router.get("/hop", [this](Request&, Respond respond) {
      // Blocking work on the pool, then the answer from the handler's own IO thread.
      const auto handler_thread = std::this_thread::get_id();
      auto work_thread = std::make_shared<std::thread::id>();
      runtime_.try_blocking(
          [work_thread] { *work_thread = std::this_thread::get_id(); },
          [respond, handler_thread, work_thread] {
            const bool back_home = std::this_thread::get_id() == handler_thread;
            const bool worked_away =
                *work_thread != handler_thread && *work_thread != std::thread::id();
            respond(Response::json(
                200, std::string("{\"back_home\":") + (back_home ? "true" : "false") +
                         ",\"worked_away\":" + (worked_away ? "true" : "false") + "}"));
          });
    });
    router.get("/never", [](Request&, Respond) {});
    router.get("/throws", [](Request&, Respond) -> void { throw std::runtime_error("boom"); });
    ServerOptions options;
    options.address = "127.0.0.1";
    options.handler_timeout = 300ms;
    options.header_timeout = 500ms;
    server_ = std::make_unique<Server>(runtime_, options, std::move(router));
    auto port = server_->start();
    ASSERT_TRUE(port);
    port_ = *port;
    endpoint_ = config::Endpoint{"127.0.0.1", port_, ""};
    thread_ = std::thread([this] { runtime_.run(); });
  }
  void TearDown() override {
    server_->stop(500ms);
    runtime_.stop();
    thread_.join();
  }

  Result<Response> get(std::string target) {
    return client_.request_sync(endpoint_, OutgoingRequest{Method::get, std::move(target), {}, {}});
  }

  Runtime runtime_{Runtime::Options{2, 2, 64}};
  Client client_{runtime_, ClientOptions{}};
  std::unique_ptr<Server> server_;
  std::uint16_t port_ = 0;
  config::Endpoint endpoint_;
  std::thread thread_;
};

std::string error_code_of(const Response& r) {
  auto v = json::parse(r.body);
  if (!v || !v->find("error")) return "<not an error body: " + r.body + ">";
  return v->find("error")->find("code")->as_string();
}

}  // namespace

TEST_F(HttpServerTest, RoutesWithPathParametersAndRequestIds) {
  auto r = get("/hello/world");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 200);
  EXPECT_EQ(r->body, R"({"hello":"world"})");
  auto rid = find_header(r->headers, "X-Request-ID");
  ASSERT_TRUE(rid);
  EXPECT_EQ(rid->size(), 36u);
  // A client's sane request id is kept.
  auto r2 = client_.request_sync(endpoint_, {Method::get, "/hello/x", {{"X-Request-ID", "abc-123"}}, {}});
  EXPECT_EQ(*find_header(r2->headers, "X-Request-ID"), "abc-123");
}

TEST_F(HttpServerTest, KeepAliveServesManyRequestsAndAsyncAnswers) {
  for (int i = 0; i < 50; ++i) {
    auto r = get("/hello/" + std::to_string(i));
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 200);
  }
  auto late = get("/later");
  ASSERT_TRUE(late);
  EXPECT_EQ(late->body, "{\"late\":true}");
  auto echo = client_.request_sync(endpoint_, {Method::post, "/echo", {}, "{\"a\":1}"});
  EXPECT_EQ(echo->body, "{\"a\":1}");
  for (int i = 0; i < 20; ++i) {  // connections land on either IO thread
    auto hop = get("/hop");
    ASSERT_TRUE(hop);
    EXPECT_EQ(hop->body, "{\"back_home\":true,\"worked_away\":true}");
  }
}

TEST_F(HttpServerTest, UnknownRouteAndWrongMethodAreJsonErrors) {
  auto r = get("/nope");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 404);
  EXPECT_EQ(error_code_of(*r), "ROUTE_NOT_FOUND");
  EXPECT_EQ(*find_header(r->headers, "Content-Type"), "application/json");
  auto m = client_.request_sync(endpoint_, {Method::del, "/hello/x", {}, {}});
  EXPECT_EQ(m->status, 405);
  EXPECT_EQ(error_code_of(*m), "METHOD_NOT_ALLOWED");
}

TEST_F(HttpServerTest, HandlerFailuresAndTimeoutsAnswerInsteadOfHanging) {
  auto t = get("/throws");
  EXPECT_EQ(t->status, 500);
  EXPECT_EQ(error_code_of(*t), "INTERNAL");
  EXPECT_EQ(t->body.find("boom"), std::string::npos) << "internal detail leaked";
  auto n = get("/never");
  EXPECT_EQ(n->status, 503);
}

TEST_F(HttpServerTest, BodyOverOneMebibyteIs413Json) {
  std::string out = raw_exchange(
      port_, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 1048577\r\n\r\n");
  EXPECT_NE(out.find("HTTP/1.1 413"), std::string::npos) << out;
  EXPECT_NE(out.find("PAYLOAD_TOO_LARGE"), std::string::npos) << out;
  // Exactly the limit is accepted.
  std::string body(1 << 20, 'x');
  auto ok = client_.request_sync(endpoint_, {Method::post, "/echo", {}, body});
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->body.size(), body.size());
}

TEST_F(HttpServerTest, HeadersOver16KibAre431Json) {
  std::string big(17 * 1024, 'a');
  std::string out = raw_exchange(port_, "GET /hello/x HTTP/1.1\r\nHost: x\r\nX-Big: " + big + "\r\n\r\n");
  EXPECT_NE(out.find("HTTP/1.1 431"), std::string::npos) << out.substr(0, 200);
  EXPECT_NE(out.find("HEADERS_TOO_LARGE"), std::string::npos);
}

TEST_F(HttpServerTest, GarbageIs400JsonAndSlowHeadersAreCut) {
  std::string out = raw_exchange(port_, "NOT HTTP AT ALL\r\n\r\n");
  EXPECT_NE(out.find(" 400 "), std::string::npos) << out;
  EXPECT_NE(out.find("BAD_REQUEST"), std::string::npos) << out;
  // A header block that never ends is closed at the header timeout (500 ms here).
  auto started = std::chrono::steady_clock::now();
  std::string slow = raw_exchange(port_, "GET /hello/x HTTP/1.1\r\nHost: x\r\n");
  auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_TRUE(slow.empty()) << slow;
  EXPECT_LT(waited, 3s);
}

TEST(HttpClient, RefusedUpstreamFailsFast) {
  Runtime runtime{Runtime::Options{1, 1, 8}};
  Client client{runtime};
  std::thread t([&] { runtime.run(); });
  auto started = std::chrono::steady_clock::now();
  // Port 1 on loopback: nothing listens there.
  auto r = client.request_sync(config::Endpoint{"127.0.0.1", 1, ""}, {Method::get, "/", {}, {}});
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().code, Code::upstream_unavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - started, 2s);
  runtime.stop();
  t.join();
}
