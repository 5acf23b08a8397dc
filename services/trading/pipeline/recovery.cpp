// Recovery (the primary's start, and the follower's own): the newest usable engine snapshot at
// or before the projector's watermark, the journal replayed after it in three overlapping stages,
// and the read rows of every command after the watermark projected before the service listens.
#include "engine_host.hpp"

#include <thread>

#include "hydrox/core/handoff.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/engine/snapshot_codec.hpp"
#include "hydrox/log/log.hpp"
#include "journal.hpp"

namespace hydrox::trading {

using namespace engine;

namespace {

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

}  // namespace

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

}  // namespace hydrox::trading
