#include "mark_funding.hpp"

#include "hydrox/events/events.hpp"

#include <algorithm>

#include "hydrox/core/clock.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/log/log.hpp"
#include "hydrox/metrics/metrics.hpp"

namespace hydrox::trading {

using namespace engine;
using i128 = __int128;

namespace {

constexpr int kQ = 30;
constexpr i128 kOne = static_cast<i128>(1) << kQ;

i128 floor_div(i128 a, i128 b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

Price median3(Price a, Price b, Price c) { return std::max(std::min(a, b), std::min(std::max(a, b), c)); }

metrics::Counter& index_rejected() {
  static auto& c = metrics::Registry::global().counter("trading_index_samples_rejected_total",
                                                       "Index samples refused (stale, absurd, out of order)");
  return c;
}

}  // namespace

// ---- integer EMA ----------------------------------------------------------------------------

std::int64_t IntegerEma::decay_q30(std::int64_t dt_ms, std::int64_t tau_ms) {
  if (dt_ms <= 0) return static_cast<std::int64_t>(kOne);
  // Halve the step until it is at most tau / 8, then e^-x ≈ (12 - 6x + x²) / (12 + 6x + x²)
  // (Padé 2/2: relative error below 1e-7 there), then square back.
  int squarings = 0;
  i128 a = dt_ms;
  i128 scale = 1;  // a / scale = the halved step
  while (a * 8 > static_cast<i128>(tau_ms) * scale && squarings < 40) {
    scale *= 2;
    ++squarings;
  }
  const i128 t = static_cast<i128>(tau_ms) * scale;
  const i128 num = 12 * t * t - 6 * a * t + a * a;
  const i128 den = 12 * t * t + 6 * a * t + a * a;
  i128 e = num * kOne / den;
  for (int i = 0; i < squarings; ++i) e = e * e >> kQ;
  return static_cast<std::int64_t>(e);
}

void IntegerEma::add(std::int64_t sample, std::int64_t dt_ms) {
  if (den_ == 0) {  // the first sample is the average
    num_ = static_cast<i128>(sample) * kOne;
    den_ = kOne;
    return;
  }
  if (dt_ms <= 0) return;
  const i128 e = decay_q30(dt_ms, tau_ms_);
  num_ = (num_ * e >> kQ) + static_cast<i128>(sample) * dt_ms * kOne;
  den_ = (den_ * e >> kQ) + static_cast<i128>(dt_ms) * kOne;
}

std::int64_t IntegerEma::value() const {
  if (den_ == 0) return 0;
  // Round half up.
  return static_cast<std::int64_t>(floor_div(2 * num_ + den_, 2 * den_));
}

// ---- funding formulas -------------------------------------------------------------------------

std::int64_t premium_ppb(Price index, std::optional<Price> impact_bid, std::optional<Price> impact_ask) {
  if (index <= 0) return 0;
  i128 up = impact_bid && *impact_bid > index ? *impact_bid - index : 0;
  i128 down = impact_ask && *impact_ask < index ? index - *impact_ask : 0;
  return static_cast<std::int64_t>((up - down) * 1'000'000'000 / index);  // toward zero
}

std::int64_t funding_rate_ppb(const std::vector<std::int64_t>& premiums) {
  i128 sum = 0;
  for (auto p : premiums) sum += p;
  const i128 avg = premiums.empty() ? 0 : sum / static_cast<i128>(premiums.size());
  // F = avg(P) + clamp(0.01 % - avg(P), -0.05 %, +0.05 %)
  const i128 interest = 100'000, clamp = 500'000;
  const i128 f = avg + std::clamp(interest - avg, -clamp, clamp);
  return static_cast<std::int64_t>(std::clamp<i128>(f, -kMaxFundingRatePpb, kMaxFundingRatePpb));
}

// ---- MarkFunding ------------------------------------------------------------------------------

MarkFunding::MarkFunding(const Catalog& catalog, EngineHost& host, std::shared_ptr<redis::Client> redis,
                         MarkOptions options)
    : catalog_(catalog),
      host_(host),
      redis_(std::move(redis)),
      options_(options),
      feeds_(catalog.all().size()),
      states_(catalog.all().size()),
      predicted_ppb_(catalog.all().size()) {
  host_.set_clock_hook(options_.funding_interval_ms, /*retry_ms=*/100,
                       [this](const Engine& e, std::int64_t now) {
                         EngineHost::ClockStep step;
                         step.commands = tick(e, now, &step.again);
                         return step;
                       });
}

MarkFunding::~MarkFunding() { stop(); }

void MarkFunding::start() {
  running_.store(true);
  thread_ = std::thread([this] { loop(); });
}

void MarkFunding::stop() {
  if (!running_.exchange(false)) return;
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

MarkFunding::Index MarkFunding::index(std::uint32_t market) const {
  std::lock_guard lock(mu_);
  return feeds_[market].accepted;
}

void MarkFunding::on_index(std::string_view message, std::int64_t now_ms) {
  auto sample = events::decode_index(message);  // libs/events: what market's feeds publish
  if (!sample) return;
  const MarketInfo* m = catalog_.find(sample->symbol);
  auto price = json::parse(sample->price);
  if (!m || !price) return;
  auto ticks = Catalog::to_ticks(*m, *price, "price");
  std::optional<std::int64_t> when;
  if (sample->time_ms >= 0) when = sample->time_ms;
  auto refuse = [&](std::string_view why) {
    index_rejected().inc();
    static std::atomic<int> logged{0};
    if (logged.fetch_add(1) % 20 == 0) {
      log::warn("index sample refused", {{"symbol", m->symbol}, {"reason", std::string(why)}});
    }
  };
  if (!ticks || *ticks <= 0) return refuse("not a positive price on the tick");
  if (!when) return refuse("bad time");
  if (*when < now_ms - options_.index_max_age_ms) return refuse("stale");
  if (*when > now_ms + 2000) return refuse("from the future");
  std::lock_guard lock(mu_);
  Feed& f = feeds_[m->index];
  if (*when <= f.accepted.time_ms) return;  // out of order or repeated: the newer one stands
  if (!f.jumps.admit(f.accepted.price, *ticks, options_.index_max_jump_ppm)) {
    return refuse("jump beyond INDEX_MAX_JUMP_PPM");
  }
  f.accepted = Index{*ticks, *when};
}

std::vector<Command> MarkFunding::tick(const Engine& e, std::int64_t now, bool* waiting) {
  std::vector<Command> out;
  const std::int64_t interval = options_.funding_interval_ms;
  const std::int64_t boundary = now / interval * interval;  // the latest interval end
  for (const auto& m : catalog_.all()) {
    const Index idx = index(m.index);
    State& st = states_[m.index];
    // A halted or delisted market: its mark and funding pause (the engine would refuse both).
    if (e.market_status(m.index) != MarketStatus::active) {
      st.premiums.clear();
      continue;
    }
    if (idx.price <= 0 || now - idx.time_ms > options_.index_max_age_ms) {
      if (waiting && e.last_funding_ms(m.index) < boundary) *waiting = true;
      continue;  // no fresh index: the mark holds, settlement waits
    }
    // The clock hook and the periodic job interleave: time only moves forward here.
    const std::int64_t dt = st.last_ms == 0 ? 0 : std::max<std::int64_t>(0, now - st.last_ms);
    st.last_ms = std::max(st.last_ms, now);
    const auto bid = e.best(m.index, Side::buy);
    const auto ask = e.best(m.index, Side::sell);
    Price mark = idx.price;
    if (bid && ask) {
      const Price mid = (*bid + *ask) / 2;
      const Price last = e.last_trade(m.index) > 0 ? e.last_trade(m.index) : mid;
      st.basis.add(mid - idx.price, dt);
      const Price book_median = median3(*bid, *ask, last);
      st.median.add(book_median, dt);
      mark = median3(idx.price + st.basis.value(), book_median, st.median.value());
      if (mark <= 0) mark = idx.price;
    }
    if (mark != e.mark(m.index)) out.push_back(SetMark{m.index, mark, now});

    // Premium samples.
    if (now - st.last_sample_ms >= options_.premium_sample_ms) {
      st.last_sample_ms = now;
      const auto ib = e.impact_price(m.index, Side::buy, m.impact_notional);
      const auto ia = e.impact_price(m.index, Side::sell, m.impact_notional);
      st.premiums.emplace_back(now, premium_ppb(idx.price, ib, ia));
    }

    // Settlement of every interval that ended and is not settled yet.
    const std::int64_t last = e.last_funding_ms(m.index);
    if (e.resumed_ms(m.index) > last && last != 0) {
      // Resumed after a halt (the engine keeps when): the intervals it touched owe nothing, the
      // latest one ended is the anchor, and funding runs again from there.
      if (last < boundary) out.push_back(SettleFunding{m.index, boundary, 0, idx.price, now});
    } else if (last == 0) {
      // A fresh exchange: the current interval is the first; nothing before it is owed.
      out.push_back(SettleFunding{m.index, boundary, 0, idx.price, now});
    } else {
      int settled = 0;
      for (std::int64_t b = last + interval; b <= boundary && settled < 48; b += interval, ++settled) {
        std::vector<std::int64_t> ps;
        for (const auto& [t, p] : st.premiums) {
          if (t > b - interval && t <= b) ps.push_back(p);
        }
        out.push_back(SettleFunding{m.index, b, funding_rate_ppb(ps), idx.price, now});
      }
      if (settled > 0) {
        const std::int64_t upto = last + settled * interval;
        std::erase_if(st.premiums, [&](const auto& s) { return s.first <= upto; });
      }
    }
    std::vector<std::int64_t> current;
    for (const auto& [t, p] : st.premiums) current.push_back(p);
    predicted_ppb_[m.index].store(funding_rate_ppb(current));
  }
  return out;
}

void MarkFunding::publish_predictions(std::int64_t now) {
  std::vector<std::vector<std::string>> cmds;
  const std::int64_t next = (now / options_.funding_interval_ms + 1) * options_.funding_interval_ms;
  for (const auto& m : catalog_.all()) {
    const std::int64_t f = predicted_ppb_[m.index].load();
    json::Writer w;
    w.begin_object().field("symbol", m.symbol);
    w.key("rate").raw_number(decimal::format(static_cast<std::int64_t>(static_cast<i128>(f) * 1000 / 8), 12));
    w.key("rate_8h").raw_number(decimal::format(f, 9));
    w.field("next_funding_time", next / 1000).field("interval_ms", options_.funding_interval_ms);
    w.end_object();
    cmds.push_back({"SET", "hydrox:funding:next:" + m.symbol, w.take(), "PX",
                    std::to_string(std::max<std::int64_t>(10'000, options_.period_ms * 5))});
  }
  if (auto r = redis_->pipeline(cmds); !r) {
    static std::atomic<int> failures{0};
    if (failures.fetch_add(1) % 60 == 0) log::warn("funding prediction: redis unavailable", {{"error", r.error().message}});
  }
}

void MarkFunding::loop() {
  while (running_.load()) {
    const std::int64_t now = SystemClock::instance().now_ms();
    Job job;
    job.produce = [this, now](const Engine& e) { return tick(e, now); };
    host_.submit(std::move(job));  // a full queue skips this tick; the next one follows
    publish_predictions(now);
    std::unique_lock lock(wake_mu_);
    wake_.wait_for(lock, std::chrono::milliseconds(options_.period_ms), [&] { return !running_.load(); });
  }
}

}  // namespace hydrox::trading
