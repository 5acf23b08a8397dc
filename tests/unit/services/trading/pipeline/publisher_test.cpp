// services/trading/pipeline/publisher.cpp: a batch's events as the messages market's hub
// decodes (libs/events), on the channels it subscribes to.
#include <gtest/gtest.h>

#include "hydrox/events/events.hpp"
#include "hydrox/json/json.hpp"
#include "pipeline/publisher.hpp"
#include "pipeline_fixture.hpp"

namespace hydrox::trading::test {
namespace {

TEST(Publisher, ATradeIsPublicOnceAndAFillForEachSide) {
  const Catalog catalog = btc_catalog();
  Pipeline p;
  Batch setup;
  p.apply(setup, SetMark{0, 970'000, 1});
  p.apply(setup, Deposit{user(1), 10'000 * kUsdm, 1});
  p.apply(setup, Deposit{user(2), 10'000 * kUsdm, 1});
  Batch b;
  p.apply(b, p.order(1, Side::sell, 970'000, 10, 100));
  p.apply(b, p.order(2, Side::buy, 970'000, 10, 200));
  add_balances(b, p.engine, kFeeAccount);
  const auto cmds = publish_commands(b, catalog);
  int trades = 0, fills = 0, balances = 0, books = 0;
  for (const auto& c : cmds) {
    ASSERT_EQ(c.size(), 3u);
    EXPECT_EQ(c[0], "PUBLISH");
    const auto channel = events::parse_channel(c[1]);
    if (channel.kind == events::Channel::Kind::trades) {
      ++trades;
      auto t = events::decode_trade(c[2]);
      ASSERT_TRUE(t);
      EXPECT_EQ(t->symbol, "BTC_USDM_PERP");
      EXPECT_EQ(t->price, "97000");
      EXPECT_EQ(t->amount, "0.01");
      EXPECT_EQ(t->side, "Buy");
      EXPECT_EQ(t->time_ms, 200);
    } else if (channel.kind == events::Channel::Kind::book) {
      ++books;
      EXPECT_TRUE(events::decode_book_level(c[2]));
    } else if (channel.kind == events::Channel::Kind::user && channel.user_kind == "fills") {
      ++fills;
      auto f = json::parse(c[2]);
      ASSERT_TRUE(f);
      EXPECT_TRUE(f->find("id")->is_string());  // REST's fill shape
      auto time_ms = f->find("time_ms")->as_int(0, INT64_MAX);
      ASSERT_TRUE(time_ms);
      EXPECT_EQ(*time_ms, 200);
    } else if (channel.kind == events::Channel::Kind::user && channel.user_kind == "balances") {
      ++balances;
    }
  }
  EXPECT_EQ(trades, 1);
  EXPECT_EQ(fills, 2);
  EXPECT_EQ(balances, 3);  // maker, taker, fee account
  EXPECT_GE(books, 1);
}

}  // namespace
}  // namespace hydrox::trading::test
