#pragma once
// The projector: writes the read tables from committed batches, behind the acknowledgement.
// Each of its transactions holds a run of batches' rows and moves the watermark (the last
// projected journal command, table projector_watermark) from where this projector left it, so
// the rows and the watermark land together or not at all, and a batch is never written twice or
// out of order. Waiting batches are merged into one transaction: the projector keeps up by
// writing more per commit when it falls behind. Recovery resumes from the watermark
// (project_now, on the recovering connection).
//
// Read-your-writes: the journal writer tells the projector each batch it acknowledged
// (acknowledged()); a read for a user waits (await_user) until the watermark reaches that user's
// last acknowledged command, bounded, and is refused with 503 after that.
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>

#include "hydrox/core/handoff.hpp"
#include "hydrox/db/db.hpp"
#include "pipeline/batch.hpp"
#include "pipeline/rows.hpp"

namespace hydrox::trading {

struct ProjectorOptions {
  std::size_t capacity = 1024;  // batches waiting before the journal writer waits for the projector
  std::size_t max_merge_events = 200'000;  // events merged into one transaction at most
};

class Projector {
 public:
  Projector(RowContext ctx, std::string db_url, ProjectorOptions options = {});
  ~Projector();

  // The stored watermark: the last journal command whose rows are written.
  static Result<std::uint64_t> load_watermark(db::Connection& c);
  void set_watermark(std::uint64_t command_no);
  // Writes `b`'s rows and moves the watermark to its last command, on `c`, now (recovery).
  Result<void> project_now(db::Connection& c, const Batch& b);

  // `projected` runs on the projector's thread after each batch's rows are committed.
  void start(std::function<void(const Batch&)> projected = nullptr);
  void stop();  // projects what was pushed, then returns
  // Waits while `capacity` batches wait; false once stopped.
  bool push(Batch b);

  std::uint64_t watermark() const { return watermark_.load(); }
  // The journal writer acknowledged `b`: reads of every account it changed wait for its rows.
  void acknowledged(const Batch& b);
  // True once every command acknowledged for `user` is projected; false after `wait`.
  bool await_user(const UserId& user, std::chrono::milliseconds wait);
  // Commands acknowledged and not yet projected.
  std::uint64_t backlog() const;
  // False while the projector cannot reach PostgreSQL (from a failed connect or write to the next
  // successful write): a read waiting for it would wait in vain.
  bool reachable() const { return reachable_.load(); }

 private:
  void loop();
  // Rows (unless `rows_too` is false: the watermark alone) and the watermark move, one transaction.
  Result<void> write(db::Connection& c, const Batch& b, std::uint64_t from, std::uint64_t upto, bool rows_too);
  // Retries until written (reconnecting through outages), from the stored watermark.
  void project(Batch& b);
  // One try on `c` of `b` (its commands after `from` only): the whole batch, or, when PostgreSQL
  // refuses it on a healthy connection, command by command, moving past a command whose rows are
  // still refused. An error: the connection failed, or the watermark is not at `from`.
  Result<void> write_or_skip(db::Connection& c, const Batch& b, std::uint64_t from);
  void advanced(std::uint64_t command_no);

  RowContext ctx_;
  std::string url_;
  ProjectorOptions options_;
  std::unique_ptr<db::Connection> conn_;  // the projector thread's
  Handoff<Batch> queue_;
  std::atomic<std::uint64_t> watermark_{0};
  std::atomic<std::uint64_t> acknowledged_{0};
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::unordered_map<Uuid, std::uint64_t, engine::UuidHash> last_acked_;  // user → command (under mu_)
  std::function<void(const Batch&)> projected_;
  std::thread thread_;
  std::atomic<bool> started_{false};
  std::atomic<bool> reachable_{true};
};

}  // namespace hydrox::trading
