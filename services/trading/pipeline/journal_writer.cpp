// The journal writer: the persister merges the waiting batches into the journal's transaction,
// the committer writes it on the lock-holding connection and only then answers; then the
// publisher's and the projector's hand-offs. Outages and refused batches are handled here.
#include "engine_host.hpp"

#include <cstdlib>
#include <thread>

#include "engine_lock.hpp"
#include "hydrox/log/log.hpp"
#include "hydrox/metrics/metrics.hpp"

namespace hydrox::trading {

using namespace engine;

namespace {

metrics::Histogram& commit_latency() {
  static auto& h = metrics::Registry::global().histogram("trading_batch_commit_seconds", "Group commit latency");
  return h;
}
metrics::Counter& unpublished_batches() {
  static auto& c = metrics::Registry::global().counter("trading_unpublished_batches_total",
                                                         "Committed batches not sent to Redis because the publisher was behind");
  return c;
}
metrics::Counter& committed_commands() {
  static auto& c = metrics::Registry::global().counter("trading_commands_committed_total", "Commands durably committed");
  return c;
}


}  // namespace

void EngineHost::persist_loop() {
  for (;;) {
    // Group commit: every batch waiting when the committer can take the next transaction goes
    // into it (gathered any earlier, the transactions would be smaller and more of them).
    to_commit_.wait_for_room();
    Batch b;
    {
      std::unique_lock lock(out_mu_);
      out_cv_.wait(lock, [&] { return !out_.empty() || !running_.load(); });
      if (out_.empty()) {
        to_commit_.close();
        return;
      }
      b = std::move(out_.front());
      out_.pop_front();
      while (!out_.empty()) {
        merge_batches(b, std::move(out_.front()));
        out_.pop_front();
      }
    }
    out_cv_.notify_all();
    const bool has_writes = std::any_of(b.items.begin(), b.items.end(), [](const Item& i) { return i.journaled; });
    Formatted f;
    if (has_writes) f.statements = journal_statements(b, row_context());
    f.batch = std::move(b);
    to_commit_.push(std::move(f));
  }
}

void EngineHost::commit_loop() {
  while (auto f = to_commit_.pop()) {
    Batch& b = f->batch;
    if (!f->statements.empty()) {
      const auto started = std::chrono::steady_clock::now();
      if (auto w = write(f->statements); !w) {
        // PostgreSQL answered but refused the batch: one command's data, not an outage. Each
        // command is written on its own; only one that still fails loses its read rows.
        if (writer_ && writer_->healthy())
          write_one_by_one(*f, w.error());
        else
          write_through_outage(*f, w.error());
      }
      commit_latency().observe_us(static_cast<std::uint64_t>(
          std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count()));
    }
    // Acknowledged: from here on a read by one of these users waits for the batch's read rows.
    projector_.acknowledged(b);
    b.acked_at.push_back(std::chrono::steady_clock::now());
    for (auto& it : b.items) {
      if (it.reply) {
        it.reply();
      } else if (it.done) {
        Outcome o;
        o.command_no = it.command_no;
        o.events.assign(b.events.begin() + static_cast<std::ptrdiff_t>(it.first_event),
                        b.events.begin() + static_cast<std::ptrdiff_t>(it.end_event));
        if (!it.journaled && !it.carries_batch) o.idempotent_replay = it.outcome_text;
        o.outcome_text = it.outcome_text;
        o.parts = std::move(it.parts);
        if (answers_after_projection(it)) {
          b.after_projection.push_back([done = std::move(it.done), o = std::move(o)]() mutable { done(std::move(o)); });
        } else {
          it.done(std::move(o));
        }
      }
      if (it.journaled) committed_commands().inc();
    }
    for (auto& it : b.items) {  // the answers hold what they need
      it.done = nullptr;
      it.reply = nullptr;
    }
    // Publishing is best effort (subscribers resync from snapshots; PostgreSQL has everything): a
    // Redis that stalls must not hold up the next commit, so a full publisher queue drops it.
    Batch events_only;
    events_only.events = b.events;
    events_only.balances = b.balances;
    if (!to_publish_.try_push(std::move(events_only))) {
      unpublished_batches().inc();
      static std::atomic<int> drops{0};
      if (drops.fetch_add(1) % 100 == 0) log::warn("publisher behind (Redis slow?): a committed batch not published");
    }
    // The read rows, behind the acknowledgement. The projector's queue is bounded: a projector
    // that cannot keep up slows the journal down rather than fall behind without limit.
    if (!f->statements.empty() || !b.after_projection.empty()) projector_.push(std::move(b));
  }
  to_publish_.close();
}

bool EngineHost::answers_after_projection(const Item& it) {
  // Operator and vault commands: other services (vault, user) read their rows right after the
  // answer, and they are rare; an order's answer never waits for its rows.
  if (!it.idempotency_key.empty() || !it.outcome_text.empty() || !it.meta.empty()) return true;
  return std::holds_alternative<Deposit>(it.command) || std::holds_alternative<Withdraw>(it.command) ||
         std::holds_alternative<CreateVault>(it.command) || std::holds_alternative<VaultDeposit>(it.command) ||
         std::holds_alternative<VaultWithdraw>(it.command);
}

void EngineHost::answer_unknown(Batch& batch) {
  for (auto& it : batch.items) {
    if (!it.done || it.reply || (!it.journaled && !it.carries_batch)) continue;
    it.done(fail(Code::unavailable,
                 "the database is unavailable: not acknowledged; retry with the same client_order_id or key to learn the outcome"));
    it.done = nullptr;
  }
}

void EngineHost::write_one_by_one(Formatted& f, const Error& first) {
  Batch& b = f.batch;
  static auto& refused = metrics::Registry::global().counter(
      "trading_persister_refused_commands_total",
      "Commands whose catalogue rows (a vault's) PostgreSQL refused (their journal row is kept)");
  log::warn("batch refused by PostgreSQL; writing its commands one by one",
            {{"error", first.message}});
  const RowContext ctx = row_context();
  for (std::size_t k = 0; k < b.items.size(); ++k) {
    if (!b.items[k].journaled) continue;
    // A client's batch of commands is one unit here too (whole or absent after a crash).
    std::size_t end = k + 1;
    if (b.items[k].batch_part) {
      while (end < b.items.size() && b.items[end].batch_part) ++end;
    }
    Batch one;
    for (std::size_t j = k; j < end; ++j) append_item(one, b, b.items[j]);
    const std::size_t from = k;
    k = end - 1;
    auto w = write(journal_statements(one, ctx));
    if (w) continue;
    if (!writer_ || !writer_->healthy()) {
      log::error(
          "database lost while writing a refused batch one by one; exiting to recover from the "
          "journal");
      std::_Exit(70);
    }
    // This command's catalogue row is refused: its journal row alone (the truth, replayed on
    // recovery), and its caller is told it was not acknowledged (a retry with the same key finds
    // the outcome). Everyone else's commands above and below are written.
    refused.inc();
    log::error(
        "a command's catalogue rows were refused; its journal row is written alone",
        {{"command_no", static_cast<std::int64_t>(one.items.front().command_no)}, {"error", w.error().message}});
    if (auto j = write(journal_statements(one, ctx, /*with_vault_rows=*/false)); !j) {
      log::error("cannot write a command's journal row; exiting to recover from the journal",
                 {{"error", j.error().message}});
      std::_Exit(70);
    }
    // Its answer (a batch's: the item after its commands).
    const std::size_t answer = end < b.items.size() && b.items[end].carries_batch ? end : from;
    Item& original = b.items[answer];
    if (original.done && !original.reply) {
      original.done(fail(Code::unavailable,
                         "not acknowledged: its records could not be stored; retry with the same "
                         "client_order_id or key to learn the outcome"));
      original.done = nullptr;
    }
  }
}

void EngineHost::write_through_outage(Formatted& f, Error first) {
  Batch& b = f.batch;
  // A lost connection (PostgreSQL restarting): refuse new work with 503, reconnect, re-take the
  // engine lock (a standby may have it by now: then exit and let it serve), find out whether the
  // failed COMMIT landed after all, and write the batch if it did not. Anything else, or an outage
  // longer than the limit: exit, and let recovery replay exactly what was committed.
  degraded_.store(true);
  log::error("batch commit failed; refusing new requests until it is written", {{"error", first.message}});
  // The commands waiting for this write (this batch and those queued behind it) are answered now
  // rather than left hanging: not acknowledged, outcome decided by whether the write lands when the
  // database returns; a retry with the same client_order_id or idempotency key finds out.
  answer_unknown(b);
  to_commit_.for_each([](Formatted& waiting) { answer_unknown(waiting.batch); });
  {
    std::lock_guard lock(out_mu_);
    for (auto& waiting : out_) answer_unknown(waiting);
  }
  std::uint64_t first_command = 0;
  for (const auto& it : b.items) {
    if (it.journaled) {
      first_command = it.command_no;
      break;
    }
  }
  static constexpr db::Query kJournalHas{"journal_has", "SELECT 1 FROM engine_journal WHERE command_no = $1"};
  const auto deadline = std::chrono::steady_clock::now() + options_.outage_limit;
  int other_failures = 0;
  for (int attempt = 0;; ++attempt) {
    if (std::chrono::steady_clock::now() > deadline || other_failures >= 5) {
      log::error("cannot write the batch; exiting to recover from the journal",
                 {{"attempts", attempt}, {"outage_limit_ms", static_cast<std::int64_t>(options_.outage_limit.count())}});
      std::_Exit(70);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::min(50 << std::min(attempt, 4), 500)));
    if (!writer_ || !writer_->healthy()) {
      auto c = take_engine_lock(db_->url(), LockWait::no);
      if (!c && c.error().code == Code::conflict) {
        log::error("the engine lock was taken by another trading process; exiting");
        std::_Exit(70);
      }
      if (!c) continue;  // PostgreSQL still away
      writer_ = std::move(*c);
    }
    auto landed = writer_->exec(kJournalHas, {std::to_string(first_command)});
    if (!landed) {
      if (writer_->healthy()) ++other_failures;
      continue;
    }
    if (landed->size() == 0) {
      auto w = write(f.statements);
      if (!w) {
        if (writer_->healthy()) ++other_failures;
        continue;
      }
    }
    log::info("database reachable again; batch written", {{"attempts", attempt + 1}});
    degraded_.store(false);
    return;
  }
}

Result<void> EngineHost::write(const std::vector<db::Statement>& statements) {
  if (!writer_) return fail(Code::unavailable, "no writer connection");
  return writer_->exec_pipeline(statements);
}

}  // namespace hydrox::trading
