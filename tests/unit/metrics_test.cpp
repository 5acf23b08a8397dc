#include <gtest/gtest.h>

#include "hydrox/metrics/metrics.hpp"

using namespace hydrox::metrics;

TEST(Metrics, RendersPrometheusText) {
  Registry r;
  r.counter("requests_total", "Requests", {{"route", "/a"}}).inc(3);
  r.counter("requests_total", "Requests", {{"route", "/b"}}).inc();
  EXPECT_EQ(&r.counter("requests_total", "Requests", {{"route", "/a"}}),
            &r.counter("requests_total", "Requests", {{"route", "/a"}}));
  r.gauge("open", "Open").set(-2);
  auto& h = r.histogram("latency_seconds", "Latency");
  h.observe_us(50);
  h.observe_us(3000);
  std::string text = r.render();
  EXPECT_NE(text.find("# TYPE requests_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("requests_total{route=\"/a\"} 3\n"), std::string::npos);
  EXPECT_NE(text.find("requests_total{route=\"/b\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("open -2\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_bucket{le=\"0.000100\"} 1\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_bucket{le=\"0.005000\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_bucket{le=\"+Inf\"} 2\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_sum 0.003050\n"), std::string::npos);
  EXPECT_NE(text.find("latency_seconds_count 2\n"), std::string::npos);
  // HELP and TYPE once per family.
  EXPECT_EQ(text.find("# TYPE requests_total"), text.rfind("# TYPE requests_total"));
}
