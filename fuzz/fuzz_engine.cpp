// The engine under hostile command sequences (issue 20): every byte string decodes to commands over
// three markets, seven accounts and a vault (and the markets' limits changing), with extreme values
// (sizes up to int64, prices at and beyond the band edges, every leverage, marks jumping by orders
// of magnitude, funding at and past its caps, vault deposits and withdrawals near zero NAV; amends,
// cancels by client id, isolated margin moves, dead man's switches, position TP/SL pairs and
// last-price triggers). After
// every command the fast and the reference engine must have emitted the same events and the
// invariants must hold; the build's UBSan (no recovery) makes any signed overflow a finding, and
// the engine's overflow() aborts. So a run with no finding is the evidence that no input reaches an
// abort.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include "hydrox/engine/engine.hpp"

using namespace hydrox;
using namespace hydrox::engine;

namespace {

constexpr Usdm kUsdm = 1'000'000;

EngineConfig config() {
  EngineConfig c;
  MarketSpec btc;  // tick 0.1, lot 0.001: one tick·lot = 100 units; real limits
  btc.notional_num = 100;
  btc.min_notional = 10 * kUsdm;
  btc.max_leverage = 40;
  btc.max_order_qty = 1'000'000;       // 1,000 BTC
  btc.max_market_order_qty = 100'000;  // 100 BTC
  btc.max_order_notional = 50'000'000 * kUsdm;
  btc.max_position_notional = 200'000'000 * kUsdm;
  MarketSpec third = btc;  // one tick·lot = 1/3 unit: rounding everywhere
  third.notional_num = 1;
  third.notional_den = 3;
  third.min_notional = 0;
  third.max_leverage = 20;
  MarketSpec wide;  // the engine's default ceilings (MarketSpec defaults)
  wide.notional_num = 1'000;
  wide.max_leverage = 1;
  c.markets = {btc, third, wide};
  c.order_reserve = 1 << 10;
  c.account_reserve = 1 << 6;
  c.max_open_orders_per_account = 40;
  return c;
}

// Reads the fuzzer's bytes; past the end everything is zero.
class Input {
 public:
  Input(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  bool done() const { return i_ >= n_; }
  std::uint8_t byte() { return i_ < n_ ? d_[i_++] : 0; }
  std::uint64_t u64() {
    std::uint64_t v = 0;
    for (int k = 0; k < 8; ++k) v = (v << 8) | byte();
    return v;
  }
  // A value of a kind chosen by the input: small, near `typical`, at the limits of int64, zero,
  // negative, a power of ten.
  std::int64_t value(std::int64_t typical) {
    const std::uint8_t kind = byte();
    switch (kind % 10) {
      case 0:
        return static_cast<std::int64_t>(byte()) + 1;
      case 1:
      case 2:
      case 3:
        return typical +
               static_cast<std::int8_t>(byte()) * std::max<std::int64_t>(typical / 256, 1);
      case 4:
        return std::numeric_limits<std::int64_t>::max() - byte();
      case 5:
        return 0;
      case 6:
        return -static_cast<std::int64_t>(byte()) - 1;
      case 7: {
        std::int64_t p = 1;
        for (int k = byte() % 19; k > 0; --k) p *= 10;
        return p;
      }
      case 8:
        return static_cast<std::int64_t>(u64() >> (byte() % 64));
      default:
        return typical * (1 + byte() % 4);
    }
  }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
  std::size_t i_ = 0;
};

UserId user(std::uint8_t n) {
  return UserId{Uuid{0x1000u + n, 0x8000000000000000ull + n}};
}
const Uuid kVault{0x5000, 0x8000000000000001ull};
constexpr Price kStart[3] = {970'000, 3'000'000, 50'000};

Command next(Input& in, std::uint64_t step, std::vector<OrderId>& ids) {
  const std::int64_t ts = static_cast<std::int64_t>(step) * 1000;
  const std::uint8_t op = in.byte();
  const UserId u = user(in.byte() % 7);
  const std::uint32_t m = in.byte() % 3;
  switch (op % 16) {
    case 0:
    case 1:
    case 2:
    case 3:
    case 4: {
      PlaceOrder p;
      p.user = u;
      p.id = OrderId{Uuid{0xABC0000000000000ull | step, 0x8000000000000000ull | step}};
      p.market = m;
      const std::uint8_t f = in.byte();
      p.side = (f & 1) ? Side::sell : Side::buy;
      p.type = static_cast<OrderType>((f >> 1) % 6);
      p.tif = static_cast<TimeInForce>((f >> 4) % 4);
      p.reduce_only = (f & 0x40) != 0;
      p.price = in.value(kStart[m]);
      p.qty = in.value(1'000);
      p.trigger_price = is_trigger(p.type) ? in.value(kStart[m]) : 0;
      p.leverage = static_cast<std::int32_t>(in.byte() % 50) - 2;
      p.max_slippage_bps = static_cast<std::int32_t>(in.value(500) % 20'000);
      const std::uint8_t mm = in.byte() % 3;
      p.margin_mode = static_cast<MarginMode>(mm);
      if (is_trigger(p.type) && (in.byte() % 2)) p.trigger_by = TriggerBy::last;
      if (in.byte() % 4 == 0) {
        char cid[2] = {static_cast<char>('a' + in.byte() % 4), 0};
        p.client_order_id = ClientOrderId::from(std::string_view(cid, 1));
      }
      p.ts_ms = ts;
      ids.push_back(p.id);
      return p;
    }
    case 5: {
      if (ids.empty()) return CancelAll{u, -1, ts};
      const OrderId id = ids[in.byte() % ids.size()];
      // Issue 23's commands with extreme values: amend, cancel by client id, isolated margin in
      // and out, the dead man's switch set (any timeout) and fired.
      switch (in.byte() % 8) {
        case 6: {
          const Price tp = (in.byte() % 3) ? in.value(kStart[m]) : 0, sl = (in.byte() % 3) ? in.value(kStart[m]) : 0;
          return SetPositionTpSl{u, m, OrderId{Uuid{0xDEF0000000000000ull | step, 1}}, OrderId{Uuid{0xDEF0000000000000ull | step, 2}},
                                 tp, sl, (in.byte() % 2) ? in.value(100) : 0,
                                 (in.byte() % 2) ? TriggerBy::last : TriggerBy::mark, ts};
        }
        case 0:
        case 1:
          return AmendOrder{u, id, m, (in.byte() % 2) ? in.value(kStart[m]) : 0, (in.byte() % 2) ? in.value(1'000) : 0, ts, {}};
        case 2: {
          char cid[2] = {static_cast<char>('a' + in.byte() % 4), 0};
          return CancelOrder{u, OrderId{}, ts, ClientOrderId::from(std::string_view(cid, 1))};
        }
        case 3:
          return AdjustMargin{u, m, in.value(100 * kUsdm), ts};
        case 4:
          return SetCancelAfter{u, in.value(5'000), ts};
        case 5:
          return CancelExpired{ts + static_cast<std::int64_t>(in.byte()) * 100};
        default:
          return CancelOrder{u, id, ts};
      }
    }
    case 6:
      return CancelAll{u, (in.byte() % 2) ? -1 : static_cast<std::int32_t>(m), ts};
    case 7:
      return Deposit{u, in.value(10'000 * kUsdm), ts};
    case 8: {
      // Withdrawals: immediate (the operator's), or asked for and moved on by the bridge or the
      // user (any status, any id among a few: most steps refused).
      const std::uint8_t k = in.byte();
      const Uuid wid{0xD0000000000000ull | (k % 4), 0x8000000000000000ull};
      if (k % 5 == 0) return RequestWithdrawal{wid, u, in.value(1'000 * kUsdm), (in.byte() % 2) ? in.value(2'000 * kUsdm) : 0, ts};
      if (k % 5 == 1) {
        return UpdateWithdrawal{wid, (in.byte() % 3) ? UserId{} : u, static_cast<WithdrawalStatus>(in.byte() % 5), ts};
      }
      return Withdraw{u, in.value(1'000 * kUsdm), ts};
    }
    case 9:
    case 10: {
      // Marks: mostly a walk, sometimes a jump by orders of magnitude either way.
      const std::uint8_t j = in.byte();
      Price mark = kStart[m] + static_cast<std::int8_t>(in.byte()) * (kStart[m] / 500);
      if (j % 8 == 0) mark = in.value(kStart[m]);
      return SetMark{m, mark, ts};
    }
    case 11: {
      const std::int64_t rate = in.value(1'000'000) * ((in.byte() & 1) ? -1 : 1);
      return SettleFunding{m, ts, rate, in.value(kStart[m]), ts};
    }
    case 12:
      if (in.byte() % 4 ==
          0) {  // the operator changes a market's limits (any values: refused out of range)
        return SetMarketLimits{m,
                               in.value(1'000),
                               in.value(100),
                               in.value(1'000'000 * kUsdm),
                               in.value(10'000'000 * kUsdm),
                               ts};
      }
      if (const std::uint8_t k = in.byte(); k % 8 == 1) {  // the market lifecycle: any status, any price
        return SetMarketStatus{m, static_cast<MarketStatus>(in.byte() % 4), (in.byte() % 2) ? in.value(kStart[m]) : 0, ts};
      } else if (k % 8 == 2) {
        return SetMarketParams{m, static_cast<std::int32_t>(in.value(500)) - 50, static_cast<std::int32_t>(in.value(800)),
                               static_cast<std::int32_t>(in.byte()) - 5, ts};
      }
      return SetLeverage{u, m, static_cast<std::int32_t>(in.byte() % 50) - 2, ts};
    case 13: {
      CreateVault c;
      c.vault = kVault;
      c.leader = u;
      c.account = user(200);
      c.initial = in.value(100 * kUsdm);
      c.lock_ms = in.byte() % 3 == 0 ? 0 : in.value(1000);
      c.performance_fee_ppm = static_cast<std::int32_t>(in.value(100'000) % 2'000'000);
      c.management_fee_ppm = static_cast<std::int32_t>(in.value(20'000) % 2'000'000);
      c.min_deposit = in.value(kUsdm);
      c.capacity = in.value(1'000'000 * kUsdm);
      c.ts_ms = ts;
      return c;
    }
    case 14:
      return VaultDeposit{kVault, u, in.value(100 * kUsdm), ts};
    default:
      return VaultWithdraw{kVault, u, in.value(100 * kUsdm), ts};
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  Engine fast(config());
  ReferenceEngine ref(config());
  std::vector<Event> fe, re;
  static const bool trace = std::getenv("FUZZ_TRACE") != nullptr;
  auto both = [&](const Command& c) {
    fe.clear();
    re.clear();
    fast.apply(c, fe);
    ref.apply(c, re);
    if (trace) {  // FUZZ_TRACE=1: what each command did (for reading a finding)
      std::fprintf(stderr, "cmd %zu", c.index());
      if (auto* p = std::get_if<PlaceOrder>(&c)) {
        std::fprintf(
            stderr,
            " place u%llx m%u side %d type %d tif %d px %lld q %lld ro %d lev %d mm %d trig %lld",
            (unsigned long long)p->user.value().hi, p->market, (int)p->side, (int)p->type,
            (int)p->tif, (long long)p->price, (long long)p->qty, p->reduce_only, p->leverage,
            (int)p->margin_mode, (long long)p->trigger_price);
      }
      if (auto* m = std::get_if<SetMark>(&c))
        std::fprintf(stderr, " mark m%u %lld", m->market, (long long)m->mark);
      std::fprintf(stderr, "\n");
      for (const auto& e : fe) {
        std::fprintf(stderr, "   ev %zu", e.body.index());
        if (auto* t = std::get_if<Trade>(&e.body)) {
          std::fprintf(stderr, " trade m%u px %lld q %lld maker %llx taker %llx liq %d", t->market,
                       (long long)t->price, (long long)t->qty,
                       (unsigned long long)t->maker.value().hi,
                       (unsigned long long)t->taker.value().hi, (int)t->liquidation);
        } else if (auto* b = std::get_if<BalanceChanged>(&e.body)) {
          std::fprintf(stderr, " bal %llx %lld -> %lld r%d", (unsigned long long)b->user.value().hi,
                       (long long)b->delta, (long long)b->balance, (int)b->reason);
        } else if (auto* pc = std::get_if<PositionChanged>(&e.body)) {
          std::fprintf(stderr, " pos %llx m%u size %lld cost %lld iso %d margin %lld",
                       (unsigned long long)pc->user.value().hi, pc->market, (long long)pc->size,
                       (long long)pc->cost, pc->isolated, (long long)pc->margin);
        } else if (auto* im = std::get_if<IsolatedMarginChanged>(&e.body)) {
          std::fprintf(stderr, " iso %llx m%u %lld -> margin %lld coll %lld",
                       (unsigned long long)im->user.value().hi, im->market, (long long)im->delta,
                       (long long)im->margin, (long long)im->collateral);
        } else if (auto* l = std::get_if<AccountLiquidated>(&e.body)) {
          std::fprintf(stderr, " liquidated %llx value %lld mm %lld stage %d ins %lld m%d",
                       (unsigned long long)l->user.value().hi, (long long)l->account_value,
                       (long long)l->maintenance_margin, (int)l->stage,
                       (long long)l->insurance_paid, l->market);
        } else if (auto* r = std::get_if<OrderRejected>(&e.body)) {
          std::fprintf(stderr, " rejected %s", std::string(reject_code(r->reason)).c_str());
        } else if (auto* u = std::get_if<OrderUpdated>(&e.body)) {
          std::fprintf(stderr, " order %llx status %d filled %lld",
                       (unsigned long long)u->user.value().hi, (int)u->status,
                       (long long)u->filled);
        }
        std::fprintf(stderr, "\n");
      }
    }
    if (fe.size() != re.size()) __builtin_trap();
    for (std::size_t k = 0; k < fe.size(); ++k) {
      if (!(fe[k] == re[k])) __builtin_trap();
    }
    if (const std::string err = fast.check_invariants(true); !err.empty()) {
      std::fprintf(stderr, "invariant broken after command %zu: %s\n", c.index(), err.c_str());
      __builtin_trap();
    }
  };
  // A live market to start from: marks, funded accounts, resting liquidity on both sides.
  for (std::uint32_t m = 0; m < 3; ++m) both(SetMark{m, kStart[m], 0});
  for (std::uint8_t k = 0; k < 7; ++k) both(Deposit{user(k), 50'000 * kUsdm, 0});
  std::uint64_t step = 1;
  for (std::uint32_t m = 0; m < 3; ++m) {
    for (int side = 0; side < 2; ++side) {
      PlaceOrder p;
      p.user = user(6);
      p.id = OrderId{Uuid{0xDEF0000000000000ull | step, 0x8000000000000000ull | step}};
      ++step;
      p.market = m;
      p.side = side ? Side::sell : Side::buy;
      p.price = side ? kStart[m] + kStart[m] / 100 : kStart[m] - kStart[m] / 100;
      p.qty = 1'000;
      both(p);
    }
  }
  Input in(data, size);
  std::vector<OrderId> ids;
  for (int n = 0; n < 400 && !in.done(); ++n) both(next(in, ++step, ids));
  if (fast.state_hash() != ref.state_hash()) __builtin_trap();
  return 0;
}
