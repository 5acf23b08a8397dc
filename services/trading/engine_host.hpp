#pragma once
// Hosts the engine: IO threads submit jobs into a bounded queue (full → the caller answers 503);
// the engine thread applies a batch of commands; the persister merges the batches waiting for it
// and turns their commands into the journal's SQL; the committer writes that to PostgreSQL in one
// transaction and only then completes the jobs (the HTTP answers): an acknowledgement waits for
// the journal alone. Behind it the projector (pipeline/projector.hpp) writes the read tables from
// the committed batches, and the publisher sends the batches' events to Redis. The stages are
// threads, so the next batch is applied and formatted while one commits, and the commit waits
// neither for the read tables nor for Redis. On start, recover() loads the newest engine snapshot
// and replays the journal after it, projecting what the projector had not written yet. A further
// thread keeps a follower engine: rebuilt the same way, then fed every committed command in
// journal order; it exports and stores the snapshots, so the engine thread never stops for one.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "hydrox/core/handoff.hpp"
#include "hydrox/db/db.hpp"
#include "hydrox/engine/engine.hpp"
#include "hydrox/redis/redis.hpp"
#include "markets.hpp"
#include "pipeline/batch.hpp"
#include "pipeline/projector.hpp"
#include "pipeline/rows.hpp"

namespace hydrox::trading {

struct Job {
  engine::Command command;
  bool is_read = false;
  // Reads run on the engine thread and return the answer to send once earlier writes committed.
  std::function<std::function<void()>(const engine::Engine&)> read;
  std::string idempotency_key;  // operator deposits/withdrawals/faucet
  // Commands decided on the engine thread from the engine's state (the mark and funding clock):
  // each one is applied and journaled like a submitted command.
  std::function<std::vector<engine::Command>(const engine::Engine&)> produce;
  std::string meta;  // CreateVault: {"name", "description"} for the vaults row
  // A batch (POST/DELETE /orders/batch): these commands instead of `command`, applied one after
  // the other with nothing between them and journaled in one transaction (all or none after a
  // crash); `done` gets every command's events, Outcome::parts saying where each one's end.
  std::vector<engine::Command> batch;
  std::function<void(Result<Outcome>)> done;
};

struct HostOptions {
  std::size_t queue_capacity = 20'000;
  std::size_t max_batch = 4'000;
  std::size_t max_pending_batches = 8;
  // How long the persister keeps retrying a batch while PostgreSQL is unreachable (answering 503
  // to new requests meanwhile) before it exits so that recovery replays what was committed.
  std::chrono::milliseconds outage_limit{60'000};
  // An engine snapshot after at least this many commands (0: never, and no follower engine), and
  // never before the commands since the last one outnumber the resting orders (a snapshot's cost
  // follows the state: one is taken only when the replay it saves is larger).
  std::uint64_t snapshot_every = 100'000;
  // Committed commands the follower may fall behind by before it gives up (and with it snapshots
  // until the next start; the journal is complete regardless).
  std::size_t follower_backlog = 2'000'000;
  // A snapshot is stored in rows of at most this many bytes (one bytea value is capped at 1 GB).
  std::size_t snapshot_part_bytes = 32u << 20;
  UserId fee_account{Uuid{0x0000000000007000ull, 0x8000000000000001ull}};
};

class EngineHost {
 public:
  // `writer` holds the engine lock (engine_lock.hpp); every journal write goes through it.
  EngineHost(const Catalog& catalog, std::shared_ptr<db::Pool> db, std::unique_ptr<db::Connection> writer,
             std::shared_ptr<redis::Client> redis, HostOptions options = {});
  ~EngineHost();

  // Rebuilds the engine from the journal; sets a first mark for markets that never had one.
  Result<void> recover(std::int64_t now_ms);
  // A clock that must not be overtaken (the funding settlement, perp-rules "Funding"): before the
  // first command stamped at or after the next multiple of `period_ms`, the engine thread runs
  // `hook` and applies what it returns, so a position opened after an interval's end never pays
  // for it and one open at the end always does. While the hook cannot settle (no fresh index) it
  // is asked again every `retry_ms` of command time. Set before start().
  struct ClockStep {
    std::vector<engine::Command> commands;  // applied (stamped at the moment) before the command
    bool again = false;                     // this moment is not done yet
  };
  using ClockHook = std::function<ClockStep(const engine::Engine&, std::int64_t now_ms)>;
  void set_clock_hook(std::int64_t period_ms, std::int64_t retry_ms, ClockHook hook);
  void start();
  void stop();
  bool submit(Job job);

  engine::Price mark(std::uint32_t market) const { return marks_[market].load(); }
  struct VaultRef {
    UserId account;
    UserId leader;
  };
  std::optional<VaultRef> vault_ref(const Uuid& vault) const;
  std::int64_t last_funding_ms(std::uint32_t market) const { return funding_ms_[market].load(); }
  std::uint64_t commands_applied() const { return command_no_.load(); }
  std::size_t queue_depth() const;
  // Read-your-writes for reads of the read tables: true once every command acknowledged for
  // `user` is projected, false after `wait` (the caller answers 503).
  bool await_projected(const UserId& user, std::chrono::milliseconds wait) {
    return projector_.await_user(user, wait);
  }
  std::uint64_t projected() const { return projector_.watermark(); }
  std::uint64_t projector_backlog() const { return projector_.backlog(); }
  bool projector_reachable() const { return projector_.reachable(); }
  // True while the persister cannot reach PostgreSQL: submit() refuses everything until it can.
  bool degraded() const { return degraded_.load(); }

 private:
  // How far ahead of the command being applied the engine loop and the replay prefetch
  // (Engine::prefetch).
  static constexpr std::size_t kPrefetchAhead = 2;

  // One stage per file: the engine thread (pipeline/intake.cpp), the journal writer
  // (pipeline/journal_writer.cpp), recovery (pipeline/recovery.cpp), the follower and its
  // snapshots (pipeline/follower.cpp); the projector (pipeline/projector.cpp) and the publisher's
  // messages (pipeline/publisher.cpp) are their own classes and functions; wiring, start, stop
  // and the publisher thread in engine_host.cpp.
  void engine_loop();
  // Engine thread: stamps `c` no earlier than the last applied command (the journal's times rise
  // in apply order) and runs the clock hook first when `c` reaches its next moment.
  void stamp(engine::Command& c, std::vector<Item>& items, std::vector<engine::Event>& events, bool run_clock = true);
  void apply_item(Item& it, std::vector<engine::Event>& events);
  // A command the engine thread made itself (the clock's): applied and journaled like a submitted one.
  void apply_made(engine::Command c, std::vector<Item>& items, std::vector<engine::Event>& events);
  // A merged batch and its transaction, from the persister to the committer.
  struct Formatted {
    Batch batch;
    std::vector<db::Statement> statements;  // empty: nothing to journal (reads only)
  };
  void persist_loop();
  void commit_loop();
  // Recovery of `e` ("primary": engine_, or "follower"): the newest usable snapshot (the command
  // number it holds, 0: none), then the journal after it (the last command number applied).
  // A snapshot newer than `at_most` is passed over (the primary's recovery must replay every
  // command the projector has not written, to project it).
  std::uint64_t load_snapshot(engine::Engine& e, db::Connection& c, const char* role,
                              std::uint64_t at_most = UINT64_MAX);
  // Each command applied, with its events (the primary's recovery projects those after the
  // watermark).
  using Applied = std::function<Result<void>(std::uint64_t command_no, const engine::Command& c,
                                             const std::vector<engine::Event>& events)>;
  Result<std::uint64_t> replay_journal(engine::Engine& e, db::Connection& c, std::uint64_t after, const char* role,
                                       const std::atomic<bool>* cancel = nullptr, const Applied& applied = nullptr);
  std::string market_list() const;  // the catalog's symbols in index order: a snapshot's market indices
  // The follower: its own recovery, then the committed commands from follow_, snapshots from it.
  void follower_loop();
  void close_follow();
  void feed_follower(const Batch& b);  // the projector's, after each projection  // no more commands for the follower (stopping, or it gave up)
  void write_snapshot(engine::Engine& f, std::uint64_t command_no);
  engine::EngineConfig engine_config() const;
  void publish_loop();
  RowContext row_context() const;
  Result<void> write(const std::vector<db::Statement>& statements);
  void write_through_outage(Formatted& f, Error first);
  // PostgreSQL refused the batch (the connection is fine): each command in its own transaction;
  // one still refused is journaled alone and answered "not acknowledged" (503).
  void write_one_by_one(Formatted& f, const Error& first);
  // Answers waiting for the read rows (operator and vault commands) go to the projector's queue.
  static bool answers_after_projection(const Item& it);
  static void answer_unknown(Batch& batch);
  void publish(const Batch& b);
  // A vault withdrawal refused for its lockup: when enough of the holder's shares unlock for it,
  // and what the holder could withdraw now.
  std::optional<std::pair<std::int64_t, engine::Usdm>> vault_unlock(
      const engine::VaultWithdraw& w) const;
  std::string operator_outcome(const Batch& b, const Item& item) const;

  const Catalog& catalog_;
  std::shared_ptr<db::Pool> db_;
  std::unique_ptr<db::Connection> writer_;  // persister thread only (and recover() before it starts)
  std::atomic<bool> degraded_{false};
  std::shared_ptr<redis::Client> redis_;
  HostOptions options_;
  Projector projector_;
  engine::Engine engine_;
  std::vector<std::atomic<engine::Price>> marks_;
  std::vector<std::atomic<std::int64_t>> funding_ms_;
  std::atomic<std::uint64_t> command_no_{0};
  std::map<std::string, std::string> operator_keys_;  // engine thread only (after recover)
  std::int64_t clock_ms_ = 0;                          // engine thread: time of the last applied command
  std::int64_t clock_period_ms_ = 0, clock_retry_ms_ = 0, clock_next_ms_ = 0;
  ClockHook clock_hook_;
  mutable std::mutex vaults_mu_;
  std::map<Uuid, VaultRef> vault_refs_;  // vault id → its account and leader (for order routing)
  void note_vaults(const std::vector<engine::Event>& events);

  mutable std::mutex in_mu_;
  std::condition_variable in_cv_;
  std::deque<Job> in_;
  std::mutex out_mu_;
  std::condition_variable out_cv_;
  std::deque<Batch> out_;
  Handoff<Formatted> to_commit_{1};
  Handoff<Batch> to_publish_{64};
  // Committed commands for the follower, in journal order (the committer appends, the follower takes).
  struct Committed {
    std::uint64_t command_no = 0;
    engine::Command command;
  };
  std::mutex follow_mu_;
  std::condition_variable follow_cv_;
  std::deque<Committed> follow_;
  bool follow_open_ = false;  // the follower runs and wants commands (under follow_mu_)
  std::atomic<bool> follower_stop_{false};
  std::atomic<bool> running_{false};
  std::thread engine_thread_, persist_thread_, commit_thread_, publish_thread_, follower_thread_;
};

}  // namespace hydrox::trading
