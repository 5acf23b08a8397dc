// Engine benchmarks (issue #3). Commands are generated before timing; one timer around the
// whole loop; risk checks on (every order comes from a funded account and passes pre-trade
// margin). Run: build/default/bench/engine_bench (or `make bench`).
#include <benchmark/benchmark.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include "hydrox/engine/engine.hpp"
#include "hydrox/engine/snapshot_codec.hpp"

using namespace hydrox;
using namespace hydrox::engine;

namespace {

// The engine's host prefetches the commands it holds this far ahead (Engine::prefetch), as the
// trading service's engine loop does.
constexpr std::size_t kPrefetchAhead = 2;

long status_kib(const char* field) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string prefix = std::string(field) + ":";
  while (std::getline(f, line)) {
    if (line.rfind(prefix, 0) == 0) return std::stol(line.substr(prefix.size()));
  }
  return 0;
}
long peak_rss_kib() { return status_kib("VmHWM"); }
long rss_kib() { return status_kib("VmRSS"); }

UserId account(std::uint64_t n) { return UserId{Uuid{0x2000 + n, 0x8000000000000000ull + n}}; }

EngineConfig config(std::size_t order_reserve) {
  EngineConfig c;
  MarketSpec m;
  m.notional_num = 1;  // one tick·lot = 1e-6 USDM
  m.notional_den = 1;
  m.min_notional = 0;
  m.max_leverage = 50;
  c.markets = {m};
  c.order_reserve = order_reserve;
  c.account_reserve = 2048;
  c.max_open_orders_per_account = 1'000'000;
  return c;
}

void fund(Engine& e, int accounts, Price mark) {
  std::vector<Event> out;
  e.apply(SetMark{0, mark, 0}, out);
  for (int a = 0; a < accounts; ++a)
    e.apply(Deposit{account(static_cast<std::uint64_t>(a)), 10'000'000'000'000, 0}, out);
}

PlaceOrder limit(std::uint64_t n, std::uint64_t acct, Side side, Price price, Qty qty,
                 TimeInForce tif = TimeInForce::gtc) {
  PlaceOrder p;
  p.user = account(acct);
  p.id = OrderId{Uuid{0x7000000000000000ull | n, 0x8000000000000000ull | n}};
  p.side = side;
  p.price = price;
  p.qty = qty;
  p.tif = tif;
  return p;
}

// The add-only stream: alternating buys and sells from a seeded rand(): buys 1880-1889, sells
// 1884-1893, quantities 100..1000 in steps of 100, from 1,000 accounts. f(i, account, side,
// price, qty) for each of the n orders.
template <class F>
void add_only_stream(std::size_t n, F&& f) {
  std::srand(42);
  for (std::size_t i = 0; i < n; ++i) {
    const bool buy = i % 2 == 0;
    const Price price = buy ? 1880 + std::rand() % 10 : 1884 + std::rand() % 10;
    const Qty qty = 100 * (1 + std::rand() % 10);
    f(i, static_cast<std::uint64_t>(std::rand() % 1000), buy ? Side::buy : Side::sell, price, qty);
  }
}

void BM_AddOnlyStream(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  std::vector<Command> commands;
  commands.reserve(n);
  add_only_stream(n, [&](std::size_t i, std::uint64_t acct, Side side, Price price, Qty qty) {
    commands.emplace_back(limit(i, acct, side, price, qty));
  });
  const long rss_before = peak_rss_kib();
  std::size_t trades = 0, rejected = 0;
  for (auto _ : state) {
    Engine e(config(1 << 22));
    fund(e, 1000, 1886);
    std::vector<Event> out;
    out.reserve(4096);
    const auto t0 = std::chrono::steady_clock::now();
    for (std::size_t i = 0; i < commands.size(); ++i) {
      const Command& c = commands[i];
      if (i + kPrefetchAhead < commands.size()) e.prefetch(commands[i + kPrefetchAhead]);
      out.clear();
      e.apply(c, out);
      for (const auto& ev : out) {
        trades += std::holds_alternative<Trade>(ev.body);
        rejected += std::holds_alternative<OrderRejected>(ev.body);
      }
    }
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    state.counters["resting_orders"] = static_cast<double>(e.resting_orders());
    state.counters["engine_MB"] = static_cast<double>(e.memory_bytes()) / 1e6;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(n * state.iterations()));
  state.counters["trades"] = static_cast<double>(trades);
  state.counters["rejected"] = static_cast<double>(rejected);
  state.counters["peak_rss_MB"] = static_cast<double>(peak_rss_kib()) / 1024.0;
  state.counters["rss_growth_MB"] = static_cast<double>(peak_rss_kib() - rss_before) / 1024.0;
}
BENCHMARK(BM_AddOnlyStream)->Arg(4'500'000)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);
// The first 300,000 orders of the same stream: what bench/engine_instructions.sh counts.
BENCHMARK(BM_AddOnlyStream)->Arg(300'000)->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// The floor under BM_AddOnlyStream: the same 4.5 M orders through the engine's own FastBook and
// OrderPool alone (price-time matching, nothing else: no order ids, accounts, risk or events).
// Not an engine figure: it shows what the data structures cost on this machine, so that the
// engine's figure can be read against it.
void BM_AddOnlyBookFloor(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  struct Spec {
    Side side;
    Price price;
    Qty qty;
  };
  std::vector<Spec> stream;
  stream.reserve(n);
  add_only_stream(n, [&](std::size_t, std::uint64_t, Side side, Price price, Qty qty) {
    stream.push_back({side, price, qty});
  });
  std::size_t trades = 0;
  for (auto _ : state) {
    OrderPool pool(1 << 22);
    FastBook book(pool);
    const auto t0 = std::chrono::steady_clock::now();
    for (const Spec& s : stream) {
      const Handle h =
          pool.alloc(Order{.side = s.side, .price = s.price, .qty = s.qty, .remaining = s.qty});
      const Side opp = opposite(s.side);
      while (pool[h].remaining > 0) {
        const auto best = book.best(opp);
        if (!best || (s.side == Side::buy ? *best > s.price : *best < s.price)) break;
        const Handle mh = book.front(opp, *best);
        Order& mo = pool[mh];
        const Qty q = std::min(pool[h].remaining, mo.remaining);
        book.reduce(mh, q);
        mo.remaining -= q;
        pool[h].remaining -= q;
        ++trades;
        if (mo.remaining == 0) {
          book.remove(mh);
          pool.release(mh);
        }
      }
      if (pool[h].remaining > 0) {
        book.add(h);
      } else {
        pool.release(h);
      }
    }
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    state.counters["resting_orders"] = static_cast<double>(book.order_count());
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(n * state.iterations()));
  state.counters["trades"] = static_cast<double>(trades);
}
BENCHMARK(BM_AddOnlyBookFloor)
    ->Arg(4'500'000)
    ->Iterations(1)
    ->UseManualTime()
    ->Unit(benchmark::kMillisecond);

// A steady book (~1,000 resting orders on ~750 levels) under a mixed stream: 60 % limit places
// near the touch, 30 % cancels, 7 % crossing IOC, 3 % market orders. The stream is generated
// before timing by running it through a simulation engine, so cancels always name a live order
// and the aggressive orders are sized so that the book stays near 1,000 orders.
// range(1) = 1 also times each operation for p50/p99 (the clock reads add ~20-40 ns a sample).
void BM_MixedStream(benchmark::State& state) {
  const std::size_t n = static_cast<std::size_t>(state.range(0));
  const bool per_op = state.range(1) == 1;
  constexpr Price kMid = 100'000;
  std::srand(7);
  Engine sim(config(1 << 16));
  fund(sim, 1000, kMid);
  std::vector<Event> sim_out;
  std::vector<Command> warm;
  std::vector<std::pair<std::uint64_t, std::uint64_t>> live;  // (id, account), maybe stale
  std::uint64_t next_id = 1;
  auto oid = [](std::uint64_t id) { return OrderId{Uuid{0x7000000000000000ull | id, 0x8000000000000000ull | id}}; };
  for (int i = 0; i < 1000; ++i) {
    const bool buy = i % 2 == 0;
    const Price off = 1 + std::rand() % 375;
    const std::uint64_t acct = static_cast<std::uint64_t>(std::rand() % 1000);
    warm.emplace_back(limit(next_id, acct, buy ? Side::buy : Side::sell, buy ? kMid - off : kMid + off, 100 * (1 + std::rand() % 10)));
    live.emplace_back(next_id++, acct);
    sim.apply(warm.back(), sim_out);
  }
  std::vector<Command> commands;
  commands.reserve(n);
  for (std::size_t i = 0; i < n; ++i) {
    const int r = std::rand() % 100;
    const std::uint64_t acct = static_cast<std::uint64_t>(std::rand() % 1000);
    const bool buy = std::rand() % 2 == 0;
    const Side side = buy ? Side::buy : Side::sell;
    if (r < 60) {
      // Near the touch on the own side, never crossing.
      auto own = sim.best(0, side);
      auto opp = sim.best(0, opposite(side));
      Price ref = own ? *own : (buy ? kMid - 1 : kMid + 1);
      Price p = buy ? ref - std::rand() % 10 + 1 : ref + std::rand() % 10 - 1;
      if (opp && (buy ? p >= *opp : p <= *opp)) p = buy ? *opp - 1 : *opp + 1;
      commands.emplace_back(limit(next_id, acct, side, p, 100 * (1 + std::rand() % 10)));
      live.emplace_back(next_id++, acct);
    } else if (r < 90) {
      while (!live.empty()) {
        const std::size_t k = static_cast<std::size_t>(std::rand()) % live.size();
        auto [id, owner] = live[k];
        live[k] = live.back();
        live.pop_back();
        if (sim.order(oid(id)) != nullptr) {
          commands.emplace_back(CancelOrder{account(owner), oid(id), 0});
          break;
        }
      }
      if (live.empty()) commands.emplace_back(limit(next_id++, acct, side, buy ? kMid - 50 : kMid + 50, 100));
    } else {
      // Size by a feedback on the simulated book: sweep two levels while it holds more than
      // 1,000 orders, nibble 100 lots while it holds fewer.
      auto levels = sim.depth(0, opposite(side), 2);
      Qty q = 100;
      if (sim.resting_orders() > 1000) {
        for (auto& [p, size] : levels) q += size;
      }
      if (r < 97) {
        Price p = levels.empty() ? kMid : levels.back().first;
        commands.emplace_back(limit(next_id++, acct, side, p, q, TimeInForce::ioc));
      } else {
        PlaceOrder m = limit(next_id++, acct, side, 0, q);
        m.type = OrderType::market;
        commands.emplace_back(m);
      }
    }
    sim_out.clear();
    sim.apply(commands.back(), sim_out);
  }
  std::vector<std::uint32_t> samples;
  if (per_op) samples.reserve(n);
  double resting_sum = 0;
  std::size_t resting_samples = 0;
  for (auto _ : state) {
    Engine e(config(1 << 16));
    fund(e, 1000, kMid);
    std::vector<Event> out;
    out.reserve(4096);
    for (const auto& c : warm) {
      out.clear();
      e.apply(c, out);
    }
    const auto t0 = std::chrono::steady_clock::now();
    if (per_op) {
      for (const auto& c : commands) {
        out.clear();
        const auto a = std::chrono::steady_clock::now();
        e.apply(c, out);
        samples.push_back(static_cast<std::uint32_t>((std::chrono::steady_clock::now() - a).count()));
      }
    } else {
      for (std::size_t i = 0; i < commands.size(); ++i) {
        out.clear();
        e.apply(commands[i], out);
        if ((i & 4095) == 0) {
          resting_sum += static_cast<double>(e.resting_orders());
          ++resting_samples;
        }
      }
    }
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    state.counters["resting_orders_end"] = static_cast<double>(e.resting_orders());
    if (resting_samples > 0) state.counters["resting_orders_avg"] = resting_sum / resting_samples;
  }
  state.SetItemsProcessed(static_cast<std::int64_t>(n * state.iterations()));
  if (per_op && !samples.empty()) {
    std::sort(samples.begin(), samples.end());
    state.counters["p50_ns"] = samples[samples.size() / 2];
    state.counters["p99_ns"] = samples[samples.size() * 99 / 100];
    state.counters["p999_ns"] = samples[samples.size() * 999 / 1000];
  }
}
BENCHMARK(BM_MixedStream)->Args({5'000'000, 0})->Args({5'000'000, 1})->Iterations(1)->UseManualTime()->Unit(benchmark::kMillisecond);

// 1,000,000 resting orders (no crossing) from 1,000 accounts: memory of the whole engine.
void BM_MillionRestingOrders(benchmark::State& state) {
  std::vector<Command> commands;
  constexpr std::size_t kN = 1'000'000;
  commands.reserve(kN);
  std::srand(3);
  for (std::size_t i = 0; i < kN; ++i) {
    const bool buy = i % 2 == 0;
    const Price off = 1 + std::rand() % 5000;
    commands.emplace_back(limit(i, static_cast<std::uint64_t>(std::rand() % 1000), buy ? Side::buy : Side::sell, buy ? 100'000 - off : 100'000 + off, 100));
  }
  for (auto _ : state) {
    const long before = rss_kib();
    Engine e(config(kN));
    fund(e, 1000, 100'000);
    std::vector<Event> out;
    for (const auto& c : commands) {
      out.clear();
      e.apply(c, out);
    }
    state.counters["resting_orders"] = static_cast<double>(e.resting_orders());
    state.counters["engine_MB"] = static_cast<double>(e.memory_bytes()) / 1e6;
    state.counters["rss_growth_MB"] = static_cast<double>(rss_kib() - before) / 1024.0;
  }
}
BENCHMARK(BM_MillionRestingOrders)->Iterations(1)->Unit(benchmark::kMillisecond);

// Engine snapshots (the trading service's restart path): 1,000,000 resting orders from 1,000
// accounts, each with a client_order_id. Each step timed on its own, once: the export (on the
// engine thread in the service), the state hash, encoding, decoding, loading.
void BM_SnapshotMillionOrders(benchmark::State& state) {
  constexpr std::size_t kN = 1'000'000;
  Engine e(config(kN));
  fund(e, 1000, 100'000);
  std::vector<Event> out;
  std::srand(3);
  for (std::size_t i = 0; i < kN; ++i) {
    const bool buy = i % 2 == 0;
    const Price off = 1 + std::rand() % 5000;
    PlaceOrder p = limit(i, static_cast<std::uint64_t>(std::rand() % 1000), buy ? Side::buy : Side::sell,
                         buy ? 100'000 - off : 100'000 + off, 100);
    char id[24];
    const int len = std::snprintf(id, sizeof id, "c%zu", i);
    p.client_order_id = ClientOrderId::from(std::string_view(id, static_cast<std::size_t>(len)));
    out.clear();
    e.apply(p, out);
  }
  using Clock = std::chrono::steady_clock;
  auto ms = [](Clock::time_point a) { return std::chrono::duration<double, std::milli>(Clock::now() - a).count(); };
  for (auto _ : state) {
    auto t = Clock::now();
    Snapshot snap = e.export_state();
    state.counters["export_ms"] = ms(t);
    t = Clock::now();
    const std::uint64_t hash = e.state_hash();
    state.counters["hash_ms"] = ms(t);
    t = Clock::now();
    const std::string bytes = encode_snapshot(snap);
    state.counters["encode_ms"] = ms(t);
    state.counters["bytes_MB"] = static_cast<double>(bytes.size()) / 1e6;
    t = Clock::now();
    auto decoded = decode_snapshot(bytes);
    state.counters["decode_ms"] = ms(t);
    Engine copy(config(kN));
    t = Clock::now();
    copy.load(*decoded);
    state.counters["load_ms"] = ms(t);
    if (copy.state_hash() != hash) state.SkipWithError("state hash differs after load");
  }
}
BENCHMARK(BM_SnapshotMillionOrders)->Iterations(1)->Unit(benchmark::kMillisecond);

// Liquidation check (issue #7): 100,000 accounts long 100 lots at 100,000 against one short,
// their liquidation prices spread evenly over 80,000..97,000; the mark moves 100,000 -> 96,830 so
// that the top 1 % cross maintenance. Timed: the one SetMark that finds them (liquidation index)
// and liquidates every one of them (empty book: the backstop takes each position over). The
// engine is rebuilt from a snapshot before each run, untimed.
void BM_LiquidationCheck(benchmark::State& state) {
  constexpr int kAccounts = 100'000;
  Engine base(config(1 << 12));
  std::vector<Event> out;
  base.apply(SetMark{0, 100'000, 0}, out);
  const EngineConfig defaults;
  base.apply(Deposit{defaults.backstop_account, 10'000'000'000'000'000, 0}, out);
  base.apply(Deposit{defaults.insurance_account, 1'000'000'000'000, 0}, out);
  const UserId whale = account(999'999);
  base.apply(Deposit{whale, 10'000'000'000'000'000, 0}, out);
  base.apply(limit(1'000'000'000, 999'999, Side::sell, 100'000, 100LL * kAccounts), out);
  for (int i = 0; i < kAccounts; ++i) {
    // value(M) = c + 100 (M - 100,000), MM(M) = M (mmr 1/100): liquidation below (1e7 - c) / 99.
    const Price liq = 80'000 + static_cast<Price>(i) * 17'000 / kAccounts;
    const Usdm c = 10'000'000 - 99 * liq;
    const auto u = static_cast<std::uint64_t>(i);
    out.clear();
    base.apply(Deposit{account(u), c + 5'000, 0}, out);  // + the taker fee
    PlaceOrder p = limit(static_cast<std::uint64_t>(i), u, Side::buy, 100'000, 100, TimeInForce::ioc);
    p.leverage = 50;
    base.apply(p, out);
  }
  out.clear();
  const auto b0 = std::chrono::steady_clock::now();
  base.apply(SetMark{0, 100'000, 1}, out);  // re-keys all 100,000 changed accounts, like a first tick
  const double rekey_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - b0).count();
  const Snapshot snap = base.export_state();
  std::size_t liquidated = 0;
  for (auto _ : state) {
    Engine e(config(1 << 12));
    e.load(snap);
    std::vector<Event> ev;
    ev.reserve(100'000);
    const auto t0 = std::chrono::steady_clock::now();
    e.apply(SetMark{0, 96'830, 2}, ev);
    const auto t1 = std::chrono::steady_clock::now();
    state.SetIterationTime(std::chrono::duration<double>(t1 - t0).count());
    liquidated = static_cast<std::size_t>(std::count_if(ev.begin(), ev.end(), [](const Event& x) {
      return std::holds_alternative<AccountLiquidated>(x.body);
    }));
    if (!e.check_invariants(true).empty()) state.SkipWithError("invariants broken");
  }
  state.counters["accounts"] = kAccounts;
  state.counters["liquidated"] = static_cast<double>(liquidated);
  state.counters["rekey_all_ms"] = rekey_ms;
}
BENCHMARK(BM_LiquidationCheck)->Iterations(5)->UseManualTime()->Unit(benchmark::kMillisecond);

}  // namespace

BENCHMARK_MAIN();
