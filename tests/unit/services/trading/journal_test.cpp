// The journal's command encoding (services/trading/journal.cpp): every command kind decodes back
// to exactly what was encoded (the journal is what the engine is rebuilt from), and a journal
// entry of a kind or value the decoder does not know is an error, never another command.
#include <gtest/gtest.h>

#include <set>

#include "journal.hpp"
#include "pipeline/pipeline_fixture.hpp"

namespace hydrox::trading::test {
namespace {

// Commands compare through their encoding (the structs have no operator==): encode, decode,
// encode again, and the two texts are the same and name the same kind.
void round_trip(const Command& c, const Catalog& catalog) {
  const std::string text = encode_command(c, catalog);
  auto back = decode_command(text, catalog);
  ASSERT_TRUE(back) << text;
  EXPECT_EQ(back->index(), c.index()) << text;
  EXPECT_EQ(encode_command(*back, catalog), text);
}

TEST(Journal, EveryCommandKindRoundTrips) {
  const Catalog catalog = btc_catalog();
  const Uuid id{0x0190000000007000ull, 0x8000000000000042ull};
  PlaceOrder p;
  p.user = user(1);
  p.id = OrderId{id};
  p.type = OrderType::stop_limit;
  p.trigger_price = 960000;
  p.trigger_by = TriggerBy::last;
  p.price = 959000;
  p.qty = 12;
  p.client_order_id = ClientOrderId::from("c-1");
  p.ts_ms = 1234;
  const std::vector<Command> all = {
      p,
      CancelOrder{user(1), OrderId{id}, 5, {}},
      CancelAll{user(1), 0, 6},
      Deposit{user(2), 7 * kUsdm, 7},
      Withdraw{user(2), 3 * kUsdm, 8},
      SetMark{0, 970000, 9},
      SetLeverage{user(3), 0, 7, 10, MarginMode::isolated},
      SettleFunding{0, 3'600'000, -12345, 970001, 11},
      CreateVault{id, user(4), user(5), 200 * kUsdm, 86'400'000, 100'000, 5'000, 10 * kUsdm, 1'000'000 * kUsdm, false, 12},
      VaultDeposit{id, user(6), 50 * kUsdm, 13},
      VaultWithdraw{id, user(6), 25 * kUsdm, 14},
      SetMarketLimits{0, 1000, 100, 1'000'000 * kUsdm, 5'000'000 * kUsdm, 15},
      AmendOrder{user(1), OrderId{id}, 0, 958000, 20, 16, {}},
      SetCancelAfter{user(1), 5000, 17},
      CancelExpired{18},
      AdjustMargin{user(3), 0, -5 * kUsdm, 19},
      SetPositionTpSl{user(3), 0, OrderId{id}, OrderId{Uuid{1, 2}}, 990000, 950000, 0, TriggerBy::mark, 20},
      RequestWithdrawal{id, user(7), 1500 * kUsdm, 5000 * kUsdm, 21},
      UpdateWithdrawal{id, UserId{}, WithdrawalStatus::completed, 22},
      UpdateWithdrawal{id, user(7), WithdrawalStatus::cancelled, 23},
      SetMarketStatus{0, MarketStatus::halted, 0, 24},
      SetMarketStatus{0, MarketStatus::delisted, 980000, 25},
      SetMarketParams{0, 100, 400, 15, 26},
  };
  std::set<std::size_t> kinds;
  for (const Command& c : all) {
    round_trip(c, catalog);
    kinds.insert(c.index());
  }
  EXPECT_EQ(kinds.size(), std::variant_size_v<Command>);  // every kind, so a new one needs a line here
  // The values that matter, spelled out for the newest kinds.
  auto w = decode_command(encode_command(RequestWithdrawal{id, user(7), 1500 * kUsdm, 5000 * kUsdm, 21}, catalog), catalog);
  ASSERT_TRUE(w);
  const auto& rw = std::get<RequestWithdrawal>(*w);
  EXPECT_EQ(std::tuple(rw.id, rw.user, rw.amount, rw.daily_limit, rw.ts_ms), std::tuple(id, user(7), 1500 * kUsdm, 5000 * kUsdm, 21));
  auto d = decode_command(encode_command(SetMarketStatus{0, MarketStatus::delisted, 980000, 25}, catalog), catalog);
  ASSERT_TRUE(d);
  EXPECT_EQ(std::get<SetMarketStatus>(*d).status, MarketStatus::delisted);
  EXPECT_EQ(std::get<SetMarketStatus>(*d).final_price, 980000);
}

TEST(Journal, UnknownKindsAndValuesAreErrors) {
  const Catalog catalog = btc_catalog();
  for (std::string_view bad : {
           R"({"t":"nope","ts":1})",
           R"({"t":"withdrawal_update","id":"00000000-0000-0000-0000-000000000001","user":"00000000-0000-0000-0000-000000000000","status":"PENDING","ts":1})",
           R"({"t":"withdrawal_update","id":"00000000-0000-0000-0000-000000000001","user":"00000000-0000-0000-0000-000000000000","status":"LOST","ts":1})",
           R"({"t":"market_status","market":1,"status":"OPEN","final_price":0,"ts":1})",
           R"({"t":"market_status","market":99,"status":"HALTED","final_price":0,"ts":1})",
           R"({"t":"withdrawal_request","id":"x","user":"00000000-0000-0000-0000-000000000000","amount":1,"daily_limit":0,"ts":1})",
       }) {
    EXPECT_FALSE(decode_command(bad, catalog)) << bad;
  }
}

}  // namespace
}  // namespace hydrox::trading::test
