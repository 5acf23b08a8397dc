// The follower engine: its own recovery, then every projected command in journal order; it
// exports and stores the engine snapshots, so the engine thread never stops for one.
#include "engine_host.hpp"

#include "hydrox/engine/snapshot_codec.hpp"
#include "hydrox/log/log.hpp"
#include "hydrox/metrics/metrics.hpp"

namespace hydrox::trading {

using namespace engine;

namespace {

constexpr db::Query kInsertSnapshot{
    "insert_snapshot",
    "INSERT INTO engine_snapshots (command_no, last_seq, state_hash, markets, parts) VALUES ($1, $2, $3, $4, $5)"
    " ON CONFLICT (command_no) DO NOTHING"};
constexpr db::Query kInsertSnapshotPart{
    "insert_snapshot_part", "INSERT INTO engine_snapshot_parts (command_no, part, bytes) VALUES ($1, $2, $3::bytea)",
    false, 0b100};  // the part's bytes in binary
constexpr db::Query kPruneSnapshots{
    "prune_snapshots",
    "DELETE FROM engine_snapshots WHERE command_no < (SELECT min(command_no) FROM"
    " (SELECT command_no FROM engine_snapshots ORDER BY command_no DESC LIMIT 2) newest)"};

metrics::Counter& snapshots_written() {
  static auto& c = metrics::Registry::global().counter("trading_snapshots_written_total", "Engine snapshots stored");
  return c;
}

}  // namespace

void EngineHost::close_follow() {
  {
    std::lock_guard lock(follow_mu_);
    follow_open_ = false;
    follow_.clear();
  }
  follow_cv_.notify_all();
}

void EngineHost::follower_loop() {
  // Its own recovery, like a restart's, while the primary serves: then it holds exactly the
  // committed commands up to `last`, and follow_ has every command committed since start().
  auto f = std::make_unique<Engine>(engine_config());
  std::uint64_t last = 0, snapshot_no = 0;
  {
    auto lease = db_->acquire();
    Result<std::uint64_t> replayed = lease ? Result<std::uint64_t>(0) : Result<std::uint64_t>(lease.error());
    if (lease) {
      snapshot_no = load_snapshot(*f, **lease, "follower");
      replayed = replay_journal(*f, **lease, snapshot_no, "follower", &follower_stop_);
    }
    if (!replayed) {
      if (!follower_stop_.load()) {
        log::error("follower engine cannot recover; no snapshots until the next start", {{"error", replayed.error().message}});
      }
      close_follow();
      return;
    }
    last = *replayed;
  }
  std::vector<Event> events;
  for (;;) {
    const std::uint64_t since = last - snapshot_no;
    if (since >= options_.snapshot_every && since >= f->resting_orders() && last <= projector_.watermark()) {
      write_snapshot(*f, last);
      snapshot_no = last;  // stored or not: the next try after as many commands again
    }
    std::deque<Committed> batch;
    {
      std::unique_lock lock(follow_mu_);
      follow_cv_.wait(lock, [&] { return !follow_.empty() || !follow_open_; });
      if (follow_.empty()) return;  // stopped
      batch.swap(follow_);
    }
    for (auto& c : batch) {
      if (c.command_no <= last) continue;  // read from the journal already
      if (c.command_no != last + 1) {
        log::error("follower engine missed commands; no snapshots until the next start",
                   {{"expected", static_cast<std::int64_t>(last + 1)}, {"got", static_cast<std::int64_t>(c.command_no)}});
        close_follow();
        return;
      }
      events.clear();
      f->apply(c.command, events);
      last = c.command_no;
    }
  }
}

void EngineHost::write_snapshot(Engine& f, std::uint64_t command_no) {
  const auto started = std::chrono::steady_clock::now();
  const Snapshot state = f.export_state();
  const std::string bytes = encode_snapshot(state);
  const std::size_t part_bytes = std::max<std::size_t>(options_.snapshot_part_bytes, 1);
  const std::size_t parts = (bytes.size() + part_bytes - 1) / part_bytes;
  // One transaction: the row, its parts, and the pruning of older snapshots (their parts cascade).
  auto store = [&]() -> Result<void> {
    auto lease = db_->acquire();
    if (!lease) return lease.error();
    db::Transaction tx(**lease);
    if (auto b = tx.begin_status(); !b) return b.error();
    auto head = tx.exec(kInsertSnapshot, {std::to_string(command_no), std::to_string(state.seq), std::to_string(f.state_hash()),
                                          market_list(), std::to_string(parts)});
    if (!head) return head.error();
    if (head->affected() == 1) {  // else stored already (by a process that ran before this one)
      for (std::size_t k = 0; k < parts; ++k) {
        const std::string_view chunk = std::string_view(bytes).substr(k * part_bytes, part_bytes);
        auto row = tx.exec(kInsertSnapshotPart, {std::to_string(command_no), std::to_string(k), std::string(chunk)});
        if (!row) return row.error();
      }
    }
    if (auto pruned = tx.exec(kPruneSnapshots); !pruned) return pruned.error();
    return tx.commit();
  };
  auto r = store();
  if (!r) {
    log::warn("engine snapshot not stored (the next one will be)",
              {{"command_no", static_cast<std::int64_t>(command_no)}, {"error", r.error().message}});
    return;
  }
  snapshots_written().inc();
  log::info("engine snapshot stored",
            {{"command_no", static_cast<std::int64_t>(command_no)}, {"bytes", static_cast<std::int64_t>(bytes.size())},
             {"parts", static_cast<std::int64_t>(parts)}, {"resting_orders", static_cast<std::int64_t>(state.orders.size())},
             {"ms", static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - started).count())}});
}

void EngineHost::feed_follower(const Batch& b) {
  // Projected (so committed): the follower may apply these now. Its snapshots are never past the
  // projector's watermark, so recovery can always project from where it starts.
  bool notify = false;
  {
    std::lock_guard lock(follow_mu_);
    if (follow_open_) {
      for (const auto& it : b.items) {
        if (it.journaled && it.command_no > 0) follow_.push_back(Committed{it.command_no, it.command});
      }
      notify = true;
      if (follow_.size() > options_.follower_backlog) {
        log::error("follower engine too far behind; no snapshots until the next start",
                   {{"backlog", static_cast<std::int64_t>(follow_.size())}});
        follow_open_ = false;
        follow_.clear();
      }
    }
  }
  if (notify) follow_cv_.notify_one();
}

}  // namespace hydrox::trading
