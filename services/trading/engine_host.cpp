// The engine host's wiring: construction, start and stop of its threads, the publisher thread,
// and what several stages share (the engine's configuration, the market list, vault lookups).
// The stages themselves are in pipeline/ (engine_host.hpp lists them).
#include "engine_host.hpp"

#include "hydrox/log/log.hpp"
#include "pipeline/publisher.hpp"

namespace hydrox::trading {

using namespace engine;

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

void EngineHost::publish_loop() {
  while (auto b = to_publish_.pop()) publish(*b);
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