// The Redis channels and messages between trading and market (libs/events): names pinned, every
// message round-trips exactly (decimal texts verbatim), and a malformed message decodes to nothing.
#include <gtest/gtest.h>

#include "hydrox/events/events.hpp"

using namespace hydrox::events;

TEST(Events, ChannelNamesArePinnedAndParseBack) {
  EXPECT_EQ(trades_channel("BTC_USDM_PERP"), "hydrox:trades:BTC_USDM_PERP");
  EXPECT_EQ(book_channel("BTC_USDM_PERP"), "hydrox:book:BTC_USDM_PERP");
  EXPECT_EQ(mark_channel("BTC_USDM_PERP"), "hydrox:mark:BTC_USDM_PERP");
  EXPECT_EQ(funding_channel("BTC_USDM_PERP"), "hydrox:funding:BTC_USDM_PERP");
  EXPECT_EQ(index_channel("BTC_USDM_PERP"), "hydrox:index:BTC_USDM_PERP");
  EXPECT_EQ(index_last_key("BTC_USDM_PERP"), "hydrox:index:last:BTC_USDM_PERP");
  const std::string user = "01a250d1-231d-7131-9420-c2ac102b168a";
  EXPECT_EQ(user_channel(user, "fills"), "hydrox:user:" + user + ":fills");
  EXPECT_EQ(hub_patterns(), (std::vector<std::string>{"hydrox:trades:*", "hydrox:book:*",
                                                      "hydrox:mark:*", "hydrox:user:*", "hydrox:market:*"}));
  EXPECT_EQ(market_channel("SOL_USDM_PERP"), "hydrox:market:SOL_USDM_PERP");
  EXPECT_EQ(parse_channel("hydrox:market:SOL_USDM_PERP").symbol, "SOL_USDM_PERP");
  EXPECT_EQ(parse_channel("hydrox:mark:SOL_USDM_PERP").kind, Channel::Kind::mark);

  for (auto [name, kind] : {std::pair{trades_channel("ETH_USDM_PERP"), Channel::Kind::trades},
                            std::pair{book_channel("ETH_USDM_PERP"), Channel::Kind::book},
                            std::pair{mark_channel("ETH_USDM_PERP"), Channel::Kind::mark},
                            std::pair{funding_channel("ETH_USDM_PERP"), Channel::Kind::funding},
                            std::pair{index_channel("ETH_USDM_PERP"), Channel::Kind::index}}) {
    const Channel c = parse_channel(name);
    EXPECT_EQ(c.kind, kind) << name;
    EXPECT_EQ(c.symbol, "ETH_USDM_PERP") << name;
  }
  for (auto kind : kUserKinds) {
    const Channel c = parse_channel(user_channel(user, kind));
    EXPECT_EQ(c.kind, Channel::Kind::user);
    EXPECT_EQ(c.user, user);
    EXPECT_EQ(c.user_kind, kind);
  }
  for (std::string_view bad :
       {"hydrox:trades:",
        "hydrox:user:"
        "x",
        "hydrox:user::orders", "hydrox:user:u:secrets", "other:trades:BTC", ""}) {
    EXPECT_EQ(parse_channel(bad).kind, Channel::Kind::unknown) << bad;
  }
}

TEST(Events, MessagesRoundTripExactly) {
  const TradeMessage trade{4711,  "BTC_USDM_PERP", "97250.5",    "0.004",
                           "Buy", 1796649253,      1796649253929};
  EXPECT_EQ(
      encode(trade),
      R"({"id":4711,"symbol":"BTC_USDM_PERP","price":97250.5,"amount":0.004,"side":"Buy","time":1796649253,"time_ms":1796649253929})");
  EXPECT_EQ(decode_trade(encode(trade)), trade);

  const BookLevelMessage level{12, "BTC_USDM_PERP", false, "97100", "0"};
  EXPECT_EQ(encode(level),
            R"({"seq":12,"symbol":"BTC_USDM_PERP","side":"ask","price":97100,"size":0})");
  EXPECT_EQ(decode_book_level(encode(level)), level);
  const BookLevelMessage bid{13, "ETH_USDM_PERP", true, "3650.25", "12.345"};
  EXPECT_EQ(decode_book_level(encode(bid)), bid);

  const MarkMessage mark{99, "ETH_USDM_PERP", "3650.25", 1796649253000};
  EXPECT_EQ(decode_mark(encode(mark)), mark);
  const MarketMessage halted{101, "SOL_USDM_PERP", "HALTED", "0.0002", "0.0005", 20, "", 1796649253000};
  EXPECT_EQ(decode_market(encode(halted)), halted);
  const MarketMessage delisted{102, "SOL_USDM_PERP", "DELISTED", "0.0002", "0.0005", 20, "181.5", 1796649253000};
  EXPECT_EQ(encode(delisted),
            R"({"seq":102,"symbol":"SOL_USDM_PERP","status":"DELISTED","maker_fee_rate":0.0002,"taker_fee_rate":0.0005,)"
            R"("max_leverage":20,"final_price":181.5,"time_ms":1796649253000})");
  EXPECT_EQ(decode_market(encode(delisted)), delisted);
  EXPECT_FALSE(decode_market(R"({"seq":1,"symbol":"S","status":"OPEN","maker_fee_rate":0,"taker_fee_rate":0,"max_leverage":1,"time_ms":1})"));
  EXPECT_EQ(parse_channel(market_channel("SOL_USDM_PERP")).kind, Channel::Kind::market);
  const FundingMessage funding{100, "BTC_USDM_PERP", 1796652000, "-0.00001250", "97000.1"};
  EXPECT_EQ(decode_funding(encode(funding)), funding);
  const IndexMessage index{"BTC_USDM_PERP", "97001.3", 1796649253000, "oracle:k1"};
  EXPECT_EQ(
      encode(index),
      R"({"symbol":"BTC_USDM_PERP","price":97001.3,"time_ms":1796649253000,"source":"oracle:k1"})");
  EXPECT_EQ(decode_index(encode(index)), index);
}

TEST(Events, MalformedMessagesDecodeToNothing) {
  for (std::string_view bad :
       {"", "null", "[]", "{", "{}",
        R"({"id":"1","symbol":"S","price":1,"amount":1,"side":"Buy","time":1,"time_ms":1})",
        R"({"id":1,"symbol":"S","price":"1","amount":1,"side":"Buy","time":1,"time_ms":1})",
        R"({"id":1,"symbol":"S","price":1,"amount":1,"side":"Buy","time":1})",
        R"({"id":1.5,"symbol":"S","price":1,"amount":1,"side":"Buy","time":1,"time_ms":1})"}) {
    EXPECT_FALSE(decode_trade(bad)) << bad;
  }
  EXPECT_FALSE(decode_book_level(R"({"seq":1,"symbol":"S","side":"both","price":1,"size":1})"));
  EXPECT_FALSE(decode_book_level(R"({"seq":1,"symbol":"S","side":"bid","price":1})"));
  EXPECT_FALSE(decode_mark(R"({"seq":1,"symbol":"S","mark_price":null,"time_ms":1})"));
  EXPECT_FALSE(decode_funding(R"({"seq":1,"symbol":"S","time":1,"rate":1})"));
  EXPECT_FALSE(decode_index(R"({"symbol":"S","price":"97x","time_ms":1})"));
  EXPECT_FALSE(decode_index(R"({"symbol":"S","price":true,"time_ms":1})"));
  EXPECT_TRUE(decode_index(R"({"symbol":"S","price":97000,"time_ms":1})"));  // source is optional
  // An index price may come as a decimal string (as every API input may).
  EXPECT_EQ(decode_index(R"({"symbol":"S","price":"97000.5","time_ms":1,"source":"test"})")->price,
            "97000.5");
}
