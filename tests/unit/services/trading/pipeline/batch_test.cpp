// services/trading/pipeline/batch.cpp: merging batches, the balances a batch touched, and the
// account a command acts for.
#include <gtest/gtest.h>

#include "pipeline_fixture.hpp"

namespace hydrox::trading::test {
namespace {

TEST(Batch, MergeKeepsEachItemsEventsAndTheLaterCollateral) {
  Pipeline p;
  Batch a, b;
  p.apply(a, SetMark{0, 970'000, 1});
  p.apply(a, Deposit{user(1), 1000 * kUsdm, 2});
  a.balances.push_back({user(1), 1000 * kUsdm, 2});
  p.apply(b, Deposit{user(1), 5 * kUsdm, 3});
  p.apply(b, Deposit{user(2), 7 * kUsdm, 4});
  b.balances.push_back({user(1), 1005 * kUsdm, 3});
  b.balances.push_back({user(2), 7 * kUsdm, 4});
  int answered = 0;
  b.after_projection.push_back([&] { ++answered; });
  const std::size_t a_events = a.events.size();
  const Event b_first = b.events[b.items[0].first_event];

  merge_batches(a, std::move(b));
  ASSERT_EQ(a.items.size(), 4u);
  EXPECT_EQ(a.items[2].first_event, a_events);
  EXPECT_EQ(a.events[a.items[2].first_event].seq, b_first.seq);
  EXPECT_EQ(a.first_command(), 1u);
  EXPECT_EQ(a.last_command(), 4u);
  EXPECT_EQ(a.last_seq(), a.events.back().seq);
  const auto last = last_balances(a.balances);
  ASSERT_EQ(last.size(), 2u);
  EXPECT_EQ(last[0].user, user(1));
  EXPECT_EQ(last[0].collateral, 1005 * kUsdm);  // the later batch's state
  EXPECT_EQ(last[0].ts_ms, 3);
  ASSERT_EQ(a.after_projection.size(), 1u);
  a.after_projection[0]();
  EXPECT_EQ(answered, 1);
}

TEST(Batch, TheTailAfterACommandHasOnlyTheCommandsNotWrittenYet) {
  // A batch partly projected (by a standby, or one by one before a lost connection) is written
  // on from the watermark: the rest alone, its events rebased.
  Pipeline p;
  Batch b;
  p.apply(b, SetMark{0, 970'000, 1});
  p.apply(b, Deposit{user(1), 1000 * kUsdm, 2});
  p.apply(b, Deposit{user(2), 2000 * kUsdm, 3});
  b.balances.push_back({user(2), 2000 * kUsdm, 3});
  const Batch tail = tail_after(b, b.items[1].command_no);
  ASSERT_EQ(tail.items.size(), 1u);
  EXPECT_EQ(tail.first_command(), b.items[2].command_no);
  EXPECT_EQ(tail.items[0].first_event, 0u);
  ASSERT_EQ(tail.items[0].end_event, b.items[2].end_event - b.items[2].first_event);
  EXPECT_EQ(tail.events[0].seq, b.events[b.items[2].first_event].seq);
  EXPECT_EQ(tail.balances.size(), 1u);
  EXPECT_EQ(tail_after(b, b.last_command()).items.size(), 0u);
}

TEST(Batch, ReadsAndReplaysAreNotInTheCommandRange) {
  Batch b;
  Item read;
  read.journaled = false;
  b.items.push_back(read);
  EXPECT_EQ(b.first_command(), 0u);
  EXPECT_EQ(b.last_command(), 0u);
}

TEST(Batch, BalancesOfEveryAccountATradeTouchedWithTheLastCommandsTime) {
  Pipeline p;
  Batch setup;
  p.apply(setup, SetMark{0, 970'000, 1});
  p.apply(setup, Deposit{user(1), 10'000 * kUsdm, 1});
  p.apply(setup, Deposit{user(2), 10'000 * kUsdm, 1});
  Batch b;
  p.apply(b, p.order(1, Side::sell, 970'000, 10, 100));
  p.apply(b, p.order(2, Side::buy, 970'000, 10, 200));  // crosses: a trade with fees
  p.apply(b, Deposit{user(3), 50 * kUsdm, 300});
  add_balances(b, p.engine, kFeeAccount);
  std::map<Uuid, BalanceRow> rows;
  for (const auto& r : b.balances) rows[r.user.value()] = r;
  ASSERT_EQ(rows.size(), 4u);  // maker, taker, the fee account, the depositor
  EXPECT_EQ(rows[user(1).value()].ts_ms, 200);  // touched by the taker's command
  EXPECT_EQ(rows[user(2).value()].ts_ms, 200);
  EXPECT_EQ(rows[kFeeAccount.value()].ts_ms, 200);
  EXPECT_EQ(rows[user(3).value()].ts_ms, 300);
  EXPECT_EQ(rows[user(3).value()].collateral, 50 * kUsdm);
  EXPECT_EQ(rows[user(1).value()].collateral, p.engine.account(user(1))->collateral);
  EXPECT_LT(rows[user(2).value()].collateral, 10'000 * kUsdm);  // the taker paid a fee
}

TEST(Batch, TheAccountACommandActsFor) {
  EXPECT_EQ(command_user(Deposit{user(4), 1, 0}), user(4));
  EXPECT_EQ(command_user(CancelAll{user(5), -1, 0}), user(5));
  CreateVault v;
  v.leader = user(6);
  v.account = user(7);
  EXPECT_EQ(command_user(v), user(6));
  EXPECT_EQ(command_user(SetMark{0, 1, 0}), std::nullopt);
}

}  // namespace

TEST(Batch, AClientsBatchAnswerDoesNotStampItsAccountsWithItsOwnTime) {
  // POST /orders/batch: the commands, then the item that answers them, its events spanning
  // theirs and its own command a default one (time 0). The times are the commands'.
  Pipeline p;
  Batch setup;
  p.apply(setup, SetMark{0, 970'000, 1});
  p.apply(setup, Deposit{user(1), 10'000 * kUsdm, 1});
  p.apply(setup, Deposit{user(2), 10'000 * kUsdm, 1});
  Batch b;
  p.apply(b, p.order(1, Side::sell, 970'000, 10, 100));
  p.apply(b, p.order(2, Side::buy, 970'000, 10, 200));
  for (auto& it : b.items) it.batch_part = true;
  Item answer;
  answer.journaled = false;
  answer.carries_batch = true;
  answer.first_event = 0;
  answer.end_event = b.events.size();
  b.items.push_back(std::move(answer));
  add_balances(b, p.engine, kFeeAccount);
  std::map<Uuid, BalanceRow> rows;
  for (const auto& r : last_balances(b.balances)) rows[r.user.value()] = r;
  EXPECT_EQ(rows[user(1).value()].ts_ms, 200);
  EXPECT_EQ(rows[user(2).value()].ts_ms, 200);
  EXPECT_EQ(rows[kFeeAccount.value()].ts_ms, 200);
}

}  // namespace hydrox::trading::test
