#include "engine_host.hpp"

#include "hydrox/events/events.hpp"

#include "engine_lock.hpp"
#include "hydrox/core/text.hpp"

#include <cstdlib>
#include <set>
#include <stdexcept>
#include <unordered_map>

#include "hydrox/core/clock.hpp"
#include "hydrox/engine/snapshot_codec.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/log/log.hpp"
#include "hydrox/metrics/metrics.hpp"
#include "journal.hpp"
#include "pipeline/publisher.hpp"

namespace hydrox::trading {

using namespace engine;

namespace {

// How far ahead of the command being applied the engine loop prefetches (Engine::prefetch).
constexpr std::size_t kPrefetchAhead = 2;

constexpr db::Query kJournalPage{
    "journal_page",
    "SELECT command_no, payload::text, first_seq, event_count FROM engine_journal"
    " WHERE command_no > $1 ORDER BY command_no LIMIT 10000"};
constexpr db::Query kProtocolVaults{
    "protocol_vaults",
    "SELECT id, account_user_id, leader_user_id, lock_period_ms, performance_fee::text, management_fee::text,"
    " min_deposit::text, capacity::text FROM vaults WHERE is_protocol AND status = 'active' ORDER BY id"};
constexpr db::Query kOperatorKeys{"operator_keys", "SELECT idempotency_key, outcome FROM operator_requests"};
constexpr db::Query kLatestSnapshots{
    "latest_snapshots",
    "SELECT command_no, state_hash, markets, parts FROM engine_snapshots WHERE command_no <= $1"
    " ORDER BY command_no DESC LIMIT 2"};
constexpr db::Query kSnapshotPart{
    "snapshot_part", "SELECT bytes FROM engine_snapshot_parts WHERE command_no = $1 AND part = $2", true};  // binary: the bytes
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

EngineHost::EngineHost(const Catalog& catalog, std::shared_ptr<db::Pool> db, std::unique_ptr<db::Connection> writer,
                       std::shared_ptr<redis::Client> redis, HostOptions options)
    : catalog_(catalog),
      db_(std::move(db)),
      writer_(std::move(writer)),
      redis_(std::move(redis)),
      options_(options),
      projector_(row_context(), db_ ? db_->url() : std::string()),
      engine_(engine_config()),  // catalog_ and options_ are set by now
      marks_(catalog.all().size()),
      funding_ms_(catalog.all().size()) {}

EngineHost::~EngineHost() { stop(); }

std::optional<EngineHost::VaultRef> EngineHost::vault_ref(const Uuid& vault) const {
  std::lock_guard lock(vaults_mu_);
  auto it = vault_refs_.find(vault);
  if (it == vault_refs_.end()) return std::nullopt;
  return it->second;
}

void EngineHost::note_vaults(const std::vector<Event>& events) {
  for (const auto& e : events) {
    if (auto* v = std::get_if<VaultCreated>(&e.body)) {
      std::lock_guard lock(vaults_mu_);
      vault_refs_[v->vault] = VaultRef{v->account, v->leader};
    }
  }
}

Result<std::uint64_t> EngineHost::replay_journal(Engine& e, db::Connection& conn, std::uint64_t from, const char* role,
                                                  const std::atomic<bool>* cancel, const Applied& applied) {
  // Three stages, so that PostgreSQL, JSON decoding and the replay overlap: a thread reads pages
  // (on `conn`, which this thread leaves alone until the stages are joined), a thread decodes
  // them, this thread applies them.
  using Clock = std::chrono::steady_clock;
  const auto started = Clock::now();
  struct Entry {
    std::int64_t command_no;
    Command command;
    Seq first_seq;
    std::size_t count;
  };
  using Page = Result<std::vector<Entry>>;
  Handoff<Result<db::Rows>> raw{2};  // pages of at most two ahead of the stage after
  Handoff<Page> decoded{2};
  std::thread fetcher([&] {
    std::string after = std::to_string(from);
    for (;;) {
      Result<db::Rows> rows = conn.exec(kJournalPage, {after});
      const bool last_page = !rows || rows->size() == 0;
      if (!last_page) after = std::string(rows->get(rows->size() - 1, 0));
      if (!raw.push(std::move(rows)) || last_page) break;
    }
    raw.close();
  });
  std::thread decoder([&] {
    while (auto rows = raw.pop()) {
      Page page = std::vector<Entry>{};
      if (!*rows) {
        page = rows->error();
      } else {
        page->reserve(static_cast<std::size_t>((*rows)->size()));
        for (int r = 0; r < (*rows)->size(); ++r) {
          const std::int64_t no = std::stoll(std::string((*rows)->get(r, 0)));
          auto cmd = decode_command((*rows)->get(r, 1), catalog_);
          if (!cmd) {
            page = fail(Code::internal, "journal entry " + std::to_string(no) + ": " + cmd.error().message);
            break;
          }
          page->push_back(Entry{no, std::move(*cmd), static_cast<Seq>(std::stoull(std::string((*rows)->get(r, 2)))),
                                static_cast<std::size_t>(std::stoull(std::string((*rows)->get(r, 3))))});
        }
      }
      const bool last_page = !page || page->empty();
      if (!decoded.push(std::move(page)) || last_page) break;
    }
    raw.close();
    decoded.close();
  });
  auto stop_stages = [&] {
    raw.close();
    decoded.close();
    fetcher.join();
    decoder.join();
  };
  std::vector<Event> events;
  std::int64_t last = static_cast<std::int64_t>(from);
  Clock::duration waiting{};
  for (;;) {
    const auto t0 = Clock::now();
    auto next = decoded.pop();
    waiting += Clock::now() - t0;
    if (!next) break;
    Page page = std::move(*next);
    if (!page) {
      stop_stages();
      return page.error();
    }
    if (page->empty()) break;
    if (cancel != nullptr && cancel->load()) {
      stop_stages();
      return fail(Code::unavailable, "stopping");
    }
    for (std::size_t i = 0; i < page->size(); ++i) {
      const Entry& en = (*page)[i];
      if (i + kPrefetchAhead < page->size()) e.prefetch((*page)[i + kPrefetchAhead].command);
      last = en.command_no;
      events.clear();
      e.apply(en.command, events);
      if (events.size() != en.count || (en.count > 0 && events.front().seq != en.first_seq)) {
        stop_stages();
        return fail(Code::internal, "journal replay diverged at command " + std::to_string(last));
      }
      if (applied) {
        if (auto r = applied(static_cast<std::uint64_t>(en.command_no), en.command, events); !r) {
          stop_stages();
          return r.error();
        }
      }
    }
  }
  stop_stages();
  const auto ms = [](Clock::duration d) { return static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()); };
  log::info("journal replayed", {{"engine", role}, {"commands", last - static_cast<std::int64_t>(from)}, {"after_snapshot", static_cast<std::int64_t>(from)},
                                 {"ms", ms(Clock::now() - started)}, {"waiting_for_pages_ms", ms(waiting)}});
  return static_cast<std::uint64_t>(last);
}

Result<void> EngineHost::recover(std::int64_t now_ms) {
  auto lease = db_->acquire();
  if (!lease) return lease.error();
  // The projector's watermark: the commands after it are replayed from the journal (never from a
  // snapshot past it) and their read rows written before the service answers anyone.
  auto projected = Projector::load_watermark(**lease);
  if (!projected) return projected.error();
  projector_.set_watermark(*projected);
  const std::uint64_t from = load_snapshot(engine_, **lease, "primary", *projected);
  auto remember_vaults = [&] {
    std::lock_guard lock(vaults_mu_);
    for (const Vault& v : engine_.vaults()) {
      vault_refs_[v.id] = VaultRef{engine_.user_of(v.account), engine_.user_of(v.leader)};
    }
  };
  remember_vaults();
  auto rows_lease = db_->acquire();  // the projection's (the replay reads pages on `lease` meanwhile)
  if (!rows_lease) return rows_lease.error();
  Batch pending;
  std::uint64_t projected_now = 0;
  auto flush = [&]() -> Result<void> {
    if (pending.items.empty()) return {};
    add_balances(pending, engine_, options_.fee_account);
    if (auto w = projector_.project_now(**rows_lease, pending); !w) return w;
    projected_now += pending.items.size();
    pending = Batch{};
    return {};
  };
  auto project = [&](std::uint64_t no, const Command& c, const std::vector<Event>& events) -> Result<void> {
    note_vaults(events);  // every vault the replay creates: a later profit share names its leader
    if (no <= *projected) return {};
    Item it;
    it.command_no = no;
    it.command = c;
    it.first_event = pending.events.size();
    pending.events.insert(pending.events.end(), events.begin(), events.end());
    it.end_event = pending.events.size();
    pending.items.push_back(std::move(it));
    if (pending.events.size() >= 50'000 || pending.items.size() >= 10'000) return flush();
    return {};
  };
  auto replayed = replay_journal(engine_, **lease, from, "primary", nullptr, project);
  if (!replayed) return replayed.error();
  if (auto w = flush(); !w) return w.error();
  if (projected_now > 0) {
    log::info("read tables projected from the journal",
              {{"commands", static_cast<std::int64_t>(projected_now)},
               {"from", static_cast<std::int64_t>(*projected)},
               {"to", static_cast<std::int64_t>(projector_.watermark())}});
  }
  const auto last = static_cast<std::int64_t>(*replayed);
  command_no_.store(static_cast<std::uint64_t>(last));
  auto keys = (*lease)->exec(kOperatorKeys);
  if (!keys) return keys.error();
  for (int r = 0; r < keys->size(); ++r) operator_keys_[std::string(keys->get(r, 0))] = std::string(keys->get(r, 1));
  if (auto err = engine_.check_invariants(false); !err.empty()) {
    return fail(Code::internal, "invariants broken after replay: " + err);
  }
  log::info("engine recovered", {{"commands", static_cast<std::int64_t>(last)},
                                 {"last_seq", static_cast<std::int64_t>(engine_.last_seq())},
                                 {"resting_orders", static_cast<std::int64_t>(engine_.resting_orders())}});

  // Markets that never had a mark start at their listed price (journaled like any command).
  Batch b;
  for (const auto& m : catalog_.all()) {
    if (engine_.mark(m.index) == 0) {
      Item it;
      it.command = SetMark{m.index, m.start_price, now_ms};
      it.first_event = b.events.size();
      engine_.apply(it.command, b.events);
      it.end_event = b.events.size();
      it.command_no = command_no_.fetch_add(1) + 1;
      b.items.push_back(std::move(it));
    }
  }
  // The catalog's order limits, where they differ from the engine's (first start with limits, or
  // an operator changed the markets table): journaled like any command.
  for (const auto& m : catalog_.all()) {
    const MarketSpec& now = engine_.spec(m.index);
    if (now.max_order_qty == m.spec.max_order_qty &&
        now.max_market_order_qty == m.spec.max_market_order_qty &&
        now.max_order_notional == m.spec.max_order_notional &&
        now.max_position_notional == m.spec.max_position_notional) {
      continue;
    }
    Item it;
    it.command = SetMarketLimits{m.index,
                                 m.spec.max_order_qty,
                                 m.spec.max_market_order_qty,
                                 m.spec.max_order_notional,
                                 m.spec.max_position_notional,
                                 now_ms};
    it.first_event = b.events.size();
    engine_.apply(it.command, b.events);
    it.end_event = b.events.size();
    it.command_no = command_no_.fetch_add(1) + 1;
    b.items.push_back(std::move(it));
    log::info("market limits set", {{"symbol", m.symbol},
                                    {"max_order_qty", m.spec.max_order_qty},
                                    {"max_position_notional", m.spec.max_position_notional}});
  }
  // The protocol vault exists from the first migration; the engine learns it here (journaled).
  auto protocol = (*lease)->exec(kProtocolVaults);
  if (!protocol) return protocol.error();
  for (int r = 0; r < protocol->size(); ++r) {
    auto id = Uuid::parse(protocol->get(r, 0));
    auto account = Uuid::parse(protocol->get(r, 1));
    auto leader = Uuid::parse(protocol->get(r, 2));
    auto perf = decimal::parse_units(protocol->get(r, 4), 4, decimal::Rounding::down);
    auto mgmt = decimal::parse_units(protocol->get(r, 5), 4, decimal::Rounding::down);
    auto min_dep = decimal::parse_units(protocol->get(r, 6), 6, decimal::Rounding::up);
    auto cap = decimal::parse_units(protocol->get(r, 7), 6, decimal::Rounding::down);
    if (!id || !account || !leader || !perf || !mgmt || !min_dep || !cap) {
      return fail(Code::internal, "bad protocol vault row " + std::string(protocol->get(r, 0)));
    }
    if (engine_.vault(*id)) continue;
    CreateVault c;
    c.vault = *id;
    c.account = UserId{*account};
    c.leader = UserId{*leader};
    c.lock_ms = std::stoll(std::string(protocol->get(r, 3)));
    c.performance_fee_ppm = static_cast<std::int32_t>(*perf);
    c.management_fee_ppm = static_cast<std::int32_t>(*mgmt);
    c.min_deposit = *min_dep;
    c.capacity = *cap;
    c.protocol = true;
    c.ts_ms = now_ms;
    Item it;
    it.command = c;
    it.first_event = b.events.size();
    engine_.apply(it.command, b.events);
    it.end_event = b.events.size();
    it.command_no = command_no_.fetch_add(1) + 1;
    b.items.push_back(std::move(it));
  }
  remember_vaults();
  if (!b.items.empty()) {
    if (auto w = write(journal_statements(b, row_context())); !w) return w.error();
    add_balances(b, engine_, options_.fee_account);
    if (auto w = projector_.project_now(**rows_lease, b); !w) return w.error();
  }
  for (const auto& m : catalog_.all()) {
    marks_[m.index].store(engine_.mark(m.index));
    funding_ms_[m.index].store(engine_.last_funding_ms(m.index));
  }
  return {};
}

std::string EngineHost::market_list() const {
  std::string out;
  for (const auto& m : catalog_.all()) {
    if (!out.empty()) out += ',';
    out += m.symbol;
  }
  return out;
}

engine::EngineConfig EngineHost::engine_config() const {
  EngineConfig c;
  c.markets = catalog_.specs();
  // The order limits come from the journal (SetMarketLimits, written at start when the catalog's
  // differ), so a replay applies each order against the limits in force when it came; before the
  // first such command (journals older than the limits) the engine's ceilings apply.
  for (auto& spec : c.markets) {
    const MarketSpec ceiling;
    spec.max_order_qty = ceiling.max_order_qty;
    spec.max_market_order_qty = ceiling.max_market_order_qty;
    spec.max_order_notional = ceiling.max_order_notional;
    spec.max_position_notional = ceiling.max_position_notional;
  }
  c.fee_account = options_.fee_account;
  return c;
}

std::uint64_t EngineHost::load_snapshot(Engine& e, db::Connection& c, const char* role, std::uint64_t at_most) {
  auto rows = c.exec(kLatestSnapshots, {std::to_string(std::min<std::uint64_t>(at_most, INT64_MAX))});
  if (!rows) {
    log::warn("cannot read engine snapshots; replaying the whole journal", {{"engine", role}, {"error", rows.error().message}});
    return 0;
  }
  // Newest first; one that cannot be used is skipped for the one before it.
  for (int r = 0; r < rows->size(); ++r) {
    const auto started = std::chrono::steady_clock::now();
    const std::uint64_t command_no = std::stoull(std::string(rows->get(r, 0)));
    const int parts = std::stoi(std::string(rows->get(r, 3)));
    const bool older_left = r + 1 < rows->size();
    auto unusable = [&](const std::string& why) {
      log::warn(older_left ? "engine snapshot unusable; trying the one before" : "engine snapshot unusable; replaying the whole journal",
                {{"engine", role}, {"command_no", static_cast<std::int64_t>(command_no)}, {"reason", why}});
    };
    if (rows->get(r, 2) != market_list()) {
      unusable("the market list changed since");
      continue;
    }
    if (parts < 1) {
      unusable("no parts");
      continue;
    }
    std::string bytes;
    std::string missing;
    for (int k = 0; k < parts && missing.empty(); ++k) {
      auto part = c.exec(kSnapshotPart, {std::to_string(command_no), std::to_string(k)});
      if (!part) {
        missing = part.error().message;
      } else if (part->size() != 1) {
        missing = "part " + std::to_string(k) + " of " + std::to_string(parts) + " missing";
      } else {
        bytes.append(part->get(0, 0));
      }
    }
    if (!missing.empty()) {
      unusable(missing);
      continue;
    }
    const auto fetched = std::chrono::steady_clock::now();
    auto snapshot = decode_snapshot(bytes);
    if (!snapshot) {
      unusable(snapshot.error().message);
      continue;
    }
    if (snapshot->marks.size() > catalog_.all().size()) {
      unusable("more markets than listed");
      continue;
    }
    const Snapshot before = e.export_state();  // to go back to
    e.load(*snapshot);
    if (std::to_string(e.state_hash()) != rows->get(r, 1)) {
      e.load(before);
      unusable("state hash differs after loading");
      continue;
    }
    const auto ms_since = [](std::chrono::steady_clock::time_point t) {
      return static_cast<std::int64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t).count());
    };
    log::info("engine snapshot loaded",
              {{"engine", role}, {"command_no", static_cast<std::int64_t>(command_no)}, {"bytes", static_cast<std::int64_t>(bytes.size())},
               {"resting_orders", static_cast<std::int64_t>(e.resting_orders())},
               {"fetch_ms", ms_since(started) - ms_since(fetched)}, {"ms", ms_since(started)}});
    return command_no;
  }
  return 0;
}

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

void EngineHost::start() {
  running_.store(true);
  engine_thread_ = std::thread([this] { engine_loop(); });
  persist_thread_ = std::thread([this] { persist_loop(); });
  commit_thread_ = std::thread([this] { commit_loop(); });
  publish_thread_ = std::thread([this] { publish_loop(); });
  projector_.start([this](const Batch& b) { feed_follower(b); });
  if (options_.snapshot_every > 0) {
    {
      std::lock_guard lock(follow_mu_);
      follow_open_ = true;
    }
    follower_thread_ = std::thread([this] { follower_loop(); });
  }
}

void EngineHost::stop() {
  if (!running_.exchange(false)) return;
  in_cv_.notify_all();
  out_cv_.notify_all();
  if (engine_thread_.joinable()) engine_thread_.join();
  // Each stage drains what reached it, then closes the next one's hand-off.
  if (persist_thread_.joinable()) persist_thread_.join();
  if (commit_thread_.joinable()) commit_thread_.join();
  if (publish_thread_.joinable()) publish_thread_.join();
  projector_.stop();  // writes what was acknowledged (a clean stop leaves no backlog)
  follower_stop_.store(true);  // a follower still recovering gives up at its next page
  close_follow();  // what it has not applied yet is dropped: the next start takes a snapshot
  if (follower_thread_.joinable()) follower_thread_.join();
}

bool EngineHost::submit(Job job) {
  {
    std::lock_guard lock(in_mu_);
    if (in_.size() >= options_.queue_capacity || !running_.load() || degraded_.load()) return false;
    in_.push_back(std::move(job));
  }
  in_cv_.notify_one();
  return true;
}

std::size_t EngineHost::queue_depth() const {
  std::lock_guard lock(in_mu_);
  return in_.size();
}

std::optional<std::pair<std::int64_t, Usdm>> EngineHost::vault_unlock(
    const VaultWithdraw& w) const {
  const Vault* v = engine_.vault(w.vault);
  const Account* a = engine_.account(w.user);
  if (!v || !a || v->total_shares <= 0) return std::nullopt;
  auto h = v->holders.find(a->index);
  if (h == v->holders.end() || h->second.shares <= 0) return std::nullopt;
  const Usdm nav = engine_.vault_nav(*v);
  if (nav <= 0) return std::nullopt;
  using i128 = __int128;
  const i128 value = static_cast<i128>(h->second.shares) * nav / v->total_shares;
  const i128 needed =
      w.amount >= value
          ? h->second.shares
          : std::min<i128>(h->second.shares,
                           (static_cast<i128>(w.amount) * v->total_shares + nav - 1) / nav);
  std::vector<VaultLot> lots = h->second.lots;
  std::sort(lots.begin(), lots.end(),
            [](const VaultLot& x, const VaultLot& y) { return x.unlock_ms < y.unlock_ms; });
  i128 unlocked = 0, now = 0;
  std::int64_t at = 0;
  for (const auto& lot : lots) {
    if (lot.unlock_ms <= w.ts_ms) now += lot.shares;
    if (unlocked < needed) {
      unlocked += lot.shares;
      at = lot.unlock_ms;
    }
  }
  return std::pair{at, static_cast<Usdm>(now * nav / v->total_shares)};
}

std::string EngineHost::operator_outcome(const Batch& b, const Item& item) const {
  json::Writer w;
  w.begin_object();
  const bool vault = std::holds_alternative<CreateVault>(item.command) || std::holds_alternative<VaultDeposit>(item.command) ||
                     std::holds_alternative<VaultWithdraw>(item.command);
  for (std::size_t i = item.first_event; i < item.end_event; ++i) {
    if (auto* cr = std::get_if<CommandRejected>(&b.events[i].body)) {
      json::Writer r;
      r.begin_object().field("status", "rejected").field("reason", reject_code(cr->reason));
      if (auto* wd = std::get_if<VaultWithdraw>(&item.command);
          wd && cr->reason == Reject::vault_locked) {
        // When the amount asked for is unlocked (at today's NAV): the lot whose unlock brings the
        // unlocked shares to what the withdrawal needs; and what could be withdrawn now.
        if (auto unlock = vault_unlock(*wd)) {
          r.field("unlocks_at_ms", unlock->first);
          r.key("withdrawable_now").raw_number(usdm_text(unlock->second));
        }
      }
      r.end_object();
      return r.take();
    }
  }
  w.field("status", "completed").field("command_no", static_cast<std::int64_t>(item.command_no));
  for (std::size_t i = item.first_event; i < item.end_event; ++i) {
    const Event& e = b.events[i];
    if (auto* bc = std::get_if<BalanceChanged>(&e.body); bc && !vault) {
      w.key("balance").raw_number(usdm_text(bc->balance));
    } else if (auto* vcr = std::get_if<VaultCreated>(&e.body)) {
      w.field("vault_id", vcr->vault.to_string()).field("account_id", vcr->account.value().to_string());
    } else if (auto* vc = std::get_if<VaultChanged>(&e.body);
               vc && (vc->kind == VaultMove::withdrawal || (vc->kind == VaultMove::deposit && vc->amount > 0))) {
      w.field("transaction_id", static_cast<std::int64_t>(e.seq)).field("vault", vc->vault.to_string());
      w.field("type", vc->kind == VaultMove::deposit ? "deposit" : "withdrawal");
      w.key("amount").raw_number(usdm_text(vc->amount)).key("fee").raw_number(usdm_text(vc->fee));
      w.key("paid").raw_number(usdm_text(vc->paid)).key("shares").raw_number(usdm_text(vc->shares));
      w.key("fee_shares").raw_number(usdm_text(vc->fee_shares));
      w.key("user_shares").raw_number(usdm_text(vc->user_shares));
      w.key("total_shares").raw_number(usdm_text(vc->total_shares)).key("nav").raw_number(usdm_text(vc->nav));
      w.field("unlock_ms", vc->kind == VaultMove::deposit ? vc->unlock_ms : std::int64_t{0});
      w.field("time_ms", vc->ts_ms);
    }
  }
  w.end_object();
  return w.take();
}

void EngineHost::set_clock_hook(std::int64_t period_ms, std::int64_t retry_ms, ClockHook hook) {
  clock_period_ms_ = period_ms;
  clock_retry_ms_ = retry_ms;
  clock_hook_ = std::move(hook);
}

void EngineHost::apply_item(Item& it, std::vector<Event>& events) {
  it.first_event = events.size();
  engine_.apply(it.command, events);
  it.end_event = events.size();
  it.command_no = command_no_.fetch_add(1) + 1;
}

void EngineHost::apply_made(Command c, std::vector<Item>& items, std::vector<Event>& events) {
  Item p;
  p.command = std::move(c);
  apply_item(p, events);
  items.push_back(std::move(p));
}

void EngineHost::stamp(Command& c, std::vector<Item>& items, std::vector<Event>& events, bool run_clock) {
  std::int64_t& ts = std::visit([](auto& cmd) -> std::int64_t& { return cmd.ts_ms; }, c);
  ts = std::max(ts, clock_ms_);
  clock_ms_ = ts;
  if (!run_clock || !clock_hook_ || ts < clock_next_ms_) return;
  const std::int64_t boundary = ts / clock_period_ms_ * clock_period_ms_;
  clock_next_ms_ = boundary + clock_period_ms_;  // the next moment, unless this one stays unsettled
  ClockStep step = clock_hook_(engine_, ts);
  for (auto& made : step.commands) {
    std::visit([&](auto& cmd) { cmd.ts_ms = ts; }, made);
    apply_made(std::move(made), items, events);
  }
  if (step.again) clock_next_ms_ = std::min(clock_next_ms_, ts + clock_retry_ms_);
}

void EngineHost::engine_loop() {
  std::deque<Job> jobs;
  while (running_.load()) {
    {
      std::unique_lock lock(in_mu_);
      in_cv_.wait(lock, [&] { return !in_.empty() || !running_.load(); });
      if (!running_.load()) break;
      const std::size_t n = std::min(in_.size(), options_.max_batch);
      for (std::size_t i = 0; i < n; ++i) {
        jobs.push_back(std::move(in_.front()));
        in_.pop_front();
      }
    }
    Batch b;
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      Job& job = jobs[k];
      if (k + kPrefetchAhead < jobs.size() && !jobs[k + kPrefetchAhead].is_read) {
        engine_.prefetch(jobs[k + kPrefetchAhead].command);
      }
      Item it;
      it.done = std::move(job.done);
      if (job.is_read) {
        it.journaled = false;
        it.reply = job.read(engine_);
        b.items.push_back(std::move(it));
        continue;
      }
      if (!job.idempotency_key.empty()) {
        if (auto seen = operator_keys_.find(job.idempotency_key); seen != operator_keys_.end()) {
          it.journaled = false;
          it.outcome_text = seen->second;
          b.items.push_back(std::move(it));
          continue;
        }
      }
      it.meta = job.meta;
      if (job.produce) {
        std::vector<Command> made = job.produce(engine_);
        for (auto& c : made) {
          stamp(c, b.items, b.events, /*run_clock=*/false);  // the clock's own commands
          apply_made(std::move(c), b.items, b.events);
        }
        if (it.done) {
          it.journaled = false;
          b.items.push_back(std::move(it));
        }
        continue;
      }
      it.command = job.command;
      stamp(it.command, b.items, b.events);
      it.idempotency_key = job.idempotency_key;
      apply_item(it, b.events);
      if (!it.idempotency_key.empty()) {
        it.outcome_text = operator_outcome(b, it);
        operator_keys_[it.idempotency_key] = it.outcome_text;
      }
      b.items.push_back(std::move(it));
    }
    jobs.clear();
    for (const auto& e : b.events) {
      if (auto* mc = std::get_if<MarkChanged>(&e.body)) {
        marks_[mc->market].store(mc->mark);
      } else if (auto* fs = std::get_if<FundingSettled>(&e.body)) {
        funding_ms_[fs->market].store(fs->interval_ms);
      }
    }
    note_vaults(b.events);
    // Collateral after the batch of every account it touched (the balances table, the stream).
    add_balances(b, engine_, options_.fee_account);
    {
      std::unique_lock lock(out_mu_);
      out_cv_.wait(lock, [&] { return out_.size() < options_.max_pending_batches || !running_.load(); });
      if (degraded_.load()) answer_unknown(b);  // submitted just before the outage was noticed
      out_.push_back(std::move(b));
    }
    out_cv_.notify_all();
  }
}

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
        if (!it.journaled) o.idempotent_replay = it.outcome_text;
        o.outcome_text = it.outcome_text;
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

void EngineHost::publish_loop() {
  while (auto b = to_publish_.pop()) publish(*b);
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
    if (!it.done || it.reply || !it.journaled) continue;
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
    const Item& it = b.items[k];
    if (!it.journaled) continue;
    Batch one;
    Item copy;
    copy.command_no = it.command_no;
    copy.command = it.command;
    copy.idempotency_key = it.idempotency_key;
    copy.outcome_text = it.outcome_text;
    copy.meta = it.meta;
    copy.first_event = 0;
    copy.end_event = it.end_event - it.first_event;
    one.events.assign(b.events.begin() + static_cast<std::ptrdiff_t>(it.first_event),
                      b.events.begin() + static_cast<std::ptrdiff_t>(it.end_event));
    one.items.push_back(std::move(copy));
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
        {{"command_no", static_cast<std::int64_t>(it.command_no)}, {"error", w.error().message}});
    if (auto j = write(journal_statements(one, ctx, /*with_vault_rows=*/false)); !j) {
      log::error("cannot write a command's journal row; exiting to recover from the journal",
                 {{"error", j.error().message}});
      std::_Exit(70);
    }
    Item& original = b.items[k];
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

RowContext EngineHost::row_context() const {
  return RowContext{catalog_, options_.fee_account, [this](const Uuid& vault) -> std::optional<UserId> {
                      if (auto ref = vault_ref(vault)) return ref->leader;
                      return std::nullopt;
                    }};
}

void EngineHost::publish(const Batch& b) {
  const std::vector<std::vector<std::string>> cmds = publish_commands(b, catalog_);
  if (cmds.empty()) return;
  // Pub/sub is best effort: subscribers resync from snapshots; the database has everything.
  if (auto r = redis_->pipeline(cmds); !r) {
    static std::atomic<int> failures{0};
    if (failures.fetch_add(1) % 100 == 0) log::warn("publish to redis failed", {{"error", r.error().message}});
  }
}

}  // namespace hydrox::trading
