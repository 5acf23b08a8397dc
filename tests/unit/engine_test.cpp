// Scenarios run on both books (FastBook and ReferenceBook) through the same engine code; every
// step also checks the invariants (Harness::run).
#include <limits>
#include <map>
#include <random>
#include "engine_fixture.hpp"
#include "hydrox/engine/risk.hpp"
#include "hydrox/engine/snapshot_codec.hpp"

using namespace hydrox;
using namespace hydrox::engine;
using namespace hydrox::engine::test;

template <class E>
class EngineTest : public ::testing::Test {
 protected:
  void SetUp() override {
    h.mark(970000);  // 97,000.0
    h.mark(300000, 1);
    for (std::uint64_t u = 1; u <= 4; ++u) h.deposit(u, 100'000 * kUsdm);
  }
  Harness<E> h;
};

using Engines = ::testing::Types<Engine, ReferenceEngine>;
TYPED_TEST_SUITE(EngineTest, Engines);

TYPED_TEST(EngineTest, RestingOrdersMatchInPriceTimePriorityAtTheMakersPrice) {
  auto& h = this->h;
  auto a = h.place(1, Side::sell, 970100, 100);
  auto b = h.place(2, Side::sell, 970050, 100);  // better price, later
  auto c = h.place(3, Side::sell, 970050, 100);  // same price, later still
  EXPECT_EQ(only<OrderUpdated>(a).status, OrderStatus::open);
  auto ev = h.place(4, Side::buy, 970200, 250);
  auto trades = all_of<Trade>(ev);
  ASSERT_EQ(trades.size(), 3u);
  EXPECT_EQ(trades[0].price, 970050);
  EXPECT_EQ(trades[0].maker, user(2));
  EXPECT_EQ(trades[1].price, 970050);
  EXPECT_EQ(trades[1].maker, user(3));
  EXPECT_EQ(trades[2].price, 970100);
  EXPECT_EQ(trades[2].qty, 50);
  EXPECT_EQ(trades[0].taker_side, Side::buy);
  // The taker is filled; user 1's order rests with 50 left.
  auto updates = all_of<OrderUpdated>(ev);
  EXPECT_EQ(updates.back().status, OrderStatus::filled);
  EXPECT_EQ(updates.back().filled, 250);
  auto depth = h.engine.depth(0, Side::sell, 10);
  ASSERT_EQ(depth.size(), 1u);
  EXPECT_EQ(depth[0], std::make_pair(Price{970100}, Qty{50}));
  EXPECT_EQ(h.engine.account(user(4))->positions[0].size, 250);
  EXPECT_EQ(h.engine.account(user(1))->positions[0].size, -50);
}

TYPED_TEST(EngineTest, PartialFillRestsTheRemainderAtItsLimit) {
  auto& h = this->h;
  h.place(1, Side::sell, 970000, 100);
  auto ev = h.place(2, Side::buy, 970000, 300);
  EXPECT_EQ(all_of<Trade>(ev).size(), 1u);
  auto last = all_of<OrderUpdated>(ev).back();
  EXPECT_EQ(last.status, OrderStatus::partially_filled);
  EXPECT_EQ(last.remaining, 200);
  EXPECT_EQ(h.engine.best(0, Side::buy), 970000);
  EXPECT_EQ(h.engine.depth(0, Side::buy, 1)[0].second, 200);
}

TYPED_TEST(EngineTest, IocRemainderIsCancelledNotRested) {
  auto& h = this->h;
  h.place(1, Side::sell, 970000, 100);
  auto ev = h.place(2, Side::buy, 970000, 300, TimeInForce::ioc);
  auto last = all_of<OrderUpdated>(ev).back();
  EXPECT_EQ(last.status, OrderStatus::cancelled);
  EXPECT_EQ(last.cancel_reason, CancelReason::ioc_remainder);
  EXPECT_EQ(last.filled, 100);
  EXPECT_FALSE(h.engine.best(0, Side::buy));
}

TYPED_TEST(EngineTest, FokThatCannotFillIsRejectedAndTouchesNothing) {
  auto& h = this->h;
  h.place(1, Side::sell, 970000, 100);
  h.place(2, Side::sell, 970100, 100);
  const auto asks = h.engine.depth(0, Side::sell, 5);
  const auto bids = h.engine.depth(0, Side::buy, 5);
  const auto resting = h.engine.resting_orders();
  const Account* taker = h.engine.account(user(3));
  const Usdm collateral = taker ? taker->collateral : 0;
  const auto seq = h.engine.last_seq();
  auto ev = h.place(3, Side::buy, 970100, 201, TimeInForce::fok);
  EXPECT_EQ(only<OrderRejected>(ev).reason, Reject::fok_not_fillable);
  // Nothing but the sequence moved (the rejection is the one event): the book on both sides,
  // the resting orders and the taker's collateral are as they were, and no trade happened.
  EXPECT_EQ(ev.size(), 1u);
  EXPECT_EQ(h.engine.last_seq(), seq + 1);
  EXPECT_EQ(h.engine.depth(0, Side::sell, 5), asks);
  EXPECT_EQ(h.engine.depth(0, Side::buy, 5), bids);
  EXPECT_EQ(h.engine.resting_orders(), resting);
  taker = h.engine.account(user(3));
  EXPECT_EQ(taker ? taker->collateral : 0, collateral);
  EXPECT_EQ(asks.size(), 2u);
  auto ok = h.place(3, Side::buy, 970100, 200, TimeInForce::fok);
  EXPECT_EQ(all_of<Trade>(ok).size(), 2u);
  EXPECT_EQ(all_of<OrderUpdated>(ok).back().status, OrderStatus::filled);
}

TYPED_TEST(EngineTest, FokDoesNotCountOwnOrders) {
  auto& h = this->h;
  h.place(3, Side::sell, 970000, 100);  // own order: would be cancelled by STP, not filled
  h.place(1, Side::sell, 970000, 100);
  auto ev = h.place(3, Side::buy, 970000, 150, TimeInForce::fok);
  EXPECT_EQ(only<OrderRejected>(ev).reason, Reject::fok_not_fillable);
}

TYPED_TEST(EngineTest, PostOnlyThatWouldCrossIsRejected) {
  auto& h = this->h;
  h.place(1, Side::sell, 970000, 100);
  auto ev = h.place(2, Side::buy, 970000, 100, TimeInForce::post_only);
  EXPECT_EQ(only<OrderRejected>(ev).reason, Reject::post_only_would_cross);
  auto ok = h.place(2, Side::buy, 969990, 100, TimeInForce::post_only);
  EXPECT_EQ(only<OrderUpdated>(ok).status, OrderStatus::open);
}

TYPED_TEST(EngineTest, MarketOrderStopsAtTheSlippageCap) {
  auto& h = this->h;
  h.place(1, Side::sell, 970000, 100);
  h.place(1, Side::sell, 1'030'000, 100);  // +6.2 %: beyond the default 5 % cap
  auto o = h.order(2, Side::buy, 0, 200);
  o.type = OrderType::market;
  auto ev = h.run(o);
  auto trades = all_of<Trade>(ev);
  ASSERT_EQ(trades.size(), 1u);
  EXPECT_EQ(trades[0].price, 970000);
  auto last = all_of<OrderUpdated>(ev).back();
  EXPECT_EQ(last.status, OrderStatus::cancelled);
  EXPECT_EQ(only<OrderAccepted>(ev).price, 1'018'500);  // 97,000 × 1.05
  // A wider cap per order reaches the second level.
  auto wide = h.order(2, Side::buy, 0, 100);
  wide.type = OrderType::market;
  wide.max_slippage_bps = 700;
  EXPECT_EQ(all_of<Trade>(h.run(wide)).size(), 1u);
}

TYPED_TEST(EngineTest, SelfTradeCancelsTheRestingOrderAndSaysSo) {
  auto& h = this->h;
  h.place(1, Side::sell, 970000, 100);
  h.place(2, Side::sell, 970010, 100);
  auto ev = h.place(1, Side::buy, 970010, 100);
  auto updates = all_of<OrderUpdated>(ev);
  ASSERT_GE(updates.size(), 2u);
  EXPECT_EQ(updates[0].status, OrderStatus::cancelled);
  EXPECT_EQ(updates[0].cancel_reason, CancelReason::self_trade);
  auto trades = all_of<Trade>(ev);
  ASSERT_EQ(trades.size(), 1u);
  EXPECT_EQ(trades[0].maker, user(2));
  EXPECT_EQ(h.engine.account(user(1))->positions[0].size, 100);
}

TYPED_TEST(EngineTest, ReduceOnlyNeverIncreasesAndIsClampedAtFillTime) {
  auto& h = this->h;
  auto ro = h.order(1, Side::sell, 970000, 100);
  ro.reduce_only = true;
  EXPECT_EQ(only<OrderRejected>(h.run(ro)).reason, Reject::reduce_only_would_increase);
  h.place(2, Side::sell, 970000, 100);
  h.place(1, Side::buy, 970000, 100);  // user 1 long 100
  auto too_big = h.order(1, Side::sell, 970000, 101);
  too_big.reduce_only = true;
  EXPECT_EQ(only<OrderRejected>(h.run(too_big)).reason, Reject::reduce_only_would_increase);
  auto rest = h.order(1, Side::sell, 970500, 100);
  rest.reduce_only = true;
  h.run(rest);  // rests as a reduce-only take-profit
  // The position is closed another way; the resting reduce-only order must not open a short.
  auto close = h.order(1, Side::sell, 969000, 100, TimeInForce::ioc);
  close.reduce_only = true;
  h.place(3, Side::buy, 969000, 100);
  h.run(close);
  EXPECT_EQ(h.engine.account(user(1))->positions[0].size, 0);
  auto ev = h.place(4, Side::buy, 970500, 100);
  EXPECT_TRUE(all_of<Trade>(ev).empty());
  auto updates = all_of<OrderUpdated>(ev);
  EXPECT_EQ(updates[0].cancel_reason, CancelReason::reduce_only);
  EXPECT_EQ(h.engine.account(user(1))->positions[0].size, 0);
}

TYPED_TEST(EngineTest, RepeatedClientOrderIdReturnsTheOriginal) {
  auto& h = this->h;
  auto o = h.order(1, Side::buy, 960000, 100);
  o.client_order_id = ClientOrderId::from("my-order-1");
  h.run(o);
  auto again = h.order(1, Side::buy, 960000, 100);
  again.client_order_id = ClientOrderId::from("my-order-1");
  auto rej = only<OrderRejected>(h.run(again));
  EXPECT_EQ(rej.reason, Reject::duplicate_client_order_id);
  EXPECT_EQ(rej.original, o.id);
  EXPECT_EQ(h.engine.depth(0, Side::buy, 5)[0].second, 100);
  // Another user may use the same client id.
  auto other = h.order(2, Side::buy, 960000, 100);
  other.client_order_id = ClientOrderId::from("my-order-1");
  EXPECT_TRUE(all_of<OrderRejected>(h.run(other)).empty());
  EXPECT_EQ(*h.engine.client_order(user(1), ClientOrderId::from("my-order-1")), o.id);
}

TYPED_TEST(EngineTest, RejectionsCarryStableReasons) {
  auto& h = this->h;
  auto bad_market = h.order(1, Side::buy, 970000, 100);
  bad_market.market = 9;
  EXPECT_EQ(only<OrderRejected>(h.run(bad_market)).reason, Reject::unknown_market);
  EXPECT_EQ(only<OrderRejected>(h.place(1, Side::buy, 970000, 0)).reason, Reject::bad_quantity_lot);
  EXPECT_EQ(only<OrderRejected>(h.place(1, Side::buy, 0, 10)).reason, Reject::bad_price_tick);
  EXPECT_EQ(only<OrderRejected>(h.place(1, Side::buy, 970000, 1)).reason, Reject::below_min_notional);
  EXPECT_EQ(only<OrderRejected>(h.place(1, Side::buy, 2'000'000, 100)).reason, Reject::price_out_of_band);
  auto lev = h.order(1, Side::buy, 970000, 100);
  lev.leverage = 41;
  EXPECT_EQ(only<OrderRejected>(h.run(lev)).reason, Reject::bad_leverage);
  EXPECT_EQ(reject_code(Reject::insufficient_margin), "INSUFFICIENT_MARGIN");
}

TYPED_TEST(EngineTest, InsufficientMarginIsRejectedWithoutSideEffects) {
  auto& h = this->h;
  h.deposit(9, 1000 * kUsdm);
  // 1 BTC at 97,000 with 10x needs 9,700 IM: refused for a 1,000 USDM account.
  auto ev = h.place(9, Side::buy, 970000, 1000);
  EXPECT_EQ(only<OrderRejected>(ev).reason, Reject::insufficient_margin);
  EXPECT_FALSE(h.engine.best(0, Side::buy));
  // 0.1 BTC needs 970 + fee: accepted.
  auto ok = h.place(9, Side::buy, 970000, 100);
  EXPECT_TRUE(all_of<OrderRejected>(ok).empty());
  EXPECT_EQ(h.engine.view(user(9))->order_margin, 970 * kUsdm + 4'850'000);
}

TYPED_TEST(EngineTest, CancelOneAndCancelAll) {
  auto& h = this->h;
  auto o1 = h.order(1, Side::buy, 960000, 100);
  h.run(o1);
  h.place(1, Side::buy, 960100, 100);
  auto o3 = h.order(1, Side::sell, 300100, 100);
  o3.market = 1;
  h.run(o3);
  // Another user's order is unknown to the caller.
  auto foreign = h.run(CancelOrder{user(2), o1.id, 0});
  EXPECT_EQ(only<CommandRejected>(foreign).reason, Reject::unknown_order);
  auto ev = h.run(CancelOrder{user(1), o1.id, 0});
  EXPECT_EQ(only<OrderUpdated>(ev).status, OrderStatus::cancelled);
  EXPECT_EQ(only<CommandRejected>(h.run(CancelOrder{user(1), o1.id, 0})).reason, Reject::unknown_order);
  auto all0 = h.run(CancelAll{user(1), 0, 0});
  EXPECT_EQ(all_of<OrderUpdated>(all0).size(), 1u);
  EXPECT_EQ(h.engine.depth(1, Side::sell, 5).size(), 1u);
  auto all = h.run(CancelAll{user(1), -1, 0});
  EXPECT_EQ(all_of<OrderUpdated>(all).size(), 1u);
  EXPECT_EQ(h.engine.view(user(1))->order_margin, 0);
}

TYPED_TEST(EngineTest, WithdrawalsLeaveTheMarginBehind) {
  auto& h = this->h;
  h.deposit(9, 2000 * kUsdm);
  h.place(9, Side::buy, 970000, 100);  // reserves 974.85
  auto too_much = h.run(Withdraw{user(9), 1100 * kUsdm, 0});
  EXPECT_EQ(only<CommandRejected>(too_much).reason, Reject::insufficient_margin);
  auto more_than_cash = h.run(Withdraw{user(9), 2001 * kUsdm, 0});
  EXPECT_EQ(only<CommandRejected>(more_than_cash).reason, Reject::insufficient_balance);
  auto ok = h.run(Withdraw{user(9), 1000 * kUsdm, 0});
  EXPECT_EQ(only<BalanceChanged>(ok).balance, 1000 * kUsdm);
  EXPECT_EQ(h.engine.net_deposits(), 4 * 100'000 * kUsdm + 1000 * kUsdm);
}

// Issue 24: a withdrawal asked for leaves the balance at once and stays in the conserved sum
// until it completes; cancelled (by its user, while pending) or rejected (by the bridge) it comes
// back; every transition outside pending -> processing -> completed is refused.
TYPED_TEST(EngineTest, WithdrawalsInFlightMoveThroughTheirStatuses) {
  auto& h = this->h;
  h.deposit(9, 2000 * kUsdm);
  const Usdm net = h.engine.net_deposits();
  const Uuid a{0xA1, 1}, b{0xA1, 2}, c{0xA1, 3};
  h.place(9, Side::buy, 970000, 100);  // reserves 974.85: free 1,025.15
  EXPECT_EQ(only<CommandRejected>(h.run(RequestWithdrawal{a, user(9), 1100 * kUsdm, 0, 1000})).reason,
            Reject::insufficient_margin);
  EXPECT_EQ(only<CommandRejected>(h.run(RequestWithdrawal{a, user(9), 2001 * kUsdm, 0, 1000})).reason,
            Reject::insufficient_balance);
  // The daily limit counts what was asked for today.
  auto ev = h.run(RequestWithdrawal{a, user(9), 600 * kUsdm, 1000 * kUsdm, 1000});
  EXPECT_EQ(only<BalanceChanged>(ev).balance, 1400 * kUsdm);
  EXPECT_EQ(only<BalanceChanged>(ev).reason, BalanceReason::withdrawal);
  const auto wc = only<WithdrawalChanged>(ev);
  EXPECT_EQ(std::tuple(wc.id, wc.status, wc.amount, wc.pending), std::tuple(a, WithdrawalStatus::pending, 600 * kUsdm, 600 * kUsdm));
  EXPECT_EQ(h.engine.net_deposits(), net);  // still the exchange's
  EXPECT_EQ(only<CommandRejected>(h.run(RequestWithdrawal{b, user(9), 401 * kUsdm, 1000 * kUsdm, 2000})).reason,
            Reject::withdrawal_limit);
  EXPECT_EQ(only<CommandRejected>(h.run(RequestWithdrawal{a, user(9), 1 * kUsdm, 0, 2000})).reason,
            Reject::withdrawal_state);  // the id is taken
  h.run(RequestWithdrawal{b, user(9), 400 * kUsdm, 1000 * kUsdm, 2000});
  EXPECT_EQ(h.engine.account(user(9))->withdrawing, 1000 * kUsdm);
  // The next UTC day has its own limit.
  EXPECT_EQ(only<WithdrawalChanged>(h.run(RequestWithdrawal{c, user(9), 1 * kUsdm, 1000 * kUsdm, 86'400'000})).status,
            WithdrawalStatus::pending);
  EXPECT_EQ(h.engine.next_pending_withdrawal(), std::optional<Uuid>(a));  // the oldest first

  // Another user cannot touch it; its user cannot take it, complete or reject it.
  EXPECT_EQ(only<CommandRejected>(h.run(UpdateWithdrawal{a, user(8), WithdrawalStatus::cancelled, 3000})).reason,
            Reject::unknown_withdrawal);
  for (auto st : {WithdrawalStatus::processing, WithdrawalStatus::completed, WithdrawalStatus::rejected}) {
    EXPECT_EQ(only<CommandRejected>(h.run(UpdateWithdrawal{a, user(9), st, 3000})).reason, Reject::withdrawal_state);
  }
  // The bridge cannot complete one it has not taken, nor cancel one.
  EXPECT_EQ(only<CommandRejected>(h.run(UpdateWithdrawal{a, UserId{}, WithdrawalStatus::completed, 3000})).reason,
            Reject::withdrawal_state);
  EXPECT_EQ(only<CommandRejected>(h.run(UpdateWithdrawal{a, UserId{}, WithdrawalStatus::cancelled, 3000})).reason,
            Reject::withdrawal_state);
  // a: taken, then completed (the money leaves the exchange); b: cancelled by its user (back).
  EXPECT_TRUE(all_of<BalanceChanged>(h.run(UpdateWithdrawal{a, UserId{}, WithdrawalStatus::processing, 3000})).empty());
  EXPECT_EQ(h.engine.next_pending_withdrawal(), std::optional<Uuid>(b));
  EXPECT_EQ(only<CommandRejected>(h.run(UpdateWithdrawal{a, user(9), WithdrawalStatus::cancelled, 3000})).reason,
            Reject::withdrawal_state);
  ev = h.run(UpdateWithdrawal{a, UserId{}, WithdrawalStatus::completed, 4000});
  EXPECT_TRUE(all_of<BalanceChanged>(ev).empty());
  EXPECT_EQ(only<WithdrawalChanged>(ev).status, WithdrawalStatus::completed);
  EXPECT_EQ(h.engine.net_deposits(), net - 600 * kUsdm);
  EXPECT_EQ(only<CommandRejected>(h.run(UpdateWithdrawal{a, UserId{}, WithdrawalStatus::completed, 4000})).reason,
            Reject::unknown_withdrawal);  // finished: no longer in flight
  ev = h.run(UpdateWithdrawal{b, user(9), WithdrawalStatus::cancelled, 5000});
  EXPECT_EQ(only<BalanceChanged>(ev).reason, BalanceReason::withdrawal_returned);
  EXPECT_EQ(only<BalanceChanged>(ev).balance, 1399 * kUsdm);
  // c: rejected by the bridge (back); the collateral is the deposit less what completed.
  ev = h.run(UpdateWithdrawal{c, UserId{}, WithdrawalStatus::rejected, 6000});
  EXPECT_EQ(only<WithdrawalChanged>(ev).pending, 0);
  EXPECT_EQ(h.engine.collateral_of(user(9)), 1400 * kUsdm);
  EXPECT_EQ(h.engine.account(user(9))->withdrawing, 0);
  EXPECT_FALSE(h.engine.next_pending_withdrawal());
}

TYPED_TEST(EngineTest, AnAccountHasAtMostTwentyWithdrawalsInFlight) {
  auto& h = this->h;
  for (std::uint64_t k = 0; k < kMaxWithdrawalsInFlight; ++k) {
    EXPECT_EQ(only<WithdrawalChanged>(h.run(RequestWithdrawal{Uuid{0xB1, k + 1}, user(1), kUsdm, 0, 1000})).status,
              WithdrawalStatus::pending);
  }
  EXPECT_EQ(only<CommandRejected>(h.run(RequestWithdrawal{Uuid{0xB1, 99}, user(1), kUsdm, 0, 1000})).reason,
            Reject::too_many_withdrawals);
  h.run(UpdateWithdrawal{Uuid{0xB1, 1}, UserId{}, WithdrawalStatus::processing, 2000});
  h.run(UpdateWithdrawal{Uuid{0xB1, 1}, UserId{}, WithdrawalStatus::completed, 2000});  // one finished: room again
  EXPECT_EQ(only<WithdrawalChanged>(h.run(RequestWithdrawal{Uuid{0xB1, 99}, user(1), kUsdm, 0, 3000})).status,
            WithdrawalStatus::pending);
  EXPECT_EQ(h.engine.next_pending_withdrawal(), std::optional<Uuid>(Uuid{0xB1, 2}));
}

// ---- the market lifecycle (issue 24) -----------------------------------------------------------

TYPED_TEST(EngineTest, AHaltedMarketTakesCancelsAndClosesOnlyAndItsMarkAndFundingPause) {
  auto& h = this->h;
  h.place(2, Side::sell, 970000, 200);
  h.place(1, Side::buy, 970000, 100);  // user 1 long 0.1
  h.place(3, Side::buy, 970000, 100);  // user 3 long 0.1; user 2 short 0.2
  auto opening = h.order(3, Side::sell, 975000, 100);  // would open user 3 short once flat: not reduce-only
  h.run(opening);
  h.place(4, Side::buy, 960000, 100);
  PlaceOrder close_bid = h.order(2, Side::buy, 969000, 100);  // user 2 closing part of its short
  close_bid.reduce_only = true;
  h.run(close_bid);
  PlaceOrder close_bid2 = h.order(2, Side::buy, 968000, 50);
  close_bid2.reduce_only = true;
  h.run(close_bid2);
  auto ev = h.run(SetMarketStatus{0, MarketStatus::halted, 0, 1000});
  EXPECT_EQ(only<MarketChanged>(ev).status, MarketStatus::halted);
  EXPECT_EQ(h.engine.market_status(0), MarketStatus::halted);
  // What could open a position goes (a close matching it would open its owner's position at a
  // frozen mark); reduce-only orders stay.
  auto cancelled = all_of<OrderUpdated>(ev);
  ASSERT_EQ(cancelled.size(), 2u);
  for (const auto& u : cancelled) EXPECT_EQ(std::tuple(u.status, u.cancel_reason), std::tuple(OrderStatus::cancelled, CancelReason::market_halted));
  EXPECT_EQ(h.engine.order(opening.id), nullptr);
  EXPECT_NE(h.engine.order(close_bid.id), nullptr);
  EXPECT_EQ(only<OrderRejected>(h.place(4, Side::buy, 970000, 10)).reason, Reject::market_halted);
  EXPECT_EQ(only<CommandRejected>(h.run(SetMark{0, 960000, 1000})).reason, Reject::market_halted);
  EXPECT_EQ(h.engine.mark(0), 970000);
  EXPECT_EQ(only<CommandRejected>(h.run(SettleFunding{0, 3'600'000, 100'000, 970000, 1000})).reason, Reject::market_halted);
  EXPECT_EQ(only<CommandRejected>(h.run(AmendOrder{user(2), close_bid.id, 0, 969500, 0, 1000, {}})).reason,
            Reject::market_halted);
  // A close (reduce-only) passes against the reduce-only bid; a cancel passes; the other market trades on.
  PlaceOrder close = h.order(1, Side::sell, 0, 100);
  close.type = OrderType::market;
  close.reduce_only = true;
  EXPECT_EQ(only<Trade>(h.run(close)).price, 969000);
  EXPECT_EQ(h.engine.account(user(1))->positions[0].size, 0);
  EXPECT_EQ(h.engine.account(user(2))->positions[0].size, -100);
  EXPECT_EQ(only<OrderUpdated>(h.run(CancelOrder{user(2), close_bid2.id, 1000})).status, OrderStatus::cancelled);
  PlaceOrder other = h.order(4, Side::buy, 300000, 10);
  other.market = 1;
  EXPECT_EQ(only<OrderUpdated>(h.run(other)).status, OrderStatus::open);
  // Resumed (the time kept for the funding clock): orders, the mark and funding again.
  EXPECT_EQ(only<MarketChanged>(h.run(SetMarketStatus{0, MarketStatus::active, 0, 2000})).status, MarketStatus::active);
  EXPECT_EQ(h.engine.resumed_ms(0), 2000);
  EXPECT_EQ(only<OrderUpdated>(h.place(4, Side::buy, 960000, 10)).status, OrderStatus::open);
  EXPECT_EQ(only<MarkChanged>(h.run(SetMark{0, 960000, 2000})).mark, 960000);
}

// Profit at a halted market's frozen mark does not leave the exchange: the resume or the final
// price may take it back.
TYPED_TEST(EngineTest, ProfitAtAHaltedMarketsFrozenMarkIsNotWithdrawable) {
  auto& h = this->h;
  h.deposit(5, 1'000 * kUsdm);
  h.place(2, Side::sell, 970000, 100);
  h.place(5, Side::buy, 970000, 100);  // user 5 long 0.1 (IM 970 at 10x is more than it has left: lower it)
  h.mark(1070000);                     // +1,000: 0.1 × 10,000
  const Usdm free_now = h.engine.view(user(5))->available;
  ASSERT_GT(free_now, 900 * kUsdm);
  h.run(SetMarketStatus{0, MarketStatus::halted, 0, 1000});
  EXPECT_EQ(only<CommandRejected>(h.run(Withdraw{user(5), 900 * kUsdm, 1000})).reason, Reject::insufficient_margin);
  EXPECT_EQ(only<CommandRejected>(h.run(RequestWithdrawal{Uuid{0xC1, 1}, user(5), 900 * kUsdm, 0, 1000})).reason,
            Reject::insufficient_margin);
  h.run(SetMarketStatus{0, MarketStatus::active, 0, 2000});
  EXPECT_EQ(only<WithdrawalChanged>(h.run(RequestWithdrawal{Uuid{0xC1, 1}, user(5), 900 * kUsdm, 0, 2000})).status,
            WithdrawalStatus::pending);
}

TYPED_TEST(EngineTest, MarketParamsChangeFeesAndALeverageCutIsRefusedWhenUnsafe) {
  auto& h = this->h;
  h.deposit(5, 1'000 * kUsdm);
  h.place(2, Side::sell, 970000, 150);
  PlaceOrder buy = h.order(5, Side::buy, 970000, 150);
  buy.leverage = 20;
  h.run(buy);  // 14,550 notional on ~992: maintenance 1 / (2 × max leverage): 181.9 at 40x, 1,455 at 5x
  const MarketSpec before = h.engine.spec(0);
  EXPECT_EQ(only<CommandRejected>(h.run(SetMarketParams{0, 100, 400, 5, 1000})).reason, Reject::market_param_unsafe);
  EXPECT_EQ(h.engine.spec(0).max_leverage, before.max_leverage);
  EXPECT_EQ(h.engine.spec(0).taker_fee_ppm, before.taker_fee_ppm);
  EXPECT_EQ(only<CommandRejected>(h.run(SetMarketParams{0, -1, 400, 20, 1000})).reason, Reject::bad_amount);
  EXPECT_EQ(only<CommandRejected>(h.run(SetMarketParams{0, 100, 400, 0, 1000})).reason, Reject::bad_leverage);
  // A cut the position can carry: its leverage comes down to the new maximum.
  auto ev = h.run(SetMarketParams{0, 100, 400, 15, 1000});
  const auto mc = only<MarketChanged>(ev);
  EXPECT_EQ(std::tuple(mc.maker_fee_ppm, mc.taker_fee_ppm, mc.max_leverage), std::tuple(100, 400, 15));
  EXPECT_EQ(h.engine.account(user(5))->positions[0].leverage, 15);
  // The new fees on the next trade: taker 0.04 % of 9,700.
  h.place(2, Side::sell, 970000, 100);
  EXPECT_EQ(only<Trade>(h.place(1, Side::buy, 970000, 100)).taker_fee, 3'880'000);
  // A flat account set to 15x, and an order placed at 15x: a cut to 10 caps the one and cancels
  // the other (it reserved a fifteenth where a tenth is needed now); a 10x order stays.
  h.run(SetLeverage{user(3), 0, 15, 2000});
  PlaceOrder high = h.order(3, Side::buy, 960000, 10);
  high.leverage = 15;
  h.run(high);
  PlaceOrder low = h.order(4, Side::buy, 960000, 10);
  low.leverage = 10;
  h.run(low);
  ev = h.run(SetMarketParams{0, 100, 400, 10, 3000});
  EXPECT_EQ(only<OrderUpdated>(ev).cancel_reason, CancelReason::leverage_cut);
  EXPECT_EQ(h.engine.order(high.id), nullptr);
  EXPECT_NE(h.engine.order(low.id), nullptr);
  EXPECT_EQ(h.engine.account(user(3))->positions[0].leverage, 10);
  PlaceOrder dflt = h.order(3, Side::buy, 960000, 10);  // leverage 0: the account's, capped
  EXPECT_EQ(only<OrderAccepted>(h.run(dflt)).leverage, 10);
}

TYPED_TEST(EngineTest, ADelistedMarketSettlesEveryPositionAtTheFinalPriceAndTakesNothingMore) {
  auto& h = this->h;
  h.place(2, Side::sell, 970000, 300);
  h.place(1, Side::buy, 970000, 200);  // user 1 long 0.2
  PlaceOrder iso = h.order(3, Side::buy, 970000, 100);
  iso.margin_mode = MarginMode::isolated;
  h.run(iso);  // user 3 long 0.1 isolated; user 2 short 0.3
  auto open = h.order(4, Side::buy, 950000, 100);
  h.run(open);
  PlaceOrder stop = h.order(1, Side::sell, 0, 200);
  stop.type = OrderType::stop_market;
  stop.trigger_price = 900000;
  stop.reduce_only = true;
  h.run(stop);
  const Usdm c1 = h.engine.collateral_of(user(1)), c2 = h.engine.collateral_of(user(2)),
             c3 = h.engine.collateral_of(user(3)) + h.engine.account(user(3))->positions[0].margin;
  const Usdm fund = h.engine.collateral_of(EngineConfig{}.insurance_account);
  auto ev = h.run(SetMarketStatus{0, MarketStatus::delisted, 980000, 5000});  // +1,000 a BTC
  // Every order cancelled, with the reason.
  int cancelled = 0;
  for (const auto& u : all_of<OrderUpdated>(ev)) {
    EXPECT_EQ(u.cancel_reason, CancelReason::market_delisted);
    cancelled += u.status == OrderStatus::cancelled;
  }
  EXPECT_EQ(cancelled, 2);
  EXPECT_EQ(h.engine.resting_orders(), 0u);
  // Every position closed at 98,000: +200, +100 (and the isolated margin back), -300.
  for (std::uint64_t u : {1, 2, 3}) EXPECT_EQ(h.engine.account(user(u))->positions[0].size, 0);
  EXPECT_EQ(h.engine.collateral_of(user(1)) - c1, 200 * kUsdm);
  EXPECT_EQ(h.engine.collateral_of(user(3)) - c3, 100 * kUsdm);
  EXPECT_EQ(h.engine.collateral_of(user(2)) - c2, -300 * kUsdm);
  EXPECT_EQ(h.engine.collateral_of(EngineConfig{}.insurance_account), fund);  // exact here: no rounding
  EXPECT_EQ(all_of<BalanceChanged>(ev).size(), 3u);
  const auto mc = only<MarketChanged>(ev);
  EXPECT_EQ(std::tuple(mc.status, mc.final_price), std::tuple(MarketStatus::delisted, Price{980000}));
  // Read-only for good: orders, marks, funding, leverage, limits, another status.
  EXPECT_EQ(only<OrderRejected>(h.place(1, Side::buy, 980000, 10)).reason, Reject::market_delisted);
  PlaceOrder ro = h.order(1, Side::sell, 980000, 10);
  ro.reduce_only = true;
  EXPECT_EQ(only<OrderRejected>(h.run(ro)).reason, Reject::market_delisted);
  EXPECT_EQ(only<CommandRejected>(h.run(SetMark{0, 990000, 6000})).reason, Reject::market_delisted);
  EXPECT_EQ(only<CommandRejected>(h.run(SetLeverage{user(1), 0, 5, 6000})).reason, Reject::market_delisted);
  EXPECT_EQ(only<CommandRejected>(h.run(SetMarketStatus{0, MarketStatus::active, 0, 6000})).reason, Reject::market_delisted);
  EXPECT_EQ(only<CommandRejected>(h.run(SetMarketParams{0, 0, 0, 10, 6000})).reason, Reject::market_delisted);
  // A snapshot keeps it so.
  TypeParam copy{two_market_config()};
  auto decoded = decode_snapshot(encode_snapshot(h.engine.export_state()));
  ASSERT_TRUE(decoded);
  copy.load(*decoded);
  EXPECT_EQ(copy.state_hash(), h.engine.state_hash());
  EXPECT_EQ(copy.market_status(0), MarketStatus::delisted);
  std::vector<Event> x;
  copy.apply(SetMark{0, 990000, 7000}, x);
  EXPECT_EQ(only<CommandRejected>(x).reason, Reject::market_delisted);
}

TYPED_TEST(EngineTest, DelistingLiquidatesWhoeverTheFinalPriceTakesBelowMaintenance) {
  auto& h = this->h;
  h.deposit(5, 1'000 * kUsdm);
  h.place(2, Side::sell, 970000, 200);
  PlaceOrder buy = h.order(5, Side::buy, 970000, 200);
  buy.leverage = 20;
  h.run(buy);  // long 0.2 on ~1,000: bankrupt near 92,000
  auto ev = h.run(SetMarketStatus{0, MarketStatus::delisted, 900000, 5000});
  EXPECT_EQ(only<AccountLiquidated>(ev).user, user(5));
  EXPECT_GE(h.engine.view(user(5))->account_value, 0);
  EXPECT_GE(h.engine.collateral_of(EngineConfig{}.insurance_account), 0);
  for (std::uint64_t u : {2, 5}) EXPECT_EQ(h.engine.account(user(u))->positions[0].size, 0);
}

TYPED_TEST(EngineTest, WithdrawalsInFlightSurviveASnapshot) {
  auto& h = this->h;
  h.deposit(9, 2000 * kUsdm);
  h.run(RequestWithdrawal{Uuid{0xA1, 1}, user(9), 600 * kUsdm, 1000 * kUsdm, 1000});
  h.run(RequestWithdrawal{Uuid{0xA1, 2}, user(9), 300 * kUsdm, 1000 * kUsdm, 1000});
  h.run(UpdateWithdrawal{Uuid{0xA1, 2}, UserId{}, WithdrawalStatus::processing, 2000});
  auto decoded = decode_snapshot(encode_snapshot(h.engine.export_state()));
  ASSERT_TRUE(decoded);
  TypeParam copy{two_market_config()};
  copy.load(*decoded);
  EXPECT_EQ(copy.state_hash(), h.engine.state_hash());
  EXPECT_EQ(copy.check_invariants(), "");
  EXPECT_EQ(copy.account(user(9))->withdrawing, 900 * kUsdm);
  // The same behaviour after: the daily limit remembered, the statuses kept.
  std::vector<std::vector<Event>> answers;
  for (const Command& c : std::initializer_list<Command>{
           RequestWithdrawal{Uuid{0xA1, 3}, user(9), 101 * kUsdm, 1000 * kUsdm, 3000},
           UpdateWithdrawal{Uuid{0xA1, 1}, user(9), WithdrawalStatus::cancelled, 3000},
           UpdateWithdrawal{Uuid{0xA1, 2}, UserId{}, WithdrawalStatus::completed, 3000}}) {
    std::vector<Event> x, y;
    h.engine.apply(c, x);
    copy.apply(c, y);
    EXPECT_EQ(x, y);
    answers.push_back(x);
  }
  EXPECT_EQ(only<CommandRejected>(answers[0]).reason, Reject::withdrawal_limit);  // 900 of 1,000 used
  EXPECT_EQ(only<WithdrawalChanged>(answers[1]).status, WithdrawalStatus::cancelled);
  EXPECT_EQ(only<WithdrawalChanged>(answers[2]).status, WithdrawalStatus::completed);
  EXPECT_EQ(copy.state_hash(), h.engine.state_hash());
}

TYPED_TEST(EngineTest, EntryRealizeAndFlipFollowPerpRules) {
  auto& h = this->h;
  // Long 0.5 at 97,000 then 0.5 at 98,000: entry 97,500.
  h.place(2, Side::sell, 970000, 500);
  h.place(1, Side::buy, 970000, 500);
  h.place(2, Side::sell, 980000, 500);
  h.place(1, Side::buy, 980000, 500);
  const Position& p = h.engine.account(user(1))->positions[0];
  EXPECT_EQ(p.size, 1000);
  EXPECT_EQ(p.cost, 97'500 * kUsdm);  // entry = cost / size = 97,500 per BTC
  // Reduce 0.4 at 99,000: realizes (99,000 - 97,500) × 0.4 = 600, entry unchanged.
  h.place(3, Side::buy, 990000, 400);
  auto ev = h.place(1, Side::sell, 990000, 400);
  auto t = only<Trade>(ev);
  EXPECT_EQ(t.taker_realized_pnl, 600 * kUsdm);
  EXPECT_EQ(p.size, 600);
  EXPECT_EQ(p.cost, 58'500 * kUsdm);  // 0.6 × 97,500
  // Flip: sell 1.0 at 96,000: closes 0.6 (realizes -900), opens short 0.4 at 96,000.
  h.place(3, Side::buy, 960000, 1000);
  auto flip = only<Trade>(h.place(1, Side::sell, 960000, 1000));
  EXPECT_EQ(flip.taker_realized_pnl, -900 * kUsdm);
  EXPECT_EQ(p.size, -400);
  EXPECT_EQ(p.cost, -38'400 * kUsdm);
  // The short is a new position: its realized PnL starts at zero (the long's 600 - 900 went to
  // the collateral with the long; issue #21).
  EXPECT_EQ(p.realized_pnl, 0);
}

TYPED_TEST(EngineTest, FeesAreRoundedUpAndPaidToTheFeeAccount) {
  auto& h = this->h;
  const Usdm fee_before = h.engine.account(EngineConfig{}.fee_account)->collateral;
  h.place(1, Side::sell, 970000, 100);
  auto t = only<Trade>(h.place(2, Side::buy, 970000, 100));
  EXPECT_EQ(t.notional, 9'700 * kUsdm);
  EXPECT_EQ(t.maker_fee, 1'940'000);   // 0.02 %
  EXPECT_EQ(t.taker_fee, 4'850'000);   // 0.05 %
  EXPECT_EQ(h.engine.account(EngineConfig{}.fee_account)->collateral - fee_before, 6'790'000);
  // A notional of 1/3 unit per tick·lot: fees round up, never down.
  auto o = h.order(1, Side::sell, 300000, 1);
  o.market = 1;
  h.run(o);
  auto b = h.order(2, Side::buy, 300000, 1);
  b.market = 1;
  auto t2 = only<Trade>(h.run(b));
  EXPECT_EQ(t2.notional, 100000);  // 300000 / 3
  EXPECT_EQ(t2.taker_fee, 50);
  EXPECT_EQ(t2.maker_fee, 20);
}

TYPED_TEST(EngineTest, MarginAndLiquidationPriceWorkedExample) {
  auto& h = this->h;
  // perp-rules: long 0.5 BTC at 97,000, 10x, max 40x: IM 4,850; MM 606.25; available 4,243.75;
  // liquidation price 88,405.06 (88,405.1 at the 0.1 tick, rounded up for a long).
  EXPECT_EQ(h.engine.initial_margin(0, 970000, 500, 10), 4'850 * kUsdm);
  EXPECT_EQ(h.engine.maintenance_margin(0, 970000, 500), 606'250'000);
  const Usdm available = 4'850 * kUsdm - 606'250'000;
  EXPECT_EQ(available, 4'243'750'000);
  EXPECT_EQ(liquidation_price(btc_spec(), 500, 48'500 * kUsdm, available), 884051);
  // A short mirrors it: short 0.5 at 97,000 liquidates above the entry.
  Price short_liq = liquidation_price(btc_spec(), -500, -48'500 * kUsdm, available);
  EXPECT_GT(short_liq, 970000);
  EXPECT_EQ(short_liq, 1053827);  // 97,000 + 4,243.75 / 0.5 / 1.0125 = 105,382.716, rounded down
}

// ---- liquidation and funding (perp-rules "Liquidation", "Funding") ------------------------------

namespace {
const UserId kInsurance = EngineConfig{}.insurance_account;
const UserId kBackstop = EngineConfig{}.backstop_account;

// User 11 long 0.5 BTC at 97,000 with exactly 4,850 USDM of collateral after its taker fee
// (the worked example: liquidation price 88,405.06), user 12 the short on the other side.
template <class H>
void worked_example_position(H& h) {
  h.mark(970000);
  h.deposit(11, 4'850 * kUsdm + 24'250'000);  // + taker fee 0.05 % of 48,500
  h.deposit(12, 100'000 * kUsdm);
  h.place(12, Side::sell, 970000, 500);
  h.place(11, Side::buy, 970000, 500);
  ASSERT_EQ(h.engine.account(user(11))->collateral, 4'850 * kUsdm);
  ASSERT_EQ(h.engine.account(user(11))->positions[0].size, 500);
}
}  // namespace

TYPED_TEST(EngineTest, LiquidationStartsExactlyBelowTheLiquidationPrice) {
  auto& h = this->h;
  worked_example_position(h);
  h.run(Deposit{kBackstop, 1'000'000 * kUsdm, 0});
  h.run(Deposit{kInsurance, 10'000 * kUsdm, 0});
  // 88,405.1 is above 88,405.06: nothing happens.
  auto ev = h.mark(884051);
  EXPECT_TRUE(all_of<AccountLiquidated>(ev).empty());
  EXPECT_EQ(h.engine.account(user(11))->positions[0].size, 500);
  // 88,405.0 is below: liquidated in that step. The book is empty, so the backstop takes the
  // position and the remaining margin over at the mark.
  ev = h.mark(884050);
  auto liq = only<AccountLiquidated>(ev);
  EXPECT_EQ(liq.user, user(11));
  EXPECT_EQ(liq.stage, Liquidation::backstop);
  EXPECT_LT(liq.account_value, liq.maintenance_margin);
  EXPECT_EQ(h.engine.account(user(11))->positions[0].size, 0);
  EXPECT_EQ(h.engine.account(user(11))->collateral, 0);
  EXPECT_EQ(h.engine.account(kBackstop)->positions[0].size, 500);
  auto t = only<Trade>(ev);
  EXPECT_EQ(t.liquidation, Liquidation::backstop);
  EXPECT_EQ(t.price, 884050);
  EXPECT_EQ(t.taker, user(11));
  EXPECT_EQ(t.maker, kBackstop);
  EXPECT_EQ(liq.insurance_paid, 0);
}

TYPED_TEST(EngineTest, LiquidationGoesThroughTheBookFirstAndStopsWhenHealthy) {
  auto& h = this->h;
  worked_example_position(h);
  // Bids below the mark: a liquidation sells into them (a worse price than the mark, better than
  // the bankruptcy price), flagged as such.
  h.deposit(13, 200'000 * kUsdm);
  h.place(13, Side::buy, 880000, 1000);
  auto ev = h.mark(884000);
  auto liq = only<AccountLiquidated>(ev);
  EXPECT_EQ(liq.stage, Liquidation::book);
  auto trades = all_of<Trade>(ev);
  ASSERT_EQ(trades.size(), 1u);
  EXPECT_EQ(trades[0].liquidation, Liquidation::book);
  EXPECT_EQ(trades[0].price, 880000);
  EXPECT_EQ(trades[0].taker, user(11));
  EXPECT_EQ(h.engine.account(user(11))->positions[0].size, 0);
  EXPECT_GE(h.engine.account(user(11))->collateral, 0);
}

TYPED_TEST(EngineTest, LargePositionsAreLiquidatedInSlicesUntilHealthy) {
  auto& h = this->h;
  h.mark(970000);
  // 2 BTC long (194,000 USDM notional > the 100,000 slice limit) at 20x.
  PlaceOrder sell = h.order(12, Side::sell, 970000, 2000);
  h.deposit(12, 500'000 * kUsdm);
  h.run(sell);
  PlaceOrder buy = h.order(11, Side::buy, 970000, 2000);
  buy.leverage = 20;
  h.deposit(11, 9'800 * kUsdm);
  h.run(buy);
  ASSERT_EQ(h.engine.account(user(11))->positions[0].size, 2000);
  // Deep bids: every slice fills.
  h.deposit(13, 500'000 * kUsdm);
  h.place(13, Side::buy, 930000, 5000);
  auto ev = h.mark(932000);
  auto liq = only<AccountLiquidated>(ev);
  EXPECT_EQ(liq.stage, Liquidation::book);
  auto trades = all_of<Trade>(ev);
  ASSERT_GE(trades.size(), 1u);
  EXPECT_EQ(trades[0].qty, 400);  // 20 % of 2,000 lots
  for (const auto& t : trades) EXPECT_EQ(t.liquidation, Liquidation::book);
  // It stopped once the account was back above maintenance: some position is left.
  const Account* a = h.engine.account(user(11));
  auto v = h.engine.view(user(11));
  EXPECT_GT(a->positions[0].size, 0);
  EXPECT_GE(v->account_value, v->maintenance_margin);
}

TYPED_TEST(EngineTest, ShortfallIsPaidByTheInsuranceFund) {
  auto& h = this->h;
  worked_example_position(h);
  h.run(Deposit{kBackstop, 1'000'000 * kUsdm, 0});
  h.run(Deposit{kInsurance, 10'000 * kUsdm, 0});
  // A gap to 80,000: the position lost 8,500 on 4,850 of margin.
  auto ev = h.mark(800000);
  auto liq = only<AccountLiquidated>(ev);
  EXPECT_EQ(liq.stage, Liquidation::backstop);
  EXPECT_EQ(liq.insurance_paid, 3'650 * kUsdm);
  EXPECT_EQ(h.engine.account(user(11))->collateral, 0);
  EXPECT_EQ(h.engine.account(kInsurance)->collateral, 6'350 * kUsdm);
}

TYPED_TEST(EngineTest, EmptyInsuranceFundMeansAutoDeleveragingAtTheBankruptcyPrice) {
  auto& h = this->h;
  worked_example_position(h);
  h.run(Deposit{kInsurance, 1'000 * kUsdm, 0});  // covers part of the 3,650 shortfall
  // No backstop capital: the backstop cannot take it either.
  auto ev = h.mark(800000);
  auto liq = only<AccountLiquidated>(ev);
  EXPECT_EQ(liq.stage, Liquidation::adl);
  EXPECT_EQ(liq.insurance_paid, 1'000 * kUsdm);
  auto t = only<Trade>(ev);
  EXPECT_EQ(t.liquidation, Liquidation::adl);
  EXPECT_EQ(t.maker, user(12));  // the only opposite position
  // Bankruptcy price: 80,000 + 2,650 / 0.5 = 85,300.
  EXPECT_EQ(t.price, 853000);
  EXPECT_EQ(h.engine.account(user(11))->collateral, 0);
  EXPECT_EQ(h.engine.account(user(12))->positions[0].size, 0);
  EXPECT_EQ(h.engine.account(kInsurance)->collateral, 0);
}

TYPED_TEST(EngineTest, FundingWorkedExampleAndExactlyOncePerInterval) {
  auto& h = this->h;
  h.mark(100000);  // 10,000 USDM in ticks of 0.1
  h.deposit(11, 100'000 * kUsdm);
  h.deposit(12, 100'000 * kUsdm);
  h.place(12, Side::sell, 100000, 10000);  // 10 BTC at 10,000
  h.place(11, Side::buy, 100000, 10000);
  const Usdm c1 = h.engine.account(user(11))->collateral, c2 = h.engine.account(user(12))->collateral;
  // perp-rules: index 10,000, impact bid 10,100: P 1 %, F 0.95 %: a 10 BTC long pays 118.75.
  auto ev = h.run(SettleFunding{0, 3'600'000, 9'500'000, 100000, 3'600'000});
  auto paid = all_of<FundingPaid>(ev);
  ASSERT_EQ(paid.size(), 2u);
  EXPECT_EQ(h.engine.account(user(11))->collateral, c1 - 118'750'000);
  EXPECT_EQ(h.engine.account(user(12))->collateral, c2 + 118'750'000);
  EXPECT_EQ(h.engine.account(user(11))->positions[0].funding, 118'750'000);
  auto settled = only<FundingSettled>(ev);
  EXPECT_EQ(settled.paid, settled.received);
  EXPECT_EQ(settled.to_insurance, 0);
  // The same interval again (a retry, a replay after a crash): refused, nobody charged.
  ev = h.run(SettleFunding{0, 3'600'000, 9'500'000, 100000, 3'600'001});
  EXPECT_EQ(only<CommandRejected>(ev).reason, Reject::funding_already_settled);
  EXPECT_EQ(h.engine.account(user(11))->collateral, c1 - 118'750'000);
  // The cap: at most 4 % of notional per interval.
  ev = h.run(SettleFunding{0, 7'200'000, 900'000'000, 100000, 7'200'000});
  EXPECT_EQ(only<FundingSettled>(ev).rate_ppb, kMaxFundingRatePpb);
  EXPECT_EQ(h.engine.account(user(11))->collateral, c1 - 118'750'000 - 4'000 * kUsdm);
}

TYPED_TEST(EngineTest, FundingRemainderGoesToTheInsuranceFund) {
  auto& h = this->h;
  h.mark(100000);
  for (std::uint64_t u = 11; u <= 14; ++u) h.deposit(u, 100'000 * kUsdm);
  // Three longs of 1.001 BTC, one short of 3.003: each long owes 1,251,251.25 units (rounded up
  // to ...252), the short is owed 3,753,753.75 (rounded down to ...753): 3 units left over.
  h.place(14, Side::sell, 100000, 3003);
  for (std::uint64_t u = 11; u <= 13; ++u) h.place(u, Side::buy, 100000, 1001);
  const Usdm ins = h.engine.collateral_of(kInsurance);
  auto ev = h.run(SettleFunding{0, 1000, 1'000'001, 100000, 1000});
  auto s = only<FundingSettled>(ev);
  EXPECT_EQ(s.paid, 3 * 1'251'252);
  EXPECT_EQ(s.received, 3'753'753);
  EXPECT_EQ(s.to_insurance, s.paid - s.received);
  EXPECT_EQ(h.engine.collateral_of(kInsurance) - ins, s.to_insurance);
}

// ---- vaults (perp-rules "Vaults") ------------------------------------------------------------

namespace {
const Uuid kVault{0x5000, 0x8000000000000001ull};
const UserId kVaultAccount{Uuid{0x5001, 0x8000000000000001ull}};
using i128 = __int128;

CreateVault vault_spec(std::uint64_t leader, Usdm initial, std::int64_t ts = 0) {
  CreateVault c;
  c.vault = kVault;
  c.leader = user(leader);
  c.account = kVaultAccount;
  c.initial = initial;
  c.lock_ms = 86'400'000;
  c.performance_fee_ppm = 100'000;
  c.min_deposit = 10 * kUsdm;
  c.capacity = 1'000'000 * kUsdm;
  c.ts_ms = ts;
  return c;
}

template <class E>
Usdm shares_of(const E& e, std::uint64_t u) {
  const Vault* v = e.vault(kVault);
  const Account* a = e.account(user(u));
  if (!v || !a) return 0;
  for (const auto& [ai, h] : v->holders) {
    if (e.user_of(ai) == user(u)) return h.shares;
  }
  return 0;
}
}  // namespace

TYPED_TEST(EngineTest, VaultWorkedExampleFromPerpRules) {
  auto& h = this->h;
  const std::int64_t day = 86'400'000;
  h.deposit(21, 1'000 * kUsdm);
  h.deposit(22, 9'000 * kUsdm);
  h.deposit(23, 6'000 * kUsdm);
  // The leader puts in 1,000 at NAV 1.0; D deposits 9,000.
  auto ev = h.run(vault_spec(21, 1'000 * kUsdm));
  EXPECT_EQ(only<VaultCreated>(ev).vault, kVault);
  h.run(VaultDeposit{kVault, user(22), 9'000 * kUsdm, 1});
  EXPECT_EQ(shares_of(h.engine, 22), 9'000 * kUsdm);
  // NAV rises to 12,000 (a profit of 2,000 arrives in the vault's account): nav 1.2.
  h.run(Deposit{kVaultAccount, 2'000 * kUsdm, 2});
  EXPECT_EQ(h.engine.vault_nav(*h.engine.vault(kVault)), 12'000 * kUsdm);
  // E deposits 6,000 → 5,000 shares.
  h.run(VaultDeposit{kVault, user(23), 6'000 * kUsdm, 3});
  EXPECT_EQ(shares_of(h.engine, 23), 5'000 * kUsdm);
  // D withdraws all 9,000 shares after the lockup: gross 10,800, profit 1,800, fee 180 → D
  // receives 10,620, the leader gets 150 shares, nav stays 1.2.
  const Usdm d_before = h.engine.account(user(22))->collateral;
  ev = h.run(VaultWithdraw{kVault, user(22), 10'800 * kUsdm, day + 1});
  auto w = only<VaultChanged>(ev);
  EXPECT_EQ(w.amount, 10'800 * kUsdm);
  EXPECT_EQ(w.fee, 180 * kUsdm);
  EXPECT_EQ(w.paid, 10'620 * kUsdm);
  EXPECT_EQ(w.shares, 9'000 * kUsdm);
  EXPECT_EQ(w.fee_shares, 150 * kUsdm);
  EXPECT_EQ(h.engine.account(user(22))->collateral - d_before, 10'620 * kUsdm);
  EXPECT_EQ(shares_of(h.engine, 21), 1'150 * kUsdm);
  EXPECT_EQ(shares_of(h.engine, 22), 0);
  const Vault* v = h.engine.vault(kVault);
  EXPECT_EQ(v->total_shares, 6'150 * kUsdm);
  EXPECT_EQ(h.engine.vault_nav(*v), 7'380 * kUsdm);  // 6,150 × 1.2
}

TYPED_TEST(EngineTest, VaultLockupBoundaryLeaderMinimumCapacityAndMinimum) {
  auto& h = this->h;
  const std::int64_t day = 86'400'000;
  h.deposit(21, 1'000 * kUsdm);
  h.deposit(22, 100'000 * kUsdm);
  EXPECT_EQ(only<CommandRejected>(h.run(vault_spec(21, 99 * kUsdm))).reason, Reject::below_min_deposit);
  h.run(vault_spec(21, 1'000 * kUsdm, 0));
  // Below the minimum deposit; beyond what keeps the leader at 5 % (1,000 / 20,000).
  EXPECT_EQ(only<CommandRejected>(h.run(VaultDeposit{kVault, user(22), 9 * kUsdm, 10})).reason, Reject::below_min_deposit);
  EXPECT_EQ(only<CommandRejected>(h.run(VaultDeposit{kVault, user(22), 19'001 * kUsdm, 10})).reason, Reject::leader_minimum);
  h.run(VaultDeposit{kVault, user(22), 19'000 * kUsdm, 10});
  // The lockup: one millisecond before the boundary refused, at it accepted.
  EXPECT_EQ(only<CommandRejected>(h.run(VaultWithdraw{kVault, user(22), 100 * kUsdm, 10 + day - 1})).reason,
            Reject::vault_locked);
  EXPECT_EQ(only<VaultChanged>(h.run(VaultWithdraw{kVault, user(22), 100 * kUsdm, 10 + day})).paid, 100 * kUsdm);
  // The leader cannot go below 5 % while others hold shares.
  EXPECT_EQ(only<CommandRejected>(h.run(VaultWithdraw{kVault, user(21), 100 * kUsdm, 2 * day})).reason,
            Reject::leader_minimum);
  // Capacity (1,000,000 here) counts the vault's value.
  h.deposit(23, 2'000'000 * kUsdm);
  h.deposit(21, 100'000 * kUsdm);
  h.run(VaultDeposit{kVault, user(21), 60'000 * kUsdm, 2 * day});
  EXPECT_EQ(only<CommandRejected>(h.run(VaultDeposit{kVault, user(23), 1'000'000 * kUsdm, 2 * day})).reason,
            Reject::over_capacity);
  EXPECT_EQ(only<CommandRejected>(h.run(VaultDeposit{Uuid{1, 2}, user(23), 10 * kUsdm, 2 * day})).reason,
            Reject::unknown_vault);
}

TEST(EngineVaults, RandomDepositsWithdrawalsAndNavMovesKeepSharesExact) {
  Engine e{two_market_config()};
  std::vector<Event> out;
  auto run = [&](const Command& c) {
    out.clear();
    e.apply(c, out);
    auto err = e.check_invariants();
    EXPECT_EQ(err, "");
    return out;
  };
  run(SetMark{0, 970000, 0});
  run(Deposit{user(1), 100'000 * kUsdm, 0});
  for (std::uint64_t u = 2; u <= 51; ++u) run(Deposit{user(u), 50'000 * kUsdm, 0});
  CreateVault c = vault_spec(1, 50'000 * kUsdm);
  c.lock_ms = 0;
  c.performance_fee_ppm = 150'000;
  run(c);
  std::mt19937_64 rng(11);
  auto pick = [&](std::int64_t lo, std::int64_t hi) { return std::uniform_int_distribution<std::int64_t>(lo, hi)(rng); };
  const Vault* v = e.vault(kVault);
  std::size_t deposits = 0, withdrawals = 0, fees = 0;
  for (int step = 1; step <= 4000; ++step) {
    const Usdm nav = e.vault_nav(*v);
    const Usdm s = v->total_shares;
    const int r = static_cast<int>(pick(0, 9));
    if (r < 2) {  // NAV moves: profits arrive, or losses leave (through the vault's account)
      const Usdm d = pick(1, 3'000) * kUsdm + pick(0, 999'999);
      if (r == 0) run(Deposit{kVaultAccount, d, step}); else run(Withdraw{kVaultAccount, std::min(d, nav / 4), step});
      continue;
    }
    const std::uint64_t u = static_cast<std::uint64_t>(pick(2, 51));
    std::vector<Event> ev;
    if (r < 6) {
      ev = run(VaultDeposit{kVault, user(u), pick(10, 2'000) * kUsdm + pick(0, 999'999), step});
    } else {
      ev = run(VaultWithdraw{kVault, user(u), pick(1, 3'000) * kUsdm + pick(0, 999'999), step});
    }
    for (const auto& x : all_of<VaultChanged>(ev)) {
      if (x.kind == VaultMove::deposit) ++deposits;
      if (x.kind == VaultMove::withdrawal) ++withdrawals;
      if (x.fee > 0) ++fees;
      // NAV per share (1e-6 USDM per share) moves by at most one unit across a deposit or a
      // withdrawal, and never down.
      const i128 before = static_cast<i128>(nav) * 1'000'000 / s;
      const i128 after = static_cast<i128>(x.nav) * 1'000'000 / x.total_shares;
      EXPECT_GE(after, before) << "step " << step;
      EXPECT_LE(after - before, 1) << "step " << step;
    }
    // Every holder's value, to the unit, adds up to the vault's equity (less < 1 unit each).
    const Usdm nav_now = e.vault_nav(*v);
    i128 sum = 0;
    for (const auto& [ai, hold] : v->holders) sum += static_cast<i128>(hold.shares) * nav_now / v->total_shares;
    EXPECT_LE(sum, nav_now);
    EXPECT_GT(sum + static_cast<i128>(v->holders.size()), nav_now);
  }
  EXPECT_GT(deposits, 500u);
  EXPECT_GT(withdrawals, 500u);
  EXPECT_GT(fees, 50u);
  // Vaults survive export/load (the journal-free restart path) exactly.
  Engine copy{two_market_config()};
  copy.load(e.export_state());
  EXPECT_EQ(copy.state_hash(), e.state_hash());
  EXPECT_EQ(copy.vault(kVault)->holders, v->holders);
  // And through the stored form (snapshot_codec): holders, lots, fees and all.
  auto decoded = decode_snapshot(encode_snapshot(e.export_state()));
  ASSERT_TRUE(decoded) << decoded.error().message;
  Engine restored{two_market_config()};
  restored.load(*decoded);
  EXPECT_EQ(restored.state_hash(), e.state_hash());
  EXPECT_TRUE(*restored.vault(kVault) == *v);
}

TYPED_TEST(EngineTest, VaultWithdrawalNeedingMarginCancelsOrdersThenReducesPositionsProRata) {
  auto& h = this->h;
  h.deposit(21, 1'000 * kUsdm);
  h.deposit(22, 9'000 * kUsdm);
  CreateVault c = vault_spec(21, 1'000 * kUsdm);
  c.lock_ms = 0;
  h.run(c);
  h.run(VaultDeposit{kVault, user(22), 9'000 * kUsdm, 1});
  // The vault (10,000 USDM) buys 0.9 BTC at 97,000 at 10x: 8,730 of initial margin in use, and
  // rests a bid that reserves more.
  h.deposit(12, 100'000 * kUsdm);
  h.deposit(13, 500'000 * kUsdm);
  PlaceOrder sell = h.order(12, Side::sell, 970000, 900);
  h.run(sell);
  PlaceOrder buy = h.order(0, Side::buy, 970000, 900);
  buy.user = kVaultAccount;
  h.run(buy);
  PlaceOrder bid = h.order(0, Side::buy, 960000, 10);
  bid.user = kVaultAccount;
  h.run(bid);
  ASSERT_EQ(h.engine.account(kVaultAccount)->positions[0].size, 900);
  ASSERT_EQ(h.engine.account(kVaultAccount)->open_orders, 1u);
  // Bids to sell into.
  h.place(13, Side::buy, 969000, 2000);
  // D takes out half of the vault: its order goes first, then half of the position is sold.
  auto ev = h.run(VaultWithdraw{kVault, user(22), 4'000 * kUsdm, 2});
  auto w = only<VaultChanged>(ev);
  EXPECT_GT(w.paid, 3'900 * kUsdm);
  EXPECT_EQ(h.engine.account(kVaultAccount)->open_orders, 0u);
  const Qty left = h.engine.account(kVaultAccount)->positions[0].size;
  EXPECT_LT(left, 900);
  EXPECT_GE(left, 900 - 900 * 4 / 9 - 1);  // reduced by about the withdrawn fraction, no more
  auto v = h.engine.view(kVaultAccount);
  EXPECT_GE(v->account_value, v->position_margin);
}

TEST(EngineVaults, ManagementFeeAccruesToTheLeaderAsShares) {
  Engine e{two_market_config()};
  std::vector<Event> out;
  e.apply(SetMark{0, 970000, 0}, out);
  e.apply(Deposit{user(1), 100'000 * kUsdm, 0}, out);
  e.apply(Deposit{user(2), 100'000 * kUsdm, 0}, out);
  CreateVault c = vault_spec(1, 10'000 * kUsdm);
  c.management_fee_ppm = 20'000;  // 2 % a year
  c.lock_ms = 0;
  e.apply(c, out);
  e.apply(VaultDeposit{kVault, user(2), 90'000 * kUsdm, 0}, out);
  // Half a year later (any vault command accrues): 1 % of the shares minted to the leader.
  out.clear();
  e.apply(VaultDeposit{kVault, user(2), 10 * kUsdm, 31'557'600'000 / 2}, out);
  auto fees = all_of<VaultChanged>(out);
  ASSERT_EQ(fees.size(), 2u);
  EXPECT_EQ(fees[0].kind, VaultMove::management_fee);
  EXPECT_EQ(fees[0].shares, 1'000 * kUsdm);  // 1 % of 100,000 shares
  EXPECT_EQ(e.check_invariants(), "");
}

// ---- stop and take-profit orders ---------------------------------------------------------------

TYPED_TEST(EngineTest, StopLossWaitsForTheMarkThenEntersAsAMarketOrder) {
  auto& h = this->h;
  h.place(2, Side::sell, 970000, 100);
  h.place(1, Side::buy, 970000, 100);  // user 1 long 0.1
  h.place(3, Side::buy, 940000, 500);  // bids below
  PlaceOrder stop = h.order(1, Side::sell, 0, 100);
  stop.type = OrderType::stop_market;
  stop.trigger_price = 950000;
  stop.reduce_only = true;
  auto ev = h.run(stop);
  EXPECT_EQ(only<OrderAccepted>(ev).trigger_price, 950000);
  EXPECT_EQ(only<OrderUpdated>(ev).status, OrderStatus::untriggered);
  EXPECT_NE(h.engine.order(stop.id), nullptr);
  // Above the trigger nothing happens; at it the order enters and fills against the bid.
  EXPECT_TRUE(all_of<Trade>(h.mark(951000)).empty());
  ev = h.mark(950000);
  auto updates = all_of<OrderUpdated>(ev);
  ASSERT_GE(updates.size(), 2u);
  EXPECT_EQ(updates[0].status, OrderStatus::triggered);
  EXPECT_EQ(updates.back().status, OrderStatus::filled);
  EXPECT_EQ(only<Trade>(ev).price, 940000);
  EXPECT_EQ(h.engine.account(user(1))->positions[0].size, 0);
}

// A shock that takes an account past its stop and below maintenance at once: the stop does not
// sell into the book at any price (it left the account below zero with no position, which no
// liquidation then looked at); the liquidation takes the position and cancels the stop.
TYPED_TEST(EngineTest, AStopOfAnAccountAlreadyBelowMaintenanceLeavesItToTheLiquidation) {
  auto& h = this->h;
  h.deposit(5, 1'000 * kUsdm);
  h.place(2, Side::sell, 970000, 200);
  PlaceOrder buy = h.order(5, Side::buy, 970000, 200);
  buy.leverage = 20;
  h.run(buy);  // long 0.2 (19,400) with ~1,000 of collateral
  PlaceOrder stop = h.order(5, Side::sell, 0, 200);
  stop.type = OrderType::stop_market;
  stop.trigger_price = 960000;
  stop.reduce_only = true;
  h.run(stop);
  h.deposit(6, 100'000 * kUsdm);
  EXPECT_EQ(only<OrderUpdated>(h.place(6, Side::buy, 900000, 200)).status, OrderStatus::open);  // a bid far below
  auto ev = h.mark(910000);  // -6,000 a BTC: the account is worth about -200 at the mark
  for (const auto& t : all_of<Trade>(ev)) EXPECT_NE(t.taker_order, stop.id) << "the stop traded at " << t.price;
  bool stop_cancelled = false;
  for (const auto& u : all_of<OrderUpdated>(ev)) {
    if (u.id == stop.id) stop_cancelled = u.status == OrderStatus::cancelled && u.cancel_reason == CancelReason::liquidation;
  }
  EXPECT_TRUE(stop_cancelled);
  EXPECT_EQ(only<AccountLiquidated>(ev).user, user(5));
  EXPECT_GE(h.engine.view(user(5))->account_value, 0);
}

TYPED_TEST(EngineTest, TakeProfitAndStopLimitDirectionsAndRejections) {
  auto& h = this->h;
  // A take-profit sell fires when the mark rises to it; a stop-limit buy likewise.
  PlaceOrder tp = h.order(1, Side::sell, 990000, 10);
  tp.type = OrderType::take_profit_limit;
  tp.trigger_price = 980000;
  h.run(tp);
  PlaceOrder sl = h.order(2, Side::buy, 985000, 10);
  sl.type = OrderType::stop_limit;
  sl.trigger_price = 980000;
  h.run(sl);
  // Already crossed: refused.
  PlaceOrder late = h.order(3, Side::sell, 0, 10);
  late.type = OrderType::stop_market;
  late.trigger_price = 980000;  // a sell stop above the mark would fire at once
  EXPECT_EQ(only<OrderRejected>(h.run(late)).reason, Reject::would_trigger_immediately);
  PlaceOrder none = h.order(3, Side::sell, 0, 10);
  none.type = OrderType::stop_market;
  EXPECT_EQ(only<OrderRejected>(h.run(none)).reason, Reject::bad_trigger_price);
  auto ev = h.mark(980000);
  auto updates = all_of<OrderUpdated>(ev);
  std::size_t triggered = 0;
  for (const auto& u : updates) triggered += u.status == OrderStatus::triggered;
  EXPECT_EQ(triggered, 2u);
  // They rest at their limits now: the sell at 99,000, the buy at 98,500.
  EXPECT_EQ(h.engine.best(0, Side::sell), 990000);
  EXPECT_EQ(h.engine.best(0, Side::buy), 985000);
}

TYPED_TEST(EngineTest, HeldOrdersCancelAndCountAndTheirClientIdsStay) {
  auto& h = this->h;
  PlaceOrder stop = h.order(1, Side::buy, 0, 10);
  stop.type = OrderType::stop_market;
  stop.trigger_price = 1000000;
  stop.client_order_id = ClientOrderId::from("sl-1");
  h.run(stop);
  EXPECT_EQ(h.engine.account(user(1))->open_orders, 1u);
  PlaceOrder again = stop;
  again.id = h.new_id();
  EXPECT_EQ(only<OrderRejected>(h.run(again)).reason, Reject::duplicate_client_order_id);
  auto ev = h.run(CancelOrder{user(1), stop.id, 0});
  EXPECT_EQ(only<OrderUpdated>(ev).status, OrderStatus::cancelled);
  EXPECT_EQ(h.engine.account(user(1))->open_orders, 0u);
  EXPECT_TRUE(all_of<OrderUpdated>(h.mark(1000000)).empty());  // nothing left to fire
}

// ---- isolated margin (perp-rules "Margin", "Liquidation") ------------------------------------------

namespace {
// The worked example again, isolated: user 11 has 100,000 USDM but opens long 0.5 BTC at 97,000,
// 10x isolated; the position holds 4,850 USDM of margin and only that is at risk.
constexpr Usdm kIsolatedCollateral = 100'000 * kUsdm - 4'850 * kUsdm - 24'250'000;  // - margin - taker fee

template <class H>
void isolated_example_position(H& h) {
  h.mark(970000);
  h.deposit(11, 100'000 * kUsdm);
  h.deposit(12, 100'000 * kUsdm);
  h.place(12, Side::sell, 970000, 500);
  PlaceOrder buy = h.order(11, Side::buy, 970000, 500);
  buy.margin_mode = MarginMode::isolated;
  auto ev = h.run(buy);
  const Position& p = h.engine.account(user(11))->positions[0];
  ASSERT_EQ(p.size, 500);
  ASSERT_TRUE(p.isolated);
  ASSERT_EQ(p.margin, 4'850 * kUsdm);
  ASSERT_EQ(h.engine.account(user(11))->collateral, kIsolatedCollateral);
  auto moved = only<IsolatedMarginChanged>(ev);
  EXPECT_EQ(moved.delta, 4'850 * kUsdm);
  EXPECT_EQ(moved.margin, 4'850 * kUsdm);
}
}  // namespace

TYPED_TEST(EngineTest, IsolatedPositionHoldsItsOwnMarginAndLiquidatesAtItsOwnPrice) {
  auto& h = this->h;
  isolated_example_position(h);
  auto v = h.engine.view(user(11));
  EXPECT_EQ(v->account_value, kIsolatedCollateral);  // the cross part: the rest of the collateral
  EXPECT_EQ(v->position_margin, 0);
  EXPECT_EQ(v->maintenance_margin, 0);
  EXPECT_EQ(v->isolated_margin, 4'850 * kUsdm);
  EXPECT_EQ(v->equity, kIsolatedCollateral + 4'850 * kUsdm);
  // perp-rules' example: liquidation price 88,405.06 from isolated margin - MM.
  const Position& p = h.engine.account(user(11))->positions[0];
  EXPECT_EQ(liquidation_price(btc_spec(), p.size, p.cost, p.margin - h.engine.maintenance_margin(0, 970000, 500)), 884051);
  h.run(Deposit{kBackstop, 1'000'000 * kUsdm, 0});
  h.run(Deposit{kInsurance, 10'000 * kUsdm, 0});
  auto ev = h.mark(884051);
  EXPECT_TRUE(all_of<AccountLiquidated>(ev).empty());
  // Below it: liquidated although the account holds 95,000 USDM more; the backstop takes the
  // position and its remaining margin; the collateral does not move.
  ev = h.mark(884050);
  auto liq = only<AccountLiquidated>(ev);
  EXPECT_EQ(liq.market, 0);
  EXPECT_EQ(liq.stage, Liquidation::backstop);
  EXPECT_EQ(liq.insurance_paid, 0);
  EXPECT_EQ(h.engine.account(user(11))->positions[0].size, 0);
  EXPECT_EQ(h.engine.account(user(11))->positions[0].margin, 0);
  EXPECT_EQ(h.engine.account(user(11))->collateral, kIsolatedCollateral);
  EXPECT_EQ(h.engine.account(kBackstop)->positions[0].size, 500);
  // What the position had left at 88,405.0: 4,850 - 4,297.5 = 552.5 USDM, to the backstop.
  EXPECT_EQ(h.engine.account(kBackstop)->collateral, 1'000'000 * kUsdm + 552'500'000);
}

TYPED_TEST(EngineTest, IsolatedShortfallComesFromTheInsuranceFundNotTheCollateral) {
  auto& h = this->h;
  isolated_example_position(h);
  h.run(Deposit{kBackstop, 1'000'000 * kUsdm, 0});
  h.run(Deposit{kInsurance, 10'000 * kUsdm, 0});
  auto ev = h.mark(800000);  // the position lost 8,500 on 4,850 of margin
  auto liq = only<AccountLiquidated>(ev);
  EXPECT_EQ(liq.stage, Liquidation::backstop);
  EXPECT_EQ(liq.insurance_paid, 3'650 * kUsdm);
  EXPECT_EQ(h.engine.account(user(11))->collateral, kIsolatedCollateral);
  EXPECT_EQ(h.engine.account(kInsurance)->collateral, 6'350 * kUsdm);
}

TYPED_TEST(EngineTest, IsolatedAutoDeleveragingAtTheBankruptcyPrice) {
  auto& h = this->h;
  isolated_example_position(h);
  h.run(Deposit{kInsurance, 1'000 * kUsdm, 0});
  auto ev = h.mark(800000);
  auto liq = only<AccountLiquidated>(ev);
  EXPECT_EQ(liq.stage, Liquidation::adl);
  EXPECT_EQ(liq.insurance_paid, 1'000 * kUsdm);
  auto t = only<Trade>(ev);
  EXPECT_EQ(t.maker, user(12));
  EXPECT_EQ(t.price, 853000);  // 80,000 + 2,650 / 0.5, as for the cross account
  EXPECT_EQ(h.engine.account(user(11))->collateral, kIsolatedCollateral);
  EXPECT_EQ(h.engine.account(kInsurance)->collateral, 0);
}

TYPED_TEST(EngineTest, IsolatedReduceGivesBackMarginInProportionAndFundingComesFromTheMargin) {
  auto& h = this->h;
  isolated_example_position(h);
  // Sell half at 98,000: realized +500 USDM to the collateral, half the margin back.
  h.deposit(13, 100'000 * kUsdm);
  h.place(13, Side::buy, 980000, 250);
  PlaceOrder sell = h.order(11, Side::sell, 980000, 250);
  auto ev = h.run(sell);
  const Account* a = h.engine.account(user(11));
  EXPECT_EQ(a->positions[0].size, 250);
  EXPECT_EQ(a->positions[0].margin, 2'425 * kUsdm);
  const Usdm fee = 24'500'000 / 2;  // 0.05 % of 24,500
  EXPECT_EQ(a->collateral, kIsolatedCollateral + 2'425 * kUsdm + 250 * kUsdm - fee);
  EXPECT_EQ(only<IsolatedMarginChanged>(ev).delta, -2'425 * kUsdm);
  // Funding: an 8-hour rate of 1 % at an index of 97,000 on 0.25 BTC, one hour of it:
  // 24,250 × 1 % / 8 = 30.3125 USDM, out of the margin.
  const Usdm collateral = a->collateral;
  ev = h.run(SettleFunding{0, 3'600'000, 10'000'000, 970000, 3'600'000});
  EXPECT_EQ(h.engine.account(user(11))->collateral, collateral);
  EXPECT_EQ(h.engine.account(user(11))->positions[0].margin, 2'425 * kUsdm - 30'312'500);
  EXPECT_EQ(h.engine.account(user(11))->positions[0].funding, 30'312'500);
  // Closing the rest gives all of the margin back.
  h.place(13, Side::buy, 970000, 250);
  h.run(h.order(11, Side::sell, 970000, 250));
  EXPECT_EQ(h.engine.account(user(11))->positions[0].size, 0);
  EXPECT_EQ(h.engine.account(user(11))->positions[0].margin, 0);
}

TYPED_TEST(EngineTest, MarginModeChangesOnlyWhileTheMarketIsFlatAndEmpty) {
  auto& h = this->h;
  isolated_example_position(h);
  // With a position: a cross order in that market is refused, nothing changes.
  PlaceOrder cross = h.order(11, Side::buy, 960000, 100);
  cross.margin_mode = MarginMode::cross;
  EXPECT_EQ(only<OrderRejected>(h.run(cross)).reason, Reject::margin_mode_locked);
  EXPECT_EQ(reject_code(Reject::margin_mode_locked), "MARGIN_MODE_LOCKED");
  EXPECT_TRUE(h.engine.account(user(11))->positions[0].isolated);
  // A reduce-only order's margin_mode asks for nothing: accepted, the mode stays.
  PlaceOrder reduce = h.order(11, Side::sell, 980000, 100);
  reduce.reduce_only = true;
  reduce.margin_mode = MarginMode::cross;
  EXPECT_TRUE(all_of<OrderRejected>(h.run(reduce)).empty());
  EXPECT_TRUE(h.engine.account(user(11))->positions[0].isolated);
  h.run(CancelAll{user(11), 0, 0});
  // An order without a mode keeps the market's mode (isolated), another market is free.
  auto ev = h.run(h.order(11, Side::buy, 960000, 100));
  EXPECT_TRUE(all_of<OrderRejected>(ev).empty());
  PlaceOrder other = h.order(11, Side::buy, 299000, 1000);
  other.market = 1;
  other.margin_mode = MarginMode::cross;
  EXPECT_TRUE(all_of<OrderRejected>(h.run(other)).empty());
  // Flat but with an open order: still locked; flat and empty: the change is accepted.
  h.deposit(13, 100'000 * kUsdm);
  h.place(13, Side::buy, 970000, 500);
  h.run(h.order(11, Side::sell, 970000, 500));
  ASSERT_EQ(h.engine.account(user(11))->positions[0].size, 0);
  EXPECT_EQ(only<OrderRejected>(h.run(cross)).reason, Reject::margin_mode_locked);
  h.run(CancelAll{user(11), 0, 0});
  ev = h.run(cross);
  EXPECT_TRUE(all_of<OrderRejected>(ev).empty());
  EXPECT_FALSE(h.engine.account(user(11))->positions[0].isolated);
  // System accounts stay cross.
  h.run(Deposit{kBackstop, 100'000 * kUsdm, 0});
  PlaceOrder system = h.order(0, Side::buy, 960000, 100);
  system.user = kBackstop;
  system.margin_mode = MarginMode::isolated;
  EXPECT_EQ(only<OrderRejected>(h.run(system)).reason, Reject::margin_mode_locked);
}

TYPED_TEST(EngineTest, ExportLoadKeepsIsolatedMargin) {
  auto& h = this->h;
  isolated_example_position(h);
  TypeParam copy{two_market_config()};
  auto decoded = decode_snapshot(encode_snapshot(h.engine.export_state()));  // the stored form
  ASSERT_TRUE(decoded) << decoded.error().message;
  copy.load(*decoded);
  EXPECT_EQ(copy.state_hash(), h.engine.state_hash());
  EXPECT_EQ(copy.account(user(11))->positions[0].margin, 4'850 * kUsdm);
  EXPECT_EQ(copy.check_invariants(), "");
}

// ---- the order index (8-byte slots: hash + handle, ids compared in the pool) -----------------------

namespace {
struct FewBuckets {  // every id in one of 4 hashes: long probe runs, equal hashes for different ids
  std::size_t operator()(const Uuid& u) const noexcept { return u.lo % 4; }
};
}  // namespace

TEST(OrderIndex, EqualHashesProbeRunsErasesAndGrowthAgreeWithAMap) {
  OrderPool pool(16);
  OrderIndex<FewBuckets> index(4);  // grows several times below
  std::map<Uuid, Handle> expected;
  std::mt19937_64 rng(11);
  std::vector<Uuid> ids;
  for (int step = 0; step < 20'000; ++step) {
    if (ids.empty() || rng() % 3 != 0) {
      const Handle h = pool.alloc();
      const Uuid id{rng(), rng()};
      pool[h].id = OrderId{id};
      index.put(id, h, pool);
      expected[id] = h;
      ids.push_back(id);
    } else {
      const std::size_t k = rng() % ids.size();
      const Uuid id = ids[k];
      ids[k] = ids.back();
      ids.pop_back();
      ASSERT_TRUE(index.erase(id, pool));
      EXPECT_FALSE(index.erase(id, pool));
      pool.release(expected[id]);
      expected.erase(id);
    }
    if (step % 997 == 0) {
      ASSERT_EQ(index.size(), expected.size());
      for (const auto& [id, h] : expected) {
        const Handle* found = index.find(id, pool);
        ASSERT_NE(found, nullptr);
        EXPECT_EQ(*found, h);
      }
      EXPECT_EQ(index.find(Uuid{rng(), rng()}, pool), nullptr);
    }
  }
}

// The inline 64-bit money paths (money.hpp) against the same formulas in 128-bit arithmetic, for
// both signs, divisors that are and are not 1, and products that overflow 64 bits (the wide path).
TEST(Money, SixtyFourBitPathsAgreeWithWideArithmetic) {
  using money::i128;
  std::mt19937_64 rng(7);
  // A value of 1 to `max_bits` random bits, negative half of the time when `signed_`.
  const auto value = [&rng](bool signed_, int max_bits = 62) {
    const int bits = static_cast<int>(rng() % static_cast<std::uint64_t>(max_bits)) + 1;
    std::int64_t v = static_cast<std::int64_t>(rng() & ((std::uint64_t{1} << bits) - 1));
    if (signed_ && (rng() & 1)) v = -v;
    return v;
  };
  const auto ceil128 = [](i128 a, i128 b) -> i128 { return a >= 0 ? (a + b - 1) / b : a / b; };
  const auto floor128 = [](i128 a, i128 b) -> i128 { return a >= 0 ? a / b : -((-a + b - 1) / b); };
  const auto fits = [](i128 v) { return v >= INT64_MIN && v <= INT64_MAX; };
  std::size_t wide = 0;
  for (int i = 0; i < 200'000; ++i) {
    const std::int64_t a = value(true);
    const std::int64_t b = static_cast<std::int64_t>(rng() % 1'000'000) + 1;
    ASSERT_EQ(money::ceil_div64(a, b), ceil128(a, b)) << a << " / " << b;
    ASSERT_EQ(money::floor_div64(a, b), floor128(a, b)) << a << " / " << b;

    MarketSpec s;
    s.notional_num = static_cast<std::int64_t>(rng() % 1000) + 1;
    s.notional_den = (rng() & 1) ? 1 : static_cast<std::int64_t>(rng() % 100'000) + 1;
    s.max_leverage = static_cast<std::int32_t>(rng() % 100) + 1;
    // price × qty × num stays below 2^113: the 128-bit reference itself must not overflow.
    const Price p = value(false, 40);
    const Qty q = value(true);
    const i128 n = static_cast<i128>(p) * static_cast<i128>(q) * static_cast<i128>(s.notional_num);
    if (!fits(n)) ++wide;
    if (const i128 want = floor128(n, s.notional_den); fits(want)) {
      ASSERT_EQ(money::notional(s, p, q), want) << p << " x " << q;
    }
    const std::int32_t lev = static_cast<std::int32_t>(rng() % 100) + 1;
    if (const i128 want = ceil128(n, static_cast<i128>(s.notional_den) * lev); fits(want)) {
      ASSERT_EQ(money::initial_margin(s, p, q, lev), want) << p << " x " << q << " / " << lev;
    }
    if (const i128 want = ceil128(n, static_cast<i128>(s.notional_den) * 2 * s.max_leverage); fits(want)) {
      ASSERT_EQ(money::maintenance_margin(s, p, q), want) << p << " x " << q;
    }
    const std::int32_t ppm = static_cast<std::int32_t>(rng() % 1'000'000);
    if (const i128 want = ceil128(static_cast<i128>(a) * ppm, 1'000'000); fits(want)) {
      ASSERT_EQ(money::fee(a, ppm), want) << a << " ppm " << ppm;
    }
  }
  EXPECT_GT(wide, 10'000u);  // the 128-bit paths were taken too
}

// ---- hostile sizes and values (issue 20): refused with a code, never an abort ------------------

namespace {
// What a refused command must leave as it was: balances, positions, orders and the book (the
// state hash also covers the event sequence number, which every answer advances).
template <class E>
std::string visible_state(const E& e) {
  std::string s;
  for (std::uint64_t u = 1; u <= 4; ++u) {
    const Account* a = e.account(user(u));
    if (!a) continue;
    s += std::to_string(a->collateral) + "/" + std::to_string(a->open_orders) + "/" +
         std::to_string(a->order_margin);
    for (const auto& p : a->positions)
      s += ":" + std::to_string(p.size) + "," + std::to_string(p.cost);
    s += ";";
  }
  for (std::uint32_t m = 0; m < 2; ++m) {
    s += std::to_string(e.best(m, Side::buy).value_or(0)) + "-" +
         std::to_string(e.best(m, Side::sell).value_or(0)) + ";";
  }
  return s + std::to_string(e.resting_orders());
}
}  // namespace

TYPED_TEST(EngineTest, AHugeMarketOrderIsRefusedWithACodeNotAnAbort) {
  auto& h = this->h;
  // The attack: 100,000,000 BTC at market (1e11 lots): price x size does not fit 64 bits.
  h.place(2, Side::sell, 970000, 100);
  PlaceOrder p = h.order(1, Side::buy, 0, 100'000'000'000);
  p.type = OrderType::market;
  const std::string before = visible_state(h.engine);
  EXPECT_EQ(only<OrderRejected>(h.run(p)).reason, Reject::order_notional_too_large);
  EXPECT_EQ(visible_state(h.engine), before);  // nothing changed
  // Beyond the size limit itself: the size code.
  p.id = h.new_id();
  p.qty = std::numeric_limits<Qty>::max();
  EXPECT_EQ(only<OrderRejected>(h.run(p)).reason, Reject::order_size_too_large);
  EXPECT_EQ(visible_state(h.engine), before);
}

TYPED_TEST(EngineTest, MarketLimitsRefuseSizeNotionalAndPosition) {
  EngineConfig c = two_market_config();
  c.markets[0].max_order_qty = 2'000;       // 2 BTC
  c.markets[0].max_market_order_qty = 500;  // 0.5 BTC
  c.markets[0].max_order_notional = 150'000 * kUsdm;
  c.markets[0].max_position_notional = 250'000 * kUsdm;
  Harness<TypeParam> e(c);
  e.mark(970000);
  for (std::uint64_t u = 1; u <= 3; ++u) e.deposit(u, 1'000'000 * kUsdm);
  EXPECT_EQ(only<OrderRejected>(e.place(1, Side::buy, 970000, 2'001)).reason,
            Reject::order_size_too_large);
  PlaceOrder m = e.order(1, Side::buy, 0, 501);
  m.type = OrderType::market;
  EXPECT_EQ(only<OrderRejected>(e.run(m)).reason, Reject::order_size_too_large);
  // 1.6 BTC at 97,000 = 155,200 USDM > 150,000.
  EXPECT_EQ(only<OrderRejected>(e.place(1, Side::buy, 970000, 1'600)).reason,
            Reject::order_notional_too_large);
  // Two fills of 1.5 BTC would make a 3 BTC position (291,000 USDM > 250,000): the second order
  // is refused at placement...
  e.place(2, Side::sell, 970000, 1'500);
  e.place(1, Side::buy, 970000, 1'500);
  ASSERT_EQ(e.engine.account(user(1))->positions[0].size, 1'500);
  EXPECT_EQ(only<OrderRejected>(e.place(1, Side::buy, 970000, 1'500)).reason,
            Reject::position_notional_too_large);
  // ...and orders that each passed cannot build it together: the resting bid that would cross
  // the limit is cancelled with POSITION_LIMIT when it is hit.
  e.place(1, Side::buy, 960000, 1'000);  // 1.5 + 1.0 = 2.5 BTC x 96,000 = 240,000: passes
  e.place(1, Side::buy, 960000, 400);    // 1.5 + 0.4 at placement: passes
  auto ev = e.place(3, Side::sell, 960000, 1'400);
  ASSERT_EQ(all_of<Trade>(ev).size(), 1u);  // the first bid fills; the second would exceed
  bool limit_cancel = false;
  for (const auto& u : all_of<OrderUpdated>(ev))
    limit_cancel |= u.cancel_reason == CancelReason::position_limit;
  EXPECT_TRUE(limit_cancel);
  EXPECT_EQ(e.engine.account(user(1))->positions[0].size, 2'500);
  // Reducing is always allowed, whatever the size limits (a close, a vault's withdrawal, a
  // full-size stop-loss): the position bounds it.
  PlaceOrder r = e.order(1, Side::sell, 960000, 1'000);
  r.reduce_only = true;
  EXPECT_TRUE(all_of<OrderRejected>(e.run(r)).empty());
  e.place(2, Side::buy, 955000, 1'250);
  e.place(3, Side::buy, 955000, 1'250);
  PlaceOrder close = e.order(1, Side::sell, 0, 2'500);  // 5x max_market_order_qty
  close.type = OrderType::market;
  close.reduce_only = true;
  auto closed = e.run(close);
  EXPECT_TRUE(all_of<OrderRejected>(closed).empty());
  EXPECT_EQ(e.engine.account(user(1))->positions[0].size, 0);
}

TYPED_TEST(EngineTest, AHugeStopOrderIsRefusedAtPlacementAndNeverFires) {
  auto& h = this->h;
  // The attack's size: 100,000,000 BTC (1e11 lots) at the trigger does not fit 64 bits.
  PlaceOrder stop = h.order(1, Side::buy, 0, 100'000'000'000);
  stop.type = OrderType::stop_market;
  stop.trigger_price = 1'000'000;
  EXPECT_EQ(only<OrderRejected>(h.run(stop)).reason, Reject::order_notional_too_large);
  stop.id = h.new_id();
  stop.qty = 20'000'000;  // 20,000 BTC x 100,000 = 2e9 USDM > the 1e9 ceiling
  EXPECT_EQ(only<OrderRejected>(h.run(stop)).reason, Reject::order_notional_too_large);
  stop.id = h.new_id();
  stop.qty = std::numeric_limits<Qty>::max();
  EXPECT_EQ(only<OrderRejected>(h.run(stop)).reason, Reject::order_size_too_large);
  EXPECT_EQ(h.engine.account(user(1))->open_orders, 0u);
  EXPECT_TRUE(all_of<Trade>(h.mark(1'000'000)).empty());
}

TYPED_TEST(EngineTest, ATriggerRefusedWhenItFiresIsCancelledWithAReasonAndNeverFiresAgain) {
  auto& h = this->h;
  // A stop buy of 5 BTC held while user 1 has 100,000 USDM: at 40x that is enough for the order
  // at placement, but a withdrawal leaves too little by the time it fires.
  PlaceOrder stop = h.order(1, Side::buy, 0, 5'000);
  stop.type = OrderType::stop_market;
  stop.trigger_price = 980000;
  stop.leverage = 1;
  ASSERT_TRUE(all_of<OrderRejected>(h.run(stop)).empty());
  h.place(2, Side::sell, 985000, 5'000);
  h.run(Withdraw{user(1), 99'000 * kUsdm, 0});
  auto ev = h.mark(980000);
  EXPECT_EQ(only<OrderRejected>(ev).reason, Reject::insufficient_margin);
  auto updates = all_of<OrderUpdated>(ev);
  ASSERT_EQ(updates.size(), 2u);
  EXPECT_EQ(updates[0].status, OrderStatus::triggered);
  EXPECT_EQ(updates[1].status, OrderStatus::cancelled);
  EXPECT_EQ(updates[1].cancel_reason, CancelReason::trigger_rejected);
  EXPECT_EQ(h.engine.order(stop.id), nullptr);
  h.mark(975000);
  EXPECT_TRUE(all_of<OrderUpdated>(h.mark(990000)).empty());  // gone for good
}

TYPED_TEST(EngineTest, AMarkOrIndexBeyondTheBoundsIsRefusedAndChangesNothing) {
  auto& h = this->h;
  h.place(2, Side::sell, 970000, 1'000);
  h.place(1, Side::buy, 970000, 1'000);  // open interest 1 BTC
  const std::string before = visible_state(h.engine);
  EXPECT_EQ(only<CommandRejected>(h.mark(std::numeric_limits<Price>::max())).reason,
            Reject::amount_too_large);
  EXPECT_EQ(only<CommandRejected>(h.mark(kMaxMarketNotional)).reason, Reject::amount_too_large);
  auto ev = h.run(
      SettleFunding{0, 3'600'000, kMaxFundingRatePpb, std::numeric_limits<Price>::max() / 2, 0});
  EXPECT_EQ(only<CommandRejected>(ev).reason, Reject::amount_too_large);
  EXPECT_EQ(visible_state(h.engine), before);
  // A big but representable move still goes through.
  EXPECT_EQ(only<MarkChanged>(h.mark(970000 * 100)).mark, 970000 * 100);
}

TYPED_TEST(EngineTest, DepositsBeyondTheTotalBoundAreRefused) {
  auto& h = this->h;
  EXPECT_EQ(only<CommandRejected>(h.deposit(9, std::numeric_limits<Usdm>::max())).reason,
            Reject::amount_too_large);
  EXPECT_EQ(only<CommandRejected>(h.deposit(9, kMaxTotalUsdm)).reason, Reject::amount_too_large);
  EXPECT_TRUE(all_of<CommandRejected>(h.deposit(9, 1'000'000 * kUsdm)).empty());
}

TYPED_TEST(EngineTest, AnIsolatedPartialCloseAtALossPaysFromThePositionsMarginNotTheCollateral) {
  // Found by the randomized test once trigger orders were checked at placement (issue 20): the
  // closed part's loss beyond its share of the margin came out of the cross collateral.
  auto& h = this->h;
  isolated_example_position(h);  // user 11: long 0.5 BTC at 97,000, 10x isolated, margin 4,850
  h.mark(930000);                // uPnL -2,000: the position is worth 2,850, above maintenance
  const Usdm collateral = h.engine.account(user(11))->collateral;
  h.place(12, Side::buy, 870000, 250);
  PlaceOrder sell = h.order(11, Side::sell, 870000, 250);
  sell.tif = TimeInForce::ioc;
  auto ev = h.run(sell);
  ASSERT_EQ(only<Trade>(ev).qty, 250);
  // Realized -2,500 on 0.25 BTC, its share of the margin 2,425, the taker fee 10.875: the 85.875
  // beyond the share comes out of the 2,425 left with the position, the collateral is untouched.
  EXPECT_EQ(h.engine.account(user(11))->collateral, collateral);
  const Position& p = h.engine.account(user(11))->positions[0];
  EXPECT_EQ(p.size, 250);
  EXPECT_EQ(p.margin, 4'850 * kUsdm - 2'425 * kUsdm - 85'875'000);
}

TYPED_TEST(EngineTest, MarketLimitsAreCommandsAndTravelInSnapshots) {
  auto& h = this->h;
  // Refused out of range; applied in range; the next orders meet them.
  EXPECT_EQ(only<CommandRejected>(h.run(SetMarketLimits{0, 0, 1, 1, 1, 0})).reason,
            Reject::bad_amount);
  EXPECT_EQ(only<CommandRejected>(h.run(SetMarketLimits{0, 10, 20, 1, 1, 0})).reason,
            Reject::bad_amount);  // market > order
  EXPECT_EQ(only<CommandRejected>(h.run(SetMarketLimits{9, 10, 10, 1, 1, 0})).reason,
            Reject::unknown_market);
  EXPECT_TRUE(h.run(SetMarketLimits{0, 1'000, 100, 500'000 * kUsdm, 1'000'000 * kUsdm, 0}).empty());
  EXPECT_EQ(only<OrderRejected>(h.place(1, Side::buy, 970000, 1'001)).reason,
            Reject::order_size_too_large);
  EXPECT_TRUE(all_of<OrderRejected>(h.place(1, Side::buy, 970000, 1'000)).empty());
  // A snapshot carries them into an engine configured with the ceilings.
  const Snapshot snap = h.engine.export_state();
  auto decoded = decode_snapshot(encode_snapshot(snap));
  ASSERT_TRUE(decoded);
  TypeParam other{two_market_config()};
  other.load(*decoded);
  EXPECT_EQ(other.spec(0).max_order_qty, 1'000);
  EXPECT_EQ(other.spec(0).max_market_order_qty, 100);
  EXPECT_EQ(other.spec(0).max_order_notional, 500'000 * kUsdm);
  EXPECT_EQ(other.spec(0).max_position_notional, 1'000'000 * kUsdm);
  EXPECT_EQ(other.spec(1).max_order_qty, MarketSpec{}.max_order_qty);
  EXPECT_EQ(other.state_hash(), h.engine.state_hash());
}

// Issue #21: the cross liquidation price shown on a position is the mark at which the engine
// liquidates (one tick beyond it it does, at it it does not), whatever the current mark, with a
// second position in another market held at its mark.
TYPED_TEST(EngineTest, CrossLiquidationPriceIsWhereTheEngineLiquidatesWhateverTheMark) {
  auto& h = this->h;
  h.run(Deposit{kBackstop, 1'000'000 * kUsdm, 0});
  h.run(Deposit{kInsurance, 10'000 * kUsdm, 0});
  h.deposit(5, 10'000 * kUsdm);
  h.deposit(6, 10'000 * kUsdm);
  h.place(1, Side::sell, 970000, 500);
  h.place(5, Side::buy, 970000, 500);  // long 0.5 at 97,000 on 10,000 USDM
  h.place(2, Side::buy, 970000, 400);
  h.place(6, Side::sell, 970000, 400);  // short 0.4
  PlaceOrder ask = h.order(3, Side::sell, 300000, 30000);
  ask.market = 1;
  h.run(ask);
  PlaceOrder bid = h.order(5, Side::buy, 300000, 30000);
  bid.market = 1;
  h.run(bid);  // and a long in the other market (1/3-unit rounding there)
  ASSERT_EQ(h.engine.account(user(5))->positions[1].size, 30000);
  auto liq_of = [&](std::uint64_t u) {
    return h.engine.cross_liquidation_price(*h.engine.account(user(u)), 0);
  };
  auto liquidated = [&](std::uint64_t u, const std::vector<Event>& ev) {
    for (const auto& l : all_of<AccountLiquidated>(ev)) {
      if (l.user == user(u)) return true;
    }
    return false;
  };
  const Price long_liq = liq_of(5), short_liq = liq_of(6);
  ASSERT_GT(long_liq, 700000);
  ASSERT_LT(long_liq, 970000);
  ASSERT_GT(short_liq, 970000);
  for (Price m :
       {Price{990000}, Price{900000}, Price{long_liq + 1}, Price{short_liq - 1}, Price{970000}}) {
    h.mark(m);
    EXPECT_EQ(liq_of(5), long_liq) << "mark " << m;
    EXPECT_EQ(liq_of(6), short_liq) << "mark " << m;
  }
  const Snapshot saved = h.engine.export_state();
  EXPECT_FALSE(liquidated(5, h.mark(long_liq)));
  EXPECT_TRUE(liquidated(5, h.mark(long_liq - 1)));
  h.engine.load(saved);
  EXPECT_FALSE(liquidated(6, h.mark(short_liq)));
  EXPECT_TRUE(liquidated(6, h.mark(short_liq + 1)));
  // The other market's mark moves it: a loss there brings this one's price closer, exactly.
  h.engine.load(saved);
  h.mark(200000, 1);
  const Price closer = liq_of(5);
  EXPECT_GT(closer, long_liq);
  h.mark(940000);
  EXPECT_EQ(liq_of(5), closer);
  EXPECT_FALSE(liquidated(5, h.mark(closer)));
  EXPECT_TRUE(liquidated(5, h.mark(closer - 1)));
}

// Issue #21: a flip closes the old position and opens a new one: the new one's realized PnL
// starts from zero (the closed part's PnL is paid all the same); so does a position opened again.
TYPED_TEST(EngineTest, AFlipOrAReopenStartsANewPositionWithItsOwnRealizedPnl) {
  auto& h = this->h;
  h.place(1, Side::sell, 970000, 500);
  h.place(2, Side::buy, 970000, 500);  // 2: long 0.5 at 97,000
  const Usdm before = h.engine.account(user(2))->collateral;
  h.place(1, Side::buy, 980000, 1000);
  auto ev = h.place(2, Side::sell, 980000, 1000);  // sells 1.0 at 98,000: +500 realized, short 0.5
  const Trade t = only<Trade>(ev);
  EXPECT_EQ(t.taker_realized_pnl, 500 * kUsdm);
  const Position& p = h.engine.account(user(2))->positions[0];
  EXPECT_EQ(p.size, -500);
  EXPECT_EQ(p.realized_pnl, 0);
  EXPECT_EQ(h.engine.account(user(2))->collateral, before + 500 * kUsdm - t.taker_fee);
  // Closed at 97,000 (+500 on the short), then opened again: the new one starts at zero.
  h.place(1, Side::sell, 970000, 500);
  h.place(2, Side::buy, 970000, 500);
  EXPECT_EQ(h.engine.account(user(2))->positions[0].size, 0);
  EXPECT_EQ(h.engine.account(user(2))->positions[0].realized_pnl, 500 * kUsdm);
  h.place(1, Side::sell, 970000, 100);
  h.place(2, Side::buy, 970000, 100);
  EXPECT_EQ(h.engine.account(user(2))->positions[0].realized_pnl, 0);
}

// ---- issue 23: amend, cancel by client id, the dead man's switch, margin mode -------------------

TYPED_TEST(EngineTest, AmendToASmallerSizeKeepsItsPlaceAnyOtherChangeGoesToTheBack) {
  auto& h = this->h;
  const auto a = h.order(1, Side::sell, 970100, 100);
  h.run(a);
  const auto b = h.order(2, Side::sell, 970100, 100);
  h.run(b);
  auto ev = h.run(AmendOrder{user(1), a.id, 0, 0, 60, 1, {}});
  auto am = only<OrderAmended>(ev);
  EXPECT_TRUE(am.kept_priority);
  EXPECT_EQ((std::pair{am.qty, am.remaining}), (std::pair{Qty{60}, Qty{60}}));
  EXPECT_EQ(only<BookLevelChanged>(ev).size, 160);
  // A is still first: a buy of 60 fills it, not B.
  ev = h.place(3, Side::buy, 970100, 60);
  EXPECT_EQ(only<Trade>(ev).maker_order, a.id);
  // C behind B; B grows: it goes behind C.
  const auto c = h.order(1, Side::sell, 970100, 100);
  h.run(c);
  ev = h.run(AmendOrder{user(2), b.id, 0, 0, 150, 2, {}});
  am = only<OrderAmended>(ev);
  EXPECT_FALSE(am.kept_priority);
  EXPECT_EQ(am.remaining, 150);
  ev = h.place(3, Side::buy, 970100, 100);
  EXPECT_EQ(only<Trade>(ev).maker_order, c.id);
  // A new price is a new place too, and the size kept.
  ev = h.run(AmendOrder{user(2), b.id, 0, 970200, 0, 3, {}});
  am = only<OrderAmended>(ev);
  EXPECT_FALSE(am.kept_priority);
  EXPECT_EQ((std::pair{am.price, am.qty}), (std::pair{Price{970200}, Qty{150}}));
  EXPECT_EQ(h.engine.depth(0, Side::sell, 5), (std::vector<std::pair<Price, Qty>>{{970200, 150}}));
}

TYPED_TEST(EngineTest, AnAmendThatCrossesTheBookMatchesAtOnceAsATaker) {
  auto& h = this->h;
  const auto bid = h.order(2, Side::buy, 970000, 100);
  h.run(bid);
  const auto ask = h.order(1, Side::sell, 970500, 100);
  h.run(ask);
  auto ev = h.run(AmendOrder{user(1), ask.id, 0, 970000, 0, 1, {}});
  const auto t = only<Trade>(ev);
  EXPECT_EQ((std::tuple{t.price, t.qty, t.taker_order, t.maker_order}), (std::tuple{Price{970000}, Qty{100}, ask.id, bid.id}));
  EXPECT_EQ(h.engine.order(ask.id), nullptr);  // filled
  EXPECT_EQ(all_of<OrderUpdated>(ev).back().status, OrderStatus::filled);
}

TYPED_TEST(EngineTest, ARefusedAmendLeavesTheOrderAsItWas) {
  auto& h = this->h;
  h.deposit(5, 2'000 * kUsdm);
  const auto o = h.order(5, Side::buy, 969000, 100);  // 9,690 USDM at 10x: ~969 USDM of margin
  h.run(o);
  const auto other = h.order(1, Side::buy, 969000, 100);
  h.run(other);
  const Order before = *h.engine.order(o.id);
  const auto book = h.engine.depth(0, Side::buy, 5);
  auto refused = [&](const AmendOrder& a) {
    const auto ev = h.run(a);
    EXPECT_EQ(ev.size(), 1u);
    const Reject why = only<CommandRejected>(ev).reason;
    const Order* now = h.engine.order(o.id);
    EXPECT_NE(now, nullptr);
    if (now) {
      EXPECT_EQ((std::tuple{now->price, now->qty, now->remaining, now->margin, now->priority}),
                (std::tuple{before.price, before.qty, before.remaining, before.margin, before.priority}));
    }
    EXPECT_EQ(h.engine.depth(0, Side::buy, 5), book);
    return why;
  };
  EXPECT_EQ(refused(AmendOrder{user(5), o.id, 0, 0, 1000, 1, {}}), Reject::insufficient_margin);
  EXPECT_EQ(refused(AmendOrder{user(5), o.id, 0, 969000, 100, 1, {}}), Reject::nothing_to_amend);
  EXPECT_EQ(refused(AmendOrder{user(5), o.id, 0, 2 * 970000, 0, 1, {}}), Reject::price_out_of_band);
  EXPECT_EQ(refused(AmendOrder{user(1), o.id, 0, 0, 50, 1, {}}), Reject::unknown_order);  // not theirs
  EXPECT_EQ(refused(AmendOrder{user(5), o.id, 1, 0, 50, 1, {}}), Reject::unknown_order);  // not its market
  EXPECT_EQ(refused(AmendOrder{user(5), o.id, 0, -5, 0, 1, {}}), Reject::bad_price_tick);
  // Below what has filled: fill 40 of it first.
  h.place(2, Side::sell, 969000, 40);
  const Order filled = *h.engine.order(o.id);
  EXPECT_EQ(filled.filled, 40);
  const auto ev = h.run(AmendOrder{user(5), o.id, 0, 0, 40, 2, {}});
  EXPECT_EQ(only<CommandRejected>(ev).reason, Reject::amend_below_filled);
  // A post-only order repriced across the book is refused like a new one.
  auto po = h.order(3, Side::sell, 971000, 100, TimeInForce::post_only);
  h.run(po);
  EXPECT_EQ(only<CommandRejected>(h.run(AmendOrder{user(3), po.id, 0, 969000, 0, 3, {}})).reason,
            Reject::post_only_would_cross);
  EXPECT_NE(h.engine.order(po.id), nullptr);
  // A held trigger order is not amendable.
  PlaceOrder stop = h.order(3, Side::sell, 960000, 100);
  stop.type = OrderType::stop_limit;
  stop.trigger_price = 960000;
  h.run(stop);
  EXPECT_EQ(only<CommandRejected>(h.run(AmendOrder{user(3), stop.id, 0, 0, 50, 4, {}})).reason,
            Reject::order_not_amendable);
}

TYPED_TEST(EngineTest, CancelByClientIdFindsTheCallersOpenOrderOnly) {
  auto& h = this->h;
  auto p = h.order(1, Side::buy, 969000, 100);
  p.client_order_id = ClientOrderId::from("bot-7");
  h.run(p);
  const ClientOrderId cid = ClientOrderId::from("bot-7");
  EXPECT_EQ(only<CommandRejected>(h.run(CancelOrder{user(2), OrderId{}, 1, cid})).reason, Reject::unknown_order);
  auto ev = h.run(CancelOrder{user(1), OrderId{}, 1, cid});
  const auto u = only<OrderUpdated>(ev);
  EXPECT_EQ((std::pair{u.id, u.status}), (std::pair{p.id, OrderStatus::cancelled}));
  EXPECT_EQ(only<CommandRejected>(h.run(CancelOrder{user(1), OrderId{}, 2, cid})).reason, Reject::unknown_order);
  EXPECT_EQ(only<CommandRejected>(h.run(CancelOrder{user(1), OrderId{}, 2, {}})).reason, Reject::unknown_order);
}

TYPED_TEST(EngineTest, TheDeadMansSwitchFiresOnceAtItsDeadlineAndRenewingPostponesIt) {
  auto& h = this->h;
  auto ev = h.run(SetCancelAfter{user(1), 5000, 1000});
  EXPECT_EQ(only<CancelAfterChanged>(ev).deadline_ms, 6000);
  EXPECT_EQ(h.engine.next_cancel_after(), 6000);
  const auto a = h.order(1, Side::buy, 969000, 100);
  h.run(a);
  const auto b = h.order(1, Side::sell, 971000, 100);
  h.run(b);
  const auto others = h.order(2, Side::buy, 969000, 100);
  h.run(others);
  // Renewed at 4000: the deadline moves to 9000.
  EXPECT_EQ(only<CancelAfterChanged>(h.run(SetCancelAfter{user(1), 5000, 4000})).deadline_ms, 9000);
  EXPECT_TRUE(h.run(CancelExpired{8999}).empty());
  ev = h.run(CancelExpired{9000});
  const auto fired = only<CancelAfterChanged>(ev);
  EXPECT_TRUE(fired.fired);
  const auto cancelled = all_of<OrderUpdated>(ev);
  ASSERT_EQ(cancelled.size(), 2u);
  for (const auto& u : cancelled) EXPECT_EQ(u.cancel_reason, CancelReason::cancel_all_after);
  EXPECT_NE(h.engine.order(others.id), nullptr);  // nobody else's
  EXPECT_EQ(h.engine.next_cancel_after(), 0);
  h.run(h.order(1, Side::buy, 969000, 100));
  EXPECT_TRUE(h.run(CancelExpired{20000}).empty());  // once
  // Off, and refused timeouts.
  h.run(SetCancelAfter{user(1), 2000, 21000});
  EXPECT_EQ(only<CancelAfterChanged>(h.run(SetCancelAfter{user(1), 0, 21500})).deadline_ms, 0);
  EXPECT_TRUE(h.run(CancelExpired{30000}).empty());
  for (std::int64_t bad : {std::int64_t{-1}, std::int64_t{999}, kMaxCancelAfterMs + 1}) {
    EXPECT_EQ(only<CommandRejected>(h.run(SetCancelAfter{user(1), bad, 31000})).reason, Reject::bad_timeout);
  }
}

TYPED_TEST(EngineTest, ASwitchSurvivesASnapshot) {
  auto& h = this->h;
  h.run(SetCancelAfter{user(2), 3000, 1000});
  h.run(SetCancelAfter{user(1), 9000, 1000});
  const auto o = h.order(2, Side::buy, 969000, 100);
  h.run(o);
  auto decoded = decode_snapshot(encode_snapshot(h.engine.export_state()));
  ASSERT_TRUE(decoded.has_value());
  TypeParam copy{two_market_config()};
  copy.load(*decoded);
  EXPECT_EQ(copy.state_hash(), h.engine.state_hash());
  EXPECT_EQ(copy.next_cancel_after(), 4000);
  EXPECT_EQ(copy.check_invariants(), "");
  std::vector<Event> ev;
  copy.apply(CancelExpired{4000}, ev);
  EXPECT_EQ(all_of<OrderUpdated>(ev).size(), 1u);
  EXPECT_EQ(copy.next_cancel_after(), 10000);
}

TYPED_TEST(EngineTest, MarginModeChangesOnlyWhileFlatWithoutOrders) {
  auto& h = this->h;
  auto ev = h.run(SetLeverage{user(1), 0, 0, 1, MarginMode::isolated});
  EXPECT_TRUE(only<PositionChanged>(ev).isolated);
  EXPECT_TRUE(all_of<LeverageChanged>(ev).empty());
  h.place(1, Side::buy, 969000, 100);
  EXPECT_EQ(only<CommandRejected>(h.run(SetLeverage{user(1), 0, 5, 2, MarginMode::cross})).reason,
            Reject::margin_mode_locked);
  ev = h.run(SetLeverage{user(1), 0, 5, 2, MarginMode::isolated});  // the same mode: only leverage
  EXPECT_EQ(only<LeverageChanged>(ev).leverage, 5);
  EXPECT_EQ(only<CommandRejected>(h.run(SetLeverage{user(1), 0, 0, 3})).reason, Reject::bad_leverage);
}

TYPED_TEST(EngineTest, IsolatedMarginComesInFromAvailableAndGoesOutDownToInitialMargin) {
  auto& h = this->h;
  h.deposit(5, 2'000 * kUsdm);
  auto open = h.order(5, Side::buy, 970000, 100);  // 9,700 USDM at 10x: 970 USDM of margin
  open.margin_mode = MarginMode::isolated;
  h.place(2, Side::sell, 970000, 100);
  h.run(open);
  const Usdm margin = h.engine.account(user(5))->positions[0].margin;
  EXPECT_EQ(margin, 970 * kUsdm);
  // In: from the available collateral, no more than it.
  auto ev = h.run(AdjustMargin{user(5), 0, 500 * kUsdm, 1});
  EXPECT_EQ(only<IsolatedMarginChanged>(ev).margin, margin + 500 * kUsdm);
  EXPECT_EQ(only<CommandRejected>(h.run(AdjustMargin{user(5), 0, 10'000 * kUsdm, 2})).reason, Reject::insufficient_margin);
  // Out: down to the initial margin at the mark, not below.
  EXPECT_EQ(only<CommandRejected>(h.run(AdjustMargin{user(5), 0, -501 * kUsdm, 3})).reason, Reject::insufficient_margin);
  ev = h.run(AdjustMargin{user(5), 0, -500 * kUsdm, 3});
  EXPECT_EQ(only<IsolatedMarginChanged>(ev).margin, margin);
  // An unrealized loss must stay covered on top of it.
  h.run(AdjustMargin{user(5), 0, 300 * kUsdm, 4});
  h.mark(969000);  // -1,000 per BTC: -100 USDM on 0.1 BTC
  EXPECT_EQ(only<CommandRejected>(h.run(AdjustMargin{user(5), 0, -300 * kUsdm, 5})).reason, Reject::insufficient_margin);
  EXPECT_EQ(all_of<CommandRejected>(h.run(AdjustMargin{user(5), 0, -190 * kUsdm, 5})).size(), 0u);
  // Cross positions, flat markets and zero are refused.
  EXPECT_EQ(only<CommandRejected>(h.run(AdjustMargin{user(2), 0, 100 * kUsdm, 6})).reason, Reject::position_not_isolated);
  EXPECT_EQ(only<CommandRejected>(h.run(AdjustMargin{user(5), 1, 100 * kUsdm, 6})).reason, Reject::no_open_position);
  EXPECT_EQ(only<CommandRejected>(h.run(AdjustMargin{user(5), 0, 0, 6})).reason, Reject::bad_amount);
  EXPECT_EQ(only<CommandRejected>(h.run(AdjustMargin{user(5), 7, 1, 6})).reason, Reject::unknown_market);
}

TYPED_TEST(EngineTest, APositionsTakeProfitAndStopLossCancelEachOtherAndGoWithThePosition) {
  auto& h = this->h;
  h.place(2, Side::sell, 970000, 100);
  h.place(1, Side::buy, 970000, 100);  // user 1 long 0.1
  const OrderId tp{Uuid{0x7777, 1}}, sl{Uuid{0x7777, 2}};
  // Refused as a whole: a stop-loss above the mark for a long, a size above the position's.
  EXPECT_EQ(only<CommandRejected>(h.run(SetPositionTpSl{user(1), 0, tp, sl, 980000, 975000, 0, TriggerBy::mark, 1})).reason,
            Reject::would_trigger_immediately);
  EXPECT_EQ(only<CommandRejected>(h.run(SetPositionTpSl{user(1), 0, tp, sl, 980000, 960000, 101, TriggerBy::mark, 1})).reason,
            Reject::reduce_only_would_increase);
  EXPECT_EQ(only<CommandRejected>(h.run(SetPositionTpSl{user(3), 0, tp, sl, 980000, 960000, 0, TriggerBy::mark, 1})).reason,
            Reject::no_open_position);
  EXPECT_EQ(h.engine.order(tp), nullptr);
  auto ev = h.run(SetPositionTpSl{user(1), 0, tp, sl, 980000, 960000, 0, TriggerBy::mark, 1});
  const auto accepted = all_of<OrderAccepted>(ev);
  ASSERT_EQ(accepted.size(), 2u);
  for (const auto& a : accepted) {
    EXPECT_TRUE(a.position_tpsl);
    EXPECT_TRUE(a.reduce_only);
    EXPECT_EQ((std::pair{a.side, a.qty}), (std::pair{Side::sell, Qty{100}}));
  }
  // The mark reaches the take-profit: it fires into the book, the stop-loss is cancelled first.
  h.place(3, Side::buy, 979000, 100);
  ev = h.mark(980000);
  const auto updates = all_of<OrderUpdated>(ev);
  const auto sl_update = std::find_if(updates.begin(), updates.end(), [&](const OrderUpdated& u) { return u.id == sl; });
  ASSERT_NE(sl_update, updates.end());
  EXPECT_EQ((std::pair{sl_update->status, sl_update->cancel_reason}),
            (std::pair{OrderStatus::cancelled, CancelReason::one_cancels_other}));
  EXPECT_EQ(h.engine.account(user(1))->positions[0].size, 0);
  EXPECT_EQ(h.engine.order(sl), nullptr);
  // A partial TP/SL pair on a new position; the position closed by another order takes both.
  h.place(2, Side::sell, 980000, 100);
  h.place(1, Side::buy, 980000, 100);
  const OrderId tp2{Uuid{0x7777, 3}}, sl2{Uuid{0x7777, 4}};
  h.run(SetPositionTpSl{user(1), 0, tp2, sl2, 990000, 970000, 40, TriggerBy::mark, 2});
  EXPECT_EQ(h.engine.order(tp2)->qty, 40);
  h.place(3, Side::buy, 980000, 100);
  ev = h.place(1, Side::sell, 980000, 100, TimeInForce::ioc);
  EXPECT_EQ(h.engine.account(user(1))->positions[0].size, 0);
  std::vector<CancelReason> why;
  for (const auto& u : all_of<OrderUpdated>(ev)) {
    if (u.id == tp2 || u.id == sl2) why.push_back(u.cancel_reason);
  }
  EXPECT_EQ(why, (std::vector<CancelReason>{CancelReason::position_closed, CancelReason::position_closed}));
}

TYPED_TEST(EngineTest, ALastPriceTriggerFiresOnATradeNotOnTheMark) {
  auto& h = this->h;
  h.place(2, Side::sell, 970000, 100);
  h.place(1, Side::buy, 970000, 100);  // last 970,000
  PlaceOrder stop = h.order(1, Side::sell, 0, 100);
  stop.type = OrderType::stop_market;
  stop.reduce_only = true;
  stop.trigger_price = 965000;
  stop.trigger_by = TriggerBy::last;
  auto ev = h.run(stop);
  EXPECT_EQ(only<OrderAccepted>(ev).trigger_by, TriggerBy::last);
  // The mark falls through it: nothing (it watches the last price).
  h.place(4, Side::buy, 960000, 200);
  h.mark(960000);
  ASSERT_NE(h.engine.order(stop.id), nullptr);
  EXPECT_EQ(h.engine.order(stop.id)->status, OrderStatus::untriggered);
  // A trade at 960,000 (another user's): it fires into the book after that command.
  ev = h.place(3, Side::sell, 960000, 50, TimeInForce::ioc);
  const auto trades = all_of<Trade>(ev);
  ASSERT_EQ(trades.size(), 2u);
  EXPECT_EQ(trades[1].taker_order, stop.id);
  EXPECT_EQ(h.engine.account(user(1))->positions[0].size, 0);
  // Snapshots keep what a trigger watches and the pairs.
  h.place(2, Side::sell, 960000, 100);
  h.place(1, Side::buy, 960000, 100);
  h.run(SetPositionTpSl{user(1), 0, OrderId{Uuid{0x7777, 9}}, OrderId{Uuid{0x7777, 10}}, 970000, 950000, 0, TriggerBy::last, 5});
  auto decoded = decode_snapshot(encode_snapshot(h.engine.export_state()));
  ASSERT_TRUE(decoded.has_value());
  TypeParam copy{two_market_config()};
  copy.load(*decoded);
  EXPECT_EQ(copy.state_hash(), h.engine.state_hash());
  EXPECT_EQ(copy.check_invariants(), "");
}

TYPED_TEST(EngineTest, AStopLossForTheWholePositionClosesWhatIsLeftAfterItShrank) {
  auto& h = this->h;
  h.place(2, Side::sell, 970000, 100);
  h.place(1, Side::buy, 970000, 100);
  const OrderId tp{Uuid{0x7777, 21}}, sl{Uuid{0x7777, 22}};
  h.run(SetPositionTpSl{user(1), 0, tp, sl, 990000, 960000, 0, TriggerBy::mark, 1});
  h.place(3, Side::buy, 970000, 60);
  h.place(1, Side::sell, 970000, 60, TimeInForce::ioc);  // 40 left
  ASSERT_EQ(h.engine.account(user(1))->positions[0].size, 40);
  h.place(4, Side::buy, 959000, 100);
  const auto ev = h.mark(960000);
  EXPECT_TRUE(all_of<OrderRejected>(ev).empty());
  EXPECT_EQ(h.engine.account(user(1))->positions[0].size, 0);  // the stop-loss closed the 40
}

TEST(EngineSnapshotCodec, OrderLinksThatDoNotPairTwoHeldOrdersOfOneAccountAreRefused) {
  Harness<Engine> h;
  h.mark(970000);
  for (std::uint64_t u = 1; u <= 2; ++u) h.deposit(u, 100'000 * kUsdm);
  h.place(2, Side::sell, 970000, 100);
  h.place(1, Side::buy, 970000, 100);
  const OrderId tp{Uuid{0x7777, 31}}, sl{Uuid{0x7777, 32}};
  h.run(SetPositionTpSl{user(1), 0, tp, sl, 990000, 960000, 0, TriggerBy::mark, 1});
  Snapshot good = h.engine.export_state();
  ASSERT_EQ(good.order_links.size(), 2u);
  ASSERT_TRUE(decode_snapshot(encode_snapshot(good)).has_value());
  Snapshot self = good;  // its own partner: firing it would release it twice
  self.order_links[0].partner = self.order_links[0].order;
  EXPECT_FALSE(decode_snapshot(encode_snapshot(self)).has_value());
  Snapshot missing = good;  // a link to an order that is not there
  missing.order_links[1].order = OrderId{Uuid{0x7777, 99}};
  EXPECT_FALSE(decode_snapshot(encode_snapshot(missing)).has_value());
  Snapshot one_way = good;  // a partner that does not name it back
  one_way.order_links[1].links = kLinkPosition;
  EXPECT_FALSE(decode_snapshot(encode_snapshot(one_way)).has_value());
}

// Recovery checks a stored snapshot's state hash after loading it: a state with none of the newer
// features (switches, TP/SL links, last-price triggers) must hash exactly as before them, or every
// older snapshot would be passed over and the whole journal replayed. The value is what aaf9876's
// engine computes for this scenario (an earlier draft of issue 23 changed it).
TEST(EngineStateHash, AStateWithoutTheNewerFeaturesHashesAsBefore) {
  EngineConfig c;
  MarketSpec m;
  m.notional_num = 100;
  m.min_notional = 100'000'000;
  m.max_leverage = 40;
  c.markets = {m};
  Engine e{c};
  std::vector<Event> out;
  e.apply(SetMark{0, 970000, 0}, out);
  for (std::uint64_t u = 1; u <= 3; ++u) e.apply(Deposit{user(u), 100'000'000'000, 0}, out);
  auto order = [&](std::uint64_t u, std::uint64_t id, Side s, Price p, Qty q, OrderType t = OrderType::limit, Price trig = 0) {
    PlaceOrder o;
    o.user = user(u);
    o.id = OrderId{Uuid{0x9000, id}};
    o.side = s;
    o.price = p;
    o.qty = q;
    o.type = t;
    o.trigger_price = trig;
    o.reduce_only = t != OrderType::limit;
    o.ts_ms = static_cast<std::int64_t>(id);
    e.apply(o, out);
  };
  order(1, 1, Side::sell, 970100, 100);
  order(2, 2, Side::buy, 970100, 60);
  order(3, 3, Side::buy, 969000, 40);
  order(2, 4, Side::sell, 0, 60, OrderType::stop_market, 960000);
  EXPECT_EQ(e.state_hash(), 3890251853544587720ull);
}
