#include <gtest/gtest.h>

#include "hydrox/config/env.hpp"

using namespace hydrox;
using hydrox::config::Env;

TEST(Env, DefaultsAndValues) {
  Env env({{"PORT", "8081"}, {"FLAG", "true"}, {"EMPTY", ""}});
  EXPECT_EQ(*env.port("PORT", 8080), 8081);
  EXPECT_EQ(*env.port("MISSING", 8080), 8080);
  EXPECT_EQ(*env.port("EMPTY", 8080), 8080);
  EXPECT_TRUE(*env.boolean("FLAG", false));
  EXPECT_EQ(*env.string("MISSING", "x"), "x");
}

TEST(Env, BadValuesNameTheVariable) {
  Env env({{"PORT", "80a"}, {"BIG", "70000"}, {"FLAG", "maybe"}, {"URL", "ftp://x"}});
  auto p = env.port("PORT", 1);
  ASSERT_FALSE(p);
  EXPECT_EQ(p.error().field, "PORT");
  EXPECT_NE(p.error().message.find("PORT must be an integer in 0..65535, got \"80a\""),
            std::string::npos);
  EXPECT_FALSE(env.port("BIG", 1));
  EXPECT_FALSE(env.boolean("FLAG", false));
  auto u = env.endpoint("URL", "http://localhost:1");
  ASSERT_FALSE(u);
  EXPECT_EQ(u.error().field, "URL");
  auto r = env.required("NOPE");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().message, "NOPE must be set");
}

TEST(Endpoint, ParsesServiceUrls) {
  auto e = config::parse_http_url("http://localhost:8081");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->host, "localhost");
  EXPECT_EQ(e->port, 8081);
  EXPECT_EQ(e->base_path, "");
  auto f = config::parse_http_url("http://10.0.0.2/base/");
  ASSERT_TRUE(f);
  EXPECT_EQ(f->port, 80);
  EXPECT_EQ(f->base_path, "/base");
  EXPECT_FALSE(config::parse_http_url("http://:80"));
  EXPECT_FALSE(config::parse_http_url("http://h:0"));
  EXPECT_FALSE(config::parse_http_url("https://h:1"));
}

TEST(Endpoint, ParsesAnActiveAndItsStandbys) {
  auto e = config::parse_http_urls("http://a:8082, http://b:8092");
  ASSERT_TRUE(e);
  EXPECT_EQ(e->to_string(), "http://a:8082");
  ASSERT_EQ(e->standbys.size(), 1u);
  EXPECT_EQ(e->standbys[0].host, "b");
  EXPECT_EQ(e->standbys[0].port, 8092);
  EXPECT_TRUE(config::parse_http_urls("http://a:1")->standbys.empty());
  EXPECT_FALSE(config::parse_http_urls("http://a:1,"));
  EXPECT_FALSE(config::parse_http_urls("http://a:1,https://b:2"));
  config::Env env(std::map<std::string, std::string>{{"U", "http://a:1,http://b:2,http://c:3"}});
  EXPECT_EQ(env.endpoint("U", "")->standbys.size(), 2u);
}
