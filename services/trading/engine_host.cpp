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
    "latest_snapshots", "SELECT command_no, state_hash, markets, parts FROM engine_snapshots ORDER BY command_no DESC LIMIT 2"};
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

std::string ts(std::int64_t ms) { return format_rfc3339_ms(ms); }

// A funding rate in 1e-9 divided by `divisor`, as exact decimal text (F / 8 has at most 12 decimals).
std::string rate_text(std::int64_t ppb, int divisor) {
  const __int128 scaled = static_cast<__int128>(ppb) * 1000 / divisor;  // 1e-12
  return decimal::format(static_cast<std::int64_t>(scaled), 12);
}

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

Uuid position_id(const UserId& user, int market_id) {
  Uuid u = user.value();
  std::uint64_t m = static_cast<std::uint64_t>(market_id) * 0x9E3779B97F4A7C15ull;
  Uuid out{u.hi ^ m, u.lo ^ (m >> 7) ^ 0x5A5A5A5A5A5A5A5Aull};
  out.hi = (out.hi & ~0xF000ull) | 0x8000ull;  // version 8: custom, derived
  out.lo = (out.lo & ~(0xC000ull << 48)) | (0x8000ull << 48);
  return out;
}

EngineHost::EngineHost(const Catalog& catalog, std::shared_ptr<db::Pool> db, std::unique_ptr<db::Connection> writer,
                       std::shared_ptr<redis::Client> redis, HostOptions options)
    : catalog_(catalog),
      db_(std::move(db)),
      writer_(std::move(writer)),
      redis_(std::move(redis)),
      options_(options),
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
                                                  const std::atomic<bool>* cancel) {
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
  const std::uint64_t from = load_snapshot(engine_, **lease, "primary");
  auto replayed = replay_journal(engine_, **lease, from, "primary");
  if (!replayed) return replayed.error();
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
  if (!b.items.empty()) {
    if (auto w = write(statements_for(b)); !w) return w.error();
  }
  {
    std::lock_guard lock(vaults_mu_);
    for (const Vault& v : engine_.vaults()) {
      vault_refs_[v.id] = VaultRef{engine_.user_of(v.account), engine_.user_of(v.leader)};
    }
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

std::uint64_t EngineHost::load_snapshot(Engine& e, db::Connection& c, const char* role) {
  auto rows = c.exec(kLatestSnapshots);
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
    if (since >= options_.snapshot_every && since >= f->resting_orders()) {
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
    std::set<std::pair<std::uint64_t, std::uint64_t>> touched;
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
    // Collateral after the batch of every account it touched (for the balances table).
    auto touch = [&](const UserId& u) { touched.insert({u.value().hi, u.value().lo}); };
    for (const auto& e : b.events) {
      if (auto* t = std::get_if<Trade>(&e.body)) {
        touch(t->maker);
        touch(t->taker);
        touch(options_.fee_account);
      } else if (auto* bc = std::get_if<BalanceChanged>(&e.body)) {
        touch(bc->user);
      } else if (auto* fp = std::get_if<FundingPaid>(&e.body)) {
        touch(fp->user);
      } else if (auto* im = std::get_if<IsolatedMarginChanged>(&e.body)) {
        touch(im->user);
      } else if (auto* mc = std::get_if<MarkChanged>(&e.body)) {
        marks_[mc->market].store(mc->mark);
      } else if (auto* fs = std::get_if<FundingSettled>(&e.body)) {
        funding_ms_[fs->market].store(fs->interval_ms);
      }
    }
    note_vaults(b.events);
    for (const auto& [hi, lo] : touched) {
      UserId u{Uuid{hi, lo}};
      if (const Account* a = engine_.account(u)) b.balances.emplace_back(u, a->collateral);
    }
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
        Batch& next = out_.front();
        const std::size_t offset = b.events.size();
        b.events.insert(b.events.end(), std::make_move_iterator(next.events.begin()),
                        std::make_move_iterator(next.events.end()));
        for (auto& it : next.items) {
          it.first_event += offset;
          it.end_event += offset;
          b.items.push_back(std::move(it));
        }
        // Later collateral wins: it is the state after both batches.
        for (auto& bal : next.balances) {
          auto found = std::find_if(b.balances.begin(), b.balances.end(),
                                    [&](const auto& x) { return x.first == bal.first; });
          if (found != b.balances.end()) found->second = bal.second; else b.balances.push_back(bal);
        }
        out_.pop_front();
      }
    }
    out_cv_.notify_all();
    const bool has_writes = std::any_of(b.items.begin(), b.items.end(), [](const Item& i) { return i.journaled; });
    Formatted f;
    if (has_writes) f.statements = statements_for(b);
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
      // Committed: the follower may apply these now.
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
        it.done(std::move(o));
      }
      if (it.journaled) committed_commands().inc();
    }
    for (auto& it : b.items) {  // the answers hold what they need; the publisher needs the events
      it.done = nullptr;
      it.reply = nullptr;
    }
    // Publishing is best effort (subscribers resync from snapshots; PostgreSQL has everything): a
    // Redis that stalls must not hold up the next commit, so a full publisher queue drops it.
    if (!to_publish_.try_push(std::move(b))) {
      unpublished_batches().inc();
      static std::atomic<int> drops{0};
      if (drops.fetch_add(1) % 100 == 0) log::warn("publisher behind (Redis slow?): a committed batch not published");
    }
  }
  to_publish_.close();
}

void EngineHost::publish_loop() {
  while (auto b = to_publish_.pop()) publish(*b);
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
      "Commands whose read rows PostgreSQL refused (their journal row is kept)");
  log::warn("batch refused by PostgreSQL; writing its commands one by one",
            {{"error", first.message}});
  for (std::size_t k = 0; k < b.items.size(); ++k) {
    const Item& it = b.items[k];
    if (!it.journaled) continue;
    Batch one;
    one.balances =
        b.balances;  // upserts of the batch's final collateral: the same values each time
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
    auto w = write(statements_for(one));
    if (w) continue;
    if (!writer_ || !writer_->healthy()) {
      log::error(
          "database lost while writing a refused batch one by one; exiting to recover from the "
          "journal");
      std::_Exit(70);
    }
    // This command's rows are refused: its journal row alone (the truth, replayed on recovery),
    // and its caller is told it was not acknowledged (a retry with the same client_order_id or
    // key finds the outcome). Everyone else's commands above and below are written.
    refused.inc();
    log::error(
        "a command's read rows were refused; its journal row is written alone",
        {{"command_no", static_cast<std::int64_t>(it.command_no)}, {"error", w.error().message}});
    if (auto j = write(statements_for(one, /*journal_only=*/true)); !j) {
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

std::vector<db::Statement> EngineHost::statements_for(const Batch& b, bool journal_only) const {
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
      } else if (auto* cv = std::get_if<CreateVault>(&it.command)) {
        user = cv->leader.value().to_string();
        amount = usdm_text(cv->initial);
      }
      operators.add({it.idempotency_key, command_kind(it.command), user, amount, std::to_string(it.command_no),
                     it.outcome_text});
    }
  }

  if (journal_only) {  // the truth alone (a command whose read rows PostgreSQL refused)
    std::vector<db::Statement> statements;
    statements.push_back({"begin", "BEGIN", {}});
    journal.append_to(statements, "journal_insert");
    if (!operators.empty()) operators.append_to(statements, "operator_insert");
    statements.push_back({"commit", "COMMIT", {}});
    return statements;
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

  // Orders: new ones inserted with their state at the end of the batch; older ones updated.
  struct OrderRow {
    const OrderAccepted* accepted = nullptr;
    const OrderUpdated* last = nullptr;
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
  std::unordered_map<Uuid, std::map<int, const PositionChanged*>, engine::UuidHash> positions;
  std::map<int, const MarkChanged*> marks;
  std::int64_t batch_ts = 0;
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
            batch_ts = ev.ts_ms;
          } else if constexpr (std::is_same_v<T, OrderUpdated>) {
            auto& row = orders[ev.id.value()];
            if (!row.accepted && !row.last) order_ids.push_back(ev.id.value());
            row.last = &ev;
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
              ledger.add({seq, options_.fee_account.value().to_string(), usdm_text(ev.maker_fee + ev.taker_fee), "FEE_INCOME", seq, time});
            }
            if (ev.maker_realized_pnl != 0) {
              ledger.add({seq, ev.maker.value().to_string(), usdm_text(ev.maker_realized_pnl), "REALIZED_PNL", ev.maker_order.value().to_string(), time});
            }
            if (ev.taker_realized_pnl != 0) {
              ledger.add({seq, ev.taker.value().to_string(), usdm_text(ev.taker_realized_pnl), "REALIZED_PNL", ev.taker_order.value().to_string(), time});
            }
          } else if constexpr (std::is_same_v<T, PositionChanged>) {
            positions[ev.user.value()][static_cast<int>(ev.market)] = &ev;
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
              if (auto ref = vault_ref(ev.vault)) {
                vault_tx_rows.add({std::to_string(e.seq), ev.vault.to_string(),
                                   ref->leader.value().to_string(), "profit_share",
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
      " status, reduce_only, client_order_id, leverage, cancel_reason, created_seq, created_at, updated_at, trigger_price)",
      {"uuid", "uuid", "integer", "text", "text", "text", "numeric", "numeric", "numeric", "numeric", "text", "boolean", "text", "integer", "text", "bigint", "timestamptz", "timestamptz", "numeric"},
      // A held trigger order that fires is accepted again: its row takes the new state.
      "ON CONFLICT (id) DO UPDATE SET status = EXCLUDED.status, filled = EXCLUDED.filled,"
      " filled_notional = EXCLUDED.filled_notional, cancel_reason = EXCLUDED.cancel_reason, updated_at = EXCLUDED.updated_at");
  MultiRow updates(
      "UPDATE orders o SET status = v.status, filled = v.filled, filled_notional = v.fn,"
      " cancel_reason = v.reason, updated_at = v.at FROM",
      {"uuid", "text", "numeric", "numeric", "text", "timestamptz"}, "AS v(id, status, filled, fn, reason, at) WHERE o.id = v.id");
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
      if (is_limit_like(a.type)) price = Catalog::price_text(m, a.price);
      if (a.trigger_price != 0) trigger = Catalog::price_text(m, a.trigger_price);
      new_orders.add({id.to_string(), a.user.value().to_string(), std::to_string(m.id), std::string(side_name(a.side)),
                      std::string(type_name(a.type)), std::string(tif_name(a.tif)), price, Catalog::amount_text(m, a.qty),
                      Catalog::amount_text(m, filled), usdm_text(fn), std::string(status_name(status)),
                      a.reduce_only ? "true" : "false", coid, std::to_string(a.leverage), reason,
                      std::to_string(row.seq), ts(a.ts_ms), ts(row.last ? row.last->ts_ms : a.ts_ms), trigger});
    } else if (row.last) {
      const OrderUpdated& u = *row.last;
      const MarketInfo& m = catalog_.at(u.market);
      std::optional<std::string> reason;
      if (u.status == OrderStatus::cancelled) reason = std::string(cancel_reason_code(u.cancel_reason));
      updates.add({id.to_string(), std::string(status_name(u.status)), Catalog::amount_text(m, u.filled),
                   usdm_text(u.filled_notional), reason, ts(u.ts_ms)});
    }
  }
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
      " isolated_margin = EXCLUDED.isolated_margin,"
      // A position opened again, or flipped to the other side, is a new position: its own start.
      " created_at = CASE WHEN EXCLUDED.size <> 0 AND sign(positions.size) <> sign(EXCLUDED.size)"
      " THEN EXCLUDED.created_at ELSE positions.created_at END");
  for (const auto& [user, per_market] : positions) {
    for (const auto& [market, p] : per_market) {
      const MarketInfo& m = catalog_.at(static_cast<std::uint32_t>(market));
      pos_rows.add({position_id(p->user, m.id).to_string(), user.to_string(), std::to_string(m.id),
                    Catalog::amount_text(m, p->size), usdm_text(p->cost), usdm_text(p->realized_pnl),
                    std::to_string(p->leverage), ts(p->ts_ms), ts(p->ts_ms), usdm_text(p->funding),
                    p->isolated ? "isolated" : "cross", usdm_text(p->margin)});
    }
  }
  MultiRow balance_rows("INSERT INTO balances (user_id, collateral, updated_at)", {"uuid", "numeric", "timestamptz"},
                        "ON CONFLICT (user_id) DO UPDATE SET collateral = EXCLUDED.collateral, updated_at = EXCLUDED.updated_at");
  const std::string now = ts(SystemClock::instance().now_ms());
  for (const auto& [u, collateral] : b.balances) balance_rows.add({u.value().to_string(), usdm_text(collateral), now});
  MultiRow mark_rows("INSERT INTO marks (market_id, mark, updated_at)", {"integer", "numeric", "timestamptz"},
                     "ON CONFLICT (market_id) DO UPDATE SET mark = EXCLUDED.mark, updated_at = EXCLUDED.updated_at");
  for (const auto& [market, mc] : marks) {
    const MarketInfo& m = catalog_.at(static_cast<std::uint32_t>(market));
    mark_rows.add({std::to_string(m.id), Catalog::price_text(m, mc->mark), ts(mc->ts_ms)});
  }
  (void)batch_ts;
  // One-minute bars, merged into what earlier batches wrote; a bar part already applied (same
  // sequence range) is skipped, so a retried write cannot count its volume twice.
  MultiRow bar_rows(
      "INSERT INTO klines_1m AS k (market_id, bucket, open, high, low, close, volume, quote_volume, trades,"
      " first_seq, last_seq)",
      {"integer", "timestamptz", "numeric", "numeric", "numeric", "numeric", "numeric", "numeric", "integer", "bigint", "bigint"},
      "ON CONFLICT (market_id, bucket) DO UPDATE SET high = greatest(k.high, EXCLUDED.high),"
      " low = least(k.low, EXCLUDED.low), close = EXCLUDED.close, volume = k.volume + EXCLUDED.volume,"
      " quote_volume = k.quote_volume + EXCLUDED.quote_volume, trades = k.trades + EXCLUDED.trades,"
      " last_seq = EXCLUDED.last_seq WHERE k.last_seq < EXCLUDED.first_seq");
  for (const auto& [key, bar] : bars) {
    const MarketInfo& m = catalog_.at(key.first);
    bar_rows.add({std::to_string(m.id), ts(key.second * 60'000), Catalog::price_text(m, bar.open),
                  Catalog::price_text(m, bar.high), Catalog::price_text(m, bar.low), Catalog::price_text(m, bar.close),
                  Catalog::amount_text(m, bar.volume), usdm_text(bar.quote), std::to_string(bar.trades),
                  std::to_string(bar.first), std::to_string(bar.last)});
  }

  // One transaction, sent as one pipeline: a round trip per batch instead of one per table.
  std::vector<db::Statement> statements;
  statements.push_back({"begin", "BEGIN", {}});
  for (auto [rows, name] : {std::pair{&journal, "journal_insert"}, std::pair{&operators, "operator_insert"},
                            std::pair{&new_orders, "orders_insert"}, std::pair{&updates, "orders_update"},
                            std::pair{&trades, "trades_insert"}, std::pair{&fills, "fills_insert"},
                            std::pair{&ledger, "ledger_insert"}, std::pair{&pos_rows, "positions_upsert"},
                            std::pair{&balance_rows, "balances_upsert"}, std::pair{&mark_rows, "marks_upsert"},
                            std::pair{&bar_rows, "klines_upsert"}, std::pair{&funding_rows, "funding_insert"},
                            std::pair{&liquidation_rows, "liquidations_insert"}, std::pair{&vault_rows, "vaults_insert"},
                            std::pair{&vault_tx_rows, "vault_transactions_insert"}}) {
    if (!rows->empty()) rows->append_to(statements, name);
  }
  statements.push_back({"commit", "COMMIT", {}});
  return statements;
}

void EngineHost::publish(const Batch& b) {
  std::vector<std::vector<std::string>> cmds;
  auto user_channel = [](const UserId& u, std::string_view kind) {
    return events::user_channel(u.value().to_string(), kind);
  };
  for (const auto& e : b.events) {
    std::visit(
        [&](const auto& ev) {
          using T = std::decay_t<decltype(ev)>;
          json::Writer w;
          if constexpr (std::is_same_v<T, Trade>) {
            const MarketInfo& m = catalog_.at(ev.market);
            if (ev.liquidation == Liquidation::none || ev.liquidation == Liquidation::book) {
              const events::TradeMessage trade{static_cast<std::int64_t>(e.seq),
                                               m.symbol,
                                               Catalog::price_text(m, ev.price),
                                               Catalog::amount_text(m, ev.qty),
                                               std::string(side_name(ev.taker_side)),
                                               ev.ts_ms / 1000,
                                               ev.ts_ms};
              cmds.push_back({"PUBLISH", events::trades_channel(m.symbol), events::encode(trade)});
            }
            for (auto [user, order, liq, fee, pnl, side] :
                 {std::tuple{ev.maker, ev.maker_order, "maker", ev.maker_fee, ev.maker_realized_pnl, opposite(ev.taker_side)},
                  std::tuple{ev.taker, ev.taker_order, "taker", ev.taker_fee, ev.taker_realized_pnl, ev.taker_side}}) {
              json::Writer f;
              // The REST fill's shape (GET /fills): the id a string, time_ms, liquidation null or
              // its code.
              f.begin_object()
                  .field("id", std::to_string(e.seq))
                  .field("order_id", order.value().to_string());
              f.field("symbol", m.symbol).field("side", side_name(side));
              f.key("price");
              Catalog::write_price(f, m, ev.price);
              f.key("amount");
              Catalog::write_amount(f, m, ev.qty);
              f.key("fee").raw_number(usdm_text(fee)).key("realized_pnl").raw_number(usdm_text(pnl));
              f.field("liquidity", liq).field("time", ev.ts_ms / 1000).field("time_ms", ev.ts_ms);
              if (ev.liquidation != Liquidation::none) f.field("liquidation", liquidation_code(ev.liquidation));
              else
                f.key("liquidation").null();
              f.end_object();
              cmds.push_back({"PUBLISH", user_channel(user, "fills"), f.take()});
            }
          } else if constexpr (std::is_same_v<T, BookLevelChanged>) {
            const MarketInfo& m = catalog_.at(ev.market);
            const events::BookLevelMessage level{
                static_cast<std::int64_t>(e.seq), m.symbol, ev.side == Side::buy,
                Catalog::price_text(m, ev.price), Catalog::amount_text(m, ev.size)};
            cmds.push_back({"PUBLISH", events::book_channel(m.symbol), events::encode(level)});
          } else if constexpr (std::is_same_v<T, MarkChanged>) {
            const MarketInfo& m = catalog_.at(ev.market);
            const events::MarkMessage mark{static_cast<std::int64_t>(e.seq), m.symbol,
                                           Catalog::price_text(m, ev.mark), ev.ts_ms};
            cmds.push_back({"PUBLISH", events::mark_channel(m.symbol), events::encode(mark)});
          } else if constexpr (std::is_same_v<T, FundingSettled>) {
            const MarketInfo& m = catalog_.at(ev.market);
            const events::FundingMessage funding{static_cast<std::int64_t>(e.seq), m.symbol,
                                                 ev.interval_ms / 1000, rate_text(ev.rate_ppb, 8),
                                                 Catalog::price_text(m, ev.mark)};
            cmds.push_back({"PUBLISH", events::funding_channel(m.symbol), events::encode(funding)});
          } else if constexpr (std::is_same_v<T, OrderUpdated>) {
            const MarketInfo& m = catalog_.at(ev.market);
            w.begin_object().field("seq", static_cast<std::int64_t>(e.seq)).field("id", ev.id.value().to_string());
            w.field("symbol", m.symbol).field("status", status_name(ev.status)).key("filled");
            Catalog::write_amount(w, m, ev.filled);
            w.key("remaining");
            Catalog::write_amount(w, m, ev.remaining);
            if (ev.status == OrderStatus::cancelled) w.field("cancel_reason", cancel_reason_code(ev.cancel_reason));
            w.end_object();
            cmds.push_back({"PUBLISH", user_channel(ev.user, "orders"), w.take()});
          } else if constexpr (std::is_same_v<T, PositionChanged>) {
            const MarketInfo& m = catalog_.at(ev.market);
            w.begin_object().field("seq", static_cast<std::int64_t>(e.seq)).field("symbol", m.symbol);
            w.field("side", ev.size >= 0 ? "Long" : "Short").key("size");
            Catalog::write_amount(w, m, ev.size < 0 ? -ev.size : ev.size);
            w.key("realized_pnl").raw_number(usdm_text(ev.realized_pnl));
            w.key("funding_paid").raw_number(usdm_text(ev.funding));
            w.field("margin_mode", ev.isolated ? "isolated" : "cross").key("isolated_margin").raw_number(usdm_text(ev.margin));
            w.end_object();
            cmds.push_back({"PUBLISH", user_channel(ev.user, "positions"), w.take()});
          }
        },
        e.body);
  }
  for (const auto& [u, collateral] : b.balances) {
    json::Writer w;
    w.begin_object().field("asset", "USDM").key("collateral").raw_number(usdm_text(collateral)).end_object();
    cmds.push_back({"PUBLISH", user_channel(u, "balances"), w.take()});
  }
  if (cmds.empty()) return;
  // Pub/sub is best effort: subscribers resync from snapshots; the database has everything.
  if (auto r = redis_->pipeline(cmds); !r) {
    static std::atomic<int> failures{0};
    if (failures.fetch_add(1) % 100 == 0) log::warn("publish to redis failed", {{"error", r.error().message}});
  }
}

}  // namespace hydrox::trading
