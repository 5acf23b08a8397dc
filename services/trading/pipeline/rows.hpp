#pragma once
// SQL for a batch: the journal's transaction (what an acknowledgement waits for) and the read
// rows the projector writes behind it. Every statement is one prepared text per table, its rows
// sent as arrays (unnest), and every row is written idempotently: a batch written twice, or cut
// into batches differently, leaves the same rows.
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "hydrox/db/db.hpp"
#include "markets.hpp"
#include "pipeline/batch.hpp"

namespace hydrox::trading {

struct RowContext {
  const Catalog& catalog;
  UserId fee_account;
  // A vault's leader (the profit share's row), nullopt for an unknown vault.
  std::function<std::optional<UserId>(const Uuid& vault)> vault_leader;
};

// BEGIN; the journaled commands, their operator requests and the vaults they created; COMMIT.
// Without `with_vault_rows`: the commands alone (a vault row PostgreSQL refused).
std::vector<db::Statement> journal_statements(const Batch& b, const RowContext& ctx, bool with_vault_rows = true);
// The batch's read rows: orders, trades, fills, ledger, positions, balances, marks, one-minute
// bars, funding, liquidations, vault transactions (no BEGIN / COMMIT).
void append_read_rows(const Batch& b, const RowContext& ctx, std::vector<db::Statement>& out);

std::string ts(std::int64_t ms);  // RFC 3339 with milliseconds
// A funding rate in 1e-9 divided by `divisor`, as exact decimal text.
std::string rate_text(std::int64_t ppb, int divisor);

// A position's id: stable for (user, market), so the API can address it without a lookup table.
Uuid position_id(const UserId& user, int market_id);

}  // namespace hydrox::trading
