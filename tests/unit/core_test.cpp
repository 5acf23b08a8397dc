#include <gtest/gtest.h>

#include <atomic>
#include <set>
#include <thread>
#include <vector>

#include "hydrox/core/clock.hpp"
#include "hydrox/core/error.hpp"
#include "hydrox/core/handoff.hpp"
#include "hydrox/core/ids.hpp"
#include "hydrox/core/secret.hpp"
#include "hydrox/core/text.hpp"

using namespace hydrox;

TEST(ErrorTable, EveryCodeHasAStatusAndAUniqueStablePublicCode) {
  std::set<std::string_view> seen;
  std::size_t index = 0;
  for (const auto& ci : all_codes()) {
    EXPECT_EQ(static_cast<std::size_t>(ci.code), index++) << ci.api_code;
    EXPECT_GE(ci.http_status, 400) << ci.api_code;
    EXPECT_LE(ci.http_status, 599) << ci.api_code;
    EXPECT_TRUE(seen.insert(ci.api_code).second) << "duplicate " << ci.api_code;
    for (char c : ci.api_code) EXPECT_TRUE((c >= 'A' && c <= 'Z') || c == '_') << ci.api_code;
    EXPECT_EQ(http_status(ci.code), ci.http_status);
    EXPECT_EQ(api_code(ci.code), ci.api_code);
  }
  EXPECT_EQ(index, static_cast<std::size_t>(Code::overloaded) + 1);
}

TEST(ErrorTable, ContractStatusesAreMapped) {
  EXPECT_EQ(http_status(Code::invalid_field), 400);
  EXPECT_EQ(http_status(Code::unauthenticated), 401);
  EXPECT_EQ(http_status(Code::forbidden), 403);
  EXPECT_EQ(http_status(Code::not_found), 404);
  EXPECT_EQ(http_status(Code::method_not_allowed), 405);
  EXPECT_EQ(http_status(Code::conflict), 409);
  EXPECT_EQ(http_status(Code::payload_too_large), 413);
  EXPECT_EQ(http_status(Code::unprocessable), 422);
  EXPECT_EQ(http_status(Code::rate_limited), 429);
  EXPECT_EQ(http_status(Code::headers_too_large), 431);
  EXPECT_EQ(http_status(Code::upstream_unavailable), 503);
}

TEST(Result, ValueThrowsTheErrorAsException) {
  Result<int> r = fail(Code::not_found, "nope", "id");
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error().field, "id");
  try {
    (void)r.value();
    FAIL() << "value() did not throw";
  } catch (const ErrorException& e) {
    EXPECT_EQ(e.error().code, Code::not_found);
  }
}

TEST(Uuid, RoundTripsAndIsVersioned) {
  auto u = Uuid::random_v4();
  auto text = u.to_string();
  ASSERT_EQ(text.size(), 36u);
  EXPECT_EQ(text[14], '4');
  auto back = Uuid::parse(text);
  ASSERT_TRUE(back);
  EXPECT_EQ(*back, u);
  EXPECT_FALSE(Uuid::parse("not-a-uuid"));
  EXPECT_FALSE(Uuid::parse("0123456789abcdef0123456789abcdef0123"));
  EXPECT_TRUE(Uuid::parse("01234567-89AB-cdef-0123-456789abcdef"));
}

TEST(Uuid, V7SortsByTime) {
  auto a = Uuid::random_v7(1'000);
  auto b = Uuid::random_v7(2'000);
  EXPECT_LT(a, b);
  EXPECT_EQ(a.to_string()[14], '7');
}

TEST(StrongId, DistinctTypesCompareByValue) {
  UserId a{Uuid{1, 2}}, b{Uuid{1, 2}};
  EXPECT_EQ(a, b);
  static_assert(!std::is_convertible_v<UserId, OrderId>);
}

TEST(Clock, ManualClockMovesOnlyByHandAndFormatsRfc3339) {
  ManualClock c(1'764'157'120'123);
  EXPECT_EQ(c.now_ms(), 1'764'157'120'123);
  c.advance_ms(877);
  EXPECT_EQ(c.now_s(), 1'764'157'121);
  EXPECT_EQ(format_rfc3339_ms(0), "1970-01-01T00:00:00.000Z");
  EXPECT_EQ(format_rfc3339_ms(1'764'157'120'123), "2025-11-26T11:38:40.123Z");
}

TEST(Handoff, KeepsOrderRefusesWhenFullAndDrainsAfterClose) {
  Handoff<int> h(2);
  EXPECT_TRUE(h.push(1));
  EXPECT_TRUE(h.try_push(2));
  EXPECT_FALSE(h.try_push(3));  // full
  std::vector<int> seen;
  h.for_each([&](int v) { seen.push_back(v); });
  EXPECT_EQ(seen, (std::vector<int>{1, 2}));
  EXPECT_EQ(h.pop(), 1);
  EXPECT_TRUE(h.try_push(4));
  h.close();
  EXPECT_FALSE(h.push(5));
  EXPECT_FALSE(h.try_push(6));
  EXPECT_EQ(h.pop(), 2);  // what was waiting is still delivered after close
  EXPECT_EQ(h.pop(), 4);
  EXPECT_EQ(h.pop(), std::nullopt);
}

TEST(Handoff, PushWaitsForRoomAndPopForAnItem) {
  Handoff<int> h(1);
  ASSERT_TRUE(h.push(0));
  std::atomic<int> pushed{0};
  std::thread producer([&] {
    for (int i = 1; i <= 1000; ++i) {
      h.wait_for_room();
      ASSERT_TRUE(h.push(i));
      pushed.store(i);
    }
    h.close();
  });
  int expected = 0;
  while (auto v = h.pop()) {
    EXPECT_EQ(*v, expected++);
    EXPECT_LE(pushed.load(), expected);  // never more than one item ahead of the consumer
  }
  producer.join();
  EXPECT_EQ(expected, 1001);
}

// Issue 20: the one text rule every user string passes at the edge.
TEST(Text, ValidUtf8WithoutControlCharactersWithinItsLength) {
  EXPECT_FALSE(hydrox::text_problem("plain ascii, é, 日本, 🙂"));
  for (std::string_view bad :
       {std::string_view("a\0b", 3), std::string_view("tab\there"), std::string_view("\x7f"),
        std::string_view("\xc2\x85"), std::string_view("\xc2\x9b"), std::string_view("\xff"),
        std::string_view("\xc3"), std::string_view("\xed\xa0\x80"),
        std::string_view("\xe0\x80\x80"), std::string_view("\xf4\x90\x80\x80")}) {
    EXPECT_TRUE(hydrox::text_problem(bad)) << bad.size();
  }
  EXPECT_TRUE(hydrox::valid_utf8("tab\there, é"));
  EXPECT_FALSE(hydrox::valid_utf8("\xc2\x80\xff"));  // a bad byte after a C1 control is still found
  EXPECT_FALSE(hydrox::valid_utf8("\xed\xa0\x80"));
  EXPECT_EQ(hydrox::utf8_repaired(std::string_view("a\xff"
                                                   "b\0c",
                                                   5)),
            std::string("a\xef\xbf\xbd"
                        "b\0c",
                        7));
  EXPECT_EQ(hydrox::utf8_repaired(std::string_view("a\0", 2), true), "a\xef\xbf\xbd");
  EXPECT_TRUE(hydrox::check_text("abc", "label", 3));
  auto longer = hydrox::check_text("abcd", "label", 3);
  ASSERT_FALSE(longer);
  EXPECT_EQ(longer.error().field, "label");
  EXPECT_FALSE(hydrox::check_text("", "name", 10));
  EXPECT_TRUE(hydrox::check_text("", "description", 10, true));
}

TEST(Secret, ConstantTimeEqualComparesWholeSecrets) {
  EXPECT_TRUE(hydrox::constant_time_equal("s3cret-token", "s3cret-token"));
  EXPECT_FALSE(hydrox::constant_time_equal("s3cret-tokeN", "s3cret-token"));
  EXPECT_FALSE(hydrox::constant_time_equal("s3cret", "s3cret-token"));
  EXPECT_FALSE(hydrox::constant_time_equal("s3cret-token-and-more", "s3cret-token"));
  EXPECT_FALSE(hydrox::constant_time_equal("", "x"));
}
