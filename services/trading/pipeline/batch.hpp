#pragma once
// What flows through the trading pipeline: the engine thread applies a batch of commands and
// hands on a Batch (the commands, the events they produced, and the collateral of every account
// they touched); the journal writer commits its commands; the projector writes its read rows; the
// publisher sends its events to Redis.
#include <chrono>
#include <cstdint>
#include <optional>
#include <functional>
#include <string>
#include <vector>

#include "hydrox/core/error.hpp"
#include "hydrox/engine/engine.hpp"

namespace hydrox::trading {

// What a submitted command's caller is told once its command is acknowledged.
struct Outcome {
  std::uint64_t command_no = 0;
  std::vector<engine::Event> events;
  std::string idempotent_replay;  // set when an operator key was seen before: its first outcome
  std::string outcome_text;       // commands with an operator key: the outcome stored for replays
  // A batch of commands (Job::batch): where each command's events end in `events`, in order.
  std::vector<std::size_t> parts;
};

struct Item {
  std::uint64_t command_no = 0;  // 0: not journaled (a read, or a replayed operator key)
  engine::Command command;
  std::size_t first_event = 0, end_event = 0;  // its events in Batch::events
  std::function<void(Result<Outcome>)> done;
  std::string idempotency_key;
  std::string outcome_text;
  std::string meta;
  std::function<void()> reply;  // reads
  bool journaled = true;
  // The answer to a batch of commands (Job::batch): not journaled itself (the items before it
  // are, in the same transaction), its events span theirs, answered when they are acknowledged.
  bool carries_batch = false;
  bool batch_part = false;  // one of a batch's commands (the carrier follows them)
  std::vector<std::size_t> parts;  // as in Outcome
};

// An account's collateral after the batch, and the time of the last command that changed it.
struct BalanceRow {
  UserId user;
  engine::Usdm collateral = 0;
  std::int64_t ts_ms = 0;
};

struct Batch {
  std::vector<Item> items;
  std::vector<engine::Event> events;
  std::vector<BalanceRow> balances;
  // Answers that wait for the batch's read rows (operator and vault commands: another service
  // reads their rows right after the answer), run by the projector after its commit.
  std::vector<std::function<void()>> after_projection;
  // When each batch merged into this one was acknowledged (the projector's lag is measured from it).
  std::vector<std::chrono::steady_clock::time_point> acked_at;

  // The journaled commands' range (0, 0 when there is none) and the last event's sequence.
  std::uint64_t first_command() const;
  std::uint64_t last_command() const;
  engine::Seq last_seq() const { return events.empty() ? 0 : events.back().seq; }
};

// Appends `next` (the batch after `into`) to `into`. Balances are appended: for an account that
// appears twice the later row is the state after both (last_balances keeps those).
void merge_batches(Batch& into, Batch&& next);

// The part of `b` after command `from`: its journaled items past it with their events (ranges
// rebased), and the collateral (the answers and times stay with `b`).
Batch tail_after(const Batch& b, std::uint64_t from);

// Appends journaled item `it` of `from` to `out`: its command, keys and meta, its events (range
// rebased); not its answer.
void append_item(Batch& out, const Batch& from, const Item& it);

// Fills `b.balances`: the collateral in `e` (the engine after the batch) of every account the
// batch's events touched, with the time of the last command that touched it.
void add_balances(Batch& b, const engine::Engine& e, const UserId& fee_account);

// Each account's last balance row, in order of last appearance.
std::vector<BalanceRow> last_balances(const std::vector<BalanceRow>& rows);

// The user a command acts for (the account whose reads must see it), if it has one.
std::optional<UserId> command_user(const engine::Command& c);

}  // namespace hydrox::trading
