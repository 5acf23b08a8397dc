// Liquidation, funding and the liquidation index of BasicEngine (perp-rules "Liquidation",
// "Funding"). Included by engine.cpp before the explicit instantiations; it shares that file's
// integer helpers (ceil_div, floor_div, clamp64).
//
// The liquidation index: every open position sits in its market's long or short key set, keyed by
// the mark at which its account would fall to maintenance margin with every other mark fixed.
// That price is linear in the account's margin available, so a move of this market's own mark
// does not change it; what does is a change of the account (fills, deposits, funding, liquidation:
// the account is marked dirty and re-keyed before the next check) or, for an account with
// positions in several markets, a move of another market's mark (those accounts are kept in multi_
// and re-keyed). A mark move then reads only the keys it crossed. Keys are rounded to be early
// (slack of 2 units per position for the integer rounding of notional and maintenance), and every
// candidate is confirmed with the exact account value before anything happens to it.
//
// An isolated position is its own account for all of this: its key comes from its margin + uPnL
// against its own maintenance, other marks do not move it, and its liquidation (same ladder) never
// touches the account's collateral beyond what the position gives back.

namespace hydrox::engine {

template <class Book>
OrderId BasicEngine<Book>::synthetic_id(Liquidation kind) const {
  // Engine-made orders (liquidation slices, backstop and ADL transfers) need ids that replay
  // reproduces: the event sequence number makes them unique; the marker makes them recognisable.
  return OrderId{Uuid{0x4C49510000008000ull | (static_cast<std::uint64_t>(kind) << 16),
                      0x8000000000000000ull | (seq_ + 1)}};
}

template <class Book>
void BasicEngine<Book>::unindex(std::uint32_t ai, std::uint32_t m) {
  Position& p = accounts_[ai].positions[m];
  if (!p.indexed) return;
  markets_[m].long_keys.erase({p.liq_key, ai});
  markets_[m].short_keys.erase({p.liq_key, ai});
  p.indexed = false;
}

template <class Book>
void BasicEngine<Book>::reindex(Account& a) {
  a.dirty = false;
  const std::uint32_t ai = a.index;
  if (a.open_positions == 0) {
    for (std::uint32_t m = 0; m < markets_.size(); ++m) unindex(ai, m);
    return;
  }
  const AccountView v = view_of(a);
  const i128 cross_avail = static_cast<i128>(v.account_value) - v.maintenance_margin - 2 * static_cast<i128>(a.open_positions) - 2;
  for (std::uint32_t m = 0; m < markets_.size(); ++m) {
    Position& p = a.positions[m];
    if (p.size == 0) {
      unindex(ai, m);
      continue;
    }
    const i128 avail = !p.isolated ? cross_avail
                                   : static_cast<i128>(isolated_value(a, m)) -
                                         maintenance_margin(m, markets_[m].mark, std::abs(p.size)) - 4;
    const MarketSpec& s = markets_[m].spec;
    const int side = p.size > 0 ? 1 : -1;
    const i128 abs = p.size > 0 ? p.size : -p.size;
    const i128 two_l = 2 * static_cast<i128>(s.max_leverage);
    // M* = M0 - side * A * D * 2L / (|size| * N * (2L - side))
    const i128 den = abs * s.notional_num * (two_l - side);
    const i128 num = static_cast<i128>(markets_[m].mark) * den - side * avail * s.notional_den * two_l;
    i128 key = side > 0 ? ceil_div(num, den) : floor_div(num, den);
    if (key > INT64_MAX / 2) key = INT64_MAX / 2;
    if (key < INT64_MIN / 2) key = INT64_MIN / 2;
    unindex(ai, m);
    p.liq_key = static_cast<Price>(key);
    p.indexed = true;
    (side > 0 ? markets_[m].long_keys : markets_[m].short_keys).insert({p.liq_key, ai});
  }
}

template <class Book>
void BasicEngine<Book>::flush_dirty() {
  for (std::size_t i = 0; i < dirty_.size(); ++i) {
    Account& a = accounts_[dirty_[i]];
    if (a.dirty) reindex(a);
  }
  dirty_.clear();
}

template <class Book>
void BasicEngine<Book>::check_liquidations(std::uint32_t m, std::int64_t ts, std::vector<Event>& out) {
  // A liquidation can move others (ADL closes counterparties at the bankruptcy price), so the
  // check repeats until a pass liquidates nobody; each pass removes at least one position.
  std::vector<std::uint32_t> candidates;
  for (int pass = 0; pass < 16; ++pass) {
    flush_dirty();
    const Price mark = markets_[m].mark;
    candidates.clear();
    const auto& longs = markets_[m].long_keys;
    for (auto it = longs.rbegin(); it != longs.rend() && it->first >= mark; ++it) candidates.push_back(it->second);
    const auto& shorts = markets_[m].short_keys;
    for (auto it = shorts.begin(); it != shorts.end() && it->first <= mark; ++it) candidates.push_back(it->second);
    bool any = false;
    for (std::uint32_t ai : candidates) {
      const Account& a = accounts_[ai];
      const Position& p = a.positions[m];
      if (p.size == 0) continue;
      if (p.isolated) {
        if (isolated_value(a, m) >= maintenance_margin(m, mark, std::abs(p.size))) continue;
        liquidate_isolated(ai, m, ts, out);
      } else {
        const AccountView v = view_of(a);
        if (v.account_value >= v.maintenance_margin) continue;
        liquidate(ai, m, ts, out);
      }
      any = true;
    }
    if (!any) break;
  }
  flush_dirty();
}

template <class Book>
Usdm BasicEngine<Book>::cover_shortfall(std::uint32_t ai, Usdm amount, std::int64_t ts, std::vector<Event>& out) {
  if (amount <= 0) return 0;
  const Usdm from_fund = std::min(amount, std::max<Usdm>(0, accounts_[insurance_].collateral));
  move_collateral(insurance_, ai, from_fund, BalanceReason::insurance_payout, ts, out);
  move_collateral(0, ai, amount - from_fund, BalanceReason::protocol_loss, ts, out);
  return from_fund;
}

template <class Book>
void BasicEngine<Book>::move_collateral(std::uint32_t from, std::uint32_t to, Usdm amount,
                                        BalanceReason reason, std::int64_t ts, std::vector<Event>& out) {
  if (amount == 0) return;
  Account& f = accounts_[from];
  Account& t = accounts_[to];
  f.collateral -= amount;
  t.collateral += amount;
  touch(f);
  touch(t);
  emit(out, BalanceChanged{f.user, -amount, f.collateral, reason, ts});
  emit(out, BalanceChanged{t.user, amount, t.collateral, reason, ts});
}

template <class Book>
void BasicEngine<Book>::transfer_at(std::uint32_t from, std::uint32_t to, std::uint32_t m, Qty qty,
                                    Price price, Liquidation kind, std::int64_t ts, std::vector<Event>& out) {
  Account& f = accounts_[from];
  Account& t = accounts_[to];
  const Side closing = f.positions[m].size > 0 ? Side::sell : Side::buy;
  const Usdm n = notional(m, price, qty);
  const OrderId taker_order = synthetic_id(kind);
  // The receiving side's half of the transfer.
  const OrderId maker_order{Uuid{taker_order.value().hi, taker_order.value().lo ^ 0x4000000000000000ull}};
  const FillEffect f_fx = apply_fill(f, m, closing, qty, n);
  const FillEffect t_fx = apply_fill(t, m, opposite(closing), qty, n);
  emit(out, Trade{m, price, qty, closing, maker_order, taker_order, t.user, f.user, n, 0, 0, t_fx.realized, f_fx.realized,
                  ts, kind});
  emit_position(t, m, ts, out);
  emit_position(f, m, ts, out);
  if (t_fx.margin_delta != 0) emit_margin(t, m, t_fx.margin_delta, ts, out);
  if (f_fx.margin_delta != 0) emit_margin(f, m, f_fx.margin_delta, ts, out);
}

template <class Book>
bool BasicEngine<Book>::backstop_can_take(std::uint32_t ai, Usdm value, std::int32_t market) const {
  if (ai == backstop_) return false;
  const Account& a = accounts_[ai];
  const AccountView vb = view_of(accounts_[backstop_]);
  i128 extra = 0;
  for (std::uint32_t m = 0; m < markets_.size(); ++m) {
    const Position& p = a.positions[m];
    if (market >= 0 ? m != static_cast<std::uint32_t>(market) : p.isolated) continue;
    // (an isolated position the backstop takes would open in its cross margin: counted the same)
    if (p.size != 0) extra += maintenance_margin(m, markets_[m].mark, std::abs(p.size)) + 2;
  }
  return vb.account_value > 0 &&
         static_cast<i128>(vb.account_value) + std::max<Usdm>(value, 0) >= static_cast<i128>(vb.maintenance_margin) + extra;
}

template <class Book>
void BasicEngine<Book>::adl(std::uint32_t ai, std::int64_t ts, std::vector<Event>& out) {
  // Close every position of `ai` at its bankruptcy price against the opposite positions ranked by
  // PnL% x effective leverage: the account's value goes to zero and the counterparties take the
  // shortfall the insurance fund could not. With several positions the shortfall is shared in
  // proportion to notional; a short cannot be closed below one tick, so what such a share cannot
  // take moves to the largest long (a long's price can rise without bound).
  flush_dirty();
  const std::size_t nm = markets_.size();
  std::vector<i128> share(nm, 0), notionals(nm, 0);
  i128 total = 0;
  std::uint32_t largest_long = UINT32_MAX;
  for (std::uint32_t m = 0; m < nm; ++m) {
    const Qty size = accounts_[ai].positions[m].size;
    if (size == 0 || accounts_[ai].positions[m].isolated) continue;
    notionals[m] = notional(m, markets_[m].mark, std::abs(size));
    total += notionals[m];
    if (size > 0 && (largest_long == UINT32_MAX || notionals[m] > notionals[largest_long])) largest_long = m;
  }
  if (total == 0) total = 1;
  const i128 deficit = -static_cast<i128>(view_of(accounts_[ai]).account_value);  // < 0: a surplus
  i128 assigned = 0, overflow = 0;
  std::uint32_t first = UINT32_MAX;
  for (std::uint32_t m = 0; m < nm; ++m) {
    if ((notionals[m] == 0 && accounts_[ai].positions[m].size == 0) || accounts_[ai].positions[m].isolated) continue;
    if (first == UINT32_MAX) first = m;
    share[m] = floor_div(deficit * notionals[m], total);
    assigned += share[m];
  }
  if (first != UINT32_MAX) share[largest_long != UINT32_MAX ? largest_long : first] += deficit - assigned;
  for (std::uint32_t m = 0; m < nm; ++m) {
    const Qty size = accounts_[ai].positions[m].size;
    if (size == 0 || accounts_[ai].positions[m].isolated) continue;
    // The price falls for a short's deficit and for a long's surplus: it stops at one tick.
    const bool falls = (size < 0) == (share[m] > 0);
    const i128 room = notionals[m] - notional(m, 1, std::abs(size));
    if (falls && (share[m] < 0 ? -share[m] : share[m]) > room && largest_long != UINT32_MAX && size < 0) {
      overflow += share[m] - room;
      share[m] = room;
    }
  }
  if (largest_long != UINT32_MAX) share[largest_long] += overflow;

  for (std::uint32_t m = 0; m < nm; ++m) {
    const Position& p = accounts_[ai].positions[m];
    if (p.size != 0 && !p.isolated) adl_close(ai, m, share[m], ts, out);
  }
}

template <class Book>
void BasicEngine<Book>::adl_close(std::uint32_t ai, std::uint32_t m, i128 share, std::int64_t ts,
                                  std::vector<Event>& out) {
  const Position& p = accounts_[ai].positions[m];
  const MarketSpec& s = markets_[m].spec;
  const Price mk = markets_[m].mark;
  const bool long_closed = p.size > 0;
  struct Ranked {
    i128 score;
    std::uint32_t account;
  };
  std::vector<Ranked> ranked;
  const auto& opposite_keys = long_closed ? markets_[m].short_keys : markets_[m].long_keys;
  for (const auto& [key, cai] : opposite_keys) {
    if (cai == ai) continue;
    const Account& c = accounts_[cai];
    const Position& cp = c.positions[m];
    // Effective leverage against what backs the position: its own margin when isolated.
    const i128 value = cp.isolated ? isolated_value(c, m) : view_of(c).account_value;
    const Qty cabs = std::abs(cp.size);
    const i128 upnl = static_cast<i128>(notional(m, mk, cp.size)) - cp.cost;
    const i128 im = std::max<i128>(1, cp.isolated ? cp.margin : initial_margin(m, mk, cabs, leverage_of(c, m)));
    const i128 n = notional(m, mk, cabs);
    const i128 score = value > 0 ? (upnl * 1'000'000 / im) * (n * 1'000'000 / value) : -(static_cast<i128>(1) << 120);
    ranked.push_back({score, cai});
  }
  std::sort(ranked.begin(), ranked.end(), [](const Ranked& a, const Ranked& b) {
    return a.score != b.score ? a.score > b.score : a.account < b.account;
  });
  // Who takes how much follows the ranking. The price spreads the share evenly (closing a long at
  // q realizes (q - mark) * k * size more than the mark does), except that no counterparty can
  // lose more than backs it (an isolated one its margin and PnL, a cross one its account value):
  // it closes at its bankruptcy price and the others take the rest. What nobody can take (every taker capped) stays with the
  // liquidated account and so with the insurance fund.
  struct Taker {
    std::uint32_t account;
    Qty qty;
    bool capped = false;
    Price cap = 0;
    i128 moved = 0;  // at the cap
  };
  std::vector<Taker> takers;
  Qty want = std::abs(p.size);
  for (const Ranked& r : ranked) {
    if (want == 0) break;
    const Qty q = std::min<Qty>(want, std::abs(accounts_[r.account].positions[m].size));
    takers.push_back({r.account, q});
    want -= q;
  }
  auto moved_at = [&](Price px, Qty q) -> i128 {
    return long_closed ? static_cast<i128>(notional(m, px, q)) - notional(m, mk, q)
                       : static_cast<i128>(notional(m, mk, q)) - notional(m, px, q);
  };
  auto even_price = [&](i128 left, Qty qty) -> Price {
    const i128 per_tick = static_cast<i128>(qty) * s.notional_num;  // / D: value per tick
    const i128 price = long_closed ? ceil_div(mk * per_tick + left * s.notional_den, per_tick)
                                   : floor_div(mk * per_tick - left * s.notional_den, per_tick);
    return static_cast<Price>(std::clamp<i128>(price, 1, INT64_MAX / 4));
  };
  for (Taker& t : takers) {
    const Account& c = accounts_[t.account];
    const Position& cp = c.positions[m];
    // Nobody is taken below zero: an isolated counterparty loses at most its position's share of
    // its margin and PnL, a cross one at most its account's value (a losing cross position could
    // otherwise be closed at a price far past the mark: found by fuzz_engine with a 200x mark).
    const i128 equity = cp.isolated
                            ? std::max<i128>(0, floor_div(static_cast<i128>(isolated_value(c, m)) * t.qty, std::abs(cp.size)) - 2)
                            : std::max<i128>(0, static_cast<i128>(view_of(c).account_value) - 2);
    const i128 q_tick = static_cast<i128>(t.qty) * s.notional_num;
    t.cap = static_cast<Price>(std::clamp<i128>(long_closed ? mk + floor_div(equity * s.notional_den, q_tick)
                                                            : mk - floor_div(equity * s.notional_den, q_tick),
                                                1, INT64_MAX / 4));
    t.moved = moved_at(t.cap, t.qty);
  }
  // What the uncapped takers still have to take, and their size.
  auto uncapped = [&] {
    std::pair<i128, Qty> r{share, 0};
    for (const Taker& t : takers) {
      if (t.capped) r.first -= t.moved; else r.second += t.qty;
    }
    return r;
  };
  // Cap whoever the even price of the others would take past their cap, until nobody new is.
  for (bool changed = true; changed;) {
    changed = false;
    const auto [left, free_qty] = uncapped();
    if (free_qty == 0) break;
    const Price even = even_price(left, free_qty);
    for (Taker& t : takers) {
      if (t.capped || t.cap == 0) continue;
      if (long_closed ? even > t.cap : even < t.cap) t.capped = changed = true;
    }
  }
  auto [left, free_qty] = uncapped();
  for (const Taker& t : takers) {
    Price px = t.cap;
    if (!t.capped) {  // the even price of what is left, so that rounding does not add up
      px = even_price(left, free_qty);
      if (t.cap != 0) px = long_closed ? std::min(px, t.cap) : std::max(px, t.cap);
      left -= moved_at(px, t.qty);
      free_qty -= t.qty;
    }
    transfer_at(ai, t.account, m, t.qty, px, Liquidation::adl, ts, out);
  }
}

template <class Book>
Qty BasicEngine<Book>::liquidation_slice(std::uint32_t ai, std::uint32_t m, Usdm value, std::int64_t ts,
                                         std::vector<Event>& out) {
  const MarketSpec& s = markets_[m].spec;
  const Qty size = accounts_[ai].positions[m].size;
  const Qty abs = std::abs(size);
  const Price mk = markets_[m].mark;
  const Qty slice = notional(m, mk, abs) > s.liquidation_slice_notional ? std::max<Qty>(1, (abs + 4) / 5) : abs;
  const i128 per_tick = static_cast<i128>(abs) * s.notional_num;
  const i128 bound = size > 0 ? ceil_div(mk * per_tick - static_cast<i128>(value) * s.notional_den, per_tick)
                              : floor_div(mk * per_tick + static_cast<i128>(value) * s.notional_den, per_tick);
  PlaceOrder po;
  po.user = accounts_[ai].user;
  po.id = synthetic_id(Liquidation::book);
  po.market = m;
  po.side = size > 0 ? Side::sell : Side::buy;
  po.type = OrderType::limit;
  po.tif = TimeInForce::ioc;
  po.price = static_cast<Price>(std::clamp<i128>(bound, 1, INT64_MAX / 4));
  po.qty = slice;
  po.reduce_only = true;
  po.ts_ms = ts;
  liquidating_ = Liquidation::book;
  place(po, out);
  liquidating_ = Liquidation::none;
  return slice;
}

template <class Book>
template <class Health>
auto BasicEngine<Book>::slice_into_book(std::uint32_t ai, std::uint32_t m, std::int64_t ts, std::vector<Event>& out,
                                        Health health) -> Slicing {
  while (accounts_[ai].positions[m].size != 0) {
    const auto [value, maintenance] = health();
    if (value >= maintenance) return Slicing::healthy;
    if (3 * static_cast<i128>(value) < 2 * static_cast<i128>(maintenance)) return Slicing::to_backstop;
    const Qty abs = std::abs(accounts_[ai].positions[m].size);
    const Qty slice = liquidation_slice(ai, m, value, ts, out);
    if (abs - std::abs(accounts_[ai].positions[m].size) < slice) {
      return Slicing::to_backstop;  // the book could not take it within the bankruptcy price
    }
  }
  return Slicing::flat;
}

template <class Book>
void BasicEngine<Book>::liquidate(std::uint32_t ai, std::uint32_t first_market, std::int64_t ts,
                                  std::vector<Event>& out) {
  const AccountView v0 = view_of(accounts_[ai]);
  // 1. Its resting orders go first.
  cancel_account_orders(ai, -1, CancelReason::liquidation, ts, out);

  // 2. Reduce-only IOC orders into the book, no worse than the bankruptcy price, in 20 % slices
  //    above the size limit, until the account is back above maintenance. Isolated positions are
  //    not part of it.
  Liquidation stage = Liquidation::book;
  Usdm insurance_paid = 0;
  bool to_backstop = 3 * static_cast<i128>(v0.account_value) < 2 * static_cast<i128>(v0.maintenance_margin);
  bool healthy = false;
  auto cross_positions = [&] {
    for (const Position& p : accounts_[ai].positions) {
      if (p.size != 0 && !p.isolated) return true;
    }
    return false;
  };
  auto health = [&] {
    const AccountView v = view_of(accounts_[ai]);
    return std::pair{v.account_value, v.maintenance_margin};
  };
  for (std::uint32_t k = 0; k < markets_.size() && !to_backstop && !healthy; ++k) {
    const std::uint32_t m = k == 0 ? first_market : (k <= first_market ? k - 1 : k);
    if (accounts_[ai].positions[m].isolated) continue;
    const Slicing r = slice_into_book(ai, m, ts, out, health);
    healthy = r == Slicing::healthy;
    to_backstop = r == Slicing::to_backstop;
  }

  // 3. The backstop (protocol vault) takes what is left and the remaining margin over at the
  //    mark; a shortfall comes from the insurance fund. 4. When the fund cannot cover it (or the
  //    backstop cannot carry the positions), auto-deleveraging at the bankruptcy price.
  if (to_backstop && cross_positions()) {
    const AccountView v = view_of(accounts_[ai]);
    const Usdm need = v.account_value < 0 ? -v.account_value : 0;
    if (accounts_[insurance_].collateral >= need + 2 * static_cast<Usdm>(markets_.size()) &&
        backstop_can_take(ai, v.account_value)) {
      stage = Liquidation::backstop;
      for (std::uint32_t m = 0; m < markets_.size(); ++m) {
        const Position& p = accounts_[ai].positions[m];
        if (p.size != 0 && !p.isolated) {
          transfer_at(ai, backstop_, m, std::abs(p.size), markets_[m].mark, Liquidation::backstop, ts, out);
        }
      }
      const Usdm c = accounts_[ai].collateral;
      if (c > 0) move_collateral(ai, backstop_, c, BalanceReason::liquidation_margin, ts, out);
      if (c < 0) insurance_paid = cover_shortfall(ai, -c, ts, out);
    } else {
      stage = Liquidation::adl;
      const Usdm available = std::max<Usdm>(0, accounts_[insurance_].collateral);
      if (need > 0 && available > 0) {
        insurance_paid = std::min(need, available);
        move_collateral(insurance_, ai, insurance_paid, BalanceReason::insurance_payout, ts, out);
      }
      adl(ai, ts, out);
      // What rounding leaves either way settles with the insurance fund: a liquidated account
      // ends at exactly zero and never below.
      const Usdm c = accounts_[ai].collateral;
      if (c > 0) move_collateral(ai, insurance_, c, BalanceReason::liquidation_margin, ts, out);
      if (c < 0) insurance_paid += cover_shortfall(ai, -c, ts, out);
    }
  }
  emit(out, AccountLiquidated{accounts_[ai].user, v0.account_value, v0.maintenance_margin, stage, insurance_paid, ts});
}

// The same ladder for one isolated position: the margin it holds is all that is at risk. What the
// position gives back when it goes to the backstop or is deleveraged (its margin and PnL land in
// the collateral) is settled with the backstop or the insurance fund, so the account's collateral
// ends where it was.
template <class Book>
void BasicEngine<Book>::liquidate_isolated(std::uint32_t ai, std::uint32_t m, std::int64_t ts,
                                           std::vector<Event>& out) {
  auto value = [&] { return isolated_value(accounts_[ai], m); };
  auto maintenance = [&] { return maintenance_margin(m, markets_[m].mark, std::abs(accounts_[ai].positions[m].size)); };
  const Usdm v0 = value(), mm0 = maintenance();
  cancel_account_orders(ai, static_cast<std::int32_t>(m), CancelReason::liquidation, ts, out);

  Liquidation stage = Liquidation::book;
  Usdm insurance_paid = 0;
  const bool to_backstop =
      slice_into_book(ai, m, ts, out, [&] { return std::pair{value(), maintenance()}; }) == Slicing::to_backstop;

  if (to_backstop && accounts_[ai].positions[m].size != 0) {
    const Usdm v = value();
    const Usdm need = v < 0 ? -v : 0;
    auto settle = [&](Usdm collateral_before, std::uint32_t gainer) {
      const Usdm given = accounts_[ai].collateral - collateral_before;
      if (given > 0) move_collateral(ai, gainer, given, BalanceReason::liquidation_margin, ts, out);
      if (given < 0) insurance_paid += cover_shortfall(ai, -given, ts, out);
    };
    if (accounts_[insurance_].collateral >= need + 2 && backstop_can_take(ai, v, static_cast<std::int32_t>(m))) {
      stage = Liquidation::backstop;
      const Usdm before = accounts_[ai].collateral;
      transfer_at(ai, backstop_, m, std::abs(accounts_[ai].positions[m].size), markets_[m].mark, Liquidation::backstop,
                  ts, out);
      settle(before, backstop_);
    } else {
      stage = Liquidation::adl;
      const Usdm available = std::max<Usdm>(0, accounts_[insurance_].collateral);
      if (need > 0 && available > 0) {  // the fund's part goes into the position's margin
        insurance_paid = std::min(need, available);
        move_collateral(insurance_, ai, insurance_paid, BalanceReason::insurance_payout, ts, out);
        move_margin(accounts_[ai], m, insurance_paid, ts, out);
      }
      const Usdm before = accounts_[ai].collateral;
      flush_dirty();
      adl_close(ai, m, -static_cast<i128>(value()), ts, out);
      settle(before, insurance_);
    }
  }
  emit(out, AccountLiquidated{accounts_[ai].user, v0, mm0, stage, insurance_paid, ts, static_cast<std::int32_t>(m)});
}

template <class Book>
void BasicEngine<Book>::settle_funding(const SettleFunding& c, std::vector<Event>& out) {
  if (c.market >= markets_.size()) {
    emit(out, CommandRejected{UserId{}, Reject::unknown_market, c.ts_ms});
    return;
  }
  MarketState& ms = markets_[c.market];
  if (ms.status != MarketStatus::active) {  // funding pauses with the market
    emit(out, CommandRejected{UserId{}, closed_market(c.market, false), c.ts_ms});
    return;
  }
  if (c.interval_ms <= ms.last_funding_ms) {
    emit(out, CommandRejected{UserId{}, Reject::funding_already_settled, c.ts_ms});
    return;
  }
  if (c.index <= 0) {
    emit(out, CommandRejected{UserId{}, Reject::bad_price_tick, c.ts_ms});
    return;
  }
  // Bounded like a mark: every payment is at most 4 % of a position's notional at the index.
  if (Usdm oi = 0; !money::notional_checked(ms.spec, c.index, ms.open_interest, oi) || oi > kMaxMarketNotional ||
                   c.index > kMaxMarketNotional) {
    emit(out, CommandRejected{UserId{}, Reject::amount_too_large, c.ts_ms});
    return;
  }
  ms.last_funding_ms = c.interval_ms;
  const std::int64_t rate = std::clamp(c.rate_ppb, -kMaxFundingRatePpb, kMaxFundingRatePpb);
  const std::uint32_t m = c.market;
  Usdm paid = 0, received = 0;
  std::uint32_t count = 0;
  if (rate != 0) {
    flush_dirty();
    std::vector<std::uint32_t> holders;
    for (const auto& [key, ai] : ms.long_keys) holders.push_back(ai);
    for (const auto& [key, ai] : ms.short_keys) holders.push_back(ai);
    std::sort(holders.begin(), holders.end());
    const i128 den = static_cast<i128>(ms.spec.notional_den) * 8'000'000'000;
    const i128 abs_rate = rate < 0 ? -rate : rate;
    for (std::uint32_t ai : holders) {
      Account& a = accounts_[ai];
      Position& p = a.positions[m];
      if (p.size == 0) continue;
      const bool pays = (rate > 0) == (p.size > 0);  // positive F: longs pay shorts
      const i128 num = static_cast<i128>(std::abs(p.size)) * c.index * ms.spec.notional_num * abs_rate;
      const Usdm amount = clamp64(pays ? ceil_div(num, den) : floor_div(num, den));
      if (amount == 0) continue;
      const Usdm delta = pays ? amount : -amount;  // paid
      a.collateral -= delta;
      p.funding += delta;
      touch(a);
      (pays ? paid : received) += amount;
      ++count;
      emit(out, FundingPaid{a.user, m, delta, a.collateral, c.interval_ms, p.size});
      // An isolated position pays (or is paid) out of its own margin.
      if (p.isolated) move_margin(a, m, -delta, c.ts_ms, out);
      emit_position(a, m, c.ts_ms, out);
    }
    // Payers round up, receivers down: what is left over goes to the insurance fund.
    if (paid != received) {
      Account& ins = accounts_[insurance_];
      ins.collateral += paid - received;
      emit(out, BalanceChanged{ins.user, paid - received, ins.collateral, BalanceReason::funding_remainder, c.ts_ms});
    }
  }
  emit(out, FundingSettled{m, c.interval_ms, rate, c.index, ms.mark, paid, received, paid - received, count, c.ts_ms});
  if (rate != 0) check_liquidations(m, c.ts_ms, out);
}

template <class Book>
std::optional<Price> BasicEngine<Book>::impact_price(std::uint32_t m, Side book_side, Usdm target) const {
  const MarketSpec& s = markets_[m].spec;
  i128 acc = 0, sum_pq = 0, total_q = 0;
  markets_[m].book.for_each_level(book_side, [&](Price p, Qty q) {
    const i128 level = static_cast<i128>(p) * q * s.notional_num / s.notional_den;
    i128 take = q;
    if (acc + level >= target) {
      take = std::min<i128>(q, ceil_div((target - acc) * s.notional_den, static_cast<i128>(p) * s.notional_num));
    }
    acc += static_cast<i128>(p) * take * s.notional_num / s.notional_den;
    sum_pq += static_cast<i128>(p) * take;
    total_q += take;
    return acc < target;
  });
  if (acc < target || total_q == 0) return std::nullopt;
  return static_cast<Price>(book_side == Side::buy ? floor_div(sum_pq, total_q) : ceil_div(sum_pq, total_q));
}

template <class Book>
Usdm BasicEngine<Book>::collateral_of(const UserId& user) const {
  const Account* a = account(user);
  return a ? a->collateral : 0;
}

}  // namespace hydrox::engine
