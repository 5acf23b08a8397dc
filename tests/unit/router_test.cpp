#include <gtest/gtest.h>

#include "hydrox/http/router.hpp"

using namespace hydrox::http;

namespace {
Handler tag(std::string* out, std::string name) {
  return [out, name](Request&, Respond) { *out = name; };
}
std::string run(const Router& r, Method m, std::string_view path, std::string* out,
                Router::Match* match = nullptr) {
  out->clear();
  auto mt = r.match(m, path);
  if (match) *match = mt;
  if (!mt.handler) return mt.method_not_allowed ? "405" : "404";
  Request req;
  (*mt.handler)(req, [](Response) {});
  return *out;
}
}  // namespace

TEST(Router, LiteralBeatsParameterBeatsWildcard) {
  std::string hit;
  Router r;
  r.get("/api/v1/markets/{symbol}/ticker", tag(&hit, "ticker"));
  r.get("/api/v1/markets/special/ticker", tag(&hit, "special"));
  r.any("/api/v1/markets/*", tag(&hit, "proxy"));
  r.get("/api/v1/markets", tag(&hit, "list"));
  Router::Match m;
  EXPECT_EQ(run(r, Method::get, "/api/v1/markets/BTC_USDM_PERP/ticker", &hit, &m), "ticker");
  ASSERT_EQ(m.params.size(), 1u);
  EXPECT_EQ(m.params[0].first, "symbol");
  EXPECT_EQ(m.params[0].second, "BTC_USDM_PERP");
  EXPECT_EQ(m.pattern, "/api/v1/markets/{symbol}/ticker");
  EXPECT_EQ(run(r, Method::get, "/api/v1/markets/special/ticker", &hit), "special");
  EXPECT_EQ(run(r, Method::get, "/api/v1/markets/BTC/klines", &hit, &m), "proxy");
  EXPECT_EQ(m.params[0].second, "BTC/klines");
  EXPECT_EQ(run(r, Method::get, "/api/v1/markets", &hit), "list");
  EXPECT_EQ(run(r, Method::get, "/api/v1/markets/", &hit), "list");
}

TEST(Router, UnknownPathIs404AndWrongMethodIs405) {
  std::string hit;
  Router r;
  r.get("/health", tag(&hit, "health"));
  r.post("/orders", tag(&hit, "place"));
  r.del("/orders/{id}", tag(&hit, "cancel"));
  EXPECT_EQ(run(r, Method::get, "/nope", &hit), "404");
  EXPECT_EQ(run(r, Method::post, "/health", &hit), "405");
  EXPECT_EQ(run(r, Method::get, "/orders", &hit), "405");
  EXPECT_EQ(run(r, Method::del, "/orders/abc", &hit), "cancel");
  EXPECT_EQ(run(r, Method::del, "/orders/abc/def", &hit), "404");
  EXPECT_EQ(run(r, Method::head, "/health", &hit), "health");
}

TEST(Request, QueryParametersArePercentDecoded) {
  Request req;
  req.query = "symbol=BTC_USDM_PERP&note=a%20b+c&flag&bad=%zz";
  EXPECT_EQ(*req.query_param("symbol"), "BTC_USDM_PERP");
  EXPECT_EQ(*req.query_param("note"), "a b c");
  EXPECT_EQ(*req.query_param("flag"), "");
  EXPECT_FALSE(req.query_param("bad"));
  EXPECT_FALSE(req.query_param("missing"));
  auto names = req.query_names();
  EXPECT_EQ(names.size(), 4u);
}

TEST(Headers, CaseInsensitive) {
  std::vector<Header> h{{"Content-Type", "application/json"}};
  EXPECT_EQ(*find_header(h, "content-type"), "application/json");
  set_header(h, "CONTENT-TYPE", "text/plain");
  EXPECT_EQ(h.size(), 1u);
  remove_header(h, "content-Type");
  EXPECT_TRUE(h.empty());
}
