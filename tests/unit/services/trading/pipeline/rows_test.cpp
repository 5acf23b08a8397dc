// services/trading/pipeline/rows.cpp: the journal's transaction and the projector's read rows.
#include <gtest/gtest.h>

#include <algorithm>

#include "pipeline/rows.hpp"
#include "pipeline_fixture.hpp"

namespace hydrox::trading::test {
namespace {

std::vector<std::string> names(const std::vector<db::Statement>& s) {
  std::vector<std::string> out;
  for (const auto& st : s) out.push_back(st.name);
  return out;
}

const db::Statement* find(const std::vector<db::Statement>& s, std::string_view name) {
  for (const auto& st : s) {
    if (st.name == name) return &st;
  }
  return nullptr;
}

struct Rows : ::testing::Test {
  Catalog catalog = btc_catalog();
  RowContext ctx{catalog, kFeeAccount, [](const Uuid&) { return std::optional<UserId>(user(9)); }};
  Pipeline p;
  Batch setup;
  void SetUp() override {
    p.apply(setup, SetMark{0, 970'000, 1});
    p.apply(setup, Deposit{user(1), 100'000 * kUsdm, 1});
    p.apply(setup, Deposit{user(2), 100'000 * kUsdm, 1});
  }
};

TEST_F(Rows, TheJournalTransactionHoldsTheCommandsAndNoReadRows) {
  Batch b;
  p.apply(b, p.order(1, Side::sell, 970'000, 10, 100));
  p.apply(b, p.order(2, Side::buy, 970'000, 10, 200));
  const auto s = journal_statements(b, ctx);
  EXPECT_EQ(names(s), (std::vector<std::string>{"begin", "journal_insert", "commit"}));
  // One row per command: their numbers in the first column's array.
  EXPECT_EQ(*s[1].params[0], "{\"" + std::to_string(b.items[0].command_no) + "\",\"" +
                                 std::to_string(b.items[1].command_no) + "\"}");
}

TEST_F(Rows, AVaultsCatalogueRowGoesWithTheJournalUnlessLeftOut) {
  Batch b;
  CreateVault v;
  v.vault = Uuid{0x5555, 0x8000000000000005ull};
  v.leader = user(1);
  v.account = user(50);
  v.initial = 100 * kUsdm;
  v.ts_ms = 300;
  p.apply(b, v);
  ASSERT_TRUE(std::any_of(b.events.begin(), b.events.end(),
                          [](const Event& e) { return std::holds_alternative<VaultCreated>(e.body); }));
  b.items.back().meta = R"({"name":"alpha"})";
  auto with = names(journal_statements(b, ctx));
  EXPECT_NE(std::find(with.begin(), with.end(), "vaults_insert"), with.end());
  auto without = names(journal_statements(b, ctx, /*with_vault_rows=*/false));
  EXPECT_EQ(std::find(without.begin(), without.end(), "vaults_insert"), without.end());
  EXPECT_NE(std::find(without.begin(), without.end(), "journal_insert"), without.end());
}

TEST_F(Rows, ReadRowsOfATradeWithoutTransactionStatements) {
  Batch b;
  p.apply(b, p.order(1, Side::sell, 970'000, 10, 100));
  p.apply(b, p.order(2, Side::buy, 970'000, 10, 200));
  add_balances(b, p.engine, kFeeAccount);
  std::vector<db::Statement> s;
  append_read_rows(b, ctx, s);
  const auto n = names(s);
  for (const char* table : {"orders_insert", "trades_insert", "fills_insert", "ledger_insert", "positions_upsert",
                            "balances_upsert", "klines_upsert"}) {
    EXPECT_NE(std::find(n.begin(), n.end(), table), n.end()) << table;
  }
  EXPECT_EQ(std::find(n.begin(), n.end(), "begin"), n.end());
  EXPECT_EQ(std::find(n.begin(), n.end(), "journal_insert"), n.end());
  // Balances carry the time of the command that last touched the account, not the clock's.
  EXPECT_NE(find(s, "balances_upsert")->params[2]->find(ts(200)), std::string::npos);
  // Every statement is prepared once per connection (the same text every batch).
  for (const auto& st : s) EXPECT_TRUE(st.prepare) << st.name;
}

TEST_F(Rows, APositionOpenedAgainWithinTheBatchStartsAtThatChange) {
  // User 1 opens long, closes, opens long again in one batch: its start is the last opening,
  // whatever the stored row says; nothing compares the stored size for it.
  Batch b;
  p.apply(b, p.order(2, Side::sell, 970'000, 10, 100));
  p.apply(b, p.order(1, Side::buy, 970'000, 10, 110, TimeInForce::ioc));
  p.apply(b, p.order(2, Side::buy, 970'000, 10, 120));
  p.apply(b, p.order(1, Side::sell, 970'000, 10, 130, TimeInForce::ioc));
  p.apply(b, p.order(2, Side::sell, 970'000, 5, 140));
  p.apply(b, p.order(1, Side::buy, 970'000, 5, 150, TimeInForce::ioc));
  std::vector<db::Statement> s;
  append_read_rows(b, ctx, s);
  const db::Statement* started = find(s, "positions_started");
  ASSERT_NE(started, nullptr);
  EXPECT_NE(started->params[2]->find(ts(150)), std::string::npos) << *started->params[2];
  // Only user 1's and user 2's rows; user 1 (opened again) is not compared with the stored row.
  const db::Statement* reopened = find(s, "positions_reopened");
  if (reopened) {
    EXPECT_EQ(reopened->params[0]->find(user(1).value().to_string()), std::string::npos);
  }
}

TEST_F(Rows, ThePositionsFirstChangeIsComparedWithTheStoredRow) {
  Batch b;
  p.apply(b, p.order(2, Side::sell, 970'000, 10, 100));
  p.apply(b, p.order(1, Side::buy, 970'000, 10, 110, TimeInForce::ioc));
  std::vector<db::Statement> s;
  append_read_rows(b, ctx, s);
  EXPECT_EQ(find(s, "positions_started"), nullptr);
  const db::Statement* reopened = find(s, "positions_reopened");
  ASSERT_NE(reopened, nullptr);  // a stored flat or opposite row would start again at 110
  EXPECT_NE(reopened->params[0]->find(user(1).value().to_string()), std::string::npos);
  EXPECT_NE(reopened->params[3]->find(ts(110)), std::string::npos);
}


TEST_F(Rows, AnAmendedOrderIsWrittenWithItsNewPriceAndSize) {
  // Amended in the batch that placed it: the insert carries the amended values.
  Batch b;
  const PlaceOrder o = p.order(1, Side::buy, 969'000, 10, 100);
  p.apply(b, o);
  p.apply(b, AmendOrder{user(1), o.id, 0, 968'500, 20, 150, {}});
  std::vector<db::Statement> s;
  append_read_rows(b, ctx, s);
  const db::Statement* insert = find(s, "orders_insert");
  ASSERT_NE(insert, nullptr);
  EXPECT_NE(insert->params[6]->find("96850"), std::string::npos) << *insert->params[6];  // price
  EXPECT_NE(insert->params[7]->find("0.02"), std::string::npos) << *insert->params[7];   // amount
  // Amended in a later batch: an update of price and amount, nothing inserted.
  Batch later;
  p.apply(later, AmendOrder{user(1), o.id, 0, 0, 15, 200, {}});
  std::vector<db::Statement> s2;
  append_read_rows(later, ctx, s2);
  const db::Statement* amend = find(s2, "orders_amend");
  ASSERT_NE(amend, nullptr);
  EXPECT_NE(amend->params[2]->find("0.015"), std::string::npos) << *amend->params[2];
  EXPECT_EQ(find(s2, "orders_insert"), nullptr);
}

}  // namespace

TEST_F(Rows, AnAmendOfATriggerOrderThatFiredInTheSameBatchIsWritten) {
  // A stop-limit fires (accepted again: an insert that conflicts with its stored row) and is
  // amended in the same batch: the amendment must still reach the row.
  Batch before;
  PlaceOrder stop = p.order(1, Side::sell, 960'000, 10, 100);
  stop.type = OrderType::stop_limit;
  stop.trigger_price = 965'000;
  p.apply(before, stop);
  Batch b;
  p.apply(b, SetMark{0, 964'000, 200});
  ASSERT_NE(p.engine.order(stop.id), nullptr);
  p.apply(b, AmendOrder{user(1), stop.id, 0, 961'000, 0, 300, {}});
  ASSERT_TRUE(std::any_of(b.events.begin(), b.events.end(),
                          [](const Event& e) { return std::holds_alternative<OrderAmended>(e.body); }));
  std::vector<db::Statement> s;
  append_read_rows(b, ctx, s);
  ASSERT_NE(find(s, "orders_insert"), nullptr);
  const db::Statement* amend = find(s, "orders_amend");
  ASSERT_NE(amend, nullptr);
  EXPECT_NE(amend->params[1]->find("96100"), std::string::npos) << *amend->params[1];
}

}  // namespace hydrox::trading::test
