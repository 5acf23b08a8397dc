#include "pipeline/batch.hpp"

#include <algorithm>
#include <map>
#include <unordered_map>
#include <type_traits>

namespace hydrox::trading {

std::uint64_t Batch::first_command() const {
  for (const Item& it : items) {
    if (it.journaled && it.command_no > 0) return it.command_no;
  }
  return 0;
}

std::uint64_t Batch::last_command() const {
  for (auto it = items.rbegin(); it != items.rend(); ++it) {
    if (it->journaled && it->command_no > 0) return it->command_no;
  }
  return 0;
}

void merge_batches(Batch& into, Batch&& next) {
  const std::size_t offset = into.events.size();
  into.events.insert(into.events.end(), std::make_move_iterator(next.events.begin()),
                     std::make_move_iterator(next.events.end()));
  for (auto& it : next.items) {
    it.first_event += offset;
    it.end_event += offset;
    into.items.push_back(std::move(it));
  }
  // Appended: an account may appear more than once, the later row being the state after both
  // batches (the row builders and the publisher keep the last). Merging stays linear however many
  // batches the projector merges.
  into.balances.insert(into.balances.end(), next.balances.begin(), next.balances.end());
  for (auto& f : next.after_projection) into.after_projection.push_back(std::move(f));
  into.acked_at.insert(into.acked_at.end(), next.acked_at.begin(), next.acked_at.end());
}

void append_item(Batch& out, const Batch& from, const Item& it) {
  Item copy;
  copy.command_no = it.command_no;
  copy.command = it.command;
  copy.idempotency_key = it.idempotency_key;
  copy.outcome_text = it.outcome_text;
  copy.meta = it.meta;
  copy.first_event = out.events.size();
  out.events.insert(out.events.end(), from.events.begin() + static_cast<std::ptrdiff_t>(it.first_event),
                    from.events.begin() + static_cast<std::ptrdiff_t>(it.end_event));
  copy.end_event = out.events.size();
  out.items.push_back(std::move(copy));
}

Batch tail_after(const Batch& b, std::uint64_t from) {
  Batch out;
  for (const Item& it : b.items) {
    if (!it.journaled || it.command_no <= from) continue;
    append_item(out, b, it);
  }
  out.balances = b.balances;
  return out;
}

void add_balances(Batch& b, const engine::Engine& e, const UserId& fee_account) {
  std::map<std::pair<std::uint64_t, std::uint64_t>, std::int64_t> touched;  // user → time
  for (const Item& it : b.items) {
    // (A batch's answer spans its commands' events: they count, with their own times.)
    if (it.end_event == it.first_event || it.carries_batch) continue;
    const std::int64_t at = std::visit([](const auto& c) { return c.ts_ms; }, it.command);
    auto touch = [&](const UserId& u) { touched[{u.value().hi, u.value().lo}] = at; };
    for (std::size_t i = it.first_event; i < it.end_event; ++i) {
      const engine::Event& ev = b.events[i];
      if (auto* t = std::get_if<engine::Trade>(&ev.body)) {
        touch(t->maker);
        touch(t->taker);
        touch(fee_account);
      } else if (auto* bc = std::get_if<engine::BalanceChanged>(&ev.body)) {
        touch(bc->user);
      } else if (auto* fp = std::get_if<engine::FundingPaid>(&ev.body)) {
        touch(fp->user);
      } else if (auto* im = std::get_if<engine::IsolatedMarginChanged>(&ev.body)) {
        touch(im->user);
      }
    }
  }
  for (const auto& [key, at] : touched) {
    const UserId u{Uuid{key.first, key.second}};
    if (const engine::Account* a = e.account(u)) b.balances.push_back(BalanceRow{u, a->collateral, at});
  }
}

std::vector<BalanceRow> last_balances(const std::vector<BalanceRow>& rows) {
  std::unordered_map<Uuid, std::size_t, engine::UuidHash> last;
  last.reserve(rows.size());
  for (std::size_t i = 0; i < rows.size(); ++i) last[rows[i].user.value()] = i;
  std::vector<BalanceRow> out;
  out.reserve(last.size());
  for (std::size_t i = 0; i < rows.size(); ++i) {
    if (last[rows[i].user.value()] == i) out.push_back(rows[i]);
  }
  return out;
}

std::optional<UserId> command_user(const engine::Command& c) {
  return std::visit(
      [](const auto& cmd) -> std::optional<UserId> {
        using T = std::decay_t<decltype(cmd)>;
        if constexpr (std::is_same_v<T, engine::CreateVault>) {
          return cmd.leader;
        } else if constexpr (requires { cmd.user; }) {
          return cmd.user;
        } else {
          return std::nullopt;
        }
      },
      c);
}

}  // namespace hydrox::trading
