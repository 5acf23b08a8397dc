// Intake and the engine thread: jobs into the bounded queue, applied in batches (the clock hook
// first when a command reaches its moment), operator outcomes, and each batch handed on with the
// collateral of every account it touched.
#include "engine_host.hpp"

#include <algorithm>

#include "hydrox/core/clock.hpp"
#include "hydrox/json/json.hpp"
#include "journal.hpp"

namespace hydrox::trading {

using namespace engine;

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
      // A withdrawal's request: a retry with the key must be the same request to get this answer.
      if (!item.meta.empty() && std::holds_alternative<RequestWithdrawal>(item.command)) r.key("request").raw_value(item.meta);
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
    } else if (auto* wc = std::get_if<WithdrawalChanged>(&e.body)) {
      w.field("withdrawal_id", wc->id.to_string()).field("withdrawal_status", withdrawal_status_code(wc->status));
      w.key("amount").raw_number(usdm_text(wc->amount));
      w.key("pending_withdrawal").raw_number(usdm_text(wc->pending)).field("time_ms", wc->ts_ms);
    }
  }
  // A withdrawal's request (its address and network, checked by the handler): in the answer a
  // retry with the same key gets, so that it can tell the same request from another one.
  if (!item.meta.empty() && std::holds_alternative<RequestWithdrawal>(item.command)) w.key("request").raw_value(item.meta);
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
      // A dead man's switch that runs out wakes the loop by itself (no request need come).
      const std::int64_t due = engine_.next_cancel_after();
      auto ready = [&] {
        return !in_.empty() || !running_.load() || (due != 0 && SystemClock::instance().now_ms() >= due);
      };
      if (due == 0) {
        in_cv_.wait(lock, ready);
      } else {
        while (!ready()) {
          const std::int64_t wait_ms = std::clamp<std::int64_t>(due - SystemClock::instance().now_ms(), 1, 1000);
          in_cv_.wait_for(lock, std::chrono::milliseconds(wait_ms));
        }
      }
      if (!running_.load()) break;
      const std::size_t n = std::min(in_.size(), options_.max_batch);
      for (std::size_t i = 0; i < n; ++i) {
        jobs.push_back(std::move(in_.front()));
        in_.pop_front();
      }
    }
    Batch b;
    // Dead man's switches fire in command time: before the first command stamped at or after a
    // deadline, and at the end of the batch for one due by the clock. A renewal that came in time
    // (stamped before the deadline) is applied first, however late the engine thread reaches it.
    auto fire_switches = [&](std::int64_t at) {
      const std::int64_t due = engine_.next_cancel_after();
      if (due == 0 || at < due) return;
      Command fire = CancelExpired{at};
      stamp(fire, b.items, b.events);
      apply_made(std::move(fire), b.items, b.events);
    };
    for (std::size_t k = 0; k < jobs.size(); ++k) {
      Job& job = jobs[k];
      if (k + kPrefetchAhead < jobs.size() && !jobs[k + kPrefetchAhead].is_read) {
        engine_.prefetch(jobs[k + kPrefetchAhead].command);
      }
      if (!job.is_read && !job.produce) {
        const Command& first = job.batch.empty() ? job.command : job.batch.front();
        fire_switches(std::max(clock_ms_, std::visit([](const auto& c) { return c.ts_ms; }, first)));
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
      if (!job.batch.empty()) {
        // One after the other, nothing between them (the clock's moment, if due, runs before the
        // first): one journal transaction holds them all.
        std::size_t first = 0;
        for (std::size_t i = 0; i < job.batch.size(); ++i) {
          Item part;
          part.batch_part = true;
          part.command = std::move(job.batch[i]);
          stamp(part.command, b.items, b.events, /*run_clock=*/i == 0);
          if (i == 0) first = b.events.size();
          apply_item(part, b.events);
          it.parts.push_back(b.events.size() - first);
          b.items.push_back(std::move(part));
        }
        it.journaled = false;
        it.carries_batch = true;
        it.first_event = first;
        it.end_event = b.events.size();
        b.items.push_back(std::move(it));
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
    fire_switches(SystemClock::instance().now_ms());
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

}  // namespace hydrox::trading
