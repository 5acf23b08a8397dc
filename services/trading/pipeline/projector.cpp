#include "pipeline/projector.hpp"

#include <algorithm>
#include <cstdlib>
#include <type_traits>

#include "hydrox/log/log.hpp"
#include "hydrox/metrics/metrics.hpp"

namespace hydrox::trading {

namespace {

constexpr db::Query kWatermark{"projector_watermark", "SELECT command_no FROM projector_watermark"};

metrics::Histogram& lag() {
  static auto& h = metrics::Registry::global().histogram(
      "trading_projector_lag_seconds", "From a batch's acknowledgement to its read rows committed");
  return h;
}
metrics::Histogram& commit_latency() {
  static auto& h = metrics::Registry::global().histogram("trading_projector_commit_seconds",
                                                         "The projector's transaction");
  return h;
}
metrics::Gauge& backlog_gauge() {
  static auto& g = metrics::Registry::global().gauge(
      "trading_projector_backlog_commands", "Commands acknowledged whose read rows are not written yet");
  return g;
}
metrics::Counter& refused_commands() {
  static auto& c = metrics::Registry::global().counter(
      "trading_projector_refused_commands_total",
      "Commands whose read rows PostgreSQL refused (their journal row stands; the watermark moves past them)");
  return c;
}

std::uint64_t micros_since(std::chrono::steady_clock::time_point t) {
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - t).count());
}

}  // namespace

Projector::Projector(RowContext ctx, std::string db_url, ProjectorOptions options)
    : ctx_(std::move(ctx)), url_(std::move(db_url)), options_(options), queue_(std::max<std::size_t>(options.capacity, 1)) {}

Projector::~Projector() { stop(); }

Result<std::uint64_t> Projector::load_watermark(db::Connection& c) {
  auto rows = c.exec(kWatermark);
  if (!rows) return rows.error();
  if (rows->size() != 1) return fail(Code::internal, "projector_watermark must hold one row");
  return static_cast<std::uint64_t>(std::stoull(std::string(rows->get(0, 0))));
}

void Projector::set_watermark(std::uint64_t command_no) {
  watermark_.store(command_no);
  if (acknowledged_.load() < command_no) acknowledged_.store(command_no);
}

Result<void> Projector::write(db::Connection& c, const Batch& b, std::uint64_t from, std::uint64_t upto,
                              bool rows_too) {
  std::vector<db::Statement> statements;
  statements.push_back({"begin", "BEGIN", {}});
  // The UPDATE ... FROM unnest(...) statements (orders, positions) join a batch's rows to their
  // tables by primary key. A plan cached while a table was small joins by hash over a sequential
  // scan, and keeps doing it as the table grows (measured: 721 scans reading 15 M order rows in
  // 10 s of load); with hash and merge joins off it chose a nested loop over a sequential scan
  // (39 ms a transaction). Without sequential scans it is index lookups by the primary key. And
  // no JIT: those settings make a plan's estimated cost pass jit_above_cost, and compiling took
  // 80-180 ms per transaction (measured), for statements that run in a millisecond.
  statements.push_back({"no_seqscan", "SET LOCAL enable_seqscan TO off", {}});
  statements.push_back({"no_hashjoin", "SET LOCAL enable_hashjoin TO off", {}});
  statements.push_back({"no_mergejoin", "SET LOCAL enable_mergejoin TO off", {}});
  statements.push_back({"no_jit", "SET LOCAL jit TO off", {}});
  // First: fails the transaction unless the watermark is where this projector left it.
  statements.push_back({"projector_advance", "SELECT projector_advance($1, $2, $3)",
                        {std::to_string(from), std::to_string(upto), std::to_string(b.last_seq())},
                        true});
  if (rows_too) append_read_rows(b, ctx_, statements);
  statements.push_back({"commit", "COMMIT", {}});
  return c.exec_pipeline(statements);
}

Result<void> Projector::project_now(db::Connection& c, const Batch& b) {
  const std::uint64_t from = watermark_.load();
  if (b.last_command() <= from) return {};
  return write_or_skip(c, b.first_command() > from ? b : tail_after(b, from), from);
}

Result<void> Projector::write_or_skip(db::Connection& c, const Batch& b, std::uint64_t from) {
  const std::uint64_t upto = b.last_command();
  const auto started = std::chrono::steady_clock::now();
  auto w = write(c, b, from, upto, true);
  if (w) {
    commit_latency().observe_us(micros_since(started));
    advanced(upto);
    return {};
  }
  if (!c.healthy()) return w.error();
  auto stored = load_watermark(c);
  if (!stored) return stored.error();
  if (*stored != from) return fail(Code::conflict, "the projector's watermark moved");  // the caller looks again
  // PostgreSQL refused the rows (one command's data, not an outage): each command on its own;
  // one still refused moves the watermark past it without its rows (its journal row stands).
  log::warn("projection refused by PostgreSQL; writing its commands one by one", {{"error", w.error().message}});
  for (const Item& it : b.items) {
    if (!it.journaled || it.command_no == 0 || it.command_no <= from) continue;
    Batch one;
    one.balances = b.balances;  // the batch's final collateral: the same values each time
    one.events.assign(b.events.begin() + static_cast<std::ptrdiff_t>(it.first_event),
                      b.events.begin() + static_cast<std::ptrdiff_t>(it.end_event));
    auto single = write(c, one, from, it.command_no, true);
    if (!single && c.healthy()) {
      refused_commands().inc();
      log::error("a command's read rows were refused; the projector moves past it",
                 {{"command_no", static_cast<std::int64_t>(it.command_no)}, {"error", single.error().message}});
      single = write(c, one, from, it.command_no, false);
    }
    if (!single) return single.error();  // the connection: the caller retries from the watermark
    from = it.command_no;
    advanced(from);
  }
  return {};
}

void Projector::start(std::function<void(const Batch&)> projected) {
  if (started_.exchange(true)) return;
  projected_ = std::move(projected);
  thread_ = std::thread([this] { loop(); });
}

void Projector::stop() {
  queue_.close();
  if (thread_.joinable()) thread_.join();
}

bool Projector::push(Batch b) { return queue_.push(std::move(b)); }

void Projector::acknowledged(const Batch& b) {
  const std::uint64_t last = b.last_command();
  if (last == 0) return;
  {
    // Every account a command changed, not only its sender's: a maker whose order another user
    // filled reads the fill once it is acknowledged, like the taker.
    std::lock_guard lock(mu_);
    for (const Item& it : b.items) {
      if (!it.journaled || it.command_no == 0) continue;
      auto touch = [&](const UserId& u) { last_acked_[u.value()] = it.command_no; };
      if (auto u = command_user(it.command)) touch(*u);
      for (std::size_t i = it.first_event; i < it.end_event; ++i) {
        std::visit(
            [&](const auto& ev) {
              if constexpr (std::is_same_v<std::decay_t<decltype(ev)>, engine::Trade>) {
                touch(ev.maker);
                touch(ev.taker);
              } else if constexpr (requires { ev.user; }) {
                if constexpr (std::is_same_v<std::decay_t<decltype(ev.user)>, UserId>) touch(ev.user);
              }
            },
            b.events[i].body);
      }
    }
  }
  acknowledged_.store(last);
  backlog_gauge().set(static_cast<std::int64_t>(last - std::min(last, watermark_.load())));
}

bool Projector::await_user(const UserId& user, std::chrono::milliseconds wait) {
  std::unique_lock lock(mu_);
  auto found = last_acked_.find(user.value());
  if (found == last_acked_.end()) return true;
  const std::uint64_t target = found->second;
  return cv_.wait_for(lock, wait, [&] { return watermark_.load() >= target; });
}

std::uint64_t Projector::backlog() const {
  const std::uint64_t a = acknowledged_.load(), w = watermark_.load();
  return a > w ? a - w : 0;
}

void Projector::advanced(std::uint64_t command_no) {
  {
    std::lock_guard lock(mu_);
    watermark_.store(command_no);
    // Users whose every command is projected need no entry (their reads do not wait).
    if (last_acked_.size() > 100'000) {
      std::erase_if(last_acked_, [&](const auto& kv) { return kv.second <= command_no; });
    }
  }
  cv_.notify_all();
  const std::uint64_t a = acknowledged_.load();
  backlog_gauge().set(static_cast<std::int64_t>(a > command_no ? a - command_no : 0));
}

void Projector::loop() {
  while (auto first = queue_.pop()) {
    Batch b = std::move(*first);
    while (b.events.size() < options_.max_merge_events) {
      auto more = queue_.try_pop();
      if (!more) break;
      merge_batches(b, std::move(*more));
    }
    project(b);
    if (projected_) projected_(b);
    for (const auto& t : b.acked_at) lag().observe_us(micros_since(t));
    for (auto& answer : b.after_projection) answer();
  }
}

void Projector::project(Batch& b) {
  const std::uint64_t upto = b.last_command();
  if (upto == 0) return;  // reads only
  for (int attempt = 0;; ++attempt) {
    if (attempt > 0) std::this_thread::sleep_for(std::chrono::milliseconds(std::min(20 << std::min(attempt, 5), 1000)));
    if (!conn_ || !conn_->healthy()) {
      auto c = db::connect(url_);
      if (!c) {
        reachable_.store(false);
        if (attempt % 20 == 0) log::warn("projector cannot reach PostgreSQL; retrying", {{"error", c.error().message}});
        continue;
      }
      conn_ = std::move(*c);
    }
    // Where the stored watermark is: the truth about what is written. Past this process's (a
    // commit whose answer was lost with the connection, or a standby that took over): follow it.
    // Behind it: PostgreSQL lost committed rows (a failover to a standby that had not received
    // them): exit, and recovery projects again from the stored watermark.
    auto stored = load_watermark(*conn_);
    if (!stored) continue;
    if (*stored < watermark_.load()) {
      log::error("the stored projector watermark is behind this process's; exiting to project again on recovery",
                 {{"stored", static_cast<std::int64_t>(*stored)},
                  {"projected", static_cast<std::int64_t>(watermark_.load())}});
      std::_Exit(70);
    }
    if (*stored > watermark_.load()) advanced(*stored);
    const std::uint64_t from = watermark_.load();
    if (from >= upto) return;
    // Only what is not written yet: rows of a partly written batch are never written twice (a bar
    // written twice would be skipped whole, its later trades with it).
    auto r = b.first_command() > from ? write_or_skip(*conn_, b, from) : write_or_skip(*conn_, tail_after(b, from), from);
    if (r) {
      reachable_.store(true);
      return;
    }
    if (!conn_->healthy()) reachable_.store(false);
    if (conn_->healthy() && r.error().code != Code::conflict) {
      log::warn("projector write failed; retrying", {{"error", r.error().message}});
    }
  }
}

}  // namespace hydrox::trading
