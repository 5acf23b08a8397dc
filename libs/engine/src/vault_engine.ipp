// Vaults of BasicEngine (perp-rules "Vaults"). Included by engine.cpp before the explicit
// instantiations; shares its integer helpers.
//
// NAV = the vault account's value at the marks; nav_per_share = NAV / total_shares. A deposit of
// a mints floor(a * S / NAV) shares (S = 0: a shares, 1.0 per share); a withdrawal of shares pays
// floor(shares * NAV / S); so NAV per share moves by at most one unit of rounding, in the vault's
// favour. Value in the account that no share owns (the protocol vault seeded by operator
// deposits) belongs to the leader: before the first share is minted, the leader receives shares
// for it at 1.0. Performance fee on a withdrawal: fee = ceil(rate * max(0, gross - cost basis of
// the shares)), paid as floor(fee * S / NAV) shares to the leader; the withdrawer receives
// gross - fee. The management fee (yearly) mints shares to the leader pro rata temporis.

namespace hydrox::engine {

template <class Book>
const Vault* BasicEngine<Book>::vault(const Uuid& id) const {
  auto it = vault_index_.find(id);
  return it == vault_index_.end() ? nullptr : &vaults_[it->second];
}

template <class Book>
Usdm BasicEngine<Book>::vault_nav(const Vault& v) const {
  return view_of(accounts_[v.account]).equity;
}

template <class Book>
Usdm BasicEngine<Book>::share_value(const Vault& v, Usdm shares) const {
  const Usdm nav = vault_nav(v);
  if (v.total_shares <= 0 || nav <= 0) return 0;
  return clamp64(static_cast<i128>(shares) * nav / v.total_shares);
}

template <class Book>
void BasicEngine<Book>::mint_to_leader_if_unowned(Vault& v, std::int64_t ts, std::vector<Event>& out) {
  if (v.total_shares != 0) return;
  const Usdm nav = vault_nav(v);
  if (nav <= 0) return;
  VaultHolding& h = v.holders[v.leader];
  h.shares += nav;
  h.cost += nav;
  h.lots.push_back({nav, ts});
  v.total_shares = nav;
  emit(out, VaultChanged{v.id, accounts_[v.leader].user, VaultMove::deposit, 0, 0, 0, nav, 0, h.shares,
                         v.total_shares, nav, ts, ts});
}

template <class Book>
void BasicEngine<Book>::accrue_management_fee(Vault& v, std::int64_t ts, std::vector<Event>& out) {
  if (v.management_fee_ppm <= 0 || v.total_shares <= 0 || ts <= v.last_fee_ms) {
    if (v.management_fee_ppm <= 0 || v.total_shares <= 0) v.last_fee_ms = std::max(v.last_fee_ms, ts);
    return;
  }
  constexpr i128 kYearMs = 31'557'600'000;  // 365.25 days
  // (the elapsed time is capped at a year per accrual: shares, ppm and time stay inside 128 bits,
  // and the total inside kMaxShares, whatever the clock did)
  const i128 elapsed = std::min<i128>(static_cast<i128>(ts) - v.last_fee_ms, kYearMs);
  i128 mint = static_cast<i128>(v.total_shares) * v.management_fee_ppm * elapsed / (static_cast<i128>(1'000'000) * kYearMs);
  mint = std::min<i128>(mint, kMaxShares - std::min<Usdm>(v.total_shares, kMaxShares));
  if (mint <= 0) return;  // not a whole unit yet: the time keeps accumulating
  VaultHolding& h = v.holders[v.leader];
  h.shares += clamp64(mint);
  h.lots.push_back({clamp64(mint), ts});
  v.total_shares += clamp64(mint);
  v.last_fee_ms = ts;
  emit(out, VaultChanged{v.id, accounts_[v.leader].user, VaultMove::management_fee, 0, 0, 0, clamp64(mint), 0,
                         h.shares, v.total_shares, vault_nav(v), ts, ts});
}

template <class Book>
void BasicEngine<Book>::create_vault(const CreateVault& c, std::vector<Event>& out) {
  auto refuse = [&](Reject r) { emit(out, CommandRejected{c.leader, r, c.ts_ms}); };
  if (vault_index_.count(c.vault)) return refuse(Reject::vault_exists);
  constexpr std::int64_t kMaxLockMs = 10LL * 366 * 86'400'000;  // lockups up to ten years
  if (c.initial < 0 || c.lock_ms < 0 || c.lock_ms > kMaxLockMs || c.performance_fee_ppm < 0 || c.performance_fee_ppm > 1'000'000 ||
      c.management_fee_ppm < 0 || c.management_fee_ppm > 1'000'000 || c.min_deposit < 0 || c.capacity <= 0) {
    return refuse(Reject::bad_amount);
  }
  if (!c.protocol && c.initial < kMinLeaderDeposit) return refuse(Reject::below_min_deposit);
  if (!c.protocol && c.account == c.leader) return refuse(Reject::vault_exists);
  for (const Vault& v : vaults_) {
    if (accounts_[v.account].user == c.account) return refuse(Reject::vault_exists);
  }
  if (const std::uint32_t* existing = find_account(c.account); existing && !c.protocol) {
    const Account& a = accounts_[*existing];
    if (a.collateral != 0 || a.open_positions != 0 || a.open_orders != 0) return refuse(Reject::vault_exists);
  }
  if (c.initial > 0) {
    const std::uint32_t* li = find_account(c.leader);
    if (!li || accounts_[*li].collateral < c.initial) return refuse(Reject::insufficient_balance);
    if (view_of(accounts_[*li]).available < c.initial) return refuse(Reject::insufficient_margin);
  }
  const std::uint32_t leader = account_index(c.leader);
  const std::uint32_t acct = account_index(c.account);
  Vault v;
  v.id = c.vault;
  v.account = acct;
  v.leader = leader;
  v.lock_ms = c.lock_ms;
  v.performance_fee_ppm = c.performance_fee_ppm;
  v.management_fee_ppm = c.management_fee_ppm;
  v.min_deposit = c.min_deposit;
  v.capacity = c.capacity;
  v.protocol = c.protocol;
  v.last_fee_ms = c.ts_ms;
  vault_index_[c.vault] = static_cast<std::uint32_t>(vaults_.size());
  vaults_.push_back(std::move(v));
  emit(out, VaultCreated{c.vault, c.leader, c.account, c.ts_ms});
  if (c.initial > 0) vault_deposit(VaultDeposit{c.vault, c.leader, c.initial, c.ts_ms}, out);
}

template <class Book>
void BasicEngine<Book>::vault_deposit(const VaultDeposit& c, std::vector<Event>& out) {
  auto refuse = [&](Reject r) { emit(out, CommandRejected{c.user, r, c.ts_ms}); };
  auto it = vault_index_.find(c.vault);
  if (it == vault_index_.end()) return refuse(Reject::unknown_vault);
  if (c.amount <= 0) return refuse(Reject::bad_amount);
  const std::uint32_t* uip = find_account(c.user);
  if (!uip) return refuse(Reject::insufficient_balance);
  const std::uint32_t ui = *uip;
  Vault& v = vaults_[it->second];
  if (ui == v.account) return refuse(Reject::forbidden);
  accrue_management_fee(v, c.ts_ms, out);
  const Usdm nav_before = vault_nav(v);
  if (v.total_shares > 0 && nav_before <= 0) return refuse(Reject::vault_insolvent);
  if (c.amount < v.min_deposit && ui != v.leader) return refuse(Reject::below_min_deposit);
  if (static_cast<i128>(std::max<Usdm>(nav_before, 0)) + c.amount > v.capacity) return refuse(Reject::over_capacity);
  if (accounts_[ui].collateral < c.amount) return refuse(Reject::insufficient_balance);
  if (view_of(accounts_[ui]).available < c.amount) return refuse(Reject::insufficient_margin);
  // Shares at the NAV before the deposit (value nobody owns goes to the leader first).
  const Usdm s_before = v.total_shares > 0 ? v.total_shares : (nav_before > 0 ? nav_before : 0);
  // A vault near zero value mints very many shares per USDM: beyond kMaxShares it is refused.
  const i128 minted = s_before == 0 ? c.amount : static_cast<i128>(c.amount) * s_before / nav_before;
  if (minted > kMaxShares - static_cast<i128>(std::max<Usdm>(v.total_shares, s_before))) {
    return refuse(Reject::amount_too_large);
  }
  const Usdm shares = static_cast<Usdm>(minted);
  if (shares <= 0) return refuse(Reject::bad_amount);
  if (!v.protocol && ui != v.leader) {
    const i128 leader_shares = (v.holders.count(v.leader) ? v.holders[v.leader].shares : 0) +
                               (v.total_shares == 0 ? s_before : 0);
    if (leader_shares * 20 < static_cast<i128>(s_before) + shares) return refuse(Reject::leader_minimum);
  }
  mint_to_leader_if_unowned(v, c.ts_ms, out);
  Account& u = accounts_[ui];
  Account& va = accounts_[v.account];
  u.collateral -= c.amount;
  va.collateral += c.amount;
  touch(u);
  touch(va);
  emit(out, BalanceChanged{u.user, -c.amount, u.collateral, BalanceReason::vault_deposit, c.ts_ms});
  emit(out, BalanceChanged{va.user, c.amount, va.collateral, BalanceReason::vault_deposit, c.ts_ms});
  VaultHolding& h = v.holders[ui];
  h.shares += shares;
  h.cost += c.amount;
  const std::int64_t unlock = c.ts_ms + v.lock_ms;
  h.lots.push_back({shares, unlock});
  v.total_shares += shares;
  emit(out, VaultChanged{v.id, u.user, VaultMove::deposit, c.amount, 0, 0, shares, 0, h.shares, v.total_shares,
                         vault_nav(v), unlock, c.ts_ms});
}

template <class Book>
bool BasicEngine<Book>::free_vault_margin(Vault& v, Usdm paid, Usdm gross, Usdm nav, std::int64_t ts,
                                          std::vector<Event>& out) {
  auto enough = [&] {
    const Account& a = accounts_[v.account];
    const AccountView av = view_of(a);
    return a.collateral >= paid && static_cast<i128>(av.account_value) - paid >= static_cast<i128>(av.position_margin) + av.order_margin;
  };
  if (enough()) return true;
  // First the vault's orders go...
  cancel_account_orders(v.account, -1, CancelReason::insufficient_margin, ts, out);
  if (enough()) return true;
  // ...then every position shrinks by the withdrawn fraction (gross / NAV), at market.
  for (std::uint32_t m = 0; m < markets_.size(); ++m) {
    const Qty size = accounts_[v.account].positions[m].size;
    if (size == 0 || nav <= 0) continue;
    const Qty abs = std::abs(size);
    const Qty q = static_cast<Qty>(std::min<i128>(abs, ceil_div(static_cast<i128>(abs) * gross, nav)));
    if (q <= 0) continue;
    PlaceOrder po;
    po.user = accounts_[v.account].user;
    po.id = synthetic_id(Liquidation::none);
    po.market = m;
    po.side = size > 0 ? Side::sell : Side::buy;
    po.type = OrderType::market;
    po.qty = q;
    po.reduce_only = true;
    po.ts_ms = ts;
    place(po, out);
  }
  return enough();
}

template <class Book>
void BasicEngine<Book>::vault_withdraw(const VaultWithdraw& c, std::vector<Event>& out) {
  auto refuse = [&](Reject r) { emit(out, CommandRejected{c.user, r, c.ts_ms}); };
  auto it = vault_index_.find(c.vault);
  if (it == vault_index_.end()) return refuse(Reject::unknown_vault);
  if (c.amount <= 0) return refuse(Reject::bad_amount);
  const std::uint32_t* uip = find_account(c.user);
  Vault& v = vaults_[it->second];
  if (!uip || !v.holders.count(*uip) || v.holders[*uip].shares <= 0) return refuse(Reject::insufficient_balance);
  const std::uint32_t ui = *uip;
  accrue_management_fee(v, c.ts_ms, out);
  bool freed = false;
  for (;;) {
    const Usdm nav = vault_nav(v);
    if (nav <= 0) return refuse(Reject::vault_insolvent);
    const Usdm s = v.total_shares;
    VaultHolding& h = v.holders[ui];
    const Usdm value = clamp64(static_cast<i128>(h.shares) * nav / s);
    const Usdm shares_w = c.amount >= value
                              ? h.shares
                              : static_cast<Usdm>(std::min<i128>(h.shares, ceil_div(static_cast<i128>(c.amount) * s, nav)));
    Usdm unlocked = 0;
    for (const auto& lot : h.lots) {
      if (lot.unlock_ms <= c.ts_ms) unlocked += lot.shares;
    }
    if (shares_w > unlocked) return refuse(Reject::vault_locked);
    if (ui == v.leader && !v.protocol && s - h.shares > 0 &&
        static_cast<i128>(h.shares - shares_w) * 20 < static_cast<i128>(s - shares_w)) {
      return refuse(Reject::leader_minimum);
    }
    const Usdm gross = clamp64(static_cast<i128>(shares_w) * nav / s);
    const Usdm cost_w = clamp64(static_cast<i128>(h.cost) * shares_w / h.shares);
    const Usdm profit = gross - cost_w;
    const Usdm fee = (ui != v.leader && profit > 0)
                         ? clamp64(ceil_div(static_cast<i128>(profit) * v.performance_fee_ppm, 1'000'000))
                         : 0;
    const Usdm fee_shares = clamp64(static_cast<i128>(fee) * s / nav);
    const Usdm paid = gross - fee;
    if (!freed) {
      freed = true;
      if (!free_vault_margin(v, paid, gross, nav, c.ts_ms, out)) return refuse(Reject::insufficient_margin);
      if (vault_nav(v) != nav) continue;  // reducing positions moved the value: compute again
    } else {
      const Account& a = accounts_[v.account];
      const AccountView av = view_of(a);
      if (a.collateral < paid ||
          static_cast<i128>(av.account_value) - paid < static_cast<i128>(av.position_margin) + av.order_margin) {
        return refuse(Reject::insufficient_margin);
      }
    }
    // Apply.
    Account& u = accounts_[ui];
    Account& va = accounts_[v.account];
    va.collateral -= paid;
    u.collateral += paid;
    touch(u);
    touch(va);
    emit(out, BalanceChanged{va.user, -paid, va.collateral, BalanceReason::vault_withdrawal, c.ts_ms});
    emit(out, BalanceChanged{u.user, paid, u.collateral, BalanceReason::vault_withdrawal, c.ts_ms});
    h.shares -= shares_w;
    h.cost -= cost_w;
    Usdm take = shares_w;
    for (auto& lot : h.lots) {
      if (take == 0) break;
      if (lot.unlock_ms > c.ts_ms) continue;
      const Usdm t = std::min(take, lot.shares);
      lot.shares -= t;
      take -= t;
    }
    std::erase_if(h.lots, [](const VaultLot& l) { return l.shares == 0; });
    const Usdm user_after = h.shares;
    if (fee_shares > 0) {
      VaultHolding& lh = v.holders[v.leader];
      lh.shares += fee_shares;
      lh.lots.push_back({fee_shares, c.ts_ms});
    }
    v.total_shares = s - shares_w + fee_shares;
    if (user_after == 0 && ui != v.leader) v.holders.erase(ui);
    emit(out, VaultChanged{v.id, u.user, VaultMove::withdrawal, gross, fee, paid, shares_w, fee_shares, user_after,
                           v.total_shares, vault_nav(v), 0, c.ts_ms});
    return;
  }
}

}  // namespace hydrox::engine
