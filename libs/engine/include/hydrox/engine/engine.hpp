#pragma once
#include <array>
// The matching and risk engine: the single writer of all money. apply(command) appends events;
// no I/O, no threads, no clocks (time comes in the commands), no floating point. The same
// command sequence always yields the same events and the same state_hash().
//
// Money model (perp-rules.md): each position keeps its signed size and its signed cost (the entry
// notional of the open size); entry price = cost / size. A fill at notional n moves
// -sign(side) * n into (collateral - cost) of each side, so Σ collateral - Σ cost is conserved
// and equals net deposits exactly: that is the "Σ USDM = deposits - withdrawals" invariant with
// unrealized PnL at any mark included (Σ size = 0 per market makes Σ uPnL = -Σ cost). An isolated
// position's margin is money moved out of the collateral, so the conserved sum is
// Σ collateral + Σ isolated margin - Σ cost.
#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include "hydrox/engine/book.hpp"
#include "hydrox/engine/flat_map.hpp"
#include "hydrox/engine/money.hpp"
#include "hydrox/engine/order_index.hpp"
#include "hydrox/engine/order_pool.hpp"
#include "hydrox/engine/types.hpp"

namespace hydrox::engine {

struct Position {
  Qty size = 0;
  Usdm cost = 0;  // signed like size
  Usdm realized_pnl = 0;
  std::int32_t leverage = 0;  // 0: the engine default for the market
  Usdm funding = 0;           // Σ funding paid while open (negative: received); 0 again once closed
  bool isolated = false;      // the account's margin mode in this market (kept while flat, like leverage)
  bool has_tpsl = false;      // derived: it has take-profit / stop-loss orders linked to it
  Usdm margin = 0;            // isolated: the margin the position holds; 0 while flat and for cross
  // Derived (rebuilt on load): the position's key in its market's liquidation index.
  bool indexed = false;
  Price liq_key = 0;
};

struct Account {
  UserId user;
  std::uint32_t index = 0;
  bool dirty = false;              // changed since its liquidation keys were computed
  std::uint32_t open_positions = 0;
  Usdm collateral = 0;
  Usdm order_margin = 0;  // Σ margin reserved by this account's resting orders
  Handle orders_head = kNil;
  std::uint32_t open_orders = 0;
  std::vector<Position> positions;  // one per market
  std::int64_t cancel_after_ms = 0;  // the dead man's switch's deadline (0: off)
  Usdm withdrawing = 0;              // derived: Σ its withdrawals in flight (RequestWithdrawal)
  std::uint32_t withdrawals = 0;     // derived: how many
};

// A withdrawal in flight (pending or processing): its amount has left the account and is still
// the exchange's (counted in the conserved sum) until it completes.
struct Withdrawal {
  std::uint32_t account = 0;
  Usdm amount = 0;
  WithdrawalStatus status = WithdrawalStatus::pending;
  std::int64_t day = 0;  // the UTC day it was requested (ts_ms / 86,400,000)
  Seq seq = 0;           // its WithdrawalChanged event at the request (the queue's order)
  friend bool operator==(const Withdrawal&, const Withdrawal&) = default;
};

// What an account looks like at the current marks.
// The cross part (collateral, cross positions, every open order's margin) decides orders,
// withdrawals and cross liquidation; isolated positions count only in their own fields and equity.
struct AccountView {
  Usdm collateral = 0;
  Usdm unrealized_pnl = 0;   // cross positions
  Usdm account_value = 0;    // collateral + cross uPnL
  Usdm position_margin = 0;  // Σ IM of cross positions at mark
  Usdm order_margin = 0;
  Usdm maintenance_margin = 0;  // cross positions
  Usdm available = 0;        // account_value - position_margin - order_margin (may be < 0)
  Usdm isolated_margin = 0;          // Σ margin held by isolated positions
  Usdm isolated_unrealized_pnl = 0;  // Σ uPnL of isolated positions
  Usdm equity = 0;           // account_value + isolated_margin + isolated_unrealized_pnl
};

// A vault (perp-rules "Vaults"): shares of its account's value. Holders are keyed by account
// index (stable across export/load), so iteration order is deterministic.
struct VaultLot {
  Usdm shares = 0;
  std::int64_t unlock_ms = 0;
  friend bool operator==(const VaultLot&, const VaultLot&) = default;
};
struct VaultHolding {
  Usdm shares = 0;
  Usdm cost = 0;  // USDM paid for the shares held (reduced pro rata by withdrawals)
  std::vector<VaultLot> lots;  // oldest first
  friend bool operator==(const VaultHolding&, const VaultHolding&) = default;
};
struct Vault {
  Uuid id;
  std::uint32_t account = 0;
  std::uint32_t leader = 0;
  Usdm total_shares = 0;
  std::int64_t lock_ms = 0;
  std::int32_t performance_fee_ppm = 0;
  std::int32_t management_fee_ppm = 0;
  Usdm min_deposit = 0;
  Usdm capacity = 0;
  bool protocol = false;
  std::int64_t last_fee_ms = 0;
  std::map<std::uint32_t, VaultHolding> holders;
  friend bool operator==(const Vault&, const Vault&) = default;
};

struct Snapshot {
  Seq seq = 0;
  std::vector<Price> marks;
  struct AccountState {
    UserId user;
    Usdm collateral;
    std::vector<Position> positions;
  };
  std::vector<AccountState> accounts;  // in account-index order
  std::vector<Order> orders;           // resting, in time priority
  struct ClientId {
    UserId user;
    ClientOrderId client_order_id;
    OrderId order;
  };
  std::vector<ClientId> client_ids;
  Usdm net_deposits = 0;
  std::vector<std::int64_t> last_funding_ms;  // per market
  std::vector<Price> last_trade;              // per market
  std::vector<Vault> vaults;
  // Per market: max_order_qty, max_market_order_qty, max_order_notional, max_position_notional
  // (empty in snapshots older than the limits: the engine's ceilings apply).
  std::vector<std::array<std::int64_t, 4>> limits;
  // Dead man's switches: (account index, deadline), by account (empty before format 3).
  std::vector<std::pair<std::uint32_t, std::int64_t>> cancel_after;
  // Orders with a trigger_by or links other than the defaults (empty before format 4).
  struct OrderLinks {
    OrderId order;
    TriggerBy trigger_by = TriggerBy::mark;
    std::uint8_t links = 0;
    OrderId partner;  // kLinkOco: the order it cancels when it fires
  };
  std::vector<OrderLinks> order_links;
  // Withdrawals in flight by id, and each account's (UTC day, amount requested that day) (empty
  // before format 5).
  std::vector<std::pair<Uuid, Withdrawal>> withdrawals;
  struct WithdrawnToday {
    std::uint32_t account = 0;
    std::int64_t day = 0;
    Usdm amount = 0;
  };
  std::vector<WithdrawnToday> withdrawn_today;
  // Per market: status, final price, maker fee, taker fee, max leverage, resumed at (empty
  // before format 5: active, and the configuration's).
  std::vector<std::array<std::int64_t, 6>> market_state;
};

struct EngineConfig {
  std::vector<MarketSpec> markets;
  UserId fee_account{Uuid{0x0000000000007000ull, 0x8000000000000001ull}};
  UserId insurance_account{Uuid{0x0000000000007000ull, 0x8000000000000002ull}};
  UserId backstop_account{Uuid{0x0000000000007000ull, 0x8000000000000003ull}};  // the protocol vault
  std::size_t order_reserve = 1 << 16;
  std::size_t account_reserve = 1 << 12;
  std::uint32_t max_open_orders_per_account = 1000;
  std::int32_t default_leverage = 10;  // capped by each market's max_leverage
};

struct UuidHash {  // splitmix64 finalizer over both halves
  std::size_t operator()(const Uuid& u) const noexcept {
    std::uint64_t z = u.hi ^ (u.lo + 0x9E3779B97F4A7C15ull + (u.hi << 6) + (u.hi >> 2));
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return static_cast<std::size_t>(z ^ (z >> 31));
  }
};
struct ClientKey {
  std::uint32_t account = 0;
  ClientOrderId id;
  friend bool operator==(const ClientKey& a, const ClientKey& b) {
    return a.account == b.account && a.id == b.id;
  }
};
struct ClientKeyHash {
  std::size_t operator()(const ClientKey& k) const noexcept {
    std::uint64_t h = 1469598103934665603ull ^ k.account;
    for (char c : k.id.view()) h = (h ^ static_cast<unsigned char>(c)) * 1099511628211ull;
    return static_cast<std::size_t>(h ^ (h >> 29));
  }
};

template <class Book>
class BasicEngine {
 public:
  explicit BasicEngine(EngineConfig config);

  void apply(const Command& command, std::vector<Event>& out);
  // Starts loading what a command about to be applied will touch first (its order's slot in the
  // order index): a host with a queue of commands calls it a couple of commands ahead, so that the
  // index's cache miss overlaps the work before it. No effect on state.
  void prefetch(const Command& command) const {
    if (const auto* p = std::get_if<PlaceOrder>(&command)) {
      orders_index_.prefetch(p->id.value());
      if (p->market < markets_.size()) {  // and the resting order it would meet first
        const Book& book = markets_[p->market].book;
        const Side opp = opposite(p->side);
        const auto best = book.best(opp);
        if (best && (p->type != OrderType::limit || (p->side == Side::buy ? *best <= p->price : *best >= p->price))) {
          if (const Handle h = book.front(opp, *best); h != kNil) {
            prefetch_line(&pool_[h]);
            prefetch_line(&pool_[h].next);
          }
        }
      }
    } else if (const auto* c = std::get_if<CancelOrder>(&command)) {
      orders_index_.prefetch(c->id.value());
    }
  }

  // ---- queries (const; the host calls them on the engine thread) ----
  Seq last_seq() const { return seq_; }
  std::size_t market_count() const { return markets_.size(); }
  const MarketSpec& market(std::uint32_t m) const { return markets_[m].spec; }
  Price mark(std::uint32_t m) const { return markets_[m].mark; }
  const MarketSpec& spec(std::uint32_t m) const { return markets_[m].spec; }
  Price last_trade(std::uint32_t m) const { return markets_[m].last_trade; }
  std::int64_t last_funding_ms(std::uint32_t m) const { return markets_[m].last_funding_ms; }
  MarketStatus market_status(std::uint32_t m) const { return markets_[m].status; }
  Price final_price(std::uint32_t m) const { return markets_[m].final_price; }
  std::int64_t resumed_ms(std::uint32_t m) const { return markets_[m].resumed_ms; }
  // Average fill price (ticks, rounded toward the book) of a taker order of `notional` USDM
  // against `side` of the book; nullopt when the book cannot fill it.
  std::optional<Price> impact_price(std::uint32_t m, Side book_side, Usdm notional) const;
  Usdm collateral_of(const UserId& user) const;
  // Vaults.
  const Vault* vault(const Uuid& id) const;
  const std::vector<Vault>& vaults() const { return vaults_; }
  Usdm vault_nav(const Vault& v) const;  // the vault account's value at the marks
  Usdm share_value(const Vault& v, Usdm shares) const;  // floor(shares × NAV / total), 0 when NAV ≤ 0
  const UserId& user_of(std::uint32_t account_index) const { return accounts_[account_index].user; }
  std::size_t liquidation_index_size(std::uint32_t m) const {
    return markets_[m].long_keys.size() + markets_[m].short_keys.size();
  }
  const Account* account(const UserId& user) const;
  std::optional<AccountView> view(const UserId& user) const;
  const Order* order(const OrderId& id) const;
  // The earliest dead man's switch deadline (0: none is set): the host sends CancelExpired then.
  std::int64_t next_cancel_after() const { return cancel_after_.empty() ? 0 : cancel_after_.begin()->first; }
  std::optional<OrderId> client_order(const UserId& user, const ClientOrderId& id) const;
  // Withdrawals in flight, by id; the oldest pending one (the bridge's next), if any.
  const std::map<Uuid, Withdrawal>& withdrawals() const { return withdrawals_; }
  std::optional<Uuid> next_pending_withdrawal() const {
    if (pending_withdrawals_.empty()) return std::nullopt;
    return pending_withdrawals_.begin()->second;
  }
  std::optional<Price> best(std::uint32_t m, Side side) const;
  // Up to `levels` price levels from the best outward.
  std::vector<std::pair<Price, Qty>> depth(std::uint32_t m, Side side, std::size_t levels) const;
  std::size_t resting_orders() const { return pool_.live(); }
  std::int32_t leverage_of(const Account& a, std::uint32_t m) const {
    return leverage_for(a.positions[m], markets_[m].spec);
  }
  // A position's leverage: its own, else the engine default capped by the market's maximum.
  std::int32_t leverage_for(const Position& p, const MarketSpec& spec) const {
    // (Capped by the market's maximum, which an operator may lower: SetMarketParams.)
    return std::min(p.leverage > 0 ? p.leverage : config_.default_leverage, spec.max_leverage);
  }
  // An isolated position's margin + uPnL at the mark (its own account value).
  Usdm isolated_value(const Account& a, std::uint32_t m) const;
  // The mark of market `m` at which this cross position's account is liquidated, every other mark
  // as it is now: for a long the lowest price at which it is not (one tick lower it is), for a
  // short the highest (one tick higher it is); exact in the engine's own integer arithmetic, so
  // it does not depend on the current mark. 0 when a long is never liquidated (or a short always).
  Price cross_liquidation_price(const Account& a, std::uint32_t m) const;
  std::size_t memory_bytes() const;

  // Deterministic digest of everything that affects future behaviour.
  std::uint64_t state_hash() const;
  Snapshot export_state() const;
  void load(const Snapshot& snapshot);  // replaces all state

  // Σ size per market = 0; Σ collateral + Σ isolated margin - Σ cost = net deposits; every user
  // account's cross value and every isolated position's value ≥ 0
  // (when check_values); book and account bookkeeping consistent. Empty string when all hold.
  std::string check_invariants(bool check_values = true) const;
  Usdm net_deposits() const { return net_deposits_; }

  // Money helpers (exposed for tests and the host's views): notional rounds down, margins and
  // fees up; maintenance margin rate = 1 / (2 × max leverage).
  [[gnu::always_inline]] Usdm notional(std::uint32_t m, Price price, Qty qty) const {
    return money::notional(markets_[m].spec, price, qty);
  }
  [[gnu::always_inline]] Usdm initial_margin(std::uint32_t m, Price price, Qty qty,
                                             std::int32_t leverage) const {
    return money::initial_margin(markets_[m].spec, price, qty, leverage);
  }
  [[gnu::always_inline]] Usdm maintenance_margin(std::uint32_t m, Price price, Qty qty) const {
    return money::maintenance_margin(markets_[m].spec, price, qty);
  }
  [[gnu::always_inline]] Usdm fee(Usdm notional, std::int32_t ppm) const {
    return money::fee(notional, ppm);
  }

 private:
  struct MarketState {
    MarketSpec spec;
    Book book;
    Price mark = 0;
    Qty open_interest =
        0;  // Σ long sizes (= Σ short sizes): bounds a mark (set_mark); rebuilt on load
    Price band_mark = 0, band = 0;  // a cache: the limit-price band (± band) around band_mark
    Price last_trade = 0;
    std::int64_t last_funding_ms = 0;
    MarketStatus status = MarketStatus::active;
    Price final_price = 0;  // delisted: the settlement price
    std::int64_t resumed_ms = 0;  // when it last became ACTIVE again after a halt (funding restarts there)
    // The mark while the market is ACTIVE, else 0: one test on an order's path covers both "no
    // mark yet" and "not taking orders" (the latter then told apart off the hot path).
    Price order_gate = 0;
    void regate() { order_gate = status == MarketStatus::active ? mark : 0; }
    // The liquidation index: every open position keyed by the mark at which its account would
    // reach maintenance (other marks fixed), rounded to be early, never late. A mark move checks
    // only the keys it crossed.
    std::set<std::pair<Price, std::uint32_t>> long_keys, short_keys;
    // Held trigger orders: fire when the mark rises to (up) or falls to (down) the price; the
    // last_ sets when the last trade's price does (TriggerBy::last).
    std::set<std::tuple<Price, Seq, Handle>> up_triggers, down_triggers;
    std::set<std::tuple<Price, Seq, Handle>> last_up_triggers, last_down_triggers;
    bool has_last_triggers() const { return !last_up_triggers.empty() || !last_down_triggers.empty(); }
  };
  using TriggerSet = std::set<std::tuple<Price, Seq, Handle>>;
  static TriggerSet& trigger_set(MarketState& ms, const Order& o) {
    const bool up = fires_up(o);
    if (o.trigger_by == TriggerBy::last) return up ? ms.last_up_triggers : ms.last_down_triggers;
    return up ? ms.up_triggers : ms.down_triggers;
  }

  // Emission helpers.
  template <class T>
  void emit(std::vector<Event>& out, T&& body) {
    out.emplace_back(++seq_, std::forward<T>(body));
  }
  // The same, the event built in place from its fields: events are ~160 bytes, and the hot ones
  // (every order, fill and level change) are not worth a temporary and a copy.
  template <class T, class... A>
  void emit_as(std::vector<Event>& out, A&&... fields) {
    out.emplace_back(++seq_, std::in_place_type<T>, std::forward<A>(fields)...);
  }

  std::uint32_t account_index(const UserId& user) {  // creates on first use
    if (const auto* i = accounts_index_.find(user.value())) [[likely]]
      return *i;
    return add_account(user);
  }
  std::uint32_t add_account(const UserId& user);
  const std::uint32_t* find_account(const UserId& user) const { return accounts_index_.find(user.value()); }

  void place(const PlaceOrder& c, std::vector<Event>& out);
  void place_trigger(const PlaceOrder& c, std::vector<Event>& out);
  void fire_triggers(std::uint32_t m, std::int64_t ts, std::vector<Event>& out, bool by_last = false);
  static bool fires_up(const Order& o) {
    return (o.type == OrderType::stop_limit || o.type == OrderType::stop_market) == (o.side == Side::buy);
  }
  void cancel(const CancelOrder& c, std::vector<Event>& out);
  void amend(const AmendOrder& c, std::vector<Event>& out);
  void set_cancel_after(const SetCancelAfter& c, std::vector<Event>& out);
  void cancel_expired(const CancelExpired& c, std::vector<Event>& out);
  void adjust_margin(const AdjustMargin& c, std::vector<Event>& out);
  void set_position_tpsl(const SetPositionTpSl& c, std::vector<Event>& out);
  void request_withdrawal(const RequestWithdrawal& c, std::vector<Event>& out);
  void set_market_status(const SetMarketStatus& c, std::vector<Event>& out);
  void set_market_params(const SetMarketParams& c, std::vector<Event>& out);
  // Delisting: cancels the market's orders, takes the mark to `price` (liquidating whoever is
  // below maintenance there), then settles every position at it.
  void delist(std::uint32_t m, Price price, std::int64_t ts, std::vector<Event>& out);
  void emit_market(std::uint32_t m, std::int64_t ts, std::vector<Event>& out);
  // Cancels the open orders of market m that could open or grow a position (not reduce-only) and,
  // with max_leverage > 0, only those above that leverage.
  void cancel_market_orders(std::uint32_t m, CancelReason why, std::int32_t max_leverage, std::int64_t ts,
                            std::vector<Event>& out);
  // The refusal for a command on market m that is not ACTIVE (a reduce-only order passes a halt).
  Reject closed_market(std::uint32_t m, bool reduce_only) const {
    const MarketStatus s = markets_[m].status;
    return s == MarketStatus::delisted ? Reject::market_delisted
           : s == MarketStatus::halted && !reduce_only ? Reject::market_halted
                                                       : Reject::none;
  }
  void update_withdrawal(const UpdateWithdrawal& c, std::vector<Event>& out);
  // After a command that moved a last price with last-price triggers waiting, or closed a position
  // with take-profit / stop-loss orders: fires the former, cancels the latter, until neither is left.
  [[gnu::cold, gnu::noinline]] void after_command(const Command& command, std::vector<Event>& out);
  void unlink_oco(const OrderId& id);
  // The user's open order by id, or by client order id when the id is nil; nullptr when there is
  // none (another user's order is as unknown as a missing one).
  const Handle* find_own_order(const UserId& user, const OrderId& id, const ClientOrderId& client_id) const;
  // Matches order h (account ai, market m, `side`, limit price `limit`) against the opposite side
  // while it crosses; and then, with why it stopped: filled, rested (GTC, post-only; `margin` as
  // for rest()) or its remainder cancelled.
  enum class MatchStop : std::uint8_t { none, reduce_only, margin };
  [[gnu::always_inline]] inline MatchStop match(Handle h, std::uint32_t ai, std::uint32_t m, Side side,
                                                Price limit, std::int64_t ts, std::vector<Event>& out);
  [[gnu::always_inline]] inline void finish(Handle h, MatchStop stop, Usdm margin, std::vector<Event>& out);
  void cancel_all(const CancelAll& c, std::vector<Event>& out);
  void deposit(const Deposit& c, std::vector<Event>& out);
  void withdraw(const Withdraw& c, std::vector<Event>& out);
  void set_mark(const SetMark& c, std::vector<Event>& out);
  void set_leverage(const SetLeverage& c, std::vector<Event>& out);
  void settle_funding(const SettleFunding& c, std::vector<Event>& out);
  // Vaults (vault_engine.ipp).
  void create_vault(const CreateVault& c, std::vector<Event>& out);
  void vault_deposit(const VaultDeposit& c, std::vector<Event>& out);
  void vault_withdraw(const VaultWithdraw& c, std::vector<Event>& out);
  void set_market_limits(const SetMarketLimits& c, std::vector<Event>& out);
  void accrue_management_fee(Vault& v, std::int64_t ts, std::vector<Event>& out);
  void mint_to_leader_if_unowned(Vault& v, std::int64_t ts, std::vector<Event>& out);
  bool free_vault_margin(Vault& v, Usdm payout, Usdm gross, Usdm nav, std::int64_t ts, std::vector<Event>& out);

  // Liquidation (risk_engine.ipp).
  void touch(Account& a) {
    if (!a.dirty) {
      a.dirty = true;
      dirty_.push_back(a.index);
    }
  }
  void flush_dirty();
  void reindex(Account& a);
  void unindex(std::uint32_t ai, std::uint32_t m);
  void check_liquidations(std::uint32_t m, std::int64_t ts, std::vector<Event>& out);
  void liquidate(std::uint32_t ai, std::uint32_t first_market, std::int64_t ts, std::vector<Event>& out);
  void liquidate_isolated(std::uint32_t ai, std::uint32_t m, std::int64_t ts, std::vector<Event>& out);
  // A reduce-only IOC order of the engine into the book for a liquidation slice, no worse than the
  // price at which `value` would be lost; returns the slice's size.
  Qty liquidation_slice(std::uint32_t ai, std::uint32_t m, Usdm value, std::int64_t ts, std::vector<Event>& out);
  // Liquidation step 2 for ai's position in m: slices into the book while `health()` (a pair of
  // value and maintenance margin: the account's cross ones or the isolated position's) is below
  // maintenance and above two thirds of it, and the book takes each slice whole.
  enum class Slicing { flat, healthy, to_backstop };
  template <class Health>
  Slicing slice_into_book(std::uint32_t ai, std::uint32_t m, std::int64_t ts, std::vector<Event>& out, Health health);
  // Whether the backstop can carry ai's cross positions (market < 0) or its isolated position in
  // `market`, taking `value` with them.
  bool backstop_can_take(std::uint32_t ai, Usdm value, std::int32_t market = -1) const;
  void transfer_at(std::uint32_t from, std::uint32_t to, std::uint32_t m, Qty qty, Price price,
                   Liquidation kind, std::int64_t ts, std::vector<Event>& out);
  void adl(std::uint32_t ai, std::int64_t ts, std::vector<Event>& out);
  // Closes ai's position in m at the price that moves `share` of its deficit to the opposite
  // positions, ranked by PnL% x effective leverage.
  void adl_close(std::uint32_t ai, std::uint32_t m, __int128 share, std::int64_t ts, std::vector<Event>& out);
  void move_collateral(std::uint32_t from, std::uint32_t to, Usdm amount, BalanceReason reason,
                       std::int64_t ts, std::vector<Event>& out);
  // Pays a liquidated account's shortfall: the insurance fund as far as its balance goes (it never
  // goes below zero), the rest the protocol's loss (the fee account). Returns the fund's part.
  Usdm cover_shortfall(std::uint32_t ai, Usdm amount, std::int64_t ts, std::vector<Event>& out);
  OrderId synthetic_id(Liquidation kind) const;

  void reject(const PlaceOrder& c, Reject why, std::vector<Event>& out, OrderId original = {});
  Usdm order_margin_for(const Order& o, Qty qty, Price ref_mark) const;
  // Puts an order in the book, reserving its margin (`margin`: that reserve when the caller has
  // already computed it for the order's remaining size at the current mark; < 0: computed here).
  void rest(Handle h, std::vector<Event>& out, Usdm margin = -1);
  // Cancels an account's open orders (one market, or all with market < 0), oldest first.
  void cancel_account_orders(std::uint32_t ai, std::int32_t market, CancelReason why, std::int64_t ts,
                             std::vector<Event>& out);
  void close_order(Handle h, OrderStatus status, CancelReason why, std::int64_t ts,
                   std::vector<Event>& out, bool in_book);
  void fill(Handle maker, Handle taker_order, Qty qty, std::int64_t ts, std::vector<Event>& out);
  // Applies a fill to one account's position: realized PnL goes to the collateral; an isolated
  // position takes the initial margin of what it adds out of the collateral and gives back its
  // margin in proportion to what it closes.
  struct FillEffect {
    Usdm realized = 0;
    Usdm margin_delta = 0;  // isolated margin moved (+ from the collateral)
  };
  FillEffect apply_fill(Account& a, std::uint32_t m, Side side, Qty qty, Usdm notional,
                        Usdm fee_paid = 0);
  void emit_margin(const Account& a, std::uint32_t m, Usdm delta, std::int64_t ts, std::vector<Event>& out);
  // Moves `delta` from the collateral into an isolated position's margin (negative: back).
  void move_margin(Account& a, std::uint32_t m, Usdm delta, std::int64_t ts, std::vector<Event>& out);
  void emit_order(const Order& o, std::vector<Event>& out, CancelReason why = CancelReason::user);
  void emit_level(std::uint32_t m, Side side, Price price, std::vector<Event>& out);
  void emit_position(const Account& a, std::uint32_t m, std::int64_t ts, std::vector<Event>& out);
  // Whether a fill of q at `price` leaves the account at maintenance (zero for a reducing fill).
  [[gnu::always_inline]] bool keeps_account(std::uint32_t ai, std::uint32_t m, Side side, Price price,
                                            Qty q, std::int32_t fee_ppm) const {
    // A cross account filling at or better than the mark: the margin checks already hold.
    const Price mark = markets_[m].mark;
    const Price adverse = side == Side::buy ? price - mark : mark - price;
    if (adverse <= 0 && !accounts_[ai].positions[m].isolated) return true;
    return keeps_account_checked(ai, m, side, price, q, fee_ppm);
  }
  bool keeps_account_checked(std::uint32_t ai, std::uint32_t m, Side side, Price price, Qty q,
                             std::int32_t fee_ppm) const;
  // Whether a fill of q at price on side keeps the position's notional (at that price) within the
  // market's max_position_notional; a fill that does not grow the position always does. Inline:
  // the maker of every fill is checked.
  [[gnu::always_inline]] bool within_position_limit(Qty size, std::uint32_t m, Side side,
                                                    Price price, Qty q) const {
    Qty after = 0;
    if (__builtin_add_overflow(size, side == Side::buy ? q : -q, &after)) [[unlikely]]
      return false;
    if ((after < 0 ? -after : after) <= (size < 0 ? -size : size)) return true;
    Usdm n = 0;
    const MarketSpec& spec = markets_[m].spec;
    return money::notional_checked(spec, price, after < 0 ? -after : after, n) &&
           n <= spec.max_position_notional;
  }
  Qty fillable(std::uint32_t m, Side taker_side, Price limit, std::uint32_t account, Qty want) const;
  void link_account_order(Account& a, Handle h);
  // Whether the order asks to switch its market's margin mode (a reduce-only order opens no margin:
  // its margin_mode asks nothing), and whether the account may not switch it now.
  static bool mode_change(const PlaceOrder& c, bool isolated_now) {
    return c.margin_mode != MarginMode::unchanged && !c.reduce_only &&
           (c.margin_mode == MarginMode::isolated) != isolated_now;
  }
  bool mode_locked(const Account& a, std::uint32_t m) const;
  void unlink_account_order(Account& a, Handle h);
  AccountView view_of(const Account& a) const;
  // The unrealized profit of the account's cross positions in HALTED markets: at a frozen mark it
  // is not money that can leave (withdrawals leave it behind; the resume or the final price decide).
  Usdm frozen_profit(const Account& a) const {
    Usdm profit = 0;
    for (std::uint32_t m = 0; m < markets_.size(); ++m) {
      const Position& p = a.positions[m];
      if (markets_[m].status != MarketStatus::halted || p.size == 0 || p.isolated) continue;
      profit += std::max<Usdm>(0, notional(m, markets_[m].mark, p.size) - p.cost);
    }
    return profit;
  }
  Usdm free_margin(const Account& a) const;  // view_of(a).available, computed alone
  // The same in 128 bits (a 64-bit step overflowed).
  [[gnu::cold]] Usdm free_margin_wide(const Account& a) const;
  struct CrossHealth {
    Usdm account_value = 0;
    Usdm maintenance_margin = 0;
  };
  CrossHealth cross_health(const Account& a) const;  // view_of(a)'s two fields, computed alone
  // Whether the account's cross part, or its isolated position in m, is below maintenance at the marks.
  bool below_maintenance(std::uint32_t ai, std::uint32_t m) const {
    const Account& a = accounts_[ai];
    const Position& p = a.positions[m];
    if (p.isolated && p.size != 0) return isolated_value(a, m) < maintenance_margin(m, markets_[m].mark, std::abs(p.size));
    const CrossHealth h = cross_health(a);
    return h.maintenance_margin > 0 && h.account_value < h.maintenance_margin;
  }

  std::vector<MarketState> markets_;
  EngineConfig config_;
  OrderPool pool_;
  std::vector<Account> accounts_;
  FlatMap<Uuid, std::uint32_t, UuidHash> accounts_index_;
  OrderIndex<UuidHash> orders_index_;  // open orders (resting and held)
  FlatMap<ClientKey, OrderId, ClientKeyHash> client_ids_;
  Seq seq_ = 0;
  Usdm net_deposits_ = 0;
  std::uint32_t insurance_ = 0, backstop_ = 0;  // account indices
  std::vector<std::uint32_t> dirty_;
  std::set<std::uint32_t> multi_;                // accounts with positions in two or more markets
  Liquidation liquidating_ = Liquidation::none;  // set while a liquidation order is matched
  bool triggering_ = false;  // a held order entering: its client id is already registered
  std::vector<Vault> vaults_;
  std::map<Uuid, std::uint32_t> vault_index_;
  std::set<std::pair<std::int64_t, std::uint32_t>> cancel_after_;  // (deadline, account index)
  std::map<Uuid, OrderId> oco_;  // a position's TP and SL: each one's partner
  bool last_moved_ = false;      // a fill moved a last price that last-price triggers watch
  bool after_pending_ = false;   // last_moved_ or tpsl_closed_ set: after_command() has work
  bool placing_tpsl_ = false;    // place_trigger is placing a position's TP/SL
  std::vector<std::pair<std::uint32_t, std::uint32_t>> tpsl_closed_;  // (account, market) to clean
  std::map<Uuid, Withdrawal> withdrawals_;  // in flight
  std::set<std::pair<Seq, Uuid>> pending_withdrawals_;  // derived: the pending ones, oldest first
  std::map<std::uint32_t, std::pair<std::int64_t, Usdm>> withdrawn_today_;  // account -> (day, requested)
};

using Engine = BasicEngine<FastBook>;
using ReferenceEngine = BasicEngine<ReferenceBook>;

extern template class BasicEngine<FastBook>;
extern template class BasicEngine<ReferenceBook>;

}  // namespace hydrox::engine
