// hydrox-admin: the operator's command line for trading's internal API.
//   hydrox-admin deposit USER_ID AMOUNT [IDEMPOTENCY_KEY]
//   hydrox-admin withdraw USER_ID AMOUNT IDEMPOTENCY_KEY
//   hydrox-admin withdrawals next                  (the bridge: the oldest PENDING one, now PROCESSING)
//   hydrox-admin withdrawals list [STATUS]           (default PROCESSING: taken and not finished)
//   hydrox-admin market status SYMBOL ACTIVE|HALTED|DELISTED [FINAL_PRICE]
//   hydrox-admin market params SYMBOL MAKER_FEE TAKER_FEE MAX_LEVERAGE   (fees as rates: 0.0002)
//   hydrox-admin withdrawals complete ID CHAIN_TX_ID
//   hydrox-admin withdrawals reject ID REASON
//   hydrox-admin faucet USER_ID
//   hydrox-admin mark SYMBOL PRICE
//   hydrox-admin invariants
//   hydrox-admin api-key USER_ID read|trade [LABEL]      (the user service)
// Environment: TRADING_SERVICE_URL (default http://localhost:8082), USER_SERVICE_URL (default
// http://localhost:8084), OPERATOR_TOKEN (required).
#include <cstdio>
#include <string>
#include <thread>
#include <vector>

#include "hydrox/config/env.hpp"
#include "hydrox/core/ids.hpp"
#include "hydrox/http/client.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/log/log.hpp"

using namespace hydrox;

namespace {

int usage() {
  std::fprintf(stderr,
               "usage: hydrox-admin deposit USER_ID AMOUNT [IDEMPOTENCY_KEY]\n"
               "       hydrox-admin withdraw USER_ID AMOUNT IDEMPOTENCY_KEY\n"
               "       hydrox-admin withdrawals next | list [STATUS] | complete ID CHAIN_TX_ID | reject ID REASON\n"
               "       hydrox-admin market status SYMBOL ACTIVE|HALTED|DELISTED [FINAL_PRICE]\n"
               "       hydrox-admin market params SYMBOL MAKER_FEE TAKER_FEE MAX_LEVERAGE\n"
               "       hydrox-admin faucet USER_ID\n"
               "       hydrox-admin mark SYMBOL PRICE\n"
               "       hydrox-admin invariants\n"
               "       hydrox-admin api-key USER_ID read|trade [LABEL]\n"
               "env:   TRADING_SERVICE_URL (default http://localhost:8082), OPERATOR_TOKEN\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  log::init("admin", log::Level::warn);
  std::vector<std::string> args(argv + 1, argv + argc);
  if (args.empty()) return usage();
  config::Env env;
  auto url = env.endpoint("TRADING_SERVICE_URL", "http://localhost:8082");
  auto token = env.required("OPERATOR_TOKEN");
  if (!url || !token) {
    std::fprintf(stderr, "%s\n", (!url ? url.error() : token.error()).message.c_str());
    return 2;
  }
  http::OutgoingRequest req;
  req.method = http::Method::post;
  json::Writer w;
  const std::string& cmd = args[0];
  if ((cmd == "deposit" && (args.size() == 3 || args.size() == 4)) || (cmd == "withdraw" && args.size() == 4)) {
    req.target = cmd == "deposit" ? "/internal/v1/deposits" : "/internal/v1/withdrawals";
    std::string key = args.size() == 4 ? args[3] : "admin-" + Uuid::random_v4().to_string();
    w.begin_object().field("user_id", args[1]).key("amount").string(args[2]).field("idempotency_key", key).end_object();
  } else if (cmd == "withdrawals" && args.size() == 2 && args[1] == "next") {
    req.target = "/internal/v1/withdrawals/next";
    w.begin_object().end_object();
  } else if (cmd == "withdrawals" && (args.size() == 2 || args.size() == 3) && args[1] == "list") {
    req.method = http::Method::get;
    req.target = "/internal/v1/withdrawals?status=" + (args.size() == 3 ? args[2] : std::string("PROCESSING"));
    if (args.size() == 3 && args[2].find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZ") != std::string::npos) return usage();
  } else if (cmd == "withdrawals" && args.size() == 4 && (args[1] == "complete" || args[1] == "reject")) {
    if (!Uuid::parse(args[2])) {
      std::fprintf(stderr, "not a withdrawal id: %s\n", args[2].c_str());
      return 2;
    }
    req.target = "/internal/v1/withdrawals/" + args[2] + "/" + args[1];
    w.begin_object().field(args[1] == "complete" ? "chain_tx_id" : "reason", args[3]).end_object();
  } else if (cmd == "market" && (args.size() == 4 || args.size() == 5) && args[1] == "status") {
    req.target = "/internal/v1/markets/" + args[2] + "/status";
    w.begin_object().field("status", args[3]);
    if (args.size() == 5) w.key("final_price").string(args[4]);
    w.end_object();
  } else if (cmd == "market" && args.size() == 6 && args[1] == "params") {
    req.target = "/internal/v1/markets/" + args[2] + "/params";
    w.begin_object().key("maker_fee").string(args[3]).key("taker_fee").string(args[4]);
    w.key("max_leverage").raw_number(args[5].find_first_not_of("0123456789") == std::string::npos && !args[5].empty() ? args[5] : "0");
    w.end_object();
  } else if (cmd == "faucet" && args.size() == 2) {
    req.target = "/internal/v1/faucet";
    w.begin_object().field("user_id", args[1]).end_object();
  } else if (cmd == "mark" && args.size() == 3) {
    req.target = "/internal/v1/marks";
    w.begin_object().field("symbol", args[1]).key("mark_price").string(args[2]).end_object();
  } else if (cmd == "api-key" && (args.size() == 3 || args.size() == 4)) {
    auto user_url = env.endpoint("USER_SERVICE_URL", "http://localhost:8084");
    if (!user_url) {
      std::fprintf(stderr, "%s\n", user_url.error().message.c_str());
      return 2;
    }
    *url = *user_url;
    req.target = "/internal/v1/api-keys";
    w.begin_object().field("user_id", args[1]).field("scope", args[2]).field("label", args.size() == 4 ? args[3] : "admin");
    w.end_object();
  } else if (cmd == "invariants" && args.size() == 1) {
    req.method = http::Method::get;
    req.target = "/internal/v1/invariants";
  } else {
    return usage();
  }
  req.body = w.take();
  req.headers = {{"Authorization", "Bearer " + *token}, {"Content-Type", "application/json"}};

  http::Runtime runtime(http::Runtime::Options{1, 1, 16});
  http::Client client(runtime);
  std::thread io([&] { runtime.run(); });
  auto res = client.request_sync(*url, std::move(req));
  runtime.stop();
  io.join();
  if (!res) {
    std::fprintf(stderr, "request failed: %s\n", res.error().message.c_str());
    return 1;
  }
  std::printf("%s\n", res->body.c_str());
  return res->status < 300 ? 0 : 1;
}
