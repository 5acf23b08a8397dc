#include "pipeline/rows.hpp"

#include <map>
#include <stdexcept>
#include <unordered_map>

#include "hydrox/core/clock.hpp"
#include "hydrox/core/text.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/metrics/metrics.hpp"
#include "journal.hpp"

namespace hydrox::trading {

using namespace engine;

std::string ts(std::int64_t ms) { return format_rfc3339_ms(ms); }

// A funding rate in 1e-9 divided by `divisor`, as exact decimal text (F / 8 has at most 12 decimals).
std::string rate_text(std::int64_t ppb, int divisor) {
  const __int128 scaled = static_cast<__int128>(ppb) * 1000 / divisor;  // 1e-12
  return decimal::format(static_cast<std::int64_t>(scaled), 12);
}

namespace {

int sign(std::int64_t v) { return (v > 0) - (v < 0); }

// The rows of one table for one statement: `head` (an INSERT's column list, or an UPDATE up to
// its FROM) then unnest($1::type[], $2::type[], ...) — one array parameter per column — then
// `suffix`. The SQL text is the same for every batch, so the persister's connection prepares it
// once (the VALUES lists this replaced were parsed and planned anew each time: about 1 ms of
// planning for 30 rows of fills).
void append_escaped(std::string& col, std::string_view v) {
  for (char c : v) {
    if (c == '"' || c == '\\') col += '\\';
    col += c;
  }
}

metrics::Counter& sanitized_values() {
  static auto& c = metrics::Registry::global().counter(
      "trading_persister_sanitized_values_total",
      "Values with NUL or invalid UTF-8 replaced before a batch was written");
  return c;
}

class MultiRow {
 public:
  MultiRow(std::string head, std::vector<const char*> types, std::string suffix)
      : head_(std::move(head)),
        types_(std::move(types)),
        suffix_(std::move(suffix)),
        columns_(types_.size()) {
    if (head_.rfind("INSERT", 0) == 0) head_ += " SELECT * FROM";
  }
  // Appends each value to its column's array text at once (no per-row vectors kept).
  void add(std::initializer_list<db::Param> row) {
    if (row.size() != types_.size()) throw std::logic_error("MultiRow: a row of the wrong width");
    std::size_t k = 0;
    for (const db::Param& v : row) {
      std::string& col = columns_[k++];
      if (rows_ > 0) col += ',';
      if (!v) {
        col += "NULL";
        continue;
      }
      col += '"';
      // Binary-safe: libpq sends text parameters as C strings and PostgreSQL text holds neither
      // NUL nor invalid UTF-8, so one such byte would refuse the whole batch (every user's
      // commands in it). The edge refuses such strings (hydrox/core/text.hpp); should one get
      // here anyway, each bad byte becomes U+FFFD and the batch commits.
      bool plain_ascii = true;  // the common case (numbers, ids, codes): one pass, no decoding
      for (const char c : *v) {
        if (c == '\0' || static_cast<unsigned char>(c) >= 0x80) {
          plain_ascii = false;
          break;
        }
      }
      const bool clean = plain_ascii || (v->find('\0') == std::string::npos && valid_utf8(*v));
      if (!clean) [[unlikely]] {
        sanitized_values().inc();
        append_escaped(col, utf8_repaired(*v, /*replace_nul=*/true));
      } else if (v->find_first_of("\"\\") == std::string::npos) {
        col += *v;
      } else {
        append_escaped(col, *v);
      }
      col += '"';
    }
    ++rows_;
  }
  void append_to(std::vector<db::Statement>& out, std::string_view name) const {
    const std::size_t columns = types_.size();
    std::string sql = head_ + " unnest(";
    for (std::size_t k = 0; k < columns; ++k) {
      if (k) sql += ", ";
      sql += '$' + std::to_string(k + 1) + "::" + types_[k] + "[]";
    }
    sql += ") " + suffix_;
    std::vector<db::Param> params;
    params.reserve(columns);
    for (std::size_t k = 0; k < columns; ++k) {
      std::string array;
      array.reserve(columns_[k].size() + 2);
      array += '{';
      array += columns_[k];
      array += '}';
      params.push_back(std::move(array));
    }
    out.push_back(db::Statement{std::string(name), std::move(sql), std::move(params), true});
  }
  bool empty() const { return rows_ == 0; }

 private:
  std::string head_;
  std::vector<const char*> types_;
  std::string suffix_;
  std::vector<std::string> columns_;  // each column's array elements, comma-separated
  std::size_t rows_ = 0;
};

}  // namespace

Uuid position_id(const UserId& user, int market_id) {
  Uuid u = user.value();
  std::uint64_t m = static_cast<std::uint64_t>(market_id) * 0x9E3779B97F4A7C15ull;
  Uuid out{u.hi ^ m, u.lo ^ (m >> 7) ^ 0x5A5A5A5A5A5A5A5Aull};
  out.hi = (out.hi & ~0xF000ull) | 0x8000ull;  // version 8: custom, derived
  out.lo = (out.lo & ~(0xC000ull << 48)) | (0x8000ull << 48);
  return out;
}

std::vector<db::Statement> journal_statements(const Batch& b, const RowContext& ctx, bool with_vault_rows) {
  const Catalog& catalog_ = ctx.catalog;
  MultiRow journal("INSERT INTO engine_journal (command_no, kind, payload, first_seq, event_count)",
                   {"bigint", "text", "json", "bigint", "integer"},
                   "ON CONFLICT (command_no) DO NOTHING");
  MultiRow operators("INSERT INTO operator_requests (idempotency_key, kind, user_id, amount, command_no, outcome)",
                     {"text", "text", "uuid", "numeric", "bigint", "text"},
                     "ON CONFLICT (idempotency_key) DO NOTHING");
  for (const auto& it : b.items) {
    if (!it.journaled) continue;
    const Seq first = it.end_event > it.first_event ? b.events[it.first_event].seq : 0;
    journal.add({std::to_string(it.command_no), command_kind(it.command), encode_command(it.command, catalog_),
                 std::to_string(first), std::to_string(it.end_event - it.first_event)});
    if (!it.idempotency_key.empty()) {
      std::string user, amount;
      if (auto* d = std::get_if<Deposit>(&it.command)) {
        user = d->user.value().to_string();
        amount = usdm_text(d->amount);
      } else if (auto* w = std::get_if<Withdraw>(&it.command)) {
        user = w->user.value().to_string();
        amount = usdm_text(w->amount);
      } else if (auto* vd = std::get_if<VaultDeposit>(&it.command)) {
        user = vd->user.value().to_string();
        amount = usdm_text(vd->amount);
      } else if (auto* vw = std::get_if<VaultWithdraw>(&it.command)) {
        user = vw->user.value().to_string();
        amount = usdm_text(vw->amount);
      } else if (auto* rw = std::get_if<RequestWithdrawal>(&it.command)) {
        user = rw->user.value().to_string();
        amount = usdm_text(rw->amount);
      } else if (auto* cv = std::get_if<CreateVault>(&it.command)) {
        user = cv->leader.value().to_string();
        amount = usdm_text(cv->initial);
      }
      operators.add({it.idempotency_key, command_kind(it.command), user, amount, std::to_string(it.command_no),
                     it.outcome_text});
    }
  }

  // Vaults the engine created in this batch: their catalogue rows, written with the journal.
  MultiRow vault_rows("INSERT INTO vaults (id, name, description, address, leader_user_id, account_user_id,"
                      " lock_period_days, lock_period_ms, performance_fee, management_fee, min_deposit, capacity,"
                      " is_protocol, created_at)",
                      {"uuid", "text", "text", "text", "uuid", "uuid", "integer", "bigint", "numeric", "numeric", "numeric", "numeric", "boolean", "timestamptz"}, "ON CONFLICT (id) DO NOTHING");
  for (const auto& it : b.items) {
    const auto* c = std::get_if<CreateVault>(&it.command);
    if (!c || c->protocol) continue;
    bool created = false;
    for (std::size_t i = it.first_event; i < it.end_event; ++i) created |= std::holds_alternative<VaultCreated>(b.events[i].body);
    if (!created) continue;
    std::string name = "vault " + c->vault.to_string().substr(0, 8), description;
    if (auto meta = json::parse(it.meta); meta && meta->is_object()) {
      if (const auto* n = meta->find("name"); n && n->is_string()) name = n->as_string();
      if (const auto* d = meta->find("description"); d && d->is_string()) description = d->as_string();
    }
    vault_rows.add({c->vault.to_string(), name, description, "vault:" + c->vault.to_string(), c->leader.value().to_string(),
                    c->account.value().to_string(), std::to_string(c->lock_ms / 86'400'000), std::to_string(c->lock_ms),
                    decimal::format(static_cast<std::int64_t>(c->performance_fee_ppm), 4),
                    decimal::format(static_cast<std::int64_t>(c->management_fee_ppm), 4), usdm_text(c->min_deposit),
                    usdm_text(c->capacity), "false", ts(c->ts_ms)});
  }

  // Withdrawals: the row of a new one (its address from the request) and each status change,
  // written with the journal: the row exists exactly when the money has left the account.
  MultiRow withdrawal_rows("INSERT INTO withdrawals (id, user_id, amount, address, chain, status, command_no, created_at,"
                           " updated_at)",
                           {"uuid", "uuid", "numeric", "text", "text", "text", "bigint", "timestamptz", "timestamptz"},
                           "ON CONFLICT (id) DO NOTHING");
  MultiRow withdrawal_updates("UPDATE withdrawals w SET status = v.status, chain_tx_id = coalesce(v.tx, w.chain_tx_id),"
                              " reason = coalesce(v.reason, w.reason), updated_at = v.at FROM",
                              {"uuid", "text", "text", "text", "timestamptz"},
                              "AS v(id, status, tx, reason, at) WHERE w.id = v.id");
  struct Update {
    std::string id, status;
    db::Param tx, reason;
    std::string at;
  };
  std::map<Uuid, Update> last_update;  // one per withdrawal (the batch's last)
  for (const auto& it : b.items) {
    if (!it.journaled) continue;
    for (std::size_t i = it.first_event; i < it.end_event; ++i) {
      const auto* wc = std::get_if<WithdrawalChanged>(&b.events[i].body);
      if (!wc) continue;
      std::string address, chain, tx, reason;
      if (auto meta = json::parse(it.meta); meta && meta->is_object()) {
        auto text = [&](std::string_view k) {
          const auto* v = meta->find(k);
          return v && v->is_string() ? std::string(v->as_string()) : std::string();
        };
        address = text("address");
        chain = text("chain");
        tx = text("chain_tx_id");
        reason = text("reason");
      }
      if (wc->status == WithdrawalStatus::pending) {
        withdrawal_rows.add({wc->id.to_string(), wc->user.value().to_string(), usdm_text(wc->amount), address, chain,
                             "PENDING", std::to_string(it.command_no), ts(wc->ts_ms), ts(wc->ts_ms)});
      } else {
        last_update[wc->id] = Update{wc->id.to_string(), std::string(withdrawal_status_code(wc->status)),
                                     tx.empty() ? db::Param{} : db::Param{tx},
                                     reason.empty() ? db::Param{} : db::Param{reason}, ts(wc->ts_ms)};
      }
    }
  }
  for (auto& [id, u] : last_update) withdrawal_updates.add({u.id, u.status, u.tx, u.reason, u.at});

  // A market's status and changed parameters (the batch's last per market), with the journal.
  MultiRow market_rows("INSERT INTO market_state (market_id, status, maker_fee_rate, taker_fee_rate, max_leverage,"
                       " final_price, command_no, updated_at)",
                       {"integer", "text", "numeric", "numeric", "integer", "numeric", "bigint", "timestamptz"},
                       "ON CONFLICT (market_id) DO UPDATE SET status = EXCLUDED.status, maker_fee_rate = EXCLUDED.maker_fee_rate,"
                       " taker_fee_rate = EXCLUDED.taker_fee_rate, max_leverage = EXCLUDED.max_leverage,"
                       " final_price = EXCLUDED.final_price, command_no = EXCLUDED.command_no, updated_at = EXCLUDED.updated_at");
  std::map<std::uint32_t, std::vector<db::Param>> last_market;
  for (const auto& it : b.items) {
    if (!it.journaled) continue;
    for (std::size_t i = it.first_event; i < it.end_event; ++i) {
      const auto* mc = std::get_if<MarketChanged>(&b.events[i].body);
      if (!mc) continue;
      const MarketInfo& m = catalog_.at(mc->market);
      last_market[mc->market] = {std::to_string(m.id), std::string(market_status_code(mc->status)),
                                 decimal::format(static_cast<std::int64_t>(mc->maker_fee_ppm), 6),
                                 decimal::format(static_cast<std::int64_t>(mc->taker_fee_ppm), 6),
                                 std::to_string(mc->max_leverage),
                                 mc->final_price > 0 ? db::Param{Catalog::price_text(m, mc->final_price)} : db::Param{},
                                 std::to_string(it.command_no), ts(mc->ts_ms)};
    }
  }
  for (auto& [m, row] : last_market) {
    market_rows.add({row[0], row[1], row[2], row[3], row[4], row[5], row[6], row[7]});
  }

  std::vector<db::Statement> statements;
  statements.push_back({"begin", "BEGIN", {}});
  journal.append_to(statements, "journal_insert");
  if (!operators.empty()) operators.append_to(statements, "operator_insert");
  if (with_vault_rows && !vault_rows.empty()) vault_rows.append_to(statements, "vaults_insert");
  // (Not catalogue rows: never left out, since the money moved with them.)
  if (!withdrawal_rows.empty()) withdrawal_rows.append_to(statements, "withdrawals_insert");
  if (!withdrawal_updates.empty()) withdrawal_updates.append_to(statements, "withdrawals_update");
  if (!market_rows.empty()) market_rows.append_to(statements, "market_state_upsert");
  statements.push_back({"commit", "COMMIT", {}});
  return statements;
}

void append_read_rows(const Batch& b, const RowContext& ctx, std::vector<db::Statement>& statements) {
  const Catalog& catalog_ = ctx.catalog;
  // Orders: new ones inserted with their state at the end of the batch; older ones updated.
  struct OrderRow {
    const OrderAccepted* accepted = nullptr;
    const OrderUpdated* last = nullptr;
    const OrderAmended* amended = nullptr;  // the last amendment: the order's price and size now
    Seq seq = 0;
  };
  std::unordered_map<Uuid, OrderRow, engine::UuidHash> orders;
  std::vector<Uuid> order_ids;
  MultiRow trades("INSERT INTO trades (seq, market_id, price, amount, taker_side, maker_order_id, taker_order_id, time,"
                  " liquidation)", {"bigint", "integer", "numeric", "numeric", "text", "uuid", "uuid", "timestamptz", "text"}, "ON CONFLICT (seq) DO NOTHING");
  MultiRow fills("INSERT INTO fills (seq, liquidity, user_id, order_id, market_id, side, price, amount, fee, realized_pnl, time,"
                 " liquidation)",
                 {"bigint", "text", "uuid", "uuid", "integer", "text", "numeric", "numeric", "numeric", "numeric", "timestamptz", "text"}, "ON CONFLICT (seq, liquidity) DO NOTHING");
  MultiRow funding_rows("INSERT INTO funding_rates (market_id, time, rate, rate_8h, index_price, mark_price, paid, received,"
                        " to_insurance, positions, seq)",
                        {"integer", "timestamptz", "numeric", "numeric", "numeric", "numeric", "numeric", "numeric", "numeric", "integer", "bigint"}, "ON CONFLICT (market_id, time) DO NOTHING");
  MultiRow vault_tx_rows(
      "INSERT INTO vault_transactions (seq, vault_id, user_id, type, amount, fee, paid, shares,"
      " fee_shares, user_shares, nav, total_shares, unlock_at, time)",
      {"bigint", "uuid", "uuid", "text", "numeric", "numeric", "numeric", "numeric", "numeric",
       "numeric", "numeric", "numeric", "timestamptz", "timestamptz"},
      "ON CONFLICT (seq, type) DO NOTHING");
  MultiRow liquidation_rows("INSERT INTO liquidations (seq, user_id, account_value, maintenance_margin, stage, insurance_paid, time)",
                            {"bigint", "uuid", "numeric", "numeric", "text", "numeric", "timestamptz"}, "ON CONFLICT (seq) DO NOTHING");
  MultiRow funding_payments("INSERT INTO funding_payments (seq, user_id, market_id, time, amount, position_size)",
                            {"bigint", "uuid", "integer", "timestamptz", "numeric", "numeric"},
                            "ON CONFLICT (seq) DO NOTHING");
  MultiRow ledger("INSERT INTO ledger (seq, user_id, delta, reason, reference, time)",
                  {"bigint", "uuid", "numeric", "text", "text", "timestamptz"},
                  "ON CONFLICT DO NOTHING");
  struct Bar {
    Price open = 0, high = 0, low = 0, close = 0;
    Qty volume = 0;
    Usdm quote = 0;
    int trades = 0;
    Seq first = 0, last = 0;
  };
  std::map<std::pair<std::uint32_t, std::int64_t>, Bar> bars;  // (market, minute) in event order
  // A position's changes in the batch: its first and last state, and the time of the last change
  // after the first that opened it again or flipped it (-1: none). A position opened again is a
  // new position with its own start; the first change is compared with the stored row in SQL.
  // Either way the result depends on the changes alone, not on how they were cut into batches.
  struct PositionRow {
    const PositionChanged* first = nullptr;
    const PositionChanged* last = nullptr;
    std::int64_t opened_ms = -1;
  };
  std::unordered_map<Uuid, std::map<int, PositionRow>, engine::UuidHash> positions;
  std::map<int, const MarkChanged*> marks;
  for (const auto& e : b.events) {
    std::visit(
        [&](const auto& ev) {
          using T = std::decay_t<decltype(ev)>;
          if constexpr (std::is_same_v<T, OrderAccepted>) {
            auto& row = orders[ev.id.value()];
            if (!row.accepted && !row.last) order_ids.push_back(ev.id.value());
            if (!row.accepted) {  // a trigger order accepted again when it fires keeps its first record
              row.accepted = &ev;
              row.seq = e.seq;
            }
          } else if constexpr (std::is_same_v<T, OrderUpdated>) {
            auto& row = orders[ev.id.value()];
            if (!row.accepted && !row.last && !row.amended) order_ids.push_back(ev.id.value());
            row.last = &ev;
          } else if constexpr (std::is_same_v<T, OrderAmended>) {
            auto& row = orders[ev.id.value()];
            if (!row.accepted && !row.last && !row.amended) order_ids.push_back(ev.id.value());
            row.amended = &ev;
          } else if constexpr (std::is_same_v<T, Trade>) {
            const MarketInfo& m = catalog_.at(ev.market);
            const std::string price = Catalog::price_text(m, ev.price);
            const std::string amount = Catalog::amount_text(m, ev.qty);
            const std::string time = ts(ev.ts_ms);
            const std::string seq = std::to_string(e.seq);
            std::optional<std::string> liq;
            if (ev.liquidation != Liquidation::none) liq = std::string(liquidation_code(ev.liquidation));
            // Backstop and ADL transfers are not book trades: fills of both accounts, no public
            // trade, no candle.
            const bool off_book = ev.liquidation == Liquidation::backstop || ev.liquidation == Liquidation::adl;
            if (!off_book) {
            Bar& bar = bars[{ev.market, ev.ts_ms / 60'000}];
            if (bar.trades == 0) {
              bar.open = bar.high = bar.low = ev.price;
              bar.first = e.seq;
            }
            bar.high = std::max(bar.high, ev.price);
            bar.low = std::min(bar.low, ev.price);
            bar.close = ev.price;
            bar.volume += ev.qty;
            bar.quote += ev.notional;
            bar.last = e.seq;
            ++bar.trades;
            trades.add({seq, std::to_string(m.id), price, amount, std::string(side_name(ev.taker_side)),
                        ev.maker_order.value().to_string(), ev.taker_order.value().to_string(), time, liq});
            }
            fills.add({seq, "maker", ev.maker.value().to_string(), ev.maker_order.value().to_string(), std::to_string(m.id),
                       std::string(side_name(opposite(ev.taker_side))), price, amount, usdm_text(ev.maker_fee),
                       usdm_text(ev.maker_realized_pnl), time, off_book ? liq : std::nullopt});
            fills.add({seq, "taker", ev.taker.value().to_string(), ev.taker_order.value().to_string(), std::to_string(m.id),
                       std::string(side_name(ev.taker_side)), price, amount, usdm_text(ev.taker_fee),
                       usdm_text(ev.taker_realized_pnl), time, liq});
            if (ev.maker_fee + ev.taker_fee != 0) {
              ledger.add({seq, ev.maker.value().to_string(), usdm_text(-ev.maker_fee), "TRADING_FEE", ev.maker_order.value().to_string(), time});
              ledger.add({seq, ev.taker.value().to_string(), usdm_text(-ev.taker_fee), "TRADING_FEE", ev.taker_order.value().to_string(), time});
              ledger.add({seq, ctx.fee_account.value().to_string(), usdm_text(ev.maker_fee + ev.taker_fee), "FEE_INCOME", seq, time});
            }
            if (ev.maker_realized_pnl != 0) {
              ledger.add({seq, ev.maker.value().to_string(), usdm_text(ev.maker_realized_pnl), "REALIZED_PNL", ev.maker_order.value().to_string(), time});
            }
            if (ev.taker_realized_pnl != 0) {
              ledger.add({seq, ev.taker.value().to_string(), usdm_text(ev.taker_realized_pnl), "REALIZED_PNL", ev.taker_order.value().to_string(), time});
            }
          } else if constexpr (std::is_same_v<T, PositionChanged>) {
            PositionRow& row = positions[ev.user.value()][static_cast<int>(ev.market)];
            if (!row.first) {
              row.first = &ev;
            } else if (ev.size != 0 && sign(row.last->size) != sign(ev.size)) {
              row.opened_ms = ev.ts_ms;  // opened again, or flipped, within the batch
            }
            row.last = &ev;
          } else if constexpr (std::is_same_v<T, BalanceChanged>) {
            ledger.add({std::to_string(e.seq), ev.user.value().to_string(), usdm_text(ev.delta),
                        std::string(balance_reason_code(ev.reason)), std::string(), ts(ev.ts_ms)});
          } else if constexpr (std::is_same_v<T, IsolatedMarginChanged>) {
            // The ledger follows the collateral: margin into an isolated position leaves it.
            ledger.add({std::to_string(e.seq), ev.user.value().to_string(), usdm_text(-ev.delta),
                        std::string(balance_reason_code(BalanceReason::isolated_margin)),
                        catalog_.at(ev.market).symbol, ts(ev.ts_ms)});
          } else if constexpr (std::is_same_v<T, MarkChanged>) {
            marks[static_cast<int>(ev.market)] = &ev;
          } else if constexpr (std::is_same_v<T, FundingPaid>) {
            const MarketInfo& m = catalog_.at(ev.market);
            ledger.add({std::to_string(e.seq), ev.user.value().to_string(), usdm_text(-ev.amount), "FUNDING",
                        m.symbol + "@" + ts(ev.interval_ms), ts(ev.interval_ms)});
            funding_payments.add({std::to_string(e.seq), ev.user.value().to_string(), std::to_string(m.id),
                                  ts(ev.interval_ms), usdm_text(-ev.amount), Catalog::amount_text(m, ev.size)});
          } else if constexpr (std::is_same_v<T, FundingSettled>) {
            const MarketInfo& m = catalog_.at(ev.market);
            funding_rows.add({std::to_string(m.id), ts(ev.interval_ms), rate_text(ev.rate_ppb, 8), rate_text(ev.rate_ppb, 1),
                              Catalog::price_text(m, ev.index), Catalog::price_text(m, ev.mark), usdm_text(ev.paid),
                              usdm_text(ev.received), usdm_text(ev.to_insurance), std::to_string(ev.positions),
                              std::to_string(e.seq)});
          } else if constexpr (std::is_same_v<T, VaultChanged>) {
            static constexpr const char* kTypes[] = {"deposit", "withdrawal", "management_fee"};
            std::optional<std::string> unlock;
            if (ev.kind == VaultMove::deposit) unlock = ts(ev.unlock_ms);
            vault_tx_rows.add({std::to_string(e.seq), ev.vault.to_string(), ev.user.value().to_string(),
                               kTypes[static_cast<int>(ev.kind)], usdm_text(ev.amount), usdm_text(ev.fee),
                               usdm_text(ev.paid), usdm_text(ev.shares), usdm_text(ev.fee_shares),
                               usdm_text(ev.user_shares), usdm_text(ev.nav), usdm_text(ev.total_shares), unlock,
                               ts(ev.ts_ms)});
            if (ev.kind == VaultMove::withdrawal && ev.fee_shares > 0) {
              // The leader's profit share: shares minted to the leader, a transaction of its own.
              if (auto leader = ctx.vault_leader ? ctx.vault_leader(ev.vault) : std::nullopt) {
                vault_tx_rows.add({std::to_string(e.seq), ev.vault.to_string(),
                                   leader->value().to_string(), "profit_share",
                                   usdm_text(ev.fee), "0", "0", usdm_text(ev.fee_shares), "0", "0",
                                   usdm_text(ev.nav), usdm_text(ev.total_shares), std::nullopt,
                                   ts(ev.ts_ms)});
              }
            }
          } else if constexpr (std::is_same_v<T, AccountLiquidated>) {
            liquidation_rows.add({std::to_string(e.seq), ev.user.value().to_string(), usdm_text(ev.account_value),
                                  usdm_text(ev.maintenance_margin), std::string(liquidation_code(ev.stage)),
                                  usdm_text(ev.insurance_paid), ts(ev.ts_ms)});
          }
        },
        e.body);
  }

  MultiRow new_orders(
      "INSERT INTO orders (id, user_id, market_id, side, type, time_in_force, price, amount, filled, filled_notional,"
      " status, reduce_only, client_order_id, leverage, cancel_reason, created_seq, created_at, updated_at, trigger_price,"
      " trigger_by, position_tpsl)",
      {"uuid", "uuid", "integer", "text", "text", "text", "numeric", "numeric", "numeric", "numeric", "text", "boolean", "text", "integer", "text", "bigint", "timestamptz", "timestamptz", "numeric",
       "text", "boolean"},
      // A held trigger order that fires is accepted again: its row takes the new state.
      "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, filled = EXCLUDED.filled,"
      " filled_notional = EXCLUDED.filled_notional, cancel_reason = EXCLUDED.cancel_reason, updated_at = EXCLUDED.updated_at");
  MultiRow updates(
      "UPDATE orders o SET status = v.status, filled = v.filled, filled_notional = v.fn,"
      " cancel_reason = v.reason, updated_at = v.at FROM",
      {"uuid", "text", "numeric", "numeric", "text", "timestamptz"}, "AS v(id, status, filled, fn, reason, at) WHERE o.id = v.id");
  MultiRow amends(
      "UPDATE orders o SET price = v.price, amount = v.amount, updated_at = greatest(o.updated_at, v.at) FROM",
      {"uuid", "numeric", "numeric", "timestamptz"}, "AS v(id, price, amount, at) WHERE o.id = v.id");
  for (const Uuid& id : order_ids) {
    const OrderRow& row = orders[id];
    if (row.accepted) {
      const OrderAccepted& a = *row.accepted;
      const MarketInfo& m = catalog_.at(a.market);
      OrderStatus status = row.last ? row.last->status : OrderStatus::open;
      const Qty filled = row.last ? row.last->filled : 0;
      const Usdm fn = row.last ? row.last->filled_notional : 0;
      std::optional<std::string> reason;
      if (row.last && row.last->status == OrderStatus::cancelled) reason = std::string(cancel_reason_code(row.last->cancel_reason));
      std::optional<std::string> coid;
      if (!a.client_order_id.empty()) coid = std::string(a.client_order_id.view());
      std::optional<std::string> price, trigger;
      if (is_limit_like(a.type)) price = Catalog::price_text(m, row.amended ? row.amended->price : a.price);
      if (a.trigger_price != 0) trigger = Catalog::price_text(m, a.trigger_price);
      std::int64_t updated = row.last ? row.last->ts_ms : a.ts_ms;
      if (row.amended) updated = std::max(updated, row.amended->ts_ms);
      new_orders.add({id.to_string(), a.user.value().to_string(), std::to_string(m.id), std::string(side_name(a.side)),
                      std::string(type_name(a.type)), std::string(tif_name(a.tif)), price,
                      Catalog::amount_text(m, row.amended ? row.amended->qty : a.qty),
                      Catalog::amount_text(m, filled), usdm_text(fn), std::string(status_name(status)),
                      a.reduce_only ? "true" : "false", coid, std::to_string(a.leverage), reason,
                      std::to_string(row.seq), ts(a.ts_ms), ts(updated), trigger,
                      a.trigger_price != 0 ? std::optional<std::string>(a.trigger_by == TriggerBy::last ? "last" : "mark")
                                           : std::nullopt,
                      a.position_tpsl ? "true" : "false"});
    } else if (row.last) {
      const OrderUpdated& u = *row.last;
      const MarketInfo& m = catalog_.at(u.market);
      std::optional<std::string> reason;
      if (u.status == OrderStatus::cancelled) reason = std::string(cancel_reason_code(u.cancel_reason));
      updates.add({id.to_string(), std::string(status_name(u.status)), Catalog::amount_text(m, u.filled),
                   usdm_text(u.filled_notional), reason, ts(u.ts_ms)});
    }
    // An amendment, also of a row inserted above: a trigger order that fired in this batch is
    // "accepted" again and its insert conflicts with the stored row, which keeps its old price.
    if (row.amended) {
      const OrderAmended& am = *row.amended;
      const MarketInfo& m = catalog_.at(am.market);
      amends.add({id.to_string(), Catalog::price_text(m, am.price), Catalog::amount_text(m, am.qty), ts(am.ts_ms)});
    }
  }
  // The stored position opened again (or flipped) by the batch's first change: its start moves.
  MultiRow pos_reopened(
      "UPDATE positions p SET created_at = v.at FROM",
      {"uuid", "integer", "numeric", "timestamptz"},
      "AS v(u, m, s, at) WHERE p.user_id = v.u AND p.market_id = v.m AND v.s <> 0 AND sign(p.size) <> sign(v.s)");
  MultiRow pos_rows(
      "INSERT INTO positions (id, user_id, market_id, size, cost, realized_pnl, leverage, "
      "created_at, updated_at,"
      " funding_paid, margin_mode, isolated_margin)",
      {"uuid", "uuid", "integer", "numeric", "numeric", "numeric", "integer", "timestamptz",
       "timestamptz", "numeric", "text", "numeric"},
      "ON CONFLICT (user_id, market_id) DO UPDATE SET size = EXCLUDED.size, cost = EXCLUDED.cost,"
      " realized_pnl = EXCLUDED.realized_pnl, leverage = EXCLUDED.leverage, updated_at = "
      "EXCLUDED.updated_at,"
      " funding_paid = EXCLUDED.funding_paid, margin_mode = EXCLUDED.margin_mode,"
      " isolated_margin = EXCLUDED.isolated_margin");
  // Opened again later in the batch: that change's time is the start.
  MultiRow pos_started("UPDATE positions p SET created_at = v.at FROM", {"uuid", "integer", "timestamptz"},
                       "AS v(u, m, at) WHERE p.user_id = v.u AND p.market_id = v.m");
  for (const auto& [user, per_market] : positions) {
    for (const auto& [market, row] : per_market) {
      const MarketInfo& m = catalog_.at(static_cast<std::uint32_t>(market));
      const PositionChanged* p = row.last;
      const std::string u = user.to_string(), mid = std::to_string(m.id);
      if (row.opened_ms < 0 && row.first->size != 0) {
        pos_reopened.add({u, mid, Catalog::amount_text(m, row.first->size), ts(row.first->ts_ms)});
      }
      const std::int64_t start = row.opened_ms >= 0 ? row.opened_ms : row.first->ts_ms;
      pos_rows.add({position_id(p->user, m.id).to_string(), u, mid,
                    Catalog::amount_text(m, p->size), usdm_text(p->cost), usdm_text(p->realized_pnl),
                    std::to_string(p->leverage), ts(start), ts(p->ts_ms), usdm_text(p->funding),
                    p->isolated ? "isolated" : "cross", usdm_text(p->margin)});
      if (row.opened_ms >= 0) pos_started.add({u, mid, ts(row.opened_ms)});
    }
  }
  MultiRow balance_rows("INSERT INTO balances (user_id, collateral, updated_at)", {"uuid", "numeric", "timestamptz"},
                        "ON CONFLICT (user_id) DO UPDATE SET collateral = EXCLUDED.collateral, updated_at = EXCLUDED.updated_at");
  for (const BalanceRow& bal : last_balances(b.balances)) {  // one row per account
    balance_rows.add({bal.user.value().to_string(), usdm_text(bal.collateral), ts(bal.ts_ms)});
  }
  MultiRow mark_rows("INSERT INTO marks (market_id, mark, updated_at)", {"integer", "numeric", "timestamptz"},
                     "ON CONFLICT (market_id) DO UPDATE SET mark = EXCLUDED.mark, updated_at = EXCLUDED.updated_at");
  for (const auto& [market, mc] : marks) {
    const MarketInfo& m = catalog_.at(static_cast<std::uint32_t>(market));
    mark_rows.add({std::to_string(m.id), Catalog::price_text(m, mc->mark), ts(mc->ts_ms)});
  }
  // One-minute bars, merged into what earlier batches wrote; a bar part already applied (same
  // sequence range) is skipped, so a retried write cannot count its volume twice.
  MultiRow bar_rows(
      "INSERT INTO klines_1m AS k (market_id, bucket, open, high, low, close, volume, quote_volume, trades,"
      " first_seq, last_seq)",
      {"integer", "timestamptz", "numeric", "numeric", "numeric", "numeric", "numeric", "numeric", "integer", "bigint", "bigint"},
      "ON CONFLICT (market_id, bucket) DO UPDATE SET high = greatest(k.high, EXCLUDED.high),"
      " low = least(k.low, EXCLUDED.low), close = EXCLUDED.close, volume = trim_scale(k.volume + EXCLUDED.volume),"
      " quote_volume = trim_scale(k.quote_volume + EXCLUDED.quote_volume), trades = k.trades + EXCLUDED.trades,"
      " last_seq = EXCLUDED.last_seq WHERE k.last_seq < EXCLUDED.first_seq");
  for (const auto& [key, bar] : bars) {
    const MarketInfo& m = catalog_.at(key.first);
    bar_rows.add({std::to_string(m.id), ts(key.second * 60'000), Catalog::price_text(m, bar.open),
                  Catalog::price_text(m, bar.high), Catalog::price_text(m, bar.low), Catalog::price_text(m, bar.close),
                  Catalog::amount_text(m, bar.volume), usdm_text(bar.quote), std::to_string(bar.trades),
                  std::to_string(bar.first), std::to_string(bar.last)});
  }

  // One transaction, sent as one pipeline: a round trip per batch instead of one per table.
  for (auto [rows, name] : {std::pair{&new_orders, "orders_insert"}, std::pair{&updates, "orders_update"},
                            std::pair{&amends, "orders_amend"},
                            std::pair{&trades, "trades_insert"}, std::pair{&fills, "fills_insert"},
                            std::pair{&ledger, "ledger_insert"}, std::pair{&pos_reopened, "positions_reopened"},
                            std::pair{&pos_rows, "positions_upsert"}, std::pair{&pos_started, "positions_started"},
                            std::pair{&balance_rows, "balances_upsert"}, std::pair{&mark_rows, "marks_upsert"},
                            std::pair{&bar_rows, "klines_upsert"}, std::pair{&funding_rows, "funding_insert"},
                            std::pair{&funding_payments, "funding_payments_insert"},
                            std::pair{&liquidation_rows, "liquidations_insert"}, std::pair{&vault_tx_rows, "vault_transactions_insert"}}) {
    if (!rows->empty()) rows->append_to(statements, name);
  }
}

}  // namespace hydrox::trading
