// GET /api/v1/markets, /markets/{symbol}/ticker, /klines, /trades, /orderbook, /funding.
// Tickers and klines are cached in Redis (1 s and 5 s, the original README's TTLs); when Redis is
// down they are computed from PostgreSQL and the service stays up.
#include <algorithm>
#include <charconv>
#include <map>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "hydrox/core/clock.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/events/events.hpp"
#include "hydrox/json/json.hpp"
#include "market_app.hpp"

namespace hydrox::market {

namespace {

using catalog::MarketInfo;

constexpr db::Query kTickerStats{
    "ticker_stats",
    "WITH day AS (SELECT bucket, open, high, low, volume, quote_volume FROM klines_1m"
    "  WHERE market_id = $1::int AND bucket >= now() - interval '24 hours')"
    " SELECT (SELECT close::text FROM klines_1m WHERE market_id = $1::int ORDER BY bucket DESC LIMIT 1),"
    " (SELECT open::text FROM day ORDER BY bucket LIMIT 1),"
    " (SELECT max(high)::text FROM day), (SELECT min(low)::text FROM day),"
    " (SELECT coalesce(sum(volume), 0)::text FROM day), (SELECT coalesce(sum(quote_volume), 0)::text FROM day),"
    " (SELECT mark::text FROM marks WHERE market_id = $1::int),"
    " (SELECT coalesce(sum(size), 0)::text FROM positions WHERE market_id = $1::int AND size > 0),"
    // The market's status and the parameters an operator changed (issue 24), if any.
    " s.status, s.maker_fee_rate::text, s.taker_fee_rate::text, s.max_leverage, s.final_price::text"
    " FROM (SELECT 1) one LEFT JOIN market_state s ON s.market_id = $1::int"};

constexpr db::Query kFunding{
    "market_funding",
    "SELECT extract(epoch FROM time)::bigint::text, rate::text, rate_8h::text, mark_price::text, index_price::text"
    " FROM funding_rates WHERE market_id = $1::int AND ($2::bigint IS NULL OR time < to_timestamp($2::bigint))"
    " ORDER BY time DESC LIMIT $3::int"};

constexpr db::Query kTrades{
    "market_trades",
    "SELECT seq, price::text, amount::text, taker_side, floor(extract(epoch from time))::bigint,"
    " (extract(epoch from time) * 1000)::bigint FROM trades"
    " WHERE market_id = $1::int AND ($2::bigint IS NULL OR seq < $2::bigint) ORDER BY seq DESC "
    "LIMIT $3::int"};

// Interval → SQL expression for the bar's open from a 1-minute bucket.
}  // namespace

const std::map<std::string, std::string>& kline_intervals() {
  static const std::map<std::string, std::string> m = [] {
    std::map<std::string, std::string> out;
    for (auto [name, secs] : {std::pair{"1m", 60}, {"3m", 180}, {"5m", 300}, {"15m", 900}, {"30m", 1800},
                              {"1h", 3600}, {"2h", 7200}, {"4h", 14400}, {"6h", 21600}, {"8h", 28800},
                              {"12h", 43200}, {"1d", 86400}, {"3d", 259200}}) {
      out[name] = "to_timestamp(floor(extract(epoch from bucket) / " + std::to_string(secs) + ") * " +
                  std::to_string(secs) + ")";
    }
    out["1w"] = "(date_trunc('week', bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')";
    out["1M"] = "(date_trunc('month', bucket AT TIME ZONE 'UTC') AT TIME ZONE 'UTC')";
    return out;
  }();
  return m;
}

// One bar's length in seconds (a month counts 31 days): bounds the rows a kline query reads.
std::int64_t kline_interval_seconds(const std::string& interval) {
  static const std::map<std::string, std::int64_t> m{
      {"1m", 60},     {"3m", 180},   {"5m", 300},    {"15m", 900},   {"30m", 1800},
      {"1h", 3600},   {"2h", 7200},  {"4h", 14400},  {"6h", 21600},  {"8h", 28800},
      {"12h", 43200}, {"1d", 86400}, {"3d", 259200}, {"1w", 604800}, {"1M", 2678400}};
  auto it = m.find(interval);
  return it == m.end() ? 60 : it->second;
}

namespace {

constexpr std::int64_t kMaxKlineScanSeconds = 366LL * 86400;  // a year of 1-minute rows at most

std::string plain(std::string_view numeric) {
  auto d = decimal::parse(numeric);
  return d ? decimal::format(*d) : std::string(numeric);
}

std::optional<std::int64_t> to_int(std::string_view s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// Answers computed here in the last TTL, served from memory on the IO thread (bounded: entries
// expire with their TTL and the map is cleared past 10,000 keys). Only values this process
// computed are kept, so their age is known and never exceeds the TTL.
struct LocalCache {
  struct Entry {
    std::string body;
    std::chrono::steady_clock::time_point expires;
  };
  std::mutex mu;
  std::unordered_map<std::string, Entry> entries;

  // The body and how much longer it stays fresh.
  std::optional<std::pair<std::string, std::chrono::milliseconds>> get(const std::string& key) {
    std::lock_guard lock(mu);
    auto it = entries.find(key);
    const auto now = std::chrono::steady_clock::now();
    if (it == entries.end() || now >= it->second.expires) return std::nullopt;
    return std::pair{it->second.body, std::chrono::duration_cast<std::chrono::milliseconds>(it->second.expires - now)};
  }
  void put(const std::string& key, std::string body, std::chrono::steady_clock::time_point expires) {
    std::lock_guard lock(mu);
    if (entries.size() > 10'000) entries.clear();
    entries[key] = Entry{std::move(body), expires};
  }
};
LocalCache& local_cache() {
  static LocalCache c;
  return c;
}

// Memory (computed here, younger than the TTL), else Redis (shared by every market instance),
// else compute from PostgreSQL on the blocking pool and fill both. An answer whose age is known
// says for how much longer it stays within the TTL (X-Fresh-For-Ms): the gateway may serve it
// again until then, never longer.
// `finish` adds what follows from the body (a list's X-Next-Cursor), cached or not.
void cached(Services& s, http::Request& req, http::Respond respond, std::string key, std::chrono::milliseconds ttl,
            std::function<Result<std::string>()> compute,
            std::function<void(http::Response&)> finish = nullptr) {
  if (auto hit = local_cache().get(key)) {
    auto r = http::Response::json(200, std::move(hit->first));
    r.set_header("X-Cache", "hit");
    r.set_header("X-Fresh-For-Ms", std::to_string(hit->second.count()));
    if (finish) finish(r);
    return respond(std::move(r));
  }
  service::respond_blocking(*s.ctx, req, respond, [&s, key, ttl, compute, finish]() -> Result<http::Response> {
    auto hit = s.ctx->redis->get(key);
    if (hit && *hit) {
      auto r = http::Response::json(200, **hit);
      r.set_header("X-Cache", "hit");
      if (finish) finish(r);
      return r;
    }
    const auto computed_at = std::chrono::steady_clock::now();
    auto body = compute();
    if (!body) return body.error();
    if (hit) {
      (void)s.ctx->redis->set(key, *body, ttl);  // Redis is up: fill the shared cache
      local_cache().put(key, *body, computed_at + ttl);
    }
    auto r = http::Response::json(200, *body);
    r.set_header("X-Cache", hit ? "miss" : "bypass");
    if (hit) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(computed_at + ttl - std::chrono::steady_clock::now());
      if (left.count() > 0) r.set_header("X-Fresh-For-Ms", std::to_string(left.count()));
    }
    if (finish) finish(r);
    return r;
  });
}

const MarketInfo* market_of(Services& s, const http::Request& req, http::Respond& respond) {
  const MarketInfo* m = s.catalog.find(req.path_param("symbol"));
  if (!m) {
    respond(http::Response::error(fail(Code::not_found, "unknown market " + std::string(req.path_param("symbol"))),
                                  req.request_id));
  }
  return m;
}

}  // namespace

Result<StoredBar> latest_bar(Services& s, const MarketInfo& m, const std::string& interval) {
  auto it = kline_intervals().find(interval);
  if (it == kline_intervals().end())
    return fail(Code::invalid_field, "unknown interval", "interval");
  // The newest 1-minute bucket names the newest bar; its buckets are aggregated as REST does.
  const std::string sql =
      "WITH newest AS (SELECT " + it->second +
      " AS b FROM klines_1m WHERE market_id = $1::int AND bucket = (SELECT max(bucket) FROM "
      "klines_1m"
      " WHERE market_id = $1::int))"
      " SELECT extract(epoch from n.b)::bigint, (array_agg(k.open ORDER BY k.bucket))[1]::text,"
      " max(k.high)::text, min(k.low)::text, (array_agg(k.close ORDER BY k.bucket DESC))[1]::text,"
      " sum(k.volume)::text, max(k.last_seq) FROM newest n JOIN klines_1m k ON k.market_id = "
      "$1::int"
      " AND k.bucket >= n.b GROUP BY n.b";
  auto lease = s.ctx->db->acquire();
  if (!lease) return lease.error();
  // The watermark first: the bar read after it holds at least what it says.
  auto projected = (*lease)->exec(db::Query{"projected_seq", "SELECT last_seq FROM projector_watermark"});
  if (!projected) return projected.error();
  StoredBar bar;
  if (projected->size() == 1) bar.projected_seq = static_cast<std::uint64_t>(std::stoll(std::string(projected->get(0, 0))));
  auto rows = (*lease)->exec(db::Query{"latest_bar", sql}, {std::to_string(m.id)});
  if (!rows) return rows.error();
  if (rows->size() == 0) {
    // No trade yet: the mark, if there is one, for an empty bar (t stays -1).
    auto mark = (*lease)->exec(
        db::Query{"latest_bar_mark", "SELECT mark::text FROM marks WHERE market_id = $1::int"},
        {std::to_string(m.id)});
    if (!mark) return mark.error();
    if (mark->size() == 1) bar.o = bar.h = bar.l = bar.c = plain(mark->get(0, 0));
    bar.v = "0";
    return bar;
  }
  bar.t = std::stoll(std::string(rows->get(0, 0)));
  bar.o = plain(rows->get(0, 1));
  bar.h = plain(rows->get(0, 2));
  bar.l = plain(rows->get(0, 3));
  bar.c = plain(rows->get(0, 4));
  bar.v = plain(rows->get(0, 5));
  bar.last_seq = static_cast<std::uint64_t>(std::stoll(std::string(rows->get(0, 6))));
  return bar;
}

Result<std::string> ticker_json(Services& s, const MarketInfo& m, bool with_rules) {
  auto lease = s.ctx->db->acquire();
  if (!lease) return lease.error();
  auto rows = (*lease)->exec(kTickerStats, {std::to_string(m.id)});
  if (!rows) return rows.error();
  auto col = [&](int c) -> std::optional<decimal::Decimal> {
    if (rows->is_null(0, c)) return std::nullopt;
    auto d = decimal::parse(rows->get(0, c));
    return d ? std::optional(*d) : std::nullopt;
  };
  // Exact arithmetic on the decimals at 1e-8 (prices here have at most 4 decimals).
  auto units = [](const decimal::Decimal& d) { return *decimal::to_units(d, 8, decimal::Rounding::half_even); };
  const auto mark = col(6);
  std::optional<decimal::Decimal> index;
  if (auto cachedi = s.ctx->redis->get(events::index_last_key(m.symbol)); cachedi && *cachedi) {
    if (auto sample = events::decode_index(**cachedi)) {
      if (auto d = decimal::parse(sample->price)) index = *d;
    }
  }
  // Before the first trade the last price is the mark (a client computes with it).
  const auto last = col(0) ? col(0) : mark;
  const std::int64_t last_u = last ? units(*last) : 0;
  const auto open = col(1);
  const std::int64_t open_u = open ? units(*open) : last_u;
  const std::int64_t change = last_u - open_u;
  auto pct = open_u == 0 ? Result<decimal::i128>(0)
                         : decimal::div_round(static_cast<decimal::i128>(change) * 10'000, open_u, decimal::Rounding::half_even);
  const std::int64_t now_s = SystemClock::instance().now_s();
  json::Writer w;
  w.begin_object().field("symbol", m.symbol);
  w.key("last_price").raw_number(decimal::format(last_u, 8));
  w.key("price_change").raw_number(decimal::format(change, 8));
  w.key("price_change_percent").raw_number(decimal::format(pct ? *pct : 0, 2));
  w.key("high_24h").raw_number(col(2) ? decimal::format(*col(2)) : decimal::format(last_u, 8));
  w.key("low_24h").raw_number(col(3) ? decimal::format(*col(3)) : decimal::format(last_u, 8));
  w.key("volume_24h").raw_number(plain(rows->get(0, 4)));
  w.key("quote_volume_24h").raw_number(plain(rows->get(0, 5)));
  w.key("mark_price").raw_number(mark ? decimal::format(*mark) : "0");
  w.key("index_price").raw_number(index ? decimal::format(*index) : (mark ? decimal::format(*mark) : "0"));
  // The rate the current interval is heading for, as trading's funding clock last computed it.
  std::string funding_rate = "0";
  std::int64_t next_funding = (now_s / 3600 + 1) * 3600;
  if (auto f = s.ctx->redis->get("hydrox:funding:next:" + m.symbol); f && *f) {
    if (auto doc = json::parse(**f); doc && doc->is_object()) {
      if (const auto* r = doc->find("rate"); r && r->as_decimal()) funding_rate = decimal::format(*r->as_decimal());
      if (const auto* n = doc->find("next_funding_time")) {
        if (auto v = n->as_int(0, INT64_MAX)) next_funding = *v;
      }
    }
  }
  w.key("funding_rate").raw_number(funding_rate);
  w.field("next_funding_time", next_funding);
  w.key("open_interest").raw_number(plain(rows->get(0, 7)));
  // ACTIVE, HALTED (cancel-only: the mark and funding pause) or DELISTED (settled at final_price).
  const bool changed = !rows->is_null(0, 8);
  w.field("status", changed ? rows->get(0, 8) : std::string_view("ACTIVE"));
  if (changed && !rows->is_null(0, 12)) w.key("final_price").raw_number(plain(rows->get(0, 12)));
  if (with_rules) {
    w.key("tick_size").raw_number(m.tick_size).key("lot_size").raw_number(m.lot_size);
    w.key("min_notional").raw_number(m.min_notional);
    if (changed) {
      w.key("max_leverage").raw_number(rows->get(0, 11));
      w.key("maker_fee_rate").raw_number(plain(rows->get(0, 9))).key("taker_fee_rate").raw_number(plain(rows->get(0, 10)));
    } else {
      w.field("max_leverage", m.spec.max_leverage);
      w.key("maker_fee_rate").raw_number(decimal::format(static_cast<std::int64_t>(m.spec.maker_fee_ppm), 6));
      w.key("taker_fee_rate").raw_number(decimal::format(static_cast<std::int64_t>(m.spec.taker_fee_ppm), 6));
    }
    w.key("max_order_size").raw_number(m.max_order_size);
    w.key("max_market_order_size").raw_number(m.max_market_order_size);
    w.key("max_order_notional").raw_number(m.max_order_notional);
    w.key("max_position_notional").raw_number(m.max_position_notional);
  }
  w.end_object();
  return w.take();
}

void register_market_routes(Services& s, http::Router& r) {
  r.get("/api/v1/markets", [&s](http::Request& req, http::Respond respond) {
    cached(s, req, respond, "hydrox:cache:markets", s.ticker_ttl, [&s]() -> Result<std::string> {
      json::Writer w;
      w.begin_array();
      for (const auto& m : s.catalog.all()) {
        auto t = ticker_json(s, m, true);
        if (!t) return t.error();
        w.raw_value(*t);
      }
      w.end_array();
      return w.take();
    });
  });

  r.get("/api/v1/markets/{symbol}/ticker", [&s](http::Request& req, http::Respond respond) {
    const MarketInfo* m = market_of(s, req, respond);
    if (!m) return;
    cached(s, req, respond, "hydrox:cache:ticker:" + m->symbol, s.ticker_ttl,
           [&s, m]() { return ticker_json(s, *m, false); });
  });

  r.get("/api/v1/markets/{symbol}/klines", [&s](http::Request& req, http::Respond respond) {
    const MarketInfo* m = market_of(s, req, respond);
    if (!m) return;
    for (const auto& name : req.query_names()) {
      if (name != "interval" && name != "start" && name != "end" && name != "limit" && name != "before") {
        return respond(http::Response::error(fail(Code::unknown_field, "unknown query parameter " + name, name), req.request_id));
      }
    }
    const std::string interval = req.query_param("interval").value_or("1h");
    auto it = kline_intervals().find(interval);
    if (it == kline_intervals().end()) {
      return respond(http::Response::error(
          fail(Code::invalid_field, "interval must be one of 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M", "interval"),
          req.request_id));
    }
    std::optional<std::int64_t> start, end;
    std::int64_t limit = 500;
    for (auto [name, target] : {std::pair{"start", &start}, std::pair{"end", &end}}) {
      if (auto v = req.query_param(name); v && !v->empty()) {
        auto n = to_int(*v);
        if (!n || *n < 0 || *n > 32'503'680'000) {
          return respond(http::Response::error(fail(Code::invalid_field, std::string(name) + " must be Unix seconds", name), req.request_id));
        }
        *target = *n;
      }
    }
    // The list cursor: `before` (X-Next-Cursor of the page after) is `end` by another name.
    if (auto v = req.query_param("before"); v && !v->empty()) {
      auto n = to_int(*v);
      if (!n || *n < 0 || *n > 32'503'680'000) {
        return respond(http::Response::error(fail(Code::invalid_field, "before must be Unix seconds", "before"), req.request_id));
      }
      if (end) {
        return respond(http::Response::error(fail(Code::invalid_field, "before and end are the same bound: give one", "before"),
                                             req.request_id));
      }
      end = *n;
    }
    if (start && end && *start >= *end) {
      return respond(http::Response::error(fail(Code::invalid_field, "start must be before end", "start"), req.request_id));
    }
    if (auto v = req.query_param("limit"); v && !v->empty()) {
      auto n = to_int(*v);
      if (!n || *n < 1 || *n > 1000) {
        return respond(http::Response::error(fail(Code::invalid_field, "limit must be from 1 to 1000", "limit"), req.request_id));
      }
      limit = *n;
    }
    const std::string key = "hydrox:cache:klines:" + m->symbol + ":" + interval + ":" +
                            (start ? std::to_string(*start) : "") + ":" + (end ? std::to_string(*end) : "") + ":" +
                            std::to_string(limit);
    const std::string expr = it->second;
    // The cost of one query is bounded whatever start and end say: it reads at most the 1-minute
    // rows of `limit` + 1 bars (and never more than kMaxKlineScanSeconds of them) next to its
    // anchor: the first bar at or after `start` when given, else the newest bar before `end`
    // (two index lookups find them).
    const std::int64_t scan_s = std::min<std::int64_t>(
        (limit + 1) * kline_interval_seconds(interval), kMaxKlineScanSeconds);
    cached(s, req, respond, key, s.klines_ttl,
           [&s, m, expr, start, end, limit, scan_s]() -> Result<std::string> {
             // From `start` onward (ascending) when given, else the latest `limit` bars.
             const std::string order = start ? "ASC" : "DESC";
             const std::string window =
                 start ? " AND bucket >= to_timestamp($2::bigint) - interval '32 days'"
                         " AND bucket < least(to_timestamp($3::bigint), make_interval(secs => "
                         "$5::bigint) + greatest(to_timestamp($2::bigint),"
                         "   (SELECT min(bucket) FROM klines_1m WHERE market_id = $1::int AND "
                         "bucket >= to_timestamp($2::bigint))))"
                       : " AND bucket < to_timestamp($3::bigint)"
                         " AND bucket >= (SELECT max(bucket) FROM klines_1m WHERE market_id = "
                         "$1::int AND bucket < to_timestamp($3::bigint))"
                         "   - make_interval(secs => $5::bigint) - interval '32 days'";
             const std::string sql =
                 "SELECT extract(epoch from b)::bigint, o, h, l, c, v FROM ("
                 " SELECT " +
                 expr +
                 " AS b, (array_agg(open ORDER BY bucket))[1]::text AS o, max(high)::text AS h,"
                 " min(low)::text AS l, (array_agg(close ORDER BY bucket DESC))[1]::text AS c, "
                 "sum(volume)::text AS v"
                 " FROM klines_1m WHERE market_id = $1::int" +
                 window +
                 " GROUP BY 1) bars WHERE b >= to_timestamp($2::bigint) AND b < "
                 "to_timestamp($3::bigint)"
                 " ORDER BY b " +
                 order + " LIMIT $4::int";
             auto lease = s.ctx->db->acquire();
             if (!lease) return lease.error();
             const std::int64_t far_future = SystemClock::instance().now_s() + 86400 * 400;
             auto rows = (*lease)->exec(db::Query{"klines", sql},
                                        {std::to_string(m->id), std::to_string(start.value_or(0)),
                                         std::to_string(end.value_or(far_future)),
                                         std::to_string(limit), std::to_string(scan_s)});
             if (!rows) return rows.error();
             std::vector<int> order_rows;
             for (int i = 0; i < rows->size(); ++i) order_rows.push_back(i);
             if (!start) std::reverse(order_rows.begin(), order_rows.end());  // ascending by time
             json::Writer w;
             w.begin_array();
             for (int i : order_rows) {
               w.begin_object().key("time").raw_number(rows->get(i, 0));
               w.key("open")
                   .raw_number(plain(rows->get(i, 1)))
                   .key("high")
                   .raw_number(plain(rows->get(i, 2)));
               w.key("low")
                   .raw_number(plain(rows->get(i, 3)))
                   .key("close")
                   .raw_number(plain(rows->get(i, 4)));
               w.key("volume").raw_number(plain(rows->get(i, 5))).end_object();
             }
             w.end_array();
             return w.take();
           },
           // A full page has more: without `start` the older bars (`before` = its first bar's
           // time), with it the newer ones (`start` = its last bar's time + 1).
           [limit, from_start = start.has_value()](http::Response& res) {
             auto bars = json::parse(res.body);
             if (!bars || !bars->is_array() || bars->items().size() != static_cast<std::size_t>(limit)) return;
             const json::Value* t = (from_start ? bars->items().back() : bars->items().front()).find("time");
             auto at = t ? t->as_int(0, INT64_MAX - 1) : Result<std::int64_t>(fail(Code::internal, "no time"));
             if (at) res.set_header("X-Next-Cursor", std::to_string(from_start ? *at + 1 : *at));
           });
  });

  r.get("/api/v1/markets/{symbol}/trades", [&s](http::Request& req, http::Respond respond) {
    const MarketInfo* m = market_of(s, req, respond);
    if (!m) return;
    auto page = service::page_params(req, 50, "a trade id");
    if (!page) return respond(http::Response::error(page.error(), req.request_id));
    const std::int64_t limit = page->limit;
    const std::optional<std::string> before = page->before;
    service::respond_blocking(*s.ctx, req, respond, [&s, m, limit, before]() -> Result<http::Response> {
      auto lease = s.ctx->db->acquire();
      if (!lease) return lease.error();
      auto rows = (*lease)->exec(kTrades, {std::to_string(m->id), before, std::to_string(limit)});
      if (!rows) return rows.error();
      json::Writer w;
      w.begin_array();
      for (int i = 0; i < rows->size(); ++i) {
        w.begin_object().field("id", rows->get(i, 0));
        w.key("price").raw_number(plain(rows->get(i, 1))).key("amount").raw_number(plain(rows->get(i, 2)));
        w.field("side", rows->get(i, 3)).key("time").raw_number(rows->get(i, 4));
        w.key("time_ms").raw_number(rows->get(i, 5)).end_object();
      }
      w.end_array();
      auto res = http::Response::json(200, w.take());
      if (rows->size() == limit) res.set_header("X-Next-Cursor", rows->get(rows->size() - 1, 0));
      return res;
    });
  });

  // The book lives in trading's engine: ask it (a read at a known sequence), never a copy.
  r.get("/api/v1/markets/{symbol}/orderbook", [&s](http::Request& req, http::Respond respond) {
    const MarketInfo* m = market_of(s, req, respond);
    if (!m) return;
    std::int64_t depth = 50;
    if (auto v = req.query_param("depth"); v && !v->empty()) {
      auto n = to_int(*v);
      if (!n || *n < 1 || *n > 1000) {
        return respond(http::Response::error(fail(Code::invalid_field, "depth must be from 1 to 1000", "depth"), req.request_id));
      }
      depth = *n;
    }
    http::OutgoingRequest out{http::Method::get,
                              "/internal/v1/orderbook?symbol=" + m->symbol + "&depth=" + std::to_string(depth),
                              {{"X-Request-ID", req.request_id}}, {}};
    for (auto& h : service::internal_headers(*s.ctx)) out.headers.push_back(std::move(h));
    s.client->request(s.trading, std::move(out), [respond, rid = req.request_id](Result<http::Response> r2) {
      if (!r2) return respond(http::Response::error(fail(Code::unavailable, "order book unavailable"), rid));
      if (r2->status != 200) return respond(http::Response::error(fail(Code::unavailable, "order book unavailable"), rid));
      respond(http::Response::json(200, std::move(r2->body)));
    });
  });

  // Funding history: one entry per settled interval, newest first. rate is what the interval
  // applied (F / 8); rate_8h the 8-hour-equivalent F; before/limit page backwards in time.
  r.get("/api/v1/markets/{symbol}/funding", [&s](http::Request& req, http::Respond respond) {
    const MarketInfo* m = market_of(s, req, respond);
    if (!m) return;
    auto page = service::page_params(req, 100, "Unix seconds");
    if (!page) return respond(http::Response::error(page.error(), req.request_id));
    const std::int64_t limit = page->limit;
    const std::optional<std::string> before = page->before;
    service::respond_blocking(*s.ctx, req, respond, [&s, m, limit, before]() -> Result<http::Response> {
      auto lease = s.ctx->db->acquire();
      if (!lease) return lease.error();
      auto rows = (*lease)->exec(kFunding, {std::to_string(m->id), before, std::to_string(limit)});
      if (!rows) return rows.error();
      json::Writer w;
      w.begin_array();
      for (int i = 0; i < rows->size(); ++i) {
        w.begin_object().key("time").raw_number(rows->get(i, 0));
        w.key("rate").raw_number(plain(rows->get(i, 1))).key("rate_8h").raw_number(plain(rows->get(i, 2)));
        w.key("mark_price").raw_number(plain(rows->get(i, 3))).key("index_price").raw_number(plain(rows->get(i, 4)));
        w.end_object();
      }
      w.end_array();
      auto res = http::Response::json(200, w.take());
      if (rows->size() == limit) res.set_header("X-Next-Cursor", rows->get(rows->size() - 1, 0));
      return res;
    });
  });
}

}  // namespace hydrox::market
