#include "hydrox/engine/engine.hpp"

#include <algorithm>
#include <cstdlib>
#include <cstring>

namespace hydrox::engine {

using i128 = __int128;

using money::ceil_div;
using money::clamp64;
using money::floor_div;
using money::trunc_div;

namespace money {
void overflow() { std::abort(); }
Usdm notional_wide(const MarketSpec& s, Price price, Qty qty) {
  return clamp64(floor_div(static_cast<i128>(price) * qty * s.notional_num, s.notional_den));
}
Usdm margin_wide(const MarketSpec& s, Price price, Qty qty, std::int64_t divisor) {
  return clamp64(ceil_div(static_cast<i128>(price) * qty * s.notional_num, static_cast<i128>(s.notional_den) * divisor));
}
}  // namespace money

std::string_view reject_code(Reject r) {
  switch (r) {
    case Reject::none: return "NONE";
    case Reject::unknown_market: return "UNKNOWN_MARKET";
    case Reject::unknown_account: return "UNKNOWN_ACCOUNT";
    case Reject::bad_price_tick: return "INVALID_PRICE";
    case Reject::bad_quantity_lot: return "INVALID_QUANTITY";
    case Reject::below_min_notional: return "BELOW_MIN_NOTIONAL";
    case Reject::price_out_of_band: return "PRICE_OUT_OF_BAND";
    case Reject::no_mark_price: return "NO_MARK_PRICE";
    case Reject::insufficient_margin: return "INSUFFICIENT_MARGIN";
    case Reject::post_only_would_cross: return "POST_ONLY_WOULD_CROSS";
    case Reject::reduce_only_would_increase: return "REDUCE_ONLY_WOULD_INCREASE";
    case Reject::fok_not_fillable: return "FOK_NOT_FILLABLE";
    case Reject::duplicate_client_order_id: return "DUPLICATE_CLIENT_ORDER_ID";
    case Reject::bad_leverage: return "INVALID_LEVERAGE";
    case Reject::unknown_order: return "ORDER_NOT_FOUND";
    case Reject::insufficient_balance: return "INSUFFICIENT_BALANCE";
    case Reject::bad_amount: return "INVALID_AMOUNT";
    case Reject::too_many_open_orders: return "TOO_MANY_OPEN_ORDERS";
    case Reject::no_liquidity: return "NO_LIQUIDITY";
    case Reject::bad_trigger_price: return "INVALID_TRIGGER_PRICE";
    case Reject::would_trigger_immediately: return "WOULD_TRIGGER_IMMEDIATELY";
    case Reject::funding_already_settled: return "FUNDING_ALREADY_SETTLED";
    case Reject::unknown_vault: return "VAULT_NOT_FOUND";
    case Reject::vault_exists: return "VAULT_EXISTS";
    case Reject::below_min_deposit: return "BELOW_MIN_DEPOSIT";
    case Reject::over_capacity: return "OVER_CAPACITY";
    case Reject::vault_locked: return "VAULT_LOCKED";
    case Reject::leader_minimum: return "LEADER_MINIMUM";
    case Reject::vault_insolvent: return "VAULT_INSOLVENT";
    case Reject::forbidden: return "FORBIDDEN";
    case Reject::margin_mode_locked: return "MARGIN_MODE_LOCKED";
    case Reject::order_size_too_large:
      return "ORDER_SIZE_TOO_LARGE";
    case Reject::order_notional_too_large:
      return "ORDER_NOTIONAL_TOO_LARGE";
    case Reject::position_notional_too_large:
      return "POSITION_NOTIONAL_TOO_LARGE";
    case Reject::amount_too_large:
      return "AMOUNT_TOO_LARGE";
    case Reject::nothing_to_amend: return "NOTHING_TO_AMEND";
    case Reject::amend_below_filled: return "AMEND_BELOW_FILLED";
    case Reject::order_not_amendable: return "ORDER_NOT_AMENDABLE";
    case Reject::bad_timeout: return "INVALID_TIMEOUT";
    case Reject::no_open_position: return "NO_OPEN_POSITION";
    case Reject::position_not_isolated: return "POSITION_NOT_ISOLATED";
    case Reject::withdrawal_limit: return "WITHDRAWAL_LIMIT";
    case Reject::unknown_withdrawal: return "WITHDRAWAL_NOT_FOUND";
    case Reject::withdrawal_state: return "WITHDRAWAL_STATE";
    case Reject::too_many_withdrawals: return "TOO_MANY_WITHDRAWALS";
    case Reject::market_halted: return "MARKET_HALTED";
    case Reject::market_delisted: return "MARKET_DELISTED";
    case Reject::market_param_unsafe: return "MARKET_PARAM_UNSAFE";
  }
  return "UNKNOWN";
}

std::string_view cancel_reason_code(CancelReason r) {
  switch (r) {
    case CancelReason::user: return "USER";
    case CancelReason::self_trade: return "SELF_TRADE_PREVENTION";
    case CancelReason::ioc_remainder: return "IOC_REMAINDER";
    case CancelReason::reduce_only: return "REDUCE_ONLY";
    case CancelReason::cancel_all: return "CANCEL_ALL";
    case CancelReason::liquidation: return "LIQUIDATION";
    case CancelReason::insufficient_margin: return "INSUFFICIENT_MARGIN";
    case CancelReason::position_limit:
      return "POSITION_LIMIT";
    case CancelReason::trigger_rejected:
      return "TRIGGER_REJECTED";
    case CancelReason::cancel_all_after: return "CANCEL_ALL_AFTER";
    case CancelReason::one_cancels_other: return "ONE_CANCELS_OTHER";
    case CancelReason::position_closed: return "POSITION_CLOSED";
    case CancelReason::market_delisted: return "MARKET_DELISTED";
    case CancelReason::market_halted: return "MARKET_HALTED";
    case CancelReason::leverage_cut: return "LEVERAGE_CUT";
  }
  return "UNKNOWN";
}

std::string_view balance_reason_code(BalanceReason r) {
  switch (r) {
    case BalanceReason::deposit: return "DEPOSIT";
    case BalanceReason::withdrawal: return "WITHDRAWAL";
    case BalanceReason::trading_fee: return "TRADING_FEE";
    case BalanceReason::fee_income: return "FEE_INCOME";
    case BalanceReason::realized_pnl: return "REALIZED_PNL";
    case BalanceReason::transfer: return "TRANSFER";
    case BalanceReason::funding: return "FUNDING";
    case BalanceReason::funding_remainder: return "FUNDING_REMAINDER";
    case BalanceReason::liquidation_margin: return "LIQUIDATION_MARGIN";
    case BalanceReason::insurance_payout: return "INSURANCE_PAYOUT";
    case BalanceReason::vault_deposit: return "VAULT_DEPOSIT";
    case BalanceReason::vault_withdrawal: return "VAULT_WITHDRAWAL";
    case BalanceReason::isolated_margin: return "ISOLATED_MARGIN";
    case BalanceReason::withdrawal_returned: return "WITHDRAWAL_RETURNED";
    case BalanceReason::protocol_loss: return "PROTOCOL_LOSS";
    case BalanceReason::settlement: return "SETTLEMENT";
  }
  return "UNKNOWN";
}

std::string_view market_status_code(MarketStatus s) {
  switch (s) {
    case MarketStatus::active: return "ACTIVE";
    case MarketStatus::halted: return "HALTED";
    case MarketStatus::delisted: return "DELISTED";
  }
  return "UNKNOWN";
}

std::string_view withdrawal_status_code(WithdrawalStatus s) {
  switch (s) {
    case WithdrawalStatus::pending: return "PENDING";
    case WithdrawalStatus::processing: return "PROCESSING";
    case WithdrawalStatus::completed: return "COMPLETED";
    case WithdrawalStatus::rejected: return "REJECTED";
    case WithdrawalStatus::cancelled: return "CANCELLED";
  }
  return "UNKNOWN";
}

std::string_view liquidation_code(Liquidation l) {
  switch (l) {
    case Liquidation::none: return "NONE";
    case Liquidation::book: return "BOOK";
    case Liquidation::backstop: return "BACKSTOP";
    case Liquidation::adl: return "ADL";
  }
  return "UNKNOWN";
}

template <class Book>
BasicEngine<Book>::BasicEngine(EngineConfig config)
    : config_(std::move(config)),
      pool_(config_.order_reserve),
      accounts_index_(config_.account_reserve),
      orders_index_(config_.order_reserve),
      client_ids_(1024) {
  markets_.reserve(config_.markets.size());
  for (std::size_t i = 0; i < config_.markets.size(); ++i) {
    MarketSpec spec = config_.markets[i];
    spec.id = static_cast<std::uint32_t>(i);
    markets_.push_back(MarketState{spec, Book(pool_), 0, 0});
  }
  accounts_.reserve(config_.account_reserve);
  account_index(config_.fee_account);  // account 0
  insurance_ = account_index(config_.insurance_account);
  backstop_ = account_index(config_.backstop_account);
}

// ---- money ------------------------------------------------------------------------------------

template <class Book>
Usdm BasicEngine<Book>::isolated_value(const Account& a, std::uint32_t m) const {
  const Position& p = a.positions[m];
  return p.margin + notional(m, markets_[m].mark, p.size) - p.cost;
}

template <class Book>
Price BasicEngine<Book>::cross_liquidation_price(const Account& a, std::uint32_t m) const {
  const Position& p = a.positions[m];
  if (p.size == 0 || p.isolated) return 0;
  // The account's cross value above maintenance without this market, then this market's part as
  // the engine computes it (notional floored, maintenance rounded up) at a trial mark.
  i128 base = a.collateral;
  for (std::uint32_t j = 0; j < markets_.size(); ++j) {
    const Position& q = a.positions[j];
    if (j == m || q.size == 0 || q.isolated) continue;
    base += static_cast<i128>(notional(j, markets_[j].mark, q.size)) - q.cost -
            maintenance_margin(j, markets_[j].mark, std::abs(q.size));
  }
  const MarketSpec& s = markets_[m].spec;
  const i128 size = p.size, abs = p.size < 0 ? -p.size : p.size;
  const i128 mm_den = static_cast<i128>(s.notional_den) * 2 * s.max_leverage;
  auto healthy = [&](i128 price) {  // account value >= maintenance at this mark
    const i128 value = floor_div(price * size * s.notional_num, s.notional_den) - p.cost;
    const i128 mm = ceil_div(price * abs * s.notional_num, mm_den);
    return base + value - mm >= 0;
  };
  // Health rises with the mark for a long and falls for a short (up to the floor and ceiling of
  // a market whose tick·lot is a fraction of a unit, where the bisection finds a boundary within
  // a unit): bisect for it. The search stops where price × size × num would leave 128 bits.
  constexpr i128 kProductBound =
      static_cast<i128>(1'000'000'000'000'000'000LL) * 1'000'000'000'000'000'000LL;
  i128 lo = 0, hi = std::min<i128>(INT64_MAX / 4, kProductBound / (abs * s.notional_num + 1));
  if (p.size > 0) {
    if (healthy(lo)) return 0;
    if (!healthy(hi)) return static_cast<Price>(hi);
    while (hi - lo > 1) {  // !healthy(lo), healthy(hi)
      const i128 mid = lo + (hi - lo) / 2;
      (healthy(mid) ? hi : lo) = mid;
    }
    return static_cast<Price>(hi);
  }
  if (!healthy(lo)) return 0;
  if (healthy(hi)) return static_cast<Price>(hi);
  while (hi - lo > 1) {  // healthy(lo), !healthy(hi)
    const i128 mid = lo + (hi - lo) / 2;
    (healthy(mid) ? lo : hi) = mid;
  }
  return static_cast<Price>(lo);
}

template <class Book>
AccountView BasicEngine<Book>::view_of(const Account& a) const {
  AccountView v;
  v.collateral = a.collateral;
  v.order_margin = a.order_margin;
  for (std::size_t m = 0; m < markets_.size(); ++m) {
    const Position& p = a.positions[m];
    if (p.size == 0) continue;
    const Price mk = markets_[m].mark;
    const Qty abs = std::abs(p.size);
    const Usdm upnl = notional(static_cast<std::uint32_t>(m), mk, p.size) - p.cost;
    if (p.isolated) {
      v.isolated_margin += p.margin;
      v.isolated_unrealized_pnl += upnl;
      continue;
    }
    v.unrealized_pnl += upnl;
    v.position_margin += initial_margin(static_cast<std::uint32_t>(m), mk, abs,
                                        leverage_of(a, static_cast<std::uint32_t>(m)));
    v.maintenance_margin += maintenance_margin(static_cast<std::uint32_t>(m), mk, abs);
  }
  v.account_value = v.collateral + v.unrealized_pnl;
  v.available = v.account_value - v.position_margin - v.order_margin;
  v.equity = v.account_value + v.isolated_margin + v.isolated_unrealized_pnl;
  return v;
}

// view_of(a)'s account value and maintenance margin alone: the fill-time check of a cross account.
template <class Book>
typename BasicEngine<Book>::CrossHealth BasicEngine<Book>::cross_health(const Account& a) const {
  CrossHealth h{a.collateral, 0};
  const MarketState* ms = markets_.data();  // walked with the positions (one per market)
  for (const Position& p : a.positions) {
    const MarketState& market = *ms++;
    if (p.size == 0 || p.isolated) continue;
    h.account_value += money::notional(market.spec, market.mark, p.size) - p.cost;
    h.maintenance_margin += money::maintenance_margin(market.spec, market.mark, std::abs(p.size));
  }
  return h;
}

// view_of(a).available without the maintenance sums: the pre-trade check of every order.
template <class Book>
Usdm BasicEngine<Book>::free_margin(const Account& a) const {
  // In 64 bits with overflow flags (GCC keeps 128-bit sums on the stack); the 128-bit sum below
  // only when a step overflows.
  std::int64_t free = 0;
  bool overflowed = __builtin_sub_overflow(a.collateral, a.order_margin, &free);
  const MarketState* ms = markets_.data();  // walked with the positions (one per market)
  for (const Position& p : a.positions) {
    const MarketState& market = *ms++;
    if (p.size == 0 || p.isolated) continue;
    const std::int32_t leverage = leverage_for(p, market.spec);
    std::int64_t upnl = 0;
    overflowed |= __builtin_sub_overflow(money::notional(market.spec, market.mark, p.size), p.cost, &upnl);
    overflowed |= __builtin_add_overflow(free, upnl, &free);
    overflowed |= __builtin_sub_overflow(
        free, money::initial_margin(market.spec, market.mark, std::abs(p.size), leverage), &free);
  }
  if (!overflowed) [[likely]]
    return free;
  return free_margin_wide(a);
}

template <class Book>
Usdm BasicEngine<Book>::free_margin_wide(const Account& a) const {
  i128 free = static_cast<i128>(a.collateral) - a.order_margin;
  for (std::uint32_t m = 0; m < markets_.size(); ++m) {
    const Position& p = a.positions[m];
    if (p.size == 0 || p.isolated) continue;
    const Price mk = markets_[m].mark;
    free += static_cast<i128>(notional(m, mk, p.size)) - p.cost - initial_margin(m, mk, std::abs(p.size), leverage_of(a, m));
  }
  return clamp64(free);
}

// Margin reserved for `qty` of a resting order: IM at the order price, the loss implied by a
// price worse than the mark at placement, and the taker fee it could pay.
template <class Book>
Usdm BasicEngine<Book>::order_margin_for(const Order& o, Qty qty, Price ref_mark) const {
  if (o.reduce_only || qty == 0) return 0;
  const auto& s = markets_[o.market].spec;
  Usdm n = notional(o.market, o.price, qty);
  Usdm gap = 0;
  Price adverse = o.side == Side::buy ? o.price - ref_mark : ref_mark - o.price;
  if (adverse > 0) gap = notional(o.market, adverse, qty);
  return initial_margin(o.market, o.price, qty, o.leverage) + gap +
         fee(n, std::max(s.taker_fee_ppm, s.maker_fee_ppm));
}

// ---- accounts -----------------------------------------------------------------------------------

template <class Book>
std::uint32_t BasicEngine<Book>::add_account(const UserId& user) {
  auto index = static_cast<std::uint32_t>(accounts_.size());
  Account a;
  a.user = user;
  a.index = index;
  a.positions.resize(markets_.size());
  accounts_.push_back(std::move(a));
  accounts_index_.put(user.value(), index);
  return index;
}

template <class Book>
void BasicEngine<Book>::link_account_order(Account& a, Handle h) {
  Order& o = pool_[h];
  o.acct_prev = kNil;
  o.acct_next = a.orders_head;
  if (a.orders_head != kNil) pool_[a.orders_head].acct_prev = h;
  a.orders_head = h;
  ++a.open_orders;
}

// The mode changes only while the market has neither a position nor open orders (held trigger
// orders included); system accounts stay cross (the backstop takes positions over in its cross
// margin).
template <class Book>
bool BasicEngine<Book>::mode_locked(const Account& a, std::uint32_t m) const {
  if (a.positions[m].size != 0 || a.index == 0 || a.index == insurance_ || a.index == backstop_) return true;
  for (Handle h = a.orders_head; h != kNil; h = pool_[h].acct_next) {
    if (pool_[h].market == m) return true;
  }
  return false;
}

template <class Book>
void BasicEngine<Book>::unlink_account_order(Account& a, Handle h) {
  Order& o = pool_[h];
  if (o.acct_prev != kNil) pool_[o.acct_prev].acct_next = o.acct_next; else a.orders_head = o.acct_next;
  if (o.acct_next != kNil) pool_[o.acct_next].acct_prev = o.acct_prev;
  o.acct_prev = o.acct_next = kNil;
  --a.open_orders;
}

// ---- events -----------------------------------------------------------------------------------

template <class Book>
void BasicEngine<Book>::emit_order(const Order& o, std::vector<Event>& out, CancelReason why) {
  emit_as<OrderUpdated>(out, o.id, accounts_[o.account].user, o.market, o.status, o.filled, o.remaining,
                         o.filled_notional, why, o.ts_ms);
}

template <class Book>
void BasicEngine<Book>::emit_level(std::uint32_t m, Side side, Price price, std::vector<Event>& out) {
  emit_as<BookLevelChanged>(out, m, side, price, markets_[m].book.level_size(side, price));
}

template <class Book>
void BasicEngine<Book>::emit_position(const Account& a, std::uint32_t m, std::int64_t ts,
                                      std::vector<Event>& out) {
  const Position& p = a.positions[m];
  emit_as<PositionChanged>(out, a.user, m, p.size, p.cost, p.realized_pnl, leverage_of(a, m), ts, p.funding,
                            p.isolated, p.margin);
}

template <class Book>
void BasicEngine<Book>::emit_margin(const Account& a, std::uint32_t m, Usdm delta, std::int64_t ts,
                                    std::vector<Event>& out) {
  emit(out, IsolatedMarginChanged{a.user, m, delta, a.positions[m].margin, a.collateral, ts});
}

template <class Book>
void BasicEngine<Book>::move_margin(Account& a, std::uint32_t m, Usdm delta, std::int64_t ts,
                                    std::vector<Event>& out) {
  if (delta == 0) return;
  a.positions[m].margin += delta;
  a.collateral -= delta;
  touch(a);
  emit_margin(a, m, delta, ts, out);
}

// ---- apply ------------------------------------------------------------------------------------

template <class Book>
void BasicEngine<Book>::apply(const Command& command, std::vector<Event>& out) {
  std::visit(
      [&](const auto& c) {
        using T = std::decay_t<decltype(c)>;
        if constexpr (std::is_same_v<T, PlaceOrder>) place(c, out);
        else if constexpr (std::is_same_v<T, CancelOrder>) cancel(c, out);
        else if constexpr (std::is_same_v<T, CancelAll>) cancel_all(c, out);
        else if constexpr (std::is_same_v<T, Deposit>) deposit(c, out);
        else if constexpr (std::is_same_v<T, Withdraw>) withdraw(c, out);
        else if constexpr (std::is_same_v<T, SetMark>) set_mark(c, out);
        else if constexpr (std::is_same_v<T, SetLeverage>) set_leverage(c, out);
        else if constexpr (std::is_same_v<T, SettleFunding>) settle_funding(c, out);
        else if constexpr (std::is_same_v<T, CreateVault>) create_vault(c, out);
        else if constexpr (std::is_same_v<T, VaultDeposit>) vault_deposit(c, out);
        else if constexpr (std::is_same_v<T, VaultWithdraw>) vault_withdraw(c, out);
        else if constexpr (std::is_same_v<T, SetMarketLimits>) set_market_limits(c, out);
        else if constexpr (std::is_same_v<T, AmendOrder>) amend(c, out);
        else if constexpr (std::is_same_v<T, SetCancelAfter>) set_cancel_after(c, out);
        else if constexpr (std::is_same_v<T, CancelExpired>) cancel_expired(c, out);
        else if constexpr (std::is_same_v<T, AdjustMargin>) adjust_margin(c, out);
        else if constexpr (std::is_same_v<T, SetPositionTpSl>) set_position_tpsl(c, out);
        else if constexpr (std::is_same_v<T, RequestWithdrawal>) request_withdrawal(c, out);
        else if constexpr (std::is_same_v<T, UpdateWithdrawal>) update_withdrawal(c, out);
        else if constexpr (std::is_same_v<T, SetMarketStatus>) set_market_status(c, out);
        else if constexpr (std::is_same_v<T, SetMarketParams>) set_market_params(c, out);
      },
      command);
  if (after_pending_) [[unlikely]] after_command(command, out);
}

template <class Book>
void BasicEngine<Book>::reject(const PlaceOrder& c, Reject why, std::vector<Event>& out,
                               OrderId original) {
  emit(out, OrderRejected{c.id, c.user, c.market, why, original, c.ts_ms});
}

template <class Book>
void BasicEngine<Book>::place(const PlaceOrder& c, std::vector<Event>& out) {
  orders_index_.prefetch(c.id.value());  // the insert comes after the checks and matching
  if (is_trigger(c.type)) return place_trigger(c, out);
  if (c.market >= markets_.size()) return reject(c, Reject::unknown_market, out);
  MarketState& ms = markets_[c.market];
  const MarketSpec& spec = ms.spec;
  if (c.qty <= 0) return reject(c, Reject::bad_quantity_lot, out);
  if (c.type == OrderType::limit && c.price <= 0) return reject(c, Reject::bad_price_tick, out);
  if (ms.order_gate <= 0) [[unlikely]] {  // no mark yet, or not ACTIVE
    if (ms.mark <= 0) return reject(c, Reject::no_mark_price, out);
    if (const Reject r = closed_market(c.market, c.reduce_only); r != Reject::none) return reject(c, r, out);
  }
  if (c.leverage != 0 && (c.leverage < 1 || c.leverage > spec.max_leverage)) {
    return reject(c, Reject::bad_leverage, out);
  }
  const bool liquidation = liquidating_ != Liquidation::none;  // engine-made: limits do not apply
  // Size and value limits bound what can open or grow a position; a reduce-only order (a close,
  // a vault's withdrawal, a full-size stop-loss) is bounded by the position itself instead.
  const bool limited = !liquidation && !c.reduce_only;
  if (limited && (c.qty > spec.max_order_qty ||
                  (c.type == OrderType::market && c.qty > spec.max_market_order_qty))) {
    return reject(c, Reject::order_size_too_large, out);
  }
  const std::uint32_t ai = account_index(c.user);
  if (!c.client_order_id.empty() && !triggering_) {
    if (const OrderId* original = client_ids_.find(ClientKey{ai, c.client_order_id})) {
      return reject(c, Reject::duplicate_client_order_id, out, *original);
    }
  }
  Account& acct = accounts_[ai];
  if (!liquidation && acct.open_orders >= config_.max_open_orders_per_account) {
    return reject(c, Reject::too_many_open_orders, out);
  }

  // The effective limit price: market orders are capped against the mark.
  Price limit = c.price;
  if (c.type == OrderType::market) {
    std::int32_t bps = c.max_slippage_bps > 0 ? c.max_slippage_bps : spec.default_slippage_bps;
    bps = std::clamp(bps, 0, 9'999);
    i128 scaled = static_cast<i128>(ms.mark) * (c.side == Side::buy ? 10'000 + bps : 10'000 - bps);
    const i128 capped = c.side == Side::buy ? scaled / 10'000 : ceil_div(scaled, 10'000);
    if (!money::fits64(capped)) return reject(c, Reject::amount_too_large, out);
    limit = static_cast<Price>(capped);
    if (limit <= 0) limit = 1;
  } else if (!liquidation) {
    if (ms.band_mark != ms.mark) [[unlikely]] {  // the mark moved since the band was computed
      const i128 band = trunc_div(static_cast<i128>(ms.mark) * spec.price_band_bps, 10'000);
      ms.band = money::fits64(band) ? static_cast<Price>(band) : std::numeric_limits<Price>::max();
      ms.band_mark = ms.mark;
    }
    // (price and mark are positive here: their differences cannot overflow)
    if (c.price - ms.mark > ms.band || ms.mark - c.price > ms.band) {
      return reject(c, Reject::price_out_of_band, out);
    }
  }

  // Size and value limits before any product of the order is used (none of them can overflow
  // after this: qty, limit and the position they build are bounded by the market's limits).
  Usdm order_notional = 0;
  if (!money::notional_checked(spec, limit, c.qty, order_notional)) {
    return reject(c, liquidation ? Reject::amount_too_large : Reject::order_notional_too_large,
                  out);
  }
  if (limited && order_notional > spec.max_order_notional)
    return reject(c, Reject::order_notional_too_large, out);
  const Position& pos = acct.positions[c.market];
  if (c.reduce_only) {
    const bool opposes = (c.side == Side::buy && pos.size < 0) || (c.side == Side::sell && pos.size > 0);
    if (!opposes || c.qty > std::abs(pos.size)) {
      return reject(c, Reject::reduce_only_would_increase, out);
    }
  } else {
    if (order_notional < spec.min_notional) return reject(c, Reject::below_min_notional, out);
    // At the highest price any of its fills can have (a buy: its limit; a sell: the best bid, if
    // above its limit), so that no fill of this order as taker can pass the limit either.
    Price highest = limit;
    if (c.side == Side::sell) {
      if (auto bid = ms.book.best(Side::buy); bid && *bid > limit) highest = *bid;
    }
    if (!liquidation && !within_position_limit(pos.size, c.market, c.side, highest, c.qty)) {
      return reject(c, Reject::position_notional_too_large, out);
    }
  }

  if (c.tif == TimeInForce::post_only) {
    auto opp = ms.book.best(opposite(c.side));
    if (opp && (c.side == Side::buy ? *opp <= limit : *opp >= limit)) {
      return reject(c, Reject::post_only_would_cross, out);
    }
  }
  if (c.tif == TimeInForce::fok && fillable(c.market, c.side, limit, ai, c.qty) < c.qty) {
    return reject(c, Reject::fok_not_fillable, out);
  }

  // Margin mode and leverage first (they are part of the order in the API), then pre-trade risk.
  const bool prev_isolated = acct.positions[c.market].isolated;
  if (mode_change(c, prev_isolated)) {
    if (mode_locked(acct, c.market)) return reject(c, Reject::margin_mode_locked, out);
    acct.positions[c.market].isolated = !prev_isolated;
  }
  const std::int32_t prev_leverage = acct.positions[c.market].leverage;
  if (c.leverage != 0) acct.positions[c.market].leverage = c.leverage;

  // The accepted order's fields come from the command and these locals, not read back from the
  // pool slot just written (often a cold line: the read would wait for it).
  const TimeInForce tif = c.type == OrderType::market ? TimeInForce::ioc : c.tif;
  const std::int32_t leverage = leverage_of(acct, c.market);
  const Handle h = pool_.alloc_with([&] {
    return Order{.id = c.id,
                 .account = ai,
                 .market = c.market,
                 .side = c.side,
                 .type = c.type,
                 .tif = tif,
                 .reduce_only = c.reduce_only,
                 .leverage = leverage,
                 .price = limit,
                 .qty = c.qty,
                 .remaining = c.qty,
                 .ts_ms = c.ts_ms,
                 .client_order_id = c.client_order_id};
  });
  Order& o = pool_[h];

  // The reserve for the whole order: what rest() needs too when nothing of it fills (the mark
  // cannot move within this command).
  const Usdm full_margin = order_margin_for(o, c.qty, ms.mark);
  if (!c.reduce_only) {
    if (free_margin(acct) < full_margin) {
      acct.positions[c.market].leverage = prev_leverage;
      acct.positions[c.market].isolated = prev_isolated;
      pool_.release(h);
      return reject(c, Reject::insufficient_margin, out);
    }
  }
  if (c.leverage != 0 && c.leverage != prev_leverage) {
    emit(out, LeverageChanged{c.user, c.market, c.leverage});
  }

  o.priority = seq_ + 1;
  emit_as<OrderAccepted>(out, c.id, c.user, c.market, c.side, c.type, tif, c.reduce_only, limit,
                         c.qty, leverage, c.client_order_id, c.ts_ms);
  if (!c.client_order_id.empty()) client_ids_.put(ClientKey{ai, c.client_order_id}, c.id);

  const MatchStop stop = match(h, ai, c.market, c.side, limit, c.ts_ms, out);
  finish(h, stop, pool_[h].remaining == c.qty ? full_margin : -1, out);
}

template <class Book>
typename BasicEngine<Book>::MatchStop BasicEngine<Book>::match(Handle h, std::uint32_t ai,
                                                               std::uint32_t m, Side side,
                                                               Price limit, std::int64_t ts,
                                                               std::vector<Event>& out) {
  // Match against the opposite side while it crosses.
  MarketState& ms = markets_[m];
  const MarketSpec& spec = ms.spec;
  Book& book = ms.book;
  const Side opp = opposite(side);
  while (pool_[h].remaining > 0) {
    auto best = book.best(opp);
    if (!best || (side == Side::buy ? *best > limit : *best < limit)) break;
    Handle maker = book.front(opp, *best);
    Order& mo = pool_[maker];
    if (mo.account == ai) {  // self-trade prevention: the resting order goes
      close_order(maker, OrderStatus::cancelled, CancelReason::self_trade, ts, out, true);
      continue;
    }
    Qty q = std::min(pool_[h].remaining, mo.remaining);
    if (pool_[h].reduce_only) {
      Qty reducible = std::abs(accounts_[ai].positions[m].size);
      q = std::min(q, reducible);
      if (q == 0) return MatchStop::reduce_only;
    }
    if (mo.reduce_only) {
      const Position& mp = accounts_[mo.account].positions[m];
      const bool opposes = (mo.side == Side::buy && mp.size < 0) || (mo.side == Side::sell && mp.size > 0);
      Qty reducible = opposes ? std::abs(mp.size) : 0;
      if (reducible == 0) {
        close_order(maker, OrderStatus::cancelled, CancelReason::reduce_only, ts, out, true);
        continue;
      }
      q = std::min(q, reducible);
    }
    // A fill at a price worse than the mark loses the account money at once (a resting order was
    // priced against an older mark; a reduce-only order has no margin check): it happens only if
    // the account keeps its maintenance margin, or for a reducing fill stays above zero. A maker
    // that fails is cancelled; a taker that fails stops matching.
    if (!keeps_account(mo.account, m, mo.side, *best, q, spec.maker_fee_ppm)) {
      close_order(maker, OrderStatus::cancelled, CancelReason::insufficient_margin, ts, out, true);
      continue;
    }
    if (!keeps_account(ai, m, side, *best, q, spec.taker_fee_ppm)) return MatchStop::margin;
    // No fill builds a position above the market's limit: resting orders of one account could
    // together, so the maker is checked at each fill (the taker was, for all of its fills, at
    // placement; a liquidated taker only reduces). Makers are checked during a liquidation too:
    // theirs are ordinary orders.
    if (!within_position_limit(accounts_[mo.account].positions[m].size, m, mo.side, *best, q))
        [[unlikely]] {
      close_order(maker, OrderStatus::cancelled, CancelReason::position_limit, ts, out, true);
      continue;
    }
    fill(maker, h, q, ts, out);
  }
  return MatchStop::none;
}

template <class Book>
void BasicEngine<Book>::finish(Handle h, MatchStop stop, Usdm margin, std::vector<Event>& out) {
  Order& t = pool_[h];
  if (t.remaining == 0) {
    t.status = OrderStatus::filled;
    emit_order(t, out);
    pool_.release(h);
    return;
  }
  if ((t.tif == TimeInForce::gtc || t.tif == TimeInForce::post_only) && stop == MatchStop::none) {
    rest(h, out, margin);
    return;
  }
  // IOC / FOK / market remainder, or a reduce-only order with nothing left to reduce.
  t.status = OrderStatus::cancelled;
  const CancelReason why = stop == MatchStop::margin        ? CancelReason::insufficient_margin
                           : stop == MatchStop::reduce_only ? CancelReason::reduce_only
                                                            : CancelReason::ioc_remainder;
  t.remaining = 0;
  emit_order(t, out, why);
  pool_.release(h);
}

// A stop / take-profit order: checked, then held (untriggered) until the mark crosses its trigger.
// It reserves no margin while held; every pre-trade check runs when it enters the book.
template <class Book>
void BasicEngine<Book>::place_trigger(const PlaceOrder& c, std::vector<Event>& out) {
  if (c.market >= markets_.size()) return reject(c, Reject::unknown_market, out);
  MarketState& ms = markets_[c.market];
  if (c.qty <= 0) return reject(c, Reject::bad_quantity_lot, out);
  if (c.trigger_price <= 0 || static_cast<std::uint8_t>(c.trigger_by) > 1) return reject(c, Reject::bad_trigger_price, out);
  if (is_limit_like(c.type) && c.price <= 0) return reject(c, Reject::bad_price_tick, out);
  if (ms.mark <= 0) return reject(c, Reject::no_mark_price, out);
  if (const Reject r = closed_market(c.market, c.reduce_only); r != Reject::none) return reject(c, r, out);
  if (c.leverage != 0 && (c.leverage < 1 || c.leverage > ms.spec.max_leverage)) return reject(c, Reject::bad_leverage, out);
  // Every check that does not depend on the mark at firing time, now: the size limits, the value
  // at the limit price (limit types) or at the trigger price (market types), the minimum notional.
  const MarketSpec& spec = ms.spec;
  const bool market_like = !is_limit_like(c.type);
  if (!c.reduce_only &&
      (c.qty > spec.max_order_qty || (market_like && c.qty > spec.max_market_order_qty))) {
    return reject(c, Reject::order_size_too_large, out);
  }
  Usdm at_trigger = 0, at_price = 0;
  if (!money::notional_checked(spec, c.trigger_price, c.qty, at_trigger) ||
      (!market_like && !money::notional_checked(spec, c.price, c.qty, at_price))) {
    return reject(c, Reject::order_notional_too_large, out);
  }
  const Usdm value = market_like ? at_trigger : at_price;
  if (!c.reduce_only && (value > spec.max_order_notional || at_trigger > spec.max_order_notional)) {
    return reject(c, Reject::order_notional_too_large, out);
  }
  if (!c.reduce_only && value < spec.min_notional)
    return reject(c, Reject::below_min_notional, out);
  const std::uint32_t ai = account_index(c.user);
  if (!c.client_order_id.empty()) {
    if (const OrderId* original = client_ids_.find(ClientKey{ai, c.client_order_id})) {
      return reject(c, Reject::duplicate_client_order_id, out, *original);
    }
  }
  Account& acct = accounts_[ai];
  if (acct.open_orders >= config_.max_open_orders_per_account) return reject(c, Reject::too_many_open_orders, out);
  const bool switch_mode = mode_change(c, acct.positions[c.market].isolated);
  if (switch_mode && mode_locked(acct, c.market)) return reject(c, Reject::margin_mode_locked, out);
  Handle h = pool_.alloc();
  Order& o = pool_[h];
  o.id = c.id;
  o.account = ai;
  o.market = c.market;
  o.side = c.side;
  o.type = c.type;
  o.tif = is_limit_like(c.type) ? c.tif : TimeInForce::ioc;
  o.reduce_only = c.reduce_only;
  o.leverage = c.leverage;  // 0: the account's leverage when it fires
  o.price = is_limit_like(c.type) ? c.price : 0;
  o.qty = c.qty;
  o.remaining = c.qty;
  o.client_order_id = c.client_order_id;
  o.ts_ms = c.ts_ms;
  o.trigger_price = c.trigger_price;
  o.trigger_by = c.trigger_by;
  o.links = 0;
  o.status = OrderStatus::untriggered;
  const bool up = fires_up(o);
  // Against the price it watches (a last-price trigger before any trade: the mark).
  const Price ref = c.trigger_by == TriggerBy::last && ms.last_trade > 0 ? ms.last_trade : ms.mark;
  if (up ? ref >= c.trigger_price : ref <= c.trigger_price) {
    pool_.release(h);
    return reject(c, Reject::would_trigger_immediately, out);
  }
  if (switch_mode) acct.positions[c.market].isolated = !acct.positions[c.market].isolated;  // held: it locks the mode
  o.priority = seq_ + 1;
  emit_as<OrderAccepted>(out, o.id, c.user, c.market, o.side, o.type, o.tif, o.reduce_only, o.price, o.qty,
                          c.leverage, o.client_order_id, o.ts_ms, o.trigger_price, c.trigger_by, placing_tpsl_);
  if (!c.client_order_id.empty()) client_ids_.put(ClientKey{ai, c.client_order_id}, c.id);
  trigger_set(ms, o).insert({o.trigger_price, o.priority, h});
  orders_index_.put(o.id.value(), h, pool_);
  link_account_order(acct, h);
  emit_order(o, out);
}

// Held orders whose trigger the mark has reached enter the book, oldest trigger price first on
// each side, in acceptance order among equals; each then goes through every check of place().
template <class Book>
void BasicEngine<Book>::fire_triggers(std::uint32_t m, std::int64_t ts, std::vector<Event>& out, bool by_last) {
  MarketState& ms = markets_[m];
  TriggerSet& ups = by_last ? ms.last_up_triggers : ms.up_triggers;
  TriggerSet& downs = by_last ? ms.last_down_triggers : ms.down_triggers;
  const Price ref = by_last ? ms.last_trade : ms.mark;
  std::vector<std::tuple<Seq, Handle>> due;
  for (auto it = ups.begin(); it != ups.end() && std::get<0>(*it) <= ref; ++it) {
    due.emplace_back(std::get<1>(*it), std::get<2>(*it));
  }
  for (auto it = downs.rbegin(); it != downs.rend() && std::get<0>(*it) >= ref; ++it) {
    due.emplace_back(std::get<1>(*it), std::get<2>(*it));
  }
  std::sort(due.begin(), due.end());
  for (const auto& [priority, h] : due) {
    Order& o = pool_[h];
    if (o.status != OrderStatus::untriggered || o.priority != priority) continue;
    // An account the mark has already taken below maintenance is the liquidation's: its stop
    // would sell into the book at any price (and could leave it below zero with no position for
    // the liquidation to find); the liquidation closes it no worse than the bankruptcy price and
    // cancels this order with the others.
    if (below_maintenance(o.account, m)) continue;
    trigger_set(ms, o).erase({o.trigger_price, o.priority, h});
    // A position's TP fired: its SL goes (and the other way round), before this one trades.
    if (o.links & kLinkOco) {
      const OrderId self = o.id;
      auto partner = oco_.find(self.value());
      if (partner != oco_.end()) {
        const OrderId other = partner->second;
        unlink_oco(self);
        if (const Handle* ph = orders_index_.find(other.value(), pool_)) {
          close_order(*ph, OrderStatus::cancelled, CancelReason::one_cancels_other, ts, out, true);
        }
      }
    }
    orders_index_.erase(o.id.value(), pool_);
    Account& a = accounts_[o.account];
    unlink_account_order(a, h);
    o.status = OrderStatus::triggered;
    o.ts_ms = ts;
    emit_order(o, out);
    PlaceOrder p;
    p.user = a.user;
    p.id = o.id;
    p.market = m;
    p.side = o.side;
    p.type = is_limit_like(o.type) ? OrderType::limit : OrderType::market;
    p.tif = o.tif;
    p.price = o.price;
    p.qty = o.qty;
    p.reduce_only = o.reduce_only;
    p.leverage = o.leverage;
    p.client_order_id = o.client_order_id;
    p.ts_ms = ts;
    // A reduce-only trigger (a stop-loss, a position's TP/SL) closes what is left of the position
    // when the position shrank since it was placed, rather than being refused for its size.
    if (p.reduce_only) {
      const Qty size = a.positions[m].size;
      if ((p.side == Side::buy && size < 0) || (p.side == Side::sell && size > 0)) p.qty = std::min(p.qty, std::abs(size));
    }
    pool_.release(h);
    const std::size_t before = out.size();
    triggering_ = true;
    place(p, out);
    triggering_ = false;
    // Refused on entry (margin, band, limits, reduce-only...): the order ends cancelled, with
    // the reason in the OrderRejected event before it; it is out of the trigger index for good.
    for (std::size_t i = before; i < out.size(); ++i) {
      if (auto* r = std::get_if<OrderRejected>(&out[i].body); r && r->id == p.id) {
        emit_as<OrderUpdated>(out, p.id, p.user, m, OrderStatus::cancelled, 0, 0, 0,
                              CancelReason::trigger_rejected, ts);
        break;
      }
    }
  }
}

template <class Book>
bool BasicEngine<Book>::keeps_account_checked(std::uint32_t ai, std::uint32_t m, Side side,
                                              Price price, Qty q, std::int32_t fee_ppm) const {
  const Price mark = markets_[m].mark;
  const Price adverse = side == Side::buy ? price - mark : mark - price;
  const Account& a = accounts_[ai];
  const Position& p = a.positions[m];
  const Qty size = p.size;
  const bool reduces = (side == Side::buy ? size < 0 : size > 0) && q <= std::abs(size);
  if (p.isolated) {
    // The part that closes must not cost the position more than it holds (its fee included: the
    // collateral pays it from what the position gives back); the part that opens is funded by the
    // cross part, which must stay above its maintenance, and at a price worse than the mark must
    // leave the new margin above the position's maintenance.
    const Qty abs = std::abs(size);
    const bool opposes = side == Side::buy ? size < 0 : size > 0;
    const Qty closing = opposes ? std::min(q, abs) : 0;
    const Qty opening = q - closing;
    if (closing > 0 && adverse > 0) {
      const i128 loss = static_cast<i128>(notional(m, adverse, closing)) + 1 + fee(notional(m, price, closing), fee_ppm);
      if (static_cast<i128>(isolated_value(a, m)) - loss < 0) return false;
    }
    if (opening == 0) return true;
    const AccountView v = view_of(a);
    const Usdm n = notional(m, price, opening);
    const i128 topup = ceil_div(n, leverage_of(a, m));
    if (static_cast<i128>(v.account_value) - topup - fee(notional(m, price, q), fee_ppm) < v.maintenance_margin) {
      return false;
    }
    if (adverse <= 0) return true;
    // A flip leaves nothing of the old position behind: the new one stands on its own margin.
    const i128 base = closing > 0 ? 0 : static_cast<i128>(isolated_value(a, m)) - maintenance_margin(m, mark, abs);
    return base + topup - (static_cast<i128>(notional(m, adverse, opening)) + 1) >=
           static_cast<i128>(maintenance_margin(m, mark, opening)) + 2;
  }
  if (adverse <= 0) return true;  // at or better than the mark: the margin checks already hold
  const i128 loss = static_cast<i128>(notional(m, adverse, q)) + 1 + fee(notional(m, price, q), fee_ppm);
  const CrossHealth v = cross_health(a);
  const i128 required = reduces ? 0 : static_cast<i128>(v.maintenance_margin) + maintenance_margin(m, mark, q) + 2;
  return static_cast<i128>(v.account_value) - loss >= required;
}

template <class Book>
Qty BasicEngine<Book>::fillable(std::uint32_t m, Side taker_side, Price limit,
                                std::uint32_t account, Qty want) const {
  const Book& book = markets_[m].book;
  const Side opp = opposite(taker_side);
  Qty total = 0;
  book.for_each_level(opp, [&](Price p, Qty) {
    if (taker_side == Side::buy ? p > limit : p < limit) return false;
    for (Handle h = book.front(opp, p); h != kNil; h = book.next(h)) {
      const Order& o = pool_[h];
      if (o.account != account) total += o.remaining;
      if (total >= want) return false;
    }
    return true;
  });
  return total;
}

template <class Book>
void BasicEngine<Book>::rest(Handle h, std::vector<Event>& out, Usdm margin) {
  Order& o = pool_[h];
  MarketState& ms = markets_[o.market];
  Account& a = accounts_[o.account];
  o.status = o.filled > 0 ? OrderStatus::partially_filled : OrderStatus::open;
  o.margin = margin >= 0 ? margin : order_margin_for(o, o.remaining, ms.mark);
  a.order_margin += o.margin;
  const Qty level_size = ms.book.add(h);
  orders_index_.put(o.id.value(), h, pool_);
  link_account_order(a, h);
  emit_order(o, out);
  emit_as<BookLevelChanged>(out, o.market, o.side, o.price, level_size);
}

template <class Book>
void BasicEngine<Book>::close_order(Handle h, OrderStatus status, CancelReason why,
                                    std::int64_t ts, std::vector<Event>& out, bool in_book) {
  Order& o = pool_[h];
  Account& a = accounts_[o.account];
  if (in_book && o.status == OrderStatus::untriggered) {  // a held trigger order: not in the book
    MarketState& ms = markets_[o.market];
    trigger_set(ms, o).erase({o.trigger_price, o.priority, h});
    if (o.links & kLinkOco) unlink_oco(o.id);  // (its partner stays)
    orders_index_.erase(o.id.value(), pool_);
    unlink_account_order(a, h);
    o.status = status;
    o.remaining = 0;
    o.ts_ms = ts;
    emit_order(o, out, why);
    pool_.release(h);
    return;
  }
  if (in_book) {
    markets_[o.market].book.remove(h);
    orders_index_.erase(o.id.value(), pool_);
    unlink_account_order(a, h);
    a.order_margin -= o.margin;
    o.margin = 0;
  }
  const Price price = o.price;
  const Side side = o.side;
  const std::uint32_t m = o.market;
  o.status = status;
  o.remaining = 0;
  o.ts_ms = ts;
  emit_order(o, out, why);
  pool_.release(h);
  if (in_book) emit_level(m, side, price, out);
}

template <class Book>
typename BasicEngine<Book>::FillEffect BasicEngine<Book>::apply_fill(Account& a, std::uint32_t m,
                                                                     Side side, Qty qty, Usdm n,
                                                                     Usdm fee_paid) {
  Position& p = a.positions[m];
  const int s = sign(side);
  const Qty dq = s * qty;
  touch(a);
  FillEffect fx;
  MarketState& ms = markets_[m];
  ms.open_interest -= std::max<Qty>(p.size, 0);   // (added back below with the new size)
  if (p.size == 0 || (p.size > 0) == (dq > 0)) {  // open or increase
    if (p.size == 0) p.realized_pnl = 0;          // a new position: its own realized PnL from zero
    if (p.size == 0 && ++a.open_positions == 2) multi_.insert(a.index);
    p.size += dq;
    ms.open_interest += std::max<Qty>(p.size, 0);
    p.cost += s * n;
    if (p.isolated) {  // its initial margin at the fill price, out of the collateral
      fx.margin_delta = clamp64(ceil_div(n, leverage_of(a, m)));
      p.margin += fx.margin_delta;
      a.collateral -= fx.margin_delta;
    }
    return fx;
  }
  const Qty abs = std::abs(p.size);
  const Qty closing = std::min(qty, abs);
  // Cost leaving with the closed part, truncated toward zero; the same integer leaves both the
  // cost and the realized PnL, so no unit is created or lost.
  const Usdm cost_removed = clamp64(trunc_div(static_cast<i128>(p.cost) * closing, abs));
  const Usdm n_close = qty == closing ? n : clamp64(trunc_div(static_cast<i128>(n) * closing, qty));
  const Usdm realized = (p.size > 0 ? n_close : -n_close) - cost_removed;
  p.cost -= cost_removed;
  p.size += dq;
  ms.open_interest += std::max<Qty>(p.size, 0);
  if (p.isolated) {  // the closed part's margin goes back, all of it when nothing is left
    fx.margin_delta = -(closing == abs ? p.margin : clamp64(trunc_div(static_cast<i128>(p.margin) * closing, abs)));
    // A partial close whose loss (and fee) exceeds the closed part's margin: the rest of the
    // position's margin pays the difference. Only an isolated position's margin is at risk; the
    // cross collateral never pays for it (keeps_account checked the whole margin covers it).
    if (closing < abs && realized - fee_paid < fx.margin_delta) {
      const Usdm shortfall = fx.margin_delta - (realized - fee_paid);
      const Usdm kept = p.margin + fx.margin_delta;
      fx.margin_delta -= std::min(shortfall, std::max<Usdm>(kept, 0));
    }
  }
  if ((qty > closing || p.size == 0) && p.has_tpsl) [[unlikely]] {  // closed or flipped: its TP/SL go
    p.has_tpsl = false;
    tpsl_closed_.emplace_back(a.index, m);
    after_pending_ = true;
  }
  if (qty > closing) {  // flip: the rest opens at the fill price
    p.cost = s * (n - n_close);
    p.funding = 0;
    if (p.isolated) fx.margin_delta += clamp64(ceil_div(n - n_close, leverage_of(a, m)));
  } else if (p.size == 0) {
    p.cost = 0;  // (cost_removed was the whole cost)
    p.funding = 0;
    if (a.open_positions-- == 2) multi_.erase(a.index);
  }
  p.margin += fx.margin_delta;
  // A flip closes the old position (its realized PnL went with it) and opens a new one at zero.
  p.realized_pnl = qty > closing ? 0 : p.realized_pnl + realized;
  a.collateral += realized - fx.margin_delta;
  fx.realized = realized;
  return fx;
}

template <class Book>
void BasicEngine<Book>::fill(Handle maker_h, Handle taker_h, Qty qty, std::int64_t ts,
                             std::vector<Event>& out) {
  Order& mo = pool_[maker_h];
  Order& to = pool_[taker_h];
  MarketState& ms = markets_[mo.market];
  const std::uint32_t m = mo.market;
  const Price price = mo.price;
  const Usdm n = notional(m, price, qty);
  const Usdm maker_fee = fee(n, ms.spec.maker_fee_ppm);
  const Usdm taker_fee = fee(n, ms.spec.taker_fee_ppm);
  Account& maker = accounts_[mo.account];
  Account& taker = accounts_[to.account];

  const FillEffect maker_fx = apply_fill(maker, m, mo.side, qty, n, maker_fee);
  const FillEffect taker_fx = apply_fill(taker, m, to.side, qty, n, taker_fee);
  maker.collateral -= maker_fee;
  taker.collateral -= taker_fee;
  accounts_[0].collateral += maker_fee + taker_fee;  // the fee account

  // Book and order bookkeeping.
  const Qty level_size = ms.book.reduce(maker_h, qty);
  mo.remaining -= qty;
  mo.filled += qty;
  mo.filled_notional += n;
  to.remaining -= qty;
  to.filled += qty;
  to.filled_notional += n;
  const Usdm old_margin = mo.margin;
  mo.margin = mo.remaining == 0 ? 0 : order_margin_for(mo, mo.remaining, ms.mark);
  maker.order_margin += mo.margin - old_margin;

  ms.last_trade = price;
  if (ms.has_last_triggers()) [[unlikely]] last_moved_ = after_pending_ = true;
  emit_as<Trade>(out, m, price, qty, to.side, mo.id, to.id, maker.user, taker.user, n, maker_fee,
                  taker_fee, maker_fx.realized, taker_fx.realized, ts, liquidating_);
  emit_position(maker, m, ts, out);
  emit_position(taker, m, ts, out);
  if (maker_fx.margin_delta != 0) emit_margin(maker, m, maker_fx.margin_delta, ts, out);
  if (taker_fx.margin_delta != 0) emit_margin(taker, m, taker_fx.margin_delta, ts, out);
  if (mo.remaining == 0) {
    mo.status = OrderStatus::filled;
    ms.book.remove(maker_h);
    orders_index_.erase(mo.id.value(), pool_);
    unlink_account_order(maker, maker_h);
    emit_order(mo, out);
    pool_.release(maker_h);
  } else {
    mo.status = OrderStatus::partially_filled;
    emit_order(mo, out);
  }
  emit_as<BookLevelChanged>(out, m, opposite(to.side), price, level_size);
}

template <class Book>
const Handle* BasicEngine<Book>::find_own_order(const UserId& user, const OrderId& id,
                                                const ClientOrderId& client_id) const {
  const std::uint32_t* ai = find_account(user);
  if (ai == nullptr) return nullptr;
  OrderId target = id;
  if (target.value() == Uuid{}) {
    if (client_id.empty()) return nullptr;
    const OrderId* by_client = client_ids_.find(ClientKey{*ai, client_id});
    if (by_client == nullptr) return nullptr;
    target = *by_client;
  }
  const Handle* h = orders_index_.find(target.value(), pool_);
  if (h == nullptr || pool_[*h].account != *ai) return nullptr;
  return h;
}

template <class Book>
void BasicEngine<Book>::cancel(const CancelOrder& c, std::vector<Event>& out) {
  const Handle* h = find_own_order(c.user, c.id, c.client_order_id);
  if (h == nullptr) {
    // Another user's order is as unknown as a missing one.
    emit(out, CommandRejected{c.user, Reject::unknown_order, c.ts_ms});
    return;
  }
  close_order(*h, OrderStatus::cancelled, CancelReason::user, c.ts_ms, out, true);
}

template <class Book>
void BasicEngine<Book>::amend(const AmendOrder& c, std::vector<Event>& out) {
  auto refuse = [&](Reject why) { emit(out, CommandRejected{c.user, why, c.ts_ms}); };
  const Handle* found = find_own_order(c.user, c.id, c.client_order_id);
  if (found == nullptr || pool_[*found].market != c.market) return refuse(Reject::unknown_order);
  const Handle h = *found;
  Order& o = pool_[h];
  if (o.status == OrderStatus::untriggered) return refuse(Reject::order_not_amendable);
  if (const Reject r = closed_market(o.market, false); r != Reject::none) return refuse(r);
  if (c.price < 0) return refuse(Reject::bad_price_tick);
  if (c.qty < 0) return refuse(Reject::bad_quantity_lot);
  const Price price = c.price == 0 ? o.price : c.price;
  const Qty qty = c.qty == 0 ? o.qty : c.qty;
  if (price == o.price && qty == o.qty) return refuse(Reject::nothing_to_amend);
  if (qty <= o.filled) return refuse(Reject::amend_below_filled);
  const std::uint32_t m = o.market;
  MarketState& ms = markets_[m];
  const MarketSpec& spec = ms.spec;
  Account& a = accounts_[o.account];
  const Qty remaining = qty - o.filled;

  if (price == o.price && qty < o.qty) {  // smaller, same price: its place in the queue is kept
    const Qty level_size = ms.book.reduce(h, o.remaining - remaining);
    o.remaining = remaining;
    o.qty = qty;
    const Usdm old_margin = o.margin;
    o.margin = std::min(old_margin, order_margin_for(o, remaining, ms.mark));
    a.order_margin += o.margin - old_margin;
    o.ts_ms = c.ts_ms;
    emit(out, OrderAmended{o.id, a.user, m, price, qty, remaining, true, c.ts_ms});
    emit_as<BookLevelChanged>(out, m, o.side, price, level_size);
    return;
  }

  // Cancel-and-replace: every check a new order of this size and price meets, first.
  if (ms.mark <= 0) return refuse(Reject::no_mark_price);
  if (!o.reduce_only && qty > spec.max_order_qty) return refuse(Reject::order_size_too_large);
  const i128 band = trunc_div(static_cast<i128>(ms.mark) * spec.price_band_bps, 10'000);
  if (static_cast<i128>(price) - ms.mark > band || static_cast<i128>(ms.mark) - price > band) {
    return refuse(Reject::price_out_of_band);
  }
  Usdm order_notional = 0;
  if (!money::notional_checked(spec, price, qty, order_notional) ||
      (!o.reduce_only && order_notional > spec.max_order_notional)) {
    return refuse(Reject::order_notional_too_large);
  }
  const Position& pos = a.positions[m];
  if (o.reduce_only) {
    const bool opposes = (o.side == Side::buy && pos.size < 0) || (o.side == Side::sell && pos.size > 0);
    if (!opposes || remaining > std::abs(pos.size)) return refuse(Reject::reduce_only_would_increase);
  } else {
    if (order_notional < spec.min_notional) return refuse(Reject::below_min_notional);
    Price highest = price;
    if (o.side == Side::sell) {
      if (auto bid = ms.book.best(Side::buy); bid && *bid > price) highest = *bid;
    }
    if (!within_position_limit(pos.size, m, o.side, highest, remaining)) {
      return refuse(Reject::position_notional_too_large);
    }
  }
  const auto opp = ms.book.best(opposite(o.side));
  const bool crosses = opp && (o.side == Side::buy ? *opp <= price : *opp >= price);
  if (o.tif == TimeInForce::post_only && crosses) return refuse(Reject::post_only_would_cross);
  Order replaced = o;
  replaced.price = price;
  const Usdm new_margin = order_margin_for(replaced, remaining, ms.mark);
  if (!o.reduce_only && free_margin(a) + o.margin < new_margin) return refuse(Reject::insufficient_margin);

  // Out of its queue, then in again as a new order would enter (same id and client id).
  const Price old_price = o.price;
  ms.book.remove(h);
  orders_index_.erase(o.id.value(), pool_);
  unlink_account_order(a, h);
  a.order_margin -= o.margin;
  o.margin = 0;
  o.price = price;
  o.qty = qty;
  o.remaining = remaining;
  o.ts_ms = c.ts_ms;
  o.priority = seq_ + 1;
  emit(out, OrderAmended{o.id, a.user, m, price, qty, remaining, false, c.ts_ms});
  emit_level(m, o.side, old_price, out);
  const std::uint32_t ai = o.account;
  const Side side = o.side;
  const MatchStop stop = crosses ? match(h, ai, m, side, price, c.ts_ms, out) : MatchStop::none;
  finish(h, stop, pool_[h].remaining == remaining ? new_margin : -1, out);
}

template <class Book>
void BasicEngine<Book>::adjust_margin(const AdjustMargin& c, std::vector<Event>& out) {
  auto refuse = [&](Reject why) { emit(out, CommandRejected{c.user, why, c.ts_ms}); };
  if (c.market >= markets_.size()) return refuse(Reject::unknown_market);
  const std::uint32_t* ai = find_account(c.user);
  if (ai == nullptr || accounts_[*ai].positions[c.market].size == 0) return refuse(Reject::no_open_position);
  Account& a = accounts_[*ai];
  const Position& p = a.positions[c.market];
  if (!p.isolated) return refuse(Reject::position_not_isolated);
  if (c.delta == 0 || c.delta > kMaxTotalUsdm || c.delta < -kMaxTotalUsdm) return refuse(Reject::bad_amount);
  if (c.delta > 0) {
    if (free_margin(a) < c.delta) return refuse(Reject::insufficient_margin);
  } else {
    const std::uint32_t m = c.market;
    const Usdm im = initial_margin(m, markets_[m].mark, std::abs(p.size), leverage_of(a, m));
    const Usdm upnl = isolated_value(a, m) - p.margin;
    const Usdm after = p.margin + c.delta;
    if (after < im || after + std::min<Usdm>(upnl, 0) < im) return refuse(Reject::insufficient_margin);
  }
  move_margin(a, c.market, c.delta, c.ts_ms, out);
  emit_position(a, c.market, c.ts_ms, out);
}

template <class Book>
void BasicEngine<Book>::unlink_oco(const OrderId& id) {
  auto it = oco_.find(id.value());
  if (it == oco_.end()) return;
  const OrderId other = it->second;
  oco_.erase(it);
  oco_.erase(other.value());
  if (const Handle* h = orders_index_.find(other.value(), pool_)) pool_[*h].links &= static_cast<std::uint8_t>(~kLinkOco);
  if (const Handle* h = orders_index_.find(id.value(), pool_)) pool_[*h].links &= static_cast<std::uint8_t>(~kLinkOco);
}

template <class Book>
void BasicEngine<Book>::after_command(const Command& command, std::vector<Event>& out) {
  after_pending_ = false;
  const std::int64_t ts = std::visit([](const auto& c) { return c.ts_ms; }, command);
  for (;;) {
    if (!tpsl_closed_.empty()) {
      // Closed or flipped positions: their take-profit / stop-loss orders, oldest first.
      const auto closed = std::move(tpsl_closed_);
      tpsl_closed_.clear();
      for (const auto& [ai, m] : closed) {
        std::vector<std::pair<Seq, Handle>> linked;
        for (Handle h = accounts_[ai].orders_head; h != kNil; h = pool_[h].acct_next) {
          const Order& o = pool_[h];
          if (o.market == m && (o.links & kLinkPosition)) linked.emplace_back(o.priority, h);
        }
        std::sort(linked.begin(), linked.end());
        for (const auto& [priority, h] : linked) {
          close_order(h, OrderStatus::cancelled, CancelReason::position_closed, ts, out, true);
        }
      }
      continue;
    }
    if (last_moved_) {
      last_moved_ = false;
      for (std::uint32_t m = 0; m < markets_.size(); ++m) {
        if (markets_[m].has_last_triggers() && markets_[m].last_trade > 0) fire_triggers(m, ts, out, /*by_last=*/true);
      }
      continue;
    }
    return;
  }
}

template <class Book>
void BasicEngine<Book>::set_position_tpsl(const SetPositionTpSl& c, std::vector<Event>& out) {
  auto refuse = [&](Reject why) { emit(out, CommandRejected{c.user, why, c.ts_ms}); };
  if (c.market >= markets_.size()) return refuse(Reject::unknown_market);
  if (const Reject r = closed_market(c.market, true); r != Reject::none) return refuse(r);
  const std::uint32_t* found = find_account(c.user);
  if (found == nullptr || accounts_[*found].positions[c.market].size == 0) return refuse(Reject::no_open_position);
  const std::uint32_t ai = *found;
  MarketState& ms = markets_[c.market];
  const Qty size = accounts_[ai].positions[c.market].size;
  const Qty whole = size < 0 ? -size : size;
  if (c.take_profit < 0 || c.stop_loss < 0 || (c.take_profit == 0 && c.stop_loss == 0) ||
      static_cast<std::uint8_t>(c.trigger_by) > 1) {
    return refuse(Reject::bad_trigger_price);
  }
  if (c.qty < 0 || c.qty > whole) return refuse(Reject::reduce_only_would_increase);
  const Qty qty = c.qty == 0 ? whole : c.qty;
  const bool is_long = size > 0;
  const Price ref = c.trigger_by == TriggerBy::last && ms.last_trade > 0 ? ms.last_trade : ms.mark;
  // A long's take-profit above the price it watches and its stop-loss below; a short's the other way.
  if (c.take_profit > 0 && (is_long ? c.take_profit <= ref : c.take_profit >= ref)) return refuse(Reject::would_trigger_immediately);
  if (c.stop_loss > 0 && (is_long ? c.stop_loss >= ref : c.stop_loss <= ref)) return refuse(Reject::would_trigger_immediately);
  Usdm n = 0;
  for (Price p : {c.take_profit, c.stop_loss}) {
    if (p > 0 && !money::notional_checked(ms.spec, p, qty, n)) return refuse(Reject::order_notional_too_large);
  }
  const std::uint32_t wanted = (c.take_profit > 0) + (c.stop_loss > 0);
  if (accounts_[ai].open_orders + wanted > config_.max_open_orders_per_account) return refuse(Reject::too_many_open_orders);
  for (const OrderId& id : {c.take_profit_id, c.stop_loss_id}) {
    if (orders_index_.find(id.value(), pool_) != nullptr) return refuse(Reject::bad_amount);  // an id in use
  }
  if (c.take_profit > 0 && c.stop_loss > 0 && c.take_profit_id == c.stop_loss_id) return refuse(Reject::bad_amount);
  std::vector<OrderId> placed;
  placing_tpsl_ = true;
  for (auto [id, trigger, type] : {std::tuple{c.take_profit_id, c.take_profit, OrderType::take_profit_market},
                                   std::tuple{c.stop_loss_id, c.stop_loss, OrderType::stop_market}}) {
    if (trigger == 0) continue;
    PlaceOrder p;
    p.user = c.user;
    p.id = id;
    p.market = c.market;
    p.side = is_long ? Side::sell : Side::buy;
    p.type = type;
    p.tif = TimeInForce::ioc;
    p.qty = qty;
    p.reduce_only = true;
    p.trigger_price = trigger;
    p.trigger_by = c.trigger_by;
    p.ts_ms = c.ts_ms;
    place_trigger(p, out);
    if (const Handle* h = orders_index_.find(id.value(), pool_)) {
      pool_[*h].links |= kLinkPosition;
      placed.push_back(id);
    }
  }
  placing_tpsl_ = false;
  if (placed.size() == 2) {
    oco_[placed[0].value()] = placed[1];
    oco_[placed[1].value()] = placed[0];
    for (const OrderId& id : placed) pool_[*orders_index_.find(id.value(), pool_)].links |= kLinkOco;
  }
  if (!placed.empty()) accounts_[ai].positions[c.market].has_tpsl = true;
}

template <class Book>
void BasicEngine<Book>::set_cancel_after(const SetCancelAfter& c, std::vector<Event>& out) {
  if (c.timeout_ms != 0 && (c.timeout_ms < kMinCancelAfterMs || c.timeout_ms > kMaxCancelAfterMs)) {
    emit(out, CommandRejected{c.user, Reject::bad_timeout, c.ts_ms});
    return;
  }
  Account& a = accounts_[account_index(c.user)];
  if (a.cancel_after_ms != 0) cancel_after_.erase({a.cancel_after_ms, a.index});
  a.cancel_after_ms = c.timeout_ms == 0 ? 0 : c.ts_ms + c.timeout_ms;
  if (a.cancel_after_ms != 0) cancel_after_.insert({a.cancel_after_ms, a.index});
  emit(out, CancelAfterChanged{c.user, a.cancel_after_ms, false, c.ts_ms});
}

template <class Book>
void BasicEngine<Book>::cancel_expired(const CancelExpired& c, std::vector<Event>& out) {
  // Each switch fires once: its deadline is cleared before its orders go.
  while (!cancel_after_.empty() && cancel_after_.begin()->first <= c.ts_ms) {
    const std::uint32_t ai = cancel_after_.begin()->second;
    cancel_after_.erase(cancel_after_.begin());
    accounts_[ai].cancel_after_ms = 0;
    emit(out, CancelAfterChanged{accounts_[ai].user, 0, true, c.ts_ms});
    cancel_account_orders(ai, -1, CancelReason::cancel_all_after, c.ts_ms, out);
  }
}

template <class Book>
void BasicEngine<Book>::cancel_all(const CancelAll& c, std::vector<Event>& out) {
  const std::uint32_t* ai = find_account(c.user);
  if (ai == nullptr) return;
  if (c.market >= static_cast<std::int32_t>(markets_.size())) {
    emit(out, CommandRejected{c.user, Reject::unknown_market, c.ts_ms});
    return;
  }
  cancel_account_orders(*ai, c.market, CancelReason::cancel_all, c.ts_ms, out);
}

template <class Book>
void BasicEngine<Book>::cancel_account_orders(std::uint32_t ai, std::int32_t market, CancelReason why,
                                              std::int64_t ts, std::vector<Event>& out) {
  // Oldest first, so that events come in time priority.
  std::vector<Handle> handles;
  for (Handle h = accounts_[ai].orders_head; h != kNil; h = pool_[h].acct_next) {
    if (market < 0 || pool_[h].market == static_cast<std::uint32_t>(market)) handles.push_back(h);
  }
  std::sort(handles.begin(), handles.end(),
            [&](Handle a, Handle b) { return pool_[a].priority < pool_[b].priority; });
  for (Handle h : handles) close_order(h, OrderStatus::cancelled, why, ts, out, true);
}

template <class Book>
void BasicEngine<Book>::deposit(const Deposit& c, std::vector<Event>& out) {
  if (c.amount <= 0) {
    emit(out, CommandRejected{c.user, Reject::bad_amount, c.ts_ms});
    return;
  }
  if (c.amount >
      kMaxTotalUsdm - std::max<Usdm>(net_deposits_, 0)) {  // all USDM stays within the bound
    emit(out, CommandRejected{c.user, Reject::amount_too_large, c.ts_ms});
    return;
  }
  Account& a = accounts_[account_index(c.user)];
  a.collateral += c.amount;
  net_deposits_ += c.amount;
  touch(a);
  emit(out, BalanceChanged{c.user, c.amount, a.collateral, BalanceReason::deposit, c.ts_ms});
}

template <class Book>
void BasicEngine<Book>::withdraw(const Withdraw& c, std::vector<Event>& out) {
  const std::uint32_t* ai = find_account(c.user);
  if (c.amount <= 0) {
    emit(out, CommandRejected{c.user, Reject::bad_amount, c.ts_ms});
    return;
  }
  if (ai == nullptr || accounts_[*ai].collateral < c.amount) {
    emit(out, CommandRejected{c.user, Reject::insufficient_balance, c.ts_ms});
    return;
  }
  Account& a = accounts_[*ai];
  AccountView v = view_of(a);
  if (v.account_value - frozen_profit(a) - c.amount < v.position_margin + v.order_margin) {
    emit(out, CommandRejected{c.user, Reject::insufficient_margin, c.ts_ms});
    return;
  }
  a.collateral -= c.amount;
  net_deposits_ -= c.amount;
  touch(a);
  emit(out, BalanceChanged{c.user, -c.amount, a.collateral, BalanceReason::withdrawal, c.ts_ms});
}

template <class Book>
void BasicEngine<Book>::request_withdrawal(const RequestWithdrawal& c, std::vector<Event>& out) {
  const std::uint32_t* ai = find_account(c.user);
  if (c.amount <= 0 || c.daily_limit < 0) {
    emit(out, CommandRejected{c.user, Reject::bad_amount, c.ts_ms});
    return;
  }
  if (c.id.is_nil() || withdrawals_.contains(c.id)) {
    emit(out, CommandRejected{c.user, Reject::withdrawal_state, c.ts_ms});
    return;
  }
  if (ai == nullptr || accounts_[*ai].collateral < c.amount) {
    emit(out, CommandRejected{c.user, Reject::insufficient_balance, c.ts_ms});
    return;
  }
  Account& a = accounts_[*ai];
  if (a.withdrawals >= kMaxWithdrawalsInFlight) {
    emit(out, CommandRejected{c.user, Reject::too_many_withdrawals, c.ts_ms});
    return;
  }
  const AccountView v = view_of(a);
  if (v.account_value - frozen_profit(a) - c.amount < v.position_margin + v.order_margin) {
    emit(out, CommandRejected{c.user, Reject::insufficient_margin, c.ts_ms});
    return;
  }
  const std::int64_t day = c.ts_ms / 86'400'000;
  auto today = withdrawn_today_.find(a.index);
  const Usdm used = today != withdrawn_today_.end() && today->second.first == day ? today->second.second : 0;
  if (c.daily_limit > 0 && c.amount > c.daily_limit - used) {
    emit(out, CommandRejected{c.user, Reject::withdrawal_limit, c.ts_ms});
    return;
  }
  withdrawn_today_[a.index] = {day, used + c.amount};
  a.collateral -= c.amount;
  a.withdrawing += c.amount;
  ++a.withdrawals;
  touch(a);
  emit(out, BalanceChanged{c.user, -c.amount, a.collateral, BalanceReason::withdrawal, c.ts_ms});
  withdrawals_[c.id] = Withdrawal{a.index, c.amount, WithdrawalStatus::pending, day, seq_ + 1};
  pending_withdrawals_.insert({seq_ + 1, c.id});
  emit(out, WithdrawalChanged{c.id, c.user, c.amount, WithdrawalStatus::pending, a.withdrawing, c.ts_ms});
}

template <class Book>
void BasicEngine<Book>::update_withdrawal(const UpdateWithdrawal& c, std::vector<Event>& out) {
  auto it = withdrawals_.find(c.id);
  if (it == withdrawals_.end() || (!c.user.value().is_nil() && accounts_[it->second.account].user != c.user)) {
    emit(out, CommandRejected{c.user, Reject::unknown_withdrawal, c.ts_ms});
    return;
  }
  Withdrawal& w = it->second;
  const WithdrawalStatus from = w.status;
  const bool by_user = !c.user.value().is_nil();
  bool allowed = false;
  switch (c.status) {
    case WithdrawalStatus::processing: allowed = !by_user && from == WithdrawalStatus::pending; break;
    case WithdrawalStatus::completed: allowed = !by_user && from == WithdrawalStatus::processing; break;
    case WithdrawalStatus::rejected: allowed = !by_user; break;
    case WithdrawalStatus::cancelled: allowed = by_user && from == WithdrawalStatus::pending; break;
    case WithdrawalStatus::pending: break;
  }
  if (!allowed) {
    emit(out, CommandRejected{c.user, Reject::withdrawal_state, c.ts_ms});
    return;
  }
  Account& a = accounts_[w.account];
  const Usdm amount = w.amount;
  if (from == WithdrawalStatus::pending) pending_withdrawals_.erase({w.seq, c.id});
  if (c.status == WithdrawalStatus::processing) {
    w.status = c.status;
    emit(out, WithdrawalChanged{c.id, a.user, amount, c.status, a.withdrawing, c.ts_ms});
    return;
  }
  a.withdrawing -= amount;
  --a.withdrawals;
  if (c.status == WithdrawalStatus::completed) {
    net_deposits_ -= amount;  // on chain: it has left the exchange
  } else {
    a.collateral += amount;
    touch(a);
    if (auto today = withdrawn_today_.find(a.index); today != withdrawn_today_.end() && today->second.first == w.day) {
      today->second.second -= amount;
      if (today->second.second == 0) withdrawn_today_.erase(today);
    }
    emit(out, BalanceChanged{a.user, amount, a.collateral, BalanceReason::withdrawal_returned, c.ts_ms});
  }
  withdrawals_.erase(it);
  emit(out, WithdrawalChanged{c.id, a.user, amount, c.status, a.withdrawing, c.ts_ms});
}


template <class Book>
void BasicEngine<Book>::emit_market(std::uint32_t m, std::int64_t ts, std::vector<Event>& out) {
  const MarketState& ms = markets_[m];
  emit(out, MarketChanged{m, ms.status, ms.spec.maker_fee_ppm, ms.spec.taker_fee_ppm, ms.spec.max_leverage,
                          ms.final_price, ts});
}

template <class Book>
void BasicEngine<Book>::set_market_status(const SetMarketStatus& c, std::vector<Event>& out) {
  auto refuse = [&](Reject why) { emit(out, CommandRejected{UserId{}, why, c.ts_ms}); };
  if (c.market >= markets_.size()) return refuse(Reject::unknown_market);
  MarketState& ms = markets_[c.market];
  if (ms.status == MarketStatus::delisted) return refuse(Reject::market_delisted);
  if (static_cast<std::uint8_t>(c.status) > static_cast<std::uint8_t>(MarketStatus::delisted)) {
    return refuse(Reject::bad_amount);
  }
  if (c.status != MarketStatus::delisted) {
    // A halt leaves only what can close: every order that could open a position goes (a close
    // matching a resting bid would otherwise open the bidder's position at a frozen mark).
    if (c.status == MarketStatus::halted && ms.status == MarketStatus::active) {
      cancel_market_orders(c.market, CancelReason::market_halted, 0, c.ts_ms, out);
    }
    if (c.status == MarketStatus::active && ms.status == MarketStatus::halted) ms.resumed_ms = c.ts_ms;
    ms.status = c.status;
    ms.regate();
    return emit_market(c.market, c.ts_ms, out);
  }
  // The final price within the bounds every mark keeps (the open interest's value at it).
  if (Usdm oi = 0; c.final_price <= 0 || c.final_price > kMaxMarketNotional ||
                   !money::notional_checked(ms.spec, c.final_price, ms.open_interest, oi) || oi > kMaxMarketNotional) {
    return refuse(Reject::bad_price_tick);
  }
  delist(c.market, c.final_price, c.ts_ms, out);
}

template <class Book>
void BasicEngine<Book>::cancel_market_orders(std::uint32_t m, CancelReason why, std::int32_t max_leverage,
                                             std::int64_t ts, std::vector<Event>& out) {
  for (std::uint32_t ai = 0; ai < accounts_.size(); ++ai) {
    if (accounts_[ai].open_orders == 0) continue;
    std::vector<Handle> handles;
    for (Handle h = accounts_[ai].orders_head; h != kNil; h = pool_[h].acct_next) {
      const Order& o = pool_[h];
      if (o.market == m && !o.reduce_only && (max_leverage == 0 || o.leverage > max_leverage)) handles.push_back(h);
    }
    std::sort(handles.begin(), handles.end(), [&](Handle a, Handle b) { return pool_[a].priority < pool_[b].priority; });
    for (Handle h : handles) close_order(h, OrderStatus::cancelled, why, ts, out, true);
  }
}

template <class Book>
void BasicEngine<Book>::delist(std::uint32_t m, Price price, std::int64_t ts, std::vector<Event>& out) {
  // 1. Every open order of the market, held triggers included, oldest first per account.
  for (std::uint32_t ai = 0; ai < accounts_.size(); ++ai) {
    if (accounts_[ai].open_orders != 0) cancel_account_orders(ai, static_cast<std::int32_t>(m), CancelReason::market_delisted, ts, out);
  }
  // 2. The mark to the final price: whoever is below maintenance there is liquidated as usual
  //    (the book is empty now: the backstop, the fund, deleveraging), so that the settlement
  //    leaves nobody below zero.
  MarketState& ms = markets_[m];
  ms.mark = price;
  ms.regate();
  emit(out, MarkChanged{m, price, ts});
  for (std::uint32_t ai : multi_) {
    if (accounts_[ai].positions[m].size != 0) touch(accounts_[ai]);
  }
  check_liquidations(m, ts, out);
  // 3. Every position closed at the price. Longs receive the notional rounded down, shorts pay it
  //    rounded up: what rounding leaves (≥ 0, less than a unit a position) goes to the fund.
  Usdm received = 0, paid = 0;
  for (std::uint32_t ai = 0; ai < accounts_.size(); ++ai) {
    Account& a = accounts_[ai];
    Position& p = a.positions[m];
    if (p.size == 0) continue;
    const bool long_position = p.size > 0;
    const Qty q = std::abs(p.size);
    const i128 exact = static_cast<i128>(price) * q * ms.spec.notional_num;
    const Usdm n = clamp64(long_position ? floor_div(exact, ms.spec.notional_den) : ceil_div(exact, ms.spec.notional_den));
    (long_position ? received : paid) += n;
    const Usdm before = a.collateral;
    const FillEffect fx = apply_fill(a, m, long_position ? Side::sell : Side::buy, q, n);
    emit_position(a, m, ts, out);
    if (fx.margin_delta != 0) {  // the isolated margin back first, then the PnL
      emit(out, IsolatedMarginChanged{a.user, m, fx.margin_delta, p.margin, before - fx.margin_delta, ts});
    }
    emit(out, BalanceChanged{a.user, fx.realized, a.collateral, BalanceReason::settlement, ts});
  }
  if (paid != received) {
    Account& ins = accounts_[insurance_];
    ins.collateral += paid - received;
    touch(ins);
    emit(out, BalanceChanged{ins.user, paid - received, ins.collateral, BalanceReason::settlement, ts});
  }
  // (Liquidated at the price, nobody is left below zero but by rounding: the fund covers that.)
  for (std::uint32_t ai = 1; ai < accounts_.size(); ++ai) {
    if (ai == insurance_) continue;
    const Usdm v = view_of(accounts_[ai]).account_value;
    if (v < 0) cover_shortfall(ai, -v, ts, out);
  }
  ms.status = MarketStatus::delisted;
  ms.final_price = price;
  ms.regate();
  emit_market(m, ts, out);
}

template <class Book>
void BasicEngine<Book>::set_market_params(const SetMarketParams& c, std::vector<Event>& out) {
  auto refuse = [&](Reject why) { emit(out, CommandRejected{UserId{}, why, c.ts_ms}); };
  if (c.market >= markets_.size()) return refuse(Reject::unknown_market);
  MarketState& ms = markets_[c.market];
  if (ms.status == MarketStatus::delisted) return refuse(Reject::market_delisted);
  if (c.maker_fee_ppm < 0 || c.maker_fee_ppm > kMaxFeePpm || c.taker_fee_ppm < 0 || c.taker_fee_ppm > kMaxFeePpm) {
    return refuse(Reject::bad_amount);
  }
  if (c.max_leverage < 1 || c.max_leverage > kMaxLeverage) return refuse(Reject::bad_leverage);
  const std::int32_t old = ms.spec.max_leverage;
  std::vector<std::uint32_t> holders;
  for (std::uint32_t ai = 0; ai < accounts_.size(); ++ai) {
    if (accounts_[ai].positions[c.market].size != 0) holders.push_back(ai);
  }
  // A lower maximum raises the maintenance margin (1 / (2 × max leverage)): refused when a
  // position would be below it at once; otherwise positions above it are brought down to it.
  ms.spec.max_leverage = c.max_leverage;
  if (c.max_leverage < old) {
    for (std::uint32_t ai : holders) {
      if (below_maintenance(ai, c.market)) {
        ms.spec.max_leverage = old;
        return refuse(Reject::market_param_unsafe);
      }
    }
  }
  ms.spec.maker_fee_ppm = c.maker_fee_ppm;
  ms.spec.taker_fee_ppm = c.taker_fee_ppm;
  if (c.max_leverage < old) {
    // Orders placed above the new maximum reserved too little margin for what they would open.
    cancel_market_orders(c.market, CancelReason::leverage_cut, c.max_leverage, c.ts_ms, out);
    for (Account& a : accounts_) {  // every account's setting, flat or not
      Position& p = a.positions[c.market];
      if (p.leverage <= c.max_leverage) continue;
      p.leverage = c.max_leverage;
      if (p.size != 0) emit_position(a, c.market, c.ts_ms, out);
    }
  }
  for (std::uint32_t ai : holders) touch(accounts_[ai]);  // liquidation keys moved with the maintenance margin
  emit_market(c.market, c.ts_ms, out);
}

template <class Book>
void BasicEngine<Book>::set_mark(const SetMark& c, std::vector<Event>& out) {
  if (c.market >= markets_.size() || c.mark <= 0) {
    emit(out, CommandRejected{UserId{}, c.market >= markets_.size() ? Reject::unknown_market : Reject::bad_price_tick, c.ts_ms});
    return;
  }
  // The open interest at the new mark stays within the bound that keeps every account's value
  // (and each position's notional, margin and PnL) far inside 64 bits.
  if (Usdm oi = 0; !money::notional_checked(markets_[c.market].spec, c.mark,
                                            markets_[c.market].open_interest, oi) ||
                   oi > kMaxMarketNotional || c.mark > kMaxMarketNotional) {
    emit(out, CommandRejected{UserId{}, Reject::amount_too_large, c.ts_ms});
    return;
  }
  if (markets_[c.market].status != MarketStatus::active) {  // the mark pauses with the market
    emit(out, CommandRejected{UserId{}, closed_market(c.market, false), c.ts_ms});
    return;
  }
  markets_[c.market].mark = c.mark;
  markets_[c.market].regate();
  emit(out, MarkChanged{c.market, c.mark, c.ts_ms});
  // Accounts with positions in other markets too: their keys there moved with this mark.
  for (std::uint32_t ai : multi_) {
    if (accounts_[ai].positions[c.market].size != 0) touch(accounts_[ai]);
  }
  fire_triggers(c.market, c.ts_ms, out);  // stop-losses first: they may spare a liquidation
  check_liquidations(c.market, c.ts_ms, out);
}

template <class Book>
void BasicEngine<Book>::set_market_limits(const SetMarketLimits& c, std::vector<Event>& out) {
  if (c.market >= markets_.size()) {
    emit(out, CommandRejected{UserId{}, Reject::unknown_market, c.ts_ms});
    return;
  }
  if (markets_[c.market].status == MarketStatus::delisted) {
    emit(out, CommandRejected{UserId{}, Reject::market_delisted, c.ts_ms});
    return;
  }
  const MarketSpec ceiling;
  if (c.max_order_qty <= 0 || c.max_order_qty > ceiling.max_order_qty ||
      c.max_market_order_qty <= 0 || c.max_market_order_qty > c.max_order_qty ||
      c.max_order_notional <= 0 || c.max_order_notional > ceiling.max_order_notional ||
      c.max_position_notional <= 0 || c.max_position_notional > ceiling.max_position_notional) {
    emit(out, CommandRejected{UserId{}, Reject::bad_amount, c.ts_ms});
    return;
  }
  // Orders already resting stay; the new limits apply to what comes next (and to every fill's
  // maker position check from now on).
  MarketSpec& spec = markets_[c.market].spec;
  spec.max_order_qty = c.max_order_qty;
  spec.max_market_order_qty = c.max_market_order_qty;
  spec.max_order_notional = c.max_order_notional;
  spec.max_position_notional = c.max_position_notional;
}

template <class Book>
void BasicEngine<Book>::set_leverage(const SetLeverage& c, std::vector<Event>& out) {
  if (c.market >= markets_.size()) {
    emit(out, CommandRejected{c.user, Reject::unknown_market, c.ts_ms});
    return;
  }
  if (markets_[c.market].status == MarketStatus::delisted) {
    emit(out, CommandRejected{c.user, Reject::market_delisted, c.ts_ms});
    return;
  }
  const bool sets_leverage = c.leverage != 0 || c.margin_mode == MarginMode::unchanged;
  if (sets_leverage && (c.leverage < 1 || c.leverage > markets_[c.market].spec.max_leverage)) {
    emit(out, CommandRejected{c.user, Reject::bad_leverage, c.ts_ms});
    return;
  }
  Account& a = accounts_[account_index(c.user)];
  Position& p = a.positions[c.market];
  const bool to_isolated = c.margin_mode == MarginMode::isolated;
  const bool mode_changes = c.margin_mode != MarginMode::unchanged && to_isolated != p.isolated;
  if (mode_changes && mode_locked(a, c.market)) {
    emit(out, CommandRejected{c.user, Reject::margin_mode_locked, c.ts_ms});
    return;
  }
  const std::int32_t prev = p.leverage;
  if (sets_leverage) p.leverage = c.leverage;
  // Lower leverage raises the position's margin: refused when the account cannot carry it.
  AccountView v = view_of(a);
  if (v.account_value < v.position_margin + v.order_margin) {
    p.leverage = prev;
    emit(out, CommandRejected{c.user, Reject::insufficient_margin, c.ts_ms});
    return;
  }
  if (sets_leverage) emit(out, LeverageChanged{c.user, c.market, c.leverage});
  if (mode_changes) {  // (flat, no orders: nothing else moves)
    p.isolated = to_isolated;
    emit_position(a, c.market, c.ts_ms, out);
  }
}

// ---- queries ----------------------------------------------------------------------------------

template <class Book>
const Account* BasicEngine<Book>::account(const UserId& user) const {
  const std::uint32_t* i = find_account(user);
  return i ? &accounts_[*i] : nullptr;
}

template <class Book>
std::optional<AccountView> BasicEngine<Book>::view(const UserId& user) const {
  const Account* a = account(user);
  if (!a) return std::nullopt;
  return view_of(*a);
}

template <class Book>
const Order* BasicEngine<Book>::order(const OrderId& id) const {
  const Handle* h = orders_index_.find(id.value(), pool_);
  return h ? &pool_[*h] : nullptr;
}

template <class Book>
std::optional<OrderId> BasicEngine<Book>::client_order(const UserId& user,
                                                       const ClientOrderId& id) const {
  const std::uint32_t* ai = find_account(user);
  if (!ai) return std::nullopt;
  const OrderId* o = client_ids_.find(ClientKey{*ai, id});
  if (!o) return std::nullopt;
  return *o;
}

template <class Book>
std::optional<Price> BasicEngine<Book>::best(std::uint32_t m, Side side) const {
  return markets_[m].book.best(side);
}

template <class Book>
std::vector<std::pair<Price, Qty>> BasicEngine<Book>::depth(std::uint32_t m, Side side,
                                                            std::size_t levels) const {
  std::vector<std::pair<Price, Qty>> out;
  markets_[m].book.for_each_level(side, [&](Price p, Qty q) {
    out.emplace_back(p, q);
    return out.size() < levels;
  });
  return out;
}

template <class Book>
std::size_t BasicEngine<Book>::memory_bytes() const {
  std::size_t n = pool_.capacity_bytes() + accounts_.capacity() * sizeof(Account) +
                  orders_index_.memory_bytes() + accounts_index_.memory_bytes() +
                  client_ids_.memory_bytes();
  for (const auto& a : accounts_) n += a.positions.capacity() * sizeof(Position);
  for (const auto& m : markets_) n += m.book.memory_bytes();
  return n;
}

// ---- state hash, export, load, invariants -------------------------------------------------------

namespace {
// A 64-bit digest, a word at a time (a multiply, an xor and a shift per word): not
// cryptographic, made to tell two engine states apart.
struct Hasher {
  std::uint64_t h = 1469598103934665603ull;
  void add(std::uint64_t v) {
    h ^= v;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
  }
  void add(const Uuid& u) {
    add(u.hi);
    add(u.lo);
  }
  void add(std::string_view s) {
    add(s.size());
    for (std::size_t i = 0; i < s.size(); i += 8) {
      std::uint64_t w = 0;
      std::memcpy(&w, s.data() + i, std::min<std::size_t>(8, s.size() - i));
      add(w);
    }
  }
};
}  // namespace

template <class Book>
std::uint64_t BasicEngine<Book>::state_hash() const {
  Hasher hs;
  hs.add(seq_);
  hs.add(static_cast<std::uint64_t>(net_deposits_));
  for (const auto& m : markets_) {
    hs.add(static_cast<std::uint64_t>(m.mark));
    hs.add(static_cast<std::uint64_t>(m.last_trade));
    hs.add(static_cast<std::uint64_t>(m.last_funding_ms));
  }
  for (const auto& a : accounts_) {
    hs.add(a.user.value());
    hs.add(static_cast<std::uint64_t>(a.collateral));
    hs.add(static_cast<std::uint64_t>(a.order_margin));
    hs.add(a.open_orders);
    // Only when set: the hash of a state without switches is the one snapshots of format 1 and 2
    // were stored with (recovery checks it after loading them).
    if (a.cancel_after_ms != 0) hs.add(static_cast<std::uint64_t>(a.cancel_after_ms));
    for (const auto& p : a.positions) {
      hs.add(static_cast<std::uint64_t>(p.size));
      hs.add(static_cast<std::uint64_t>(p.cost));
      hs.add(static_cast<std::uint64_t>(p.realized_pnl));
      hs.add(static_cast<std::uint64_t>(p.leverage));
      hs.add(static_cast<std::uint64_t>(p.funding));
      hs.add(static_cast<std::uint64_t>(p.isolated));
      hs.add(static_cast<std::uint64_t>(p.margin));
    }
  }
  for (std::uint32_t m = 0; m < markets_.size(); ++m) {
    for (Side side : {Side::buy, Side::sell}) {
      const Book& book = markets_[m].book;
      book.for_each_level(side, [&](Price p, Qty size) {
        hs.add(static_cast<std::uint64_t>(p));
        hs.add(static_cast<std::uint64_t>(size));
        for (Handle h = book.front(side, p); h != kNil; h = book.next(h)) {
          const Order& o = pool_[h];
          hs.add(o.id.value());
          hs.add(o.account);
          hs.add(static_cast<std::uint64_t>(o.remaining));  // (qty = filled + remaining)
          hs.add(static_cast<std::uint64_t>(o.filled));
          hs.add(static_cast<std::uint64_t>(o.filled_notional));
          hs.add(static_cast<std::uint64_t>(o.margin));
          hs.add(o.priority);
          hs.add(o.client_order_id.view());
        }
        return true;
      });
    }
  }
  for (const Vault& v : vaults_) {
    hs.add(v.id);
    for (std::int64_t x : {static_cast<std::int64_t>(v.account), static_cast<std::int64_t>(v.leader), v.total_shares,
                           v.lock_ms, static_cast<std::int64_t>(v.performance_fee_ppm),
                           static_cast<std::int64_t>(v.management_fee_ppm), v.min_deposit, v.capacity,
                           static_cast<std::int64_t>(v.protocol), v.last_fee_ms}) {
      hs.add(static_cast<std::uint64_t>(x));
    }
    for (const auto& [ai, h] : v.holders) {
      hs.add(ai);
      hs.add(static_cast<std::uint64_t>(h.shares));
      hs.add(static_cast<std::uint64_t>(h.cost));
      for (const auto& lot : h.lots) {
        hs.add(static_cast<std::uint64_t>(lot.shares));
        hs.add(static_cast<std::uint64_t>(lot.unlock_ms));
      }
    }
  }
  for (const auto& m : markets_) {
    for (const auto* set : {&m.up_triggers, &m.down_triggers, &m.last_up_triggers, &m.last_down_triggers}) {
      for (const auto& [price, priority, h] : *set) {
        const Order& o = pool_[h];
        hs.add(static_cast<std::uint64_t>(price));
        hs.add(priority);
        hs.add(o.id.value());
        hs.add(o.account);
        hs.add(static_cast<std::uint64_t>(o.qty));
        hs.add(static_cast<std::uint64_t>(o.price));
        hs.add(static_cast<std::uint64_t>(o.type));
        // Only when not the defaults: the hash older snapshots were stored with stays the same.
        if (o.trigger_by != TriggerBy::mark || o.links != 0) {
          hs.add(static_cast<std::uint64_t>(o.trigger_by));
          hs.add(static_cast<std::uint64_t>(o.links));
        }
      }
    }
  }
  for (const auto& [id, partner] : oco_) {
    hs.add(id);
    hs.add(partner.value());
  }
  // Markets whose status or parameters changed (only those: older snapshots' hashes stay the same).
  for (std::uint32_t m = 0; m < markets_.size(); ++m) {
    const MarketState& ms = markets_[m];
    const MarketSpec& initial = config_.markets[m];
    if (ms.status != MarketStatus::active || ms.resumed_ms != 0 || ms.spec.maker_fee_ppm != initial.maker_fee_ppm ||
        ms.spec.taker_fee_ppm != initial.taker_fee_ppm || ms.spec.max_leverage != initial.max_leverage) {
      for (std::int64_t x : {static_cast<std::int64_t>(m), static_cast<std::int64_t>(ms.status), ms.final_price,
                             static_cast<std::int64_t>(ms.spec.maker_fee_ppm), static_cast<std::int64_t>(ms.spec.taker_fee_ppm),
                             static_cast<std::int64_t>(ms.spec.max_leverage), ms.resumed_ms}) {
        hs.add(static_cast<std::uint64_t>(x));
      }
    }
  }
  // Withdrawals (only when there are any: older snapshots' hashes stay the same).
  for (const auto& [id, w] : withdrawals_) {
    hs.add(id);
    for (std::int64_t x : {static_cast<std::int64_t>(w.account), w.amount, static_cast<std::int64_t>(w.status), w.day,
                           static_cast<std::int64_t>(w.seq)}) {
      hs.add(static_cast<std::uint64_t>(x));
    }
  }
  for (const auto& [ai, t] : withdrawn_today_) {
    hs.add(ai);
    hs.add(static_cast<std::uint64_t>(t.first));
    hs.add(static_cast<std::uint64_t>(t.second));
  }
  // Client order ids: a sum of one digest per entry, so the table's order does not matter and
  // nothing is sorted (a million of them took ~0.5 s to sort as strings).
  std::uint64_t ids = 0, count = 0;
  client_ids_.for_each([&](const ClientKey& k, const OrderId& id) {
    Hasher e;
    e.add(k.account);
    e.add(k.id.view());
    e.add(id.value());
    ids += e.h;
    ++count;
  });
  hs.add(count);
  hs.add(ids);
  return hs.h;
}

template <class Book>
Snapshot BasicEngine<Book>::export_state() const {
  Snapshot s;
  s.seq = seq_;
  s.net_deposits = net_deposits_;
  for (const auto& m : markets_) {
    s.marks.push_back(m.mark);
    s.last_funding_ms.push_back(m.last_funding_ms);
    s.last_trade.push_back(m.last_trade);
    s.limits.push_back({m.spec.max_order_qty, m.spec.max_market_order_qty,
                        m.spec.max_order_notional, m.spec.max_position_notional});
    s.market_state.push_back({static_cast<std::int64_t>(m.status), m.final_price, m.spec.maker_fee_ppm,
                              m.spec.taker_fee_ppm, m.spec.max_leverage, m.resumed_ms});
  }
  s.accounts.reserve(accounts_.size());
  for (const auto& a : accounts_) s.accounts.push_back({a.user, a.collateral, a.positions});
  for (const auto& [deadline, ai] : cancel_after_) s.cancel_after.emplace_back(ai, deadline);
  std::sort(s.cancel_after.begin(), s.cancel_after.end());
  s.withdrawals.assign(withdrawals_.begin(), withdrawals_.end());
  for (const auto& [ai, t] : withdrawn_today_) s.withdrawn_today.push_back({ai, t.first, t.second});
  s.vaults = vaults_;
  // Orders in time priority (what load() needs to rebuild every level's FIFO): the 16-byte
  // (priority, handle) pairs are sorted, not the orders, then each order is copied once. The
  // trading service exports on its engine thread, so this is kept cheap.
  std::vector<std::pair<Seq, Handle>> live;
  live.reserve(pool_.live());
  for (const auto& m : markets_) {
    for (Side side : {Side::buy, Side::sell}) {
      m.book.for_each_level(side, [&](Price p, Qty) {
        for (Handle h = m.book.front(side, p); h != kNil; h = m.book.next(h)) live.emplace_back(pool_[h].priority, h);
        return true;
      });
    }
    for (const auto* set : {&m.up_triggers, &m.down_triggers, &m.last_up_triggers, &m.last_down_triggers}) {
      for (const auto& [price, priority, h] : *set) live.emplace_back(pool_[h].priority, h);
    }
  }
  std::sort(live.begin(), live.end());
  s.orders.reserve(live.size());
  for (const auto& [priority, h] : live) {
    const Order& o = pool_[h];
    s.orders.push_back(o);
    if (o.trigger_by != TriggerBy::mark || o.links != 0) [[unlikely]] {
      OrderId partner;
      if (auto it = oco_.find(o.id.value()); it != oco_.end()) partner = it->second;
      s.order_links.push_back({o.id, o.trigger_by, o.links, partner});
    }
  }
  // Client ids in (account, id) order: canonical, whatever the map's history.
  std::vector<std::pair<ClientKey, OrderId>> ids;
  ids.reserve(client_ids_.size());
  client_ids_.for_each([&](const ClientKey& k, const OrderId& id) { ids.emplace_back(k, id); });
  std::sort(ids.begin(), ids.end(), [&](const auto& a, const auto& b) {
    const Uuid& ua = accounts_[a.first.account].user.value();
    const Uuid& ub = accounts_[b.first.account].user.value();
    if (ua != ub) return ua < ub;
    return a.first.id.view() < b.first.id.view();
  });
  s.client_ids.reserve(ids.size());
  for (const auto& [k, id] : ids) s.client_ids.push_back({accounts_[k.account].user, k.id, id});
  return s;
}

template <class Book>
void BasicEngine<Book>::load(const Snapshot& s) {
  // Start from empty books and accounts, then rebuild in the exported order.
  pool_ = OrderPool(config_.order_reserve);
  markets_.clear();
  for (std::size_t i = 0; i < config_.markets.size(); ++i) {
    MarketSpec spec = config_.markets[i];
    spec.id = static_cast<std::uint32_t>(i);
    markets_.push_back(MarketState{spec, Book(pool_), i < s.marks.size() ? s.marks[i] : 0, 0});
  }
  for (std::size_t i = 0; i < markets_.size(); ++i) {
    if (i < s.last_funding_ms.size()) markets_[i].last_funding_ms = s.last_funding_ms[i];
    if (i < s.last_trade.size()) markets_[i].last_trade = s.last_trade[i];
    if (i < s.limits.size()) {  // (older snapshots: the configured limits stay)
      MarketSpec& spec = markets_[i].spec;
      spec.max_order_qty = s.limits[i][0];
      spec.max_market_order_qty = s.limits[i][1];
      spec.max_order_notional = s.limits[i][2];
      spec.max_position_notional = s.limits[i][3];
    }
    if (i < s.market_state.size()) {  // (older snapshots: active, the configured fees and leverage)
      markets_[i].status = static_cast<MarketStatus>(s.market_state[i][0]);
      markets_[i].final_price = s.market_state[i][1];
      markets_[i].spec.maker_fee_ppm = static_cast<std::int32_t>(s.market_state[i][2]);
      markets_[i].spec.taker_fee_ppm = static_cast<std::int32_t>(s.market_state[i][3]);
      markets_[i].spec.max_leverage = static_cast<std::int32_t>(s.market_state[i][4]);
      markets_[i].resumed_ms = s.market_state[i][5];
    }
    markets_[i].regate();
  }
  accounts_.clear();
  accounts_index_.clear();
  orders_index_.clear();
  client_ids_.clear();
  dirty_.clear();
  multi_.clear();
  cancel_after_.clear();
  withdrawals_.clear();
  pending_withdrawals_.clear();
  withdrawn_today_.clear();
  for (const auto& as : s.accounts) {
    std::uint32_t ai = account_index(as.user);
    Account& a = accounts_[ai];
    a.collateral = as.collateral;
    a.positions = as.positions;
    a.positions.resize(markets_.size());
    a.open_positions = 0;
    for (std::size_t m = 0; m < a.positions.size(); ++m) {
      Position& p = a.positions[m];
      p.indexed = false;
      p.liq_key = 0;
      p.has_tpsl = false;  // (set again from the orders below)
      if (p.size != 0) ++a.open_positions;
      markets_[m].open_interest += std::max<Qty>(p.size, 0);
    }
    if (a.open_positions >= 2) multi_.insert(ai);
    touch(a);
  }
  account_index(config_.fee_account);
  insurance_ = account_index(config_.insurance_account);
  backstop_ = account_index(config_.backstop_account);
  oco_.clear();
  tpsl_closed_.clear();
  last_moved_ = false;
  after_pending_ = false;
  std::map<Uuid, const Snapshot::OrderLinks*> links;
  for (const auto& l : s.order_links) links[l.order.value()] = &l;
  for (const Order& src : s.orders) {
    const Handle h = pool_.alloc(src);
    Order& o = pool_[h];
    o.prev = o.next = o.acct_prev = o.acct_next = kNil;
    o.trigger_by = TriggerBy::mark;
    o.links = 0;
    if (auto l = links.find(o.id.value()); l != links.end()) {
      o.trigger_by = l->second->trigger_by;
      o.links = l->second->links;
      if (o.links & kLinkOco) oco_[o.id.value()] = l->second->partner;
      if (o.links & kLinkPosition) accounts_[o.account].positions[o.market].has_tpsl = true;
    }
    Account& a = accounts_[o.account];
    a.order_margin += o.margin;
    if (o.status == OrderStatus::untriggered) {
      trigger_set(markets_[o.market], o).insert({o.trigger_price, o.priority, h});
    } else {
      markets_[o.market].book.add(h);
    }
    orders_index_.put(o.id.value(), h, pool_);
    link_account_order(a, h);
  }
  for (const auto& c : s.client_ids) client_ids_.put(ClientKey{account_index(c.user), c.client_order_id}, c.order);
  for (const auto& [ai, deadline] : s.cancel_after) {
    if (ai >= accounts_.size() || deadline <= 0) continue;  // (the codec checked both)
    accounts_[ai].cancel_after_ms = deadline;
    cancel_after_.insert({deadline, ai});
  }
  for (const auto& [id, w] : s.withdrawals) {
    if (w.account >= accounts_.size()) continue;  // (the codec checked it)
    withdrawals_[id] = w;
    accounts_[w.account].withdrawing += w.amount;
    ++accounts_[w.account].withdrawals;
    if (w.status == WithdrawalStatus::pending) pending_withdrawals_.insert({w.seq, id});
  }
  for (const auto& t : s.withdrawn_today) {
    if (t.account < accounts_.size()) withdrawn_today_[t.account] = {t.day, t.amount};
  }
  seq_ = s.seq;
  net_deposits_ = s.net_deposits;
  vaults_ = s.vaults;
  vault_index_.clear();
  for (std::uint32_t i = 0; i < vaults_.size(); ++i) vault_index_[vaults_[i].id] = i;
  flush_dirty();
}

template <class Book>
std::string BasicEngine<Book>::check_invariants(bool check_values) const {
  std::vector<Qty> net(markets_.size(), 0), longs(markets_.size(), 0);
  i128 collateral = 0, cost = 0, isolated = 0, withdrawing = 0;
  std::size_t resting = 0;
  for (std::size_t ai = 0; ai < accounts_.size(); ++ai) {
    const Account& a = accounts_[ai];
    collateral += a.collateral;
    Usdm margin = 0;
    std::uint32_t count = 0;
    for (Handle h = a.orders_head; h != kNil; h = pool_[h].acct_next) {
      margin += pool_[h].margin;
      ++count;
      if (pool_[h].account != ai) return "order linked to the wrong account";
    }
    if (margin != a.order_margin) return "order margin out of sync for account " + std::to_string(ai);
    if (count != a.open_orders) return "open order count out of sync";
    if ((a.cancel_after_ms != 0) != cancel_after_.contains({a.cancel_after_ms, a.index}))
      return "dead man's switch index out of sync";
    withdrawing += a.withdrawing;
    resting += count;
    for (std::size_t m = 0; m < markets_.size(); ++m) {
      const Position& p = a.positions[m];
      net[m] += p.size;
      longs[m] += std::max<Qty>(p.size, 0);
      cost += p.cost;
      isolated += p.margin;
      if ((p.size == 0) != (p.cost == 0) && p.size == 0) return "cost left on a closed position";
      if (p.margin != 0 && (p.size == 0 || !p.isolated)) return "margin left outside an open isolated position";
      if (check_values && ai != 0 && p.isolated && p.size != 0 && isolated_value(a, static_cast<std::uint32_t>(m)) < 0) {
        return "isolated position of account " + std::to_string(ai) + " below zero";
      }
    }
    // The insurance fund never goes below zero (a shortfall beyond it is auto-deleveraged, and
    // what no counterparty can take is the protocol's loss); the fee account, the treasury that
    // takes that loss, is the one account allowed below zero.
    if (check_values && ai != 0 && view_of(a).account_value < 0) {
      return ai == insurance_ ? "the insurance fund below zero" : "account " + std::to_string(ai) + " below zero";
    }
  }
  for (std::size_t m = 0; m < markets_.size(); ++m) {
    if (net[m] != 0) return "positions of market " + std::to_string(m) + " sum to " + std::to_string(net[m]);
    if (longs[m] != markets_[m].open_interest)
      return "open interest of market " + std::to_string(m) + " is off";
  }
  {
    std::map<std::uint32_t, std::pair<Usdm, std::uint32_t>> in_flight;
    std::size_t pending = 0;
    for (const auto& [id, w] : withdrawals_) {
      if (w.amount <= 0 || w.account >= accounts_.size()) return "withdrawal out of range";
      in_flight[w.account].first += w.amount;
      ++in_flight[w.account].second;
      if (w.status == WithdrawalStatus::pending) {
        ++pending;
        if (!pending_withdrawals_.contains({w.seq, id})) return "pending withdrawals out of sync";
      }
    }
    if (pending != pending_withdrawals_.size()) return "pending withdrawals out of sync";
    for (std::size_t ai = 0; ai < accounts_.size(); ++ai) {
      auto f = in_flight.find(static_cast<std::uint32_t>(ai));
      const auto want = f == in_flight.end() ? std::pair<Usdm, std::uint32_t>{0, 0} : f->second;
      if (accounts_[ai].withdrawing != want.first || accounts_[ai].withdrawals != want.second) {
        return "withdrawals in flight out of sync";
      }
    }
  }
  if (collateral + isolated + withdrawing - cost != net_deposits_) {
    return "USDM not conserved: collateral + isolated margin + withdrawals in flight - cost = " +
           std::to_string(static_cast<long long>(collateral + isolated + withdrawing - cost)) +
           ", net deposits = " + std::to_string(net_deposits_);
  }
  std::size_t in_books = 0;
  for (const auto& m : markets_) {
    in_books += m.book.order_count() + m.up_triggers.size() + m.down_triggers.size() + m.last_up_triggers.size() +
                m.last_down_triggers.size();
    auto bid = m.book.best(Side::buy);
    auto ask = m.book.best(Side::sell);
    if (bid && ask && *bid >= *ask) return "crossed book";
    if (m.order_gate != (m.status == MarketStatus::active ? m.mark : 0)) return "a market's order gate out of sync";
  }
  if (in_books != resting || orders_index_.size() != resting) return "order index out of sync";
  for (const auto& [deadline, ai] : cancel_after_) {
    if (ai >= accounts_.size() || accounts_[ai].cancel_after_ms != deadline) return "dead man's switch index out of sync";
  }
  for (const auto& [id, partner] : oco_) {
    auto back = oco_.find(partner.value());
    const Handle* h = orders_index_.find(id, pool_);
    if (back == oco_.end() || back->second.value() != id || h == nullptr || !(pool_[*h].links & kLinkOco)) {
      return "take-profit / stop-loss partners out of sync";
    }
  }
  for (const Vault& v : vaults_) {
    i128 shares = 0;
    for (const auto& [ai, h] : v.holders) {
      if (h.shares < 0) return "negative vault holding";
      Usdm in_lots = 0;
      for (const auto& lot : h.lots) in_lots += lot.shares;
      if (in_lots != h.shares) return "vault lots out of sync";
      shares += h.shares;
    }
    if (shares != v.total_shares) return "vault shares do not sum to the total";
  }
  return {};
}

}  // namespace hydrox::engine

#include "risk_engine.ipp"
#include "vault_engine.ipp"

namespace hydrox::engine {

template class BasicEngine<FastBook>;
template class BasicEngine<ReferenceBook>;

}  // namespace hydrox::engine
