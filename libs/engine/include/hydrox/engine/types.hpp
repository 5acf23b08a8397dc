#pragma once
// The engine's vocabulary: markets, commands in, events out. Plain data; no I/O.
// Units (perp-rules.md): prices are integers of the market's tick, sizes integers of its lot,
// USDM integers of 1e-6.
#include <array>
#include <cstdint>
#include <cstring>
#include <string_view>
#include <utility>
#include <variant>

#include "hydrox/core/ids.hpp"

namespace hydrox::engine {

using Price = std::int64_t;  // ticks
using Qty = std::int64_t;    // lots
using Usdm = std::int64_t;   // 1e-6 USDM
using Seq = std::uint64_t;

enum class Side : std::uint8_t { buy, sell };
inline constexpr Side opposite(Side s) { return s == Side::buy ? Side::sell : Side::buy; }
inline constexpr int sign(Side s) { return s == Side::buy ? 1 : -1; }

// Stop and take-profit orders are held (untriggered) until the mark crosses trigger_price, then
// enter as a limit (…_limit) or market (…_market) order: a stop buys when the mark rises to the
// trigger and sells when it falls to it; a take-profit the other way round.
enum class OrderType : std::uint8_t { limit, market, stop_limit, stop_market, take_profit_limit, take_profit_market };
inline constexpr bool is_trigger(OrderType t) { return t >= OrderType::stop_limit; }
inline constexpr bool is_limit_like(OrderType t) {
  return t == OrderType::limit || t == OrderType::stop_limit || t == OrderType::take_profit_limit;
}
enum class TimeInForce : std::uint8_t { gtc, ioc, fok, post_only };
// How a fill came about: a normal trade, or a stage of liquidation (perp-rules "Liquidation").
enum class Liquidation : std::uint8_t { none, book, backstop, adl };
std::string_view liquidation_code(Liquidation l);  // "BOOK", "BACKSTOP", "ADL"

// Margin mode of an account's position in one market (perp-rules "Margin"): cross positions share
// the account's collateral; an isolated position has its own margin, moved out of the collateral
// when it opens or grows and back as it shrinks, and only that margin is at risk.
enum class MarginMode : std::uint8_t { unchanged, cross, isolated };

// What a held trigger order watches: the mark price (the default) or the last trade's price.
enum class TriggerBy : std::uint8_t { mark, last };

enum class OrderStatus : std::uint8_t { open, partially_filled, filled, cancelled, rejected, untriggered, triggered };

// Stable reason codes: the public API shows them (422 for risk, 400/404 for others).
enum class Reject : std::uint8_t {
  none,
  unknown_market,
  unknown_account,
  bad_price_tick,    // price not positive / not representable
  bad_quantity_lot,  // quantity not positive
  below_min_notional,
  price_out_of_band,  // a limit price too far from the mark
  no_mark_price,
  insufficient_margin,
  post_only_would_cross,
  reduce_only_would_increase,
  fok_not_fillable,
  duplicate_client_order_id,
  bad_leverage,
  unknown_order,
  insufficient_balance,
  bad_amount,
  too_many_open_orders,
  no_liquidity,               // a market order found nothing to match
  bad_trigger_price,          // a trigger order without a positive trigger price
  would_trigger_immediately,  // the mark is already past the trigger
  funding_already_settled,    // a funding interval at or before the last settled one
  unknown_vault,
  vault_exists,
  below_min_deposit,
  over_capacity,
  vault_locked,        // the shares asked for are still in their lockup
  leader_minimum,      // the leader must keep >= 5 % of the shares while others hold any
  vault_insolvent,     // the vault's value is not positive: no deposits
  forbidden,           // not the vault's leader
  margin_mode_locked,  // a margin mode change while the market has a position or open orders
  // Per-market limits (MarketSpec) and the engine's bounds on amounts: every money product the
  // engine computes stays far inside 64 bits, so no input can reach an overflow.
  order_size_too_large,         // qty above max_order_qty (max_market_order_qty for market orders)
  order_notional_too_large,     // price x qty above max_order_notional
  position_notional_too_large,  // the position the order could build above max_position_notional
  amount_too_large,             // an amount, price or share count beyond the engine's bounds
  // Amending an order (AmendOrder).
  nothing_to_amend,     // the new price and size are the order's own
  amend_below_filled,   // the new size is not above what has already filled
  order_not_amendable,  // a held trigger order (amend it by cancelling and placing again)
  bad_timeout,          // a cancel-all-after timeout outside 0 or 1 s .. 1 day
  no_open_position,       // AdjustMargin: the account has no position in the market
  position_not_isolated,  // AdjustMargin: the position is cross (its margin is the account's)
  // Withdrawals (RequestWithdrawal, UpdateWithdrawal).
  withdrawal_limit,       // over the account's daily withdrawal limit
  unknown_withdrawal,     // no such withdrawal in flight (or another user's)
  withdrawal_state,       // the withdrawal's status does not allow the change asked for
  too_many_withdrawals,   // the account already has kMaxWithdrawalsInFlight in flight
  // The market lifecycle (SetMarketStatus, SetMarketParams).
  market_halted,          // the market is CANCEL_ONLY: only cancels and reduce-only orders
  market_delisted,        // the market is settled and closed for good
  market_param_unsafe,    // a leverage cut that would leave open positions below maintenance
};
std::string_view reject_code(Reject r);  // UPPER_SNAKE, e.g. "INSUFFICIENT_MARGIN"

enum class CancelReason : std::uint8_t {
  user,
  self_trade,     // the resting order met an order of the same account (STP)
  ioc_remainder,  // IOC/FOK/market remainder
  reduce_only,    // a reduce-only order that would no longer reduce
  cancel_all,
  liquidation,          // the account was liquidated: its orders go first
  insufficient_margin,  // a resting order met a price so far from the mark that filling it would
                        // take its account below maintenance: it is cancelled instead
  position_limit,       // filling it would take its account's position above max_position_notional
  trigger_rejected,     // a stop / take-profit refused when it fired (the OrderRejected event says
                        // why)
  cancel_all_after,     // the account's dead man's switch (SetCancelAfter) ran out
  one_cancels_other,    // its take-profit / stop-loss partner fired
  position_closed,      // a position's take-profit / stop-loss: the position closed or flipped
  market_delisted,      // its market was delisted (SetMarketStatus)
  market_halted,        // its market was halted: an order that could open a position (reduce-only ones stay)
  leverage_cut,         // its market's maximum leverage fell below the order's leverage (SetMarketParams)
};
std::string_view cancel_reason_code(CancelReason r);

enum class BalanceReason : std::uint8_t {
  deposit,
  withdrawal,
  trading_fee,     // paid by a trader (negative)
  fee_income,      // received by the fee account (positive)
  realized_pnl,
  transfer,
  funding,             // hourly funding (see FundingPaid)
  funding_remainder,   // the rounding remainder of a funding settlement, to the insurance fund
  liquidation_margin,  // a liquidated account's remaining margin, to the backstop
  insurance_payout,    // the insurance fund covering a liquidated account's shortfall
  vault_deposit,       // a depositor's USDM into a vault's account (see VaultDeposited)
  vault_withdrawal,    // a vault's USDM back to a depositor (see VaultWithdrawn)
  isolated_margin,     // between the collateral and an isolated position's margin (IsolatedMarginChanged)
  withdrawal_returned,  // a withdrawal rejected by the bridge or cancelled by its user: its amount back
  // A liquidated account's shortfall that neither the insurance fund (never below zero) nor
  // auto-deleveraging (every counterparty taken to its own bankruptcy price) could cover: the
  // protocol's loss, from the fee account (the treasury).
  protocol_loss,
  settlement,  // a delisted market's position settled at the final price (its PnL, its isolated margin back)
};
std::string_view balance_reason_code(BalanceReason r);

// A client order id: at most 36 bytes, kept inline (no allocation per order).
struct ClientOrderId {
  std::array<char, 36> data{};
  std::uint8_t len = 0;
  static ClientOrderId from(std::string_view s) {
    ClientOrderId c;
    c.len = static_cast<std::uint8_t>(s.size() < 36 ? s.size() : 36);
    std::memcpy(c.data.data(), s.data(), c.len);
    return c;
  }
  std::string_view view() const { return {data.data(), len}; }
  bool empty() const { return len == 0; }
  friend bool operator==(const ClientOrderId& a, const ClientOrderId& b) {
    return a.view() == b.view();
  }
};

struct MarketSpec {
  std::uint32_t id = 0;             // dense: 0, 1, 2, ...
  // One tick times one lot in 1e-6 USDM, as a fraction: notional = price * qty * num / den.
  std::int64_t notional_num = 1;
  std::int64_t notional_den = 1;
  Usdm min_notional = 0;
  std::int32_t max_leverage = 20;
  std::int32_t maker_fee_ppm = 200;  // 0.02 %
  std::int32_t taker_fee_ppm = 500;  // 0.05 %
  std::int32_t price_band_bps = 2000;  // limit prices within ±20 % of the mark
  std::int32_t default_slippage_bps = 500;  // market orders: 5 % cap against the mark
  // A liquidation closes positions above this notional (at the mark) in 20 % slices.
  Usdm liquidation_slice_notional = 100'000'000'000;  // 100,000 USDM
  // Limits (published in GET /markets, like Binance's LOT_SIZE / MARKET_LOT_SIZE and Hyperliquid's
  // max order value). The defaults are the engine's ceilings; the catalog sets each market's own.
  Qty max_order_qty = 1'000'000'000'000;                // lots, any order
  Qty max_market_order_qty = 1'000'000'000'000;         // lots, market orders (and market triggers)
  Usdm max_order_notional = 1'000'000'000'000'000;      // 1e9 USDM: price x qty of one order
  Usdm max_position_notional = 10'000'000'000'000'000;  // 1e10 USDM: a position at its fill price
};

// The engine's bounds (1e-6 USDM units). With them every product it computes fits 64 bits with
// room to spare: a position is at most 1e16 at its fill price, a market's open interest at most
// 1e17 at the mark (a mark or funding index beyond that is refused), all USDM at most 1e17.
inline constexpr Usdm kMaxMarketNotional = 100'000'000'000'000'000;  // open interest x mark
inline constexpr Usdm kMaxTotalUsdm = 100'000'000'000'000'000;       // Σ net deposits (1e11 USDM)
inline constexpr Usdm kMaxShares = 100'000'000'000'000'000;          // a vault's total shares

// ---- commands -------------------------------------------------------------------------------

struct PlaceOrder {
  UserId user;
  OrderId id;                 // assigned by the caller (deterministic replay)
  std::uint32_t market = 0;
  Side side = Side::buy;
  OrderType type = OrderType::limit;
  TimeInForce tif = TimeInForce::gtc;
  Price price = 0;            // limit price; ignored for market orders
  Qty qty = 0;
  bool reduce_only = false;
  std::int32_t leverage = 0;  // 0: keep the account's leverage for this market
  std::int32_t max_slippage_bps = 0;  // market orders; 0: the market's default
  ClientOrderId client_order_id;
  std::int64_t ts_ms = 0;
  Price trigger_price = 0;    // stop / take-profit types only
  MarginMode margin_mode = MarginMode::unchanged;  // set: the market's mode for this account from now
  TriggerBy trigger_by = TriggerBy::mark;          // trigger types: the price that fires it
};

struct CancelOrder {
  UserId user;
  OrderId id;  // nil: the open order with client_order_id
  std::int64_t ts_ms = 0;
  ClientOrderId client_order_id;
};

// Changes a resting order's limit price and/or size (`qty`: the new total, filled part included;
// 0 keeps it, like price 0). A smaller size at the same price keeps the order's place in its
// queue; any other change takes the order out and enters it again, same id, at the back of its
// new level (it may match at once, as a new order would). Atomic: every check of a new order runs
// on the amended one first (margin with its old reserve released); a refused amend changes
// nothing. Held trigger orders are not amendable.
struct AmendOrder {
  UserId user;
  OrderId id;  // nil: the open order with client_order_id
  std::uint32_t market = 0;  // the order's (price and qty are in its ticks and lots)
  Price price = 0;
  Qty qty = 0;
  std::int64_t ts_ms = 0;
  ClientOrderId client_order_id;
};

// The account's dead man's switch (Binance's countdown cancel-all, Hyperliquid's schedule
// cancel): unless set again before ts_ms + timeout_ms, every open order of the account is
// cancelled (CancelReason::cancel_all_after) by the first CancelExpired at or after that moment.
// timeout_ms 0 turns it off; otherwise 1,000 .. 86,400,000.
struct SetCancelAfter {
  UserId user;
  std::int64_t timeout_ms = 0;
  std::int64_t ts_ms = 0;
};
inline constexpr std::int64_t kMinCancelAfterMs = 1'000;
inline constexpr std::int64_t kMaxCancelAfterMs = 86'400'000;
// Fires every switch whose deadline is at or before ts_ms (the host sends it when one is due).
struct CancelExpired {
  std::int64_t ts_ms = 0;
};

// Take-profit and/or stop-loss on an open position (0: none of that kind): reduce-only trigger
// market orders against it of `qty` (0: the whole position), with the ids given. Both together
// cancel each other when one fires (one_cancels_other); either goes when the position closes or
// flips (position_closed). Refused as a whole when one of them would be (a trigger already
// crossed, a size above the position's, no position).
struct SetPositionTpSl {
  UserId user;
  std::uint32_t market = 0;
  OrderId take_profit_id;
  OrderId stop_loss_id;
  Price take_profit = 0;
  Price stop_loss = 0;
  Qty qty = 0;
  TriggerBy trigger_by = TriggerBy::mark;
  std::int64_t ts_ms = 0;
};

// Adds margin to an open isolated position out of the account's available collateral (delta > 0)
// or takes it back (delta < 0), only down to the position's initial margin at the mark with its
// unrealized loss covered on top (an unrealized profit is not withdrawable); the liquidation
// price moves with it.
struct AdjustMargin {
  UserId user;
  std::uint32_t market = 0;
  Usdm delta = 0;
  std::int64_t ts_ms = 0;
};

struct CancelAll {
  UserId user;
  std::int32_t market = -1;  // -1: every market
  std::int64_t ts_ms = 0;
};

struct Deposit {
  UserId user;
  Usdm amount = 0;
  std::int64_t ts_ms = 0;
};

struct Withdraw {
  UserId user;
  Usdm amount = 0;
  std::int64_t ts_ms = 0;
};

// A user's withdrawal to the chain (api-contract "Withdrawals"): the amount leaves the account's
// collateral at once (checked like Withdraw: the collateral and the free margin must cover it)
// and waits, pending, for the bridge. Until it completes it is still the exchange's money: the
// conserved sum counts it (Σ collateral + Σ isolated margin + Σ pending - Σ cost = net deposits).
// daily_limit > 0 caps what one account requests per UTC day (cancelled and rejected ones give
// their part back).
struct RequestWithdrawal {
  Uuid id;  // assigned by the caller
  UserId user;
  Usdm amount = 0;
  Usdm daily_limit = 0;
  std::int64_t ts_ms = 0;
};
enum class WithdrawalStatus : std::uint8_t { pending, processing, completed, rejected, cancelled };
// Withdrawals one account may have in flight (pending or processing) at once: the bridge's queue
// and the engine's state stay bounded whatever one account asks for.
inline constexpr std::uint32_t kMaxWithdrawalsInFlight = 20;
std::string_view withdrawal_status_code(WithdrawalStatus s);  // "PENDING", ...
// Moves a withdrawal on: pending -> processing (the bridge took it), processing -> completed (on
// chain: the money leaves the exchange), pending or processing -> rejected (the bridge refused:
// the amount back to the account), pending -> cancelled (by its user: the amount back). `user`
// set: only that user's withdrawal (a user's cancel); nil: the operator's.
struct UpdateWithdrawal {
  Uuid id;
  UserId user;
  WithdrawalStatus status = WithdrawalStatus::processing;
  std::int64_t ts_ms = 0;
};

// A market's trading status: ACTIVE; HALTED is cancel-only (new orders refused with
// MARKET_HALTED except reduce-only ones, which close; the mark and funding pause); DELISTED is
// final: every open order cancelled, every position settled at final_price, nothing accepted
// for the market after.
enum class MarketStatus : std::uint8_t { active, halted, delisted };
std::string_view market_status_code(MarketStatus s);  // "ACTIVE", "HALTED", "DELISTED"
struct SetMarketStatus {
  std::uint32_t market = 0;
  MarketStatus status = MarketStatus::active;
  Price final_price = 0;  // delisting: the settlement price (> 0)
  std::int64_t ts_ms = 0;
};
// A market's fees and maximum leverage from now (0 < max_leverage <= 200; fees 0 .. 10,000 ppm).
// A cut of the maximum leverage is refused (MARKET_PARAM_UNSAFE) when an open position's
// account (or isolated position) would be below the maintenance margin it implies.
struct SetMarketParams {
  std::uint32_t market = 0;
  std::int32_t maker_fee_ppm = 0;
  std::int32_t taker_fee_ppm = 0;
  std::int32_t max_leverage = 0;
  std::int64_t ts_ms = 0;
};
inline constexpr std::int32_t kMaxFeePpm = 10'000;
inline constexpr std::int32_t kMaxLeverage = 200;

struct SetMark {
  std::uint32_t market = 0;
  Price mark = 0;
  std::int64_t ts_ms = 0;
};

struct SetLeverage {
  UserId user;
  std::uint32_t market = 0;
  std::int32_t leverage = 1;  // 0: unchanged (with a margin mode)
  std::int64_t ts_ms = 0;
  // Set: the account's margin mode in this market from now (refused while it has a position or
  // open orders there).
  MarginMode margin_mode = MarginMode::unchanged;
};

// Settles one funding interval of one market (perp-rules "Funding"): every open position pays or
// receives |size| * index * rate / 8 (rate: the 8-hour-equivalent F in 1e-9, capped so that one
// interval moves at most 4 %). Applied at most once per interval: a command for an interval at or
// before the last settled one is refused, so a retry or a replay cannot charge twice. rate 0
// records the interval without payments (the first anchor after a fresh start).
struct SettleFunding {
  std::uint32_t market = 0;
  std::int64_t interval_ms = 0;  // end of the interval (its settlement time)
  std::int64_t rate_ppb = 0;     // F, 8-hour equivalent, 1e-9
  Price index = 0;
  std::int64_t ts_ms = 0;
};
inline constexpr std::int64_t kMaxFundingRatePpb = 320'000'000;  // F / 8 <= 4 % per interval

// Vaults (perp-rules "Vaults"): a vault is a trading account run by its leader; depositors hold
// shares of its value at the mark (NAV). Shares are integers of 1e-6 (1 share = 1 USDM at the first
// deposit). All of it lives in the engine so that money and shares move in one step.
struct CreateVault {
  Uuid vault;
  UserId leader;
  UserId account;                // the vault's own trading account (new)
  Usdm initial = 0;              // the leader's first deposit (>= 100 USDM unless protocol)
  std::int64_t lock_ms = 86'400'000;
  std::int32_t performance_fee_ppm = 100'000;  // 10 %
  std::int32_t management_fee_ppm = 0;         // per year
  Usdm min_deposit = 10'000'000;
  Usdm capacity = 10'000'000'000'000;
  bool protocol = false;         // the protocol vault: no minimum leader deposit
  std::int64_t ts_ms = 0;
};
struct VaultDeposit {
  Uuid vault;
  UserId user;
  Usdm amount = 0;
  std::int64_t ts_ms = 0;
};
// Withdraws `amount` USDM of value (before the performance fee); amount >= the holding's value
// withdraws every share.
struct VaultWithdraw {
  Uuid vault;
  UserId user;
  Usdm amount = 0;
  std::int64_t ts_ms = 0;
};
inline constexpr Usdm kMinLeaderDeposit = 100'000'000;  // 100 USDM

// A market's order limits (MarketSpec max_*), journaled like every command: a replay applies
// every order against the limits in force when it came, whatever the catalog says today. Each
// value in 1..the engine's ceiling (the MarketSpec default); else refused (INVALID_AMOUNT).
struct SetMarketLimits {
  std::uint32_t market = 0;
  Qty max_order_qty = 0;
  Qty max_market_order_qty = 0;
  Usdm max_order_notional = 0;
  Usdm max_position_notional = 0;
  std::int64_t ts_ms = 0;
};

using Command =
    std::variant<PlaceOrder, CancelOrder, CancelAll, Deposit, Withdraw, SetMark, SetLeverage,
                 SettleFunding, CreateVault, VaultDeposit, VaultWithdraw, SetMarketLimits,
                 AmendOrder, SetCancelAfter, CancelExpired, AdjustMargin, SetPositionTpSl,
                 RequestWithdrawal, UpdateWithdrawal, SetMarketStatus, SetMarketParams>;

// ---- events ---------------------------------------------------------------------------------

struct OrderAccepted {  // the order passed checks (it may still fill at once)
  OrderId id;
  UserId user;
  std::uint32_t market;
  Side side;
  OrderType type;
  TimeInForce tif;
  bool reduce_only;
  Price price;  // for market orders: the slippage cap used as limit
  Qty qty;
  std::int32_t leverage;
  ClientOrderId client_order_id;
  std::int64_t ts_ms;
  Price trigger_price = 0;
  TriggerBy trigger_by = TriggerBy::mark;
  bool position_tpsl = false;  // a position's take-profit / stop-loss (SetPositionTpSl)
  friend bool operator==(const OrderAccepted&, const OrderAccepted&) = default;
};

struct OrderRejected {
  OrderId id;
  UserId user;
  std::uint32_t market;
  Reject reason;
  OrderId original;  // for duplicate_client_order_id: the order the client id belongs to
  std::int64_t ts_ms;
  friend bool operator==(const OrderRejected&, const OrderRejected&) = default;
};

struct OrderUpdated {  // status or fill progress changed
  OrderId id;
  UserId user;
  std::uint32_t market;
  OrderStatus status;
  Qty filled;
  Qty remaining;  // resting quantity (0 once closed)
  Usdm filled_notional;  // Σ fill notional, for the average price
  CancelReason cancel_reason;  // when status == cancelled
  std::int64_t ts_ms;
  friend bool operator==(const OrderUpdated&, const OrderUpdated&) = default;
};

struct Trade {
  std::uint32_t market;
  Price price;
  Qty qty;
  Side taker_side;
  OrderId maker_order;
  OrderId taker_order;
  UserId maker;
  UserId taker;
  Usdm notional;
  Usdm maker_fee;
  Usdm taker_fee;
  Usdm maker_realized_pnl;
  Usdm taker_realized_pnl;
  std::int64_t ts_ms;
  Liquidation liquidation = Liquidation::none;  // set: the taker is the liquidated account
  friend bool operator==(const Trade&, const Trade&) = default;
};

struct PositionChanged {
  UserId user;
  std::uint32_t market;
  Qty size;        // signed: + long, - short
  Usdm cost;       // signed entry notional of the open size (entry price = cost / size)
  Usdm realized_pnl;
  std::int32_t leverage;
  std::int64_t ts_ms;
  Usdm funding = 0;  // Σ funding paid by this position (negative: received)
  bool isolated = false;
  Usdm margin = 0;   // isolated margin held by the position (0 for cross)
  friend bool operator==(const PositionChanged&, const PositionChanged&) = default;
};

struct BalanceChanged {
  UserId user;
  Usdm delta;
  Usdm balance;  // collateral after the change
  BalanceReason reason;
  std::int64_t ts_ms;
  friend bool operator==(const BalanceChanged&, const BalanceChanged&) = default;
};

struct BookLevelChanged {  // absolute size at a price level (0 removes it)
  std::uint32_t market;
  Side side;
  Price price;
  Qty size;
  friend bool operator==(const BookLevelChanged&, const BookLevelChanged&) = default;
};

struct MarkChanged {
  std::uint32_t market;
  Price mark;
  std::int64_t ts_ms;
  friend bool operator==(const MarkChanged&, const MarkChanged&) = default;
};

struct LeverageChanged {
  UserId user;
  std::uint32_t market;
  std::int32_t leverage;
  friend bool operator==(const LeverageChanged&, const LeverageChanged&) = default;
};

// A resting order amended (AmendOrder): its new limit price, total size and resting remainder;
// kept_priority false: it left its queue and entered again (OrderUpdated events follow if it
// matched at once).
struct OrderAmended {
  OrderId id;
  UserId user;
  std::uint32_t market;
  Price price;
  Qty qty;
  Qty remaining;
  bool kept_priority;
  std::int64_t ts_ms;
  friend bool operator==(const OrderAmended&, const OrderAmended&) = default;
};

// The account's dead man's switch: its deadline (0: off), set by SetCancelAfter or cleared when it
// fired (fired: its orders were just cancelled).
struct CancelAfterChanged {
  UserId user;
  std::int64_t deadline_ms;
  bool fired;
  std::int64_t ts_ms;
  friend bool operator==(const CancelAfterChanged&, const CancelAfterChanged&) = default;
};

// A withdrawal's status changed (after its BalanceChanged when money moved).
struct WithdrawalChanged {
  Uuid id;
  UserId user;
  Usdm amount;
  WithdrawalStatus status;
  Usdm pending;  // the account's withdrawals in flight after (pending + processing)
  std::int64_t ts_ms;
  friend bool operator==(const WithdrawalChanged&, const WithdrawalChanged&) = default;
};

// A market's status or parameters changed (SetMarketStatus, SetMarketParams).
struct MarketChanged {
  std::uint32_t market;
  MarketStatus status;
  std::int32_t maker_fee_ppm;
  std::int32_t taker_fee_ppm;
  std::int32_t max_leverage;
  Price final_price;  // delisted: the settlement price
  std::int64_t ts_ms;
  friend bool operator==(const MarketChanged&, const MarketChanged&) = default;
};

struct CommandRejected {  // a non-order command refused (withdrawal, leverage, cancel, ...)
  UserId user;
  Reject reason;
  std::int64_t ts_ms;
  friend bool operator==(const CommandRejected&, const CommandRejected&) = default;
};

struct FundingPaid {  // one position's payment for one interval
  UserId user;
  std::uint32_t market;
  Usdm amount;  // paid (positive) or received (negative)
  Usdm balance;  // collateral after it
  std::int64_t interval_ms;
  Qty size = 0;  // the position's (signed) size at the settlement
  friend bool operator==(const FundingPaid&, const FundingPaid&) = default;
};

struct FundingSettled {  // one market's interval, after its payments
  std::uint32_t market;
  std::int64_t interval_ms;
  std::int64_t rate_ppb;  // F as applied (after the cap)
  Price index;
  Price mark;
  Usdm paid;          // Σ paid by payers (rounded up each)
  Usdm received;      // Σ received (rounded down each)
  Usdm to_insurance;  // paid - received
  std::uint32_t positions;
  std::int64_t ts_ms;
  friend bool operator==(const FundingSettled&, const FundingSettled&) = default;
};

struct AccountLiquidated {  // emitted after the account's liquidation steps
  UserId user;
  Usdm account_value;       // at the mark, when it was found
  Usdm maintenance_margin;  // at the mark, when it was found
  Liquidation stage;        // the last stage used: book, backstop or adl
  Usdm insurance_paid;      // shortfall covered by the insurance fund
  std::int64_t ts_ms;
  std::int32_t market = -1;  // an isolated position's market (only it was liquidated); -1: cross
  friend bool operator==(const AccountLiquidated&, const AccountLiquidated&) = default;
};

// An isolated position's margin moved: delta > 0 came out of the account's collateral, delta < 0
// went back to it (so collateral changes by -delta). Funding and liquidation of an isolated
// position are expressed as their collateral event (FundingPaid, BalanceChanged) followed by this.
struct IsolatedMarginChanged {
  UserId user;
  std::uint32_t market;
  Usdm delta;       // change of the position's margin
  Usdm margin;      // the position's margin after
  Usdm collateral;  // the account's collateral after
  std::int64_t ts_ms;
  friend bool operator==(const IsolatedMarginChanged&, const IsolatedMarginChanged&) = default;
};

struct VaultCreated {
  Uuid vault;
  UserId leader;
  UserId account;
  std::int64_t ts_ms;
  friend bool operator==(const VaultCreated&, const VaultCreated&) = default;
};

// A vault's shares moved. kind: deposit, withdrawal or fee (management fee minted to the leader).
enum class VaultMove : std::uint8_t { deposit, withdrawal, management_fee };
struct VaultChanged {
  Uuid vault;
  UserId user;
  VaultMove kind;
  Usdm amount;        // USDM in (deposit) or out gross of the fee (withdrawal)
  Usdm fee;           // performance fee (withdrawal), in USDM
  Usdm paid;          // USDM paid to the user (withdrawal: amount - fee)
  Usdm shares;        // shares minted (deposit, fee) or taken from the user (withdrawal)
  Usdm fee_shares;    // shares the leader received as the performance fee
  Usdm user_shares;   // the user's shares after
  Usdm total_shares;  // after
  Usdm nav;           // the vault's value after (1e-6 USDM)
  std::int64_t unlock_ms;  // deposit: when these shares unlock
  std::int64_t ts_ms;
  friend bool operator==(const VaultChanged&, const VaultChanged&) = default;
};

using EventBody = std::variant<OrderAccepted, OrderRejected, OrderUpdated, Trade, PositionChanged,
                               BalanceChanged, BookLevelChanged, MarkChanged, LeverageChanged,
                               CommandRejected, FundingPaid, FundingSettled, AccountLiquidated,
                               VaultCreated, VaultChanged, IsolatedMarginChanged, OrderAmended,
                               CancelAfterChanged, WithdrawalChanged, MarketChanged>;

struct Event {
  Event() = default;
  template <class T>
  Event(Seq s, T&& b) : seq(s), body(std::in_place_type<std::decay_t<T>>, std::forward<T>(b)) {}
  // Built in place from the alternative's fields (no temporary to copy).
  template <class T, class... A>
  Event(Seq s, std::in_place_type_t<T> t, A&&... a) : seq(s), body(t, std::forward<A>(a)...) {}
  Seq seq = 0;
  EventBody body;
  friend bool operator==(const Event&, const Event&) = default;
};

}  // namespace hydrox::engine
