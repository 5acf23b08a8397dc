#include "ws_hub.hpp"

#include "hydrox/service/credentials.hpp"

#include "ws_protocol.hpp"

#include <algorithm>
#include <ctime>

#include "hydrox/auth/tokens.hpp"
#include "hydrox/core/clock.hpp"
#include "hydrox/decimal/decimal.hpp"
#include "hydrox/events/events.hpp"
#include "hydrox/json/json.hpp"
#include "hydrox/log/log.hpp"
#include "hydrox/metrics/metrics.hpp"

namespace hydrox::market {

namespace {

constexpr std::size_t kRecentTrades = 50;
constexpr std::int64_t kResyncWindowMs = 10'000;

std::int64_t now_ms() { return SystemClock::instance().now_ms(); }

// Prices and sizes kept as 1e-8 units for bar arithmetic (markets here have ≤ 4 price decimals
// and ≤ 3 size decimals).
std::int64_t units8(std::string_view text) {
  auto v = decimal::parse_units(text, 8, decimal::Rounding::half_even);
  return v ? *v : 0;
}
std::string text8(std::int64_t u) { return decimal::format(u, 8); }

// A request's id echoed in its answer: a string or a number as sent, anything else null.
void write_id(json::Writer& w, const json::Value* id) {
  w.key("id");
  if (id && id->is_string()) w.string(id->as_string());
  else if (id && id->is_number()) w.raw_number(id->number_text());
  else w.null();
}

std::string reply_ok(const json::Value* id, std::string_view result) {
  json::Writer w;
  w.begin_object();
  write_id(w, id);
  w.field("result", result).end_object();
  return w.take();
}

std::string reply_error(const json::Value* id, std::string_view code, std::string_view message,
                        std::string_view stream = {}) {
  json::Writer w;
  w.begin_object();
  write_id(w, id);
  w.key("error").begin_object().field("code", code).field("message", message);
  if (!stream.empty()) w.field("stream", stream);
  w.end_object().end_object();
  return w.take();
}

metrics::Counter& dropped_sessions() {
  static auto& c = metrics::Registry::global().counter("ws_slow_consumers_disconnected_total", "Sessions closed for not reading");
  return c;
}
metrics::Counter& resyncs() {
  static auto& c = metrics::Registry::global().counter("ws_resyncs_total", "Sessions resynced after a send-queue overflow");
  return c;
}

}  // namespace

std::int64_t Hub::bar_open(const std::string& interval, std::int64_t t) {
  static const std::map<std::string, std::int64_t> secs{
      {"1m", 60}, {"3m", 180}, {"5m", 300}, {"15m", 900}, {"30m", 1800}, {"1h", 3600}, {"2h", 7200},
      {"4h", 14400}, {"6h", 21600}, {"8h", 28800}, {"12h", 43200}, {"1d", 86400}, {"3d", 259200}};
  if (auto it = secs.find(interval); it != secs.end()) return t / it->second * it->second;
  if (interval == "1w") return (t - 345600) / 604800 * 604800 + 345600;  // weeks start on Monday
  std::time_t tt = static_cast<std::time_t>(t);                          // 1M: the month's first day
  std::tm tm{};
  gmtime_r(&tt, &tm);
  tm.tm_mday = 1;
  tm.tm_hour = tm.tm_min = tm.tm_sec = 0;
  return static_cast<std::int64_t>(timegm(&tm));
}

bool Hub::valid_stream(const std::string& stream) const {
  if (stream == "ticker") return true;
  auto dot = stream.find('.');
  if (dot == std::string::npos) return false;
  const std::string kind = stream.substr(0, dot);
  std::string rest = stream.substr(dot + 1);
  if (kind == "kline") {
    auto dot2 = rest.find('.');
    if (dot2 == std::string::npos || !kline_intervals().count(rest.substr(0, dot2))) return false;
    rest = rest.substr(dot2 + 1);
  } else if (kind != "ticker" && kind != "trade" && kind != "depth" && kind != "mark" && kind != "market") {
    return false;
  }
  return s_.catalog.find(rest) != nullptr;
}

std::string Hub::stream_type(const std::string& stream) const { return stream.substr(0, stream.find('.')); }

http::WsHandlers Hub::handlers() {
  auto self = shared_from_this();
  http::WsHandlers h;
  h.on_open = [self](const std::shared_ptr<http::WsConnection>& c) {
    std::lock_guard lock(self->mu_);
    Session session{c, {}, now_ms(), 0, false, 0};
    const bool gateway = service::from_gateway(*self->s_.ctx, c->request());
    auto forwarded = gateway ? c->request().header("X-Forwarded-For") : std::nullopt;
    session.address =
        forwarded && !forwarded->empty() ? std::string(*forwarded) : c->request().remote_addr;
    if (self->per_address_[session.address] >= self->s_.ws_max_connections_per_ip) {
      c->close(1008, "too many connections from this address");
      return;  // no session: on_close finds nothing to undo
    }
    ++self->per_address_[session.address];
    // The identity the gateway set at the upgrade (with the internal token; never a client's).
    if (gateway) {
      if (auto u = c->request().header("X-User-ID"); u && Uuid::parse(*u)) {
        session.user = std::string(*u);
        // The credential's scope, set by the gateway with the identity; none: a legacy client's
        // own X-User-ID (legacy client mode), which may act fully, as on REST.
        session.scope = std::string(c->request().header("X-Auth-Scope").value_or("trade"));
        if (auto cred = c->request().header("X-Auth-Credential"); cred && cred->size() == 64) {
          session.credential = std::string(*cred);
          session.checked_ms = now_ms();
        }
      }
    }
    self->sessions_[c->id()] = std::move(session);
  };
  h.on_message = [self](const std::shared_ptr<http::WsConnection>& c, std::string_view text) { self->on_message(c, text); };
  h.on_close = [self](const std::shared_ptr<http::WsConnection>& c) { self->on_close(c); };
  return h;
}

void Hub::on_close(const std::shared_ptr<http::WsConnection>& c) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(c->id());
  if (it == sessions_.end()) return;
  for (const auto& stream : it->second.streams) leave(it->second, stream);
  if (auto a = per_address_.find(it->second.address); a != per_address_.end() && --a->second <= 0)
    per_address_.erase(a);
  sessions_.erase(it);  // in no subscriber set any more
}

void Hub::leave(Session& session, const std::string& stream) {
  const std::uint64_t id = session.conn->id();
  if (auto s = subscribers_.find(stream); s != subscribers_.end()) {
    s->second.erase(id);
    // Nobody watches this kline stream: its bar is kept (and kept current) for a minute, so that
    // a subscribe/unsubscribe loop costs no load; then it goes (expire_idle_bars).
    if (s->second.empty() && stream.starts_with("kline.")) {
      if (auto b = bars_.find(stream); b != bars_.end()) b->second.idle_since_ms = now_ms();
    }
  }
  ticker_waiting_.erase({id, stream});
  if (auto p = session.private_as.find(stream);
      p != session.private_as.end()) {  // a private stream
    if (auto s = subscribers_.find(p->second); s != subscribers_.end()) s->second.erase(id);
    session.private_as.erase(p);
  }
}

void Hub::on_message(const std::shared_ptr<http::WsConnection>& c, std::string_view text) {
  std::lock_guard lock(mu_);
  auto it = sessions_.find(c->id());
  if (it == sessions_.end()) return;
  Session& session = it->second;
  const std::int64_t now = now_ms();
  if (now - session.window_start_ms >= 1000) {
    session.window_start_ms = now;
    session.window_count = 0;
  }
  if (++session.window_count > s_.ws_max_messages_per_s) {
    c->close(1008, "more than " + std::to_string(s_.ws_max_messages_per_s) + " messages per second");
    return;
  }
  auto parsed = parse_ws_request(text);
  if (auto* err = std::get_if<WsError>(&parsed)) {
    c->send(reply_error(err->id ? &*err->id : nullptr, err->code, err->message));
    return;
  }
  const WsRequest& request = std::get<WsRequest>(parsed);
  const json::Value* id = request.id ? &*request.id : nullptr;
  const std::string& m = request.method;
  if (m == "PING") {
    c->send(reply_ok(id, "pong"));
    return;
  }
  if (m == "AUTH") {
    // For clients that cannot set headers on the upgrade (browsers): the token (a session or an
    // API key) as the first message. Looked up like the gateway does (Redis,
    // hydrox:auth:<sha256>, else the user service: service::resolve_credential), off the IO thread.
    if (!session.user.empty()) {
      c->send(reply_error(id, "ALREADY_AUTHENTICATED", "this connection is authenticated"));
      return;
    }
    if (session.auth_pending) {
      c->send(reply_error(id, "AUTH_PENDING", "an AUTH on this connection is being checked"));
      return;
    }
    // Lookups in flight for the whole hub are bounded: AUTH floods from many connections cannot
    // fill the blocking pool that market's REST routes share.
    if (auth_in_flight_.load() >= kMaxAuthInFlight) {
      c->send(reply_error(id, "UNAVAILABLE", "authentication busy; try again"));
      return;
    }
    ++auth_in_flight_;
    session.auth_pending = true;
    std::weak_ptr<Hub> weak = shared_from_this();
    const std::string hash = auth::hash_hex(request.token);
    const std::optional<json::Value> id_copy = request.id;
    const std::uint64_t sid = c->id();
    const bool queued = s_.ctx->runtime->try_blocking([weak, hash, id_copy, sid] {
      auto self = weak.lock();
      if (!self) return;
      auto cred = service::resolve_credential(*self->s_.ctx, *self->s_.client, self->s_.user_service, hash);
      --self->auth_in_flight_;
      std::lock_guard guard(self->mu_);
      auto found = self->sessions_.find(sid);
      if (found == self->sessions_.end() || found->second.dropped) return;
      found->second.auth_pending = false;
      const json::Value* rid = id_copy ? &*id_copy : nullptr;
      if (!cred) {
        found->second.conn->send(reply_error(rid, "UNAVAILABLE", "authentication unavailable; try again"));
        return;
      }
      std::optional<std::string> user;
      if (*cred) user = (*cred)->user.value().to_string();
      if (!user) {
        found->second.conn->send(reply_error(rid, "UNAUTHENTICATED", "invalid, expired or revoked token"));
        return;
      }
      found->second.user = *user;
      found->second.scope = std::string(auth::scope_name((*cred)->scope));
      found->second.credential = hash;
      found->second.checked_ms = now_ms();
      found->second.conn->send(reply_ok(rid, "ok"));
    });
    if (!queued) {
      --auth_in_flight_;
      session.auth_pending = false;
      c->send(reply_error(id, "UNAVAILABLE", "try again"));
    }
    return;
  }
  if (order_method(m)) {
    order_entry(session, request);
    return;
  }
  std::vector<std::string> streams;
  for (const auto& name : request.streams) {
    if (name == "orders" || name == "fills" || name == "positions" || name == "balances") {
      if (session.user.empty()) {
        c->send(reply_error(id, "AUTH_REQUIRED", "private streams need an authenticated connection", name));
        return;
      }
      streams.push_back(name);
      continue;
    }
    if (!valid_stream(name)) {
      c->send(reply_error(id, "UNKNOWN_STREAM", "no such stream", name));
      return;
    }
    streams.push_back(name);
  }
  if (m == "UNSUBSCRIBE") {
    for (const auto& name : streams) {
      session.streams.erase(name);
      leave(session, name);
    }
    c->send(reply_ok(id, "ok"));
    return;
  }
  std::size_t added = 0;
  for (const auto& name : streams) added += session.streams.count(name) == 0;
  if (session.streams.size() + added > kMaxSubscriptions) {
    c->send(reply_error(id, "TOO_MANY_SUBSCRIPTIONS", "at most 200 subscriptions per connection"));
    return;
  }
  c->send(reply_ok(id, "ok"));
  for (const auto& name : streams) {
    if (!session.streams.insert(name).second) continue;
    if (name == "orders" || name == "fills" || name == "positions" || name == "balances") {
      subscribe_private(c->id(), session.user, name, id);
      continue;
    }
    subscribers_[name].insert(&session);
    send_snapshot(session, name);
  }
}

// A private stream starts with the user's current state from trading (the REST answer) as its
// snapshot; the session joins the stream at that moment, under the lock.
void Hub::subscribe_private(std::uint64_t session_id, const std::string& user, const std::string& stream,
                            const json::Value*) {
  static const std::map<std::string, std::string> kPaths{{"orders", "/api/v1/orders"},
                                                        {"fills", "/api/v1/fills?limit=50"},
                                                        {"positions", "/api/v1/positions"},
                                                        {"balances", "/api/v1/balances"}};
  auto self = shared_from_this();
  http::OutgoingRequest req{http::Method::get, kPaths.at(stream), {{"X-User-ID", user}}, {}};
  for (auto& h : service::internal_headers(*s_.ctx)) req.headers.push_back(std::move(h));
  s_.client->request(s_.trading, std::move(req), [self, session_id, user, stream](Result<http::Response> r) {
    std::lock_guard lock(self->mu_);
    auto it = self->sessions_.find(session_id);
    // Still subscribed, still as the same user (its credential may have ended meanwhile).
    if (it == self->sessions_.end() || !it->second.streams.count(stream) || it->second.user != user)
      return;
    const std::string key = private_key(user, stream);
    if (auto old = it->second.private_as.find(stream);
        old != it->second.private_as.end() && old->second != key) {
      if (auto s = self->subscribers_.find(old->second); s != self->subscribers_.end())
        s->second.erase(session_id);
    }
    it->second.private_as[stream] = key;
    self->subscribers_[key].insert(&it->second);
    const std::string data = r && r->status == 200 ? r->body : std::string("null");
    json::Writer w;
    w.begin_object().field("type", stream).field("channel", stream).field("seq", static_cast<std::int64_t>(self->seq_[key]));
    w.field("snapshot", true).key("data").raw_value(data).end_object();
    it->second.conn->send(w.take());
  });
}

void Hub::refresh_private(const std::string& user, const std::string& kind, std::string event) {
  const std::string key = private_key(user, kind);
  auto subs = subscribers_.find(key);
  if (subs == subscribers_.end() || subs->second.empty()) {
    ++seq_[key];  // nobody watches: the stream's seq still counts the update
    return;
  }
  Refresh& r = refreshing_[key];
  if (r.events.size() < kMaxRefreshEvents)
    r.events.push_back(std::move(event));
  else
    r.overflow = true;  // too many to read one by one: fresh snapshots instead, next round
  if (!r.in_flight) start_refresh(user, kind);
}

// Orders: each order an event named, once, read as GET /orders/{id} answers it; the events
// themselves when trading cannot answer.
void Hub::refresh_orders(const std::string& user, const std::string& key,
                         std::shared_ptr<std::vector<std::string>> events) {
  std::vector<std::pair<std::string, std::string>> ids;  // order id → its last event
  for (const auto& e : *events) {
    auto ev = json::parse(e);
    const json::Value* id = ev && ev->is_object() ? ev->find("id") : nullptr;
    if (!id || !id->is_string() || !Uuid::parse(id->as_string())) continue;
    auto at = std::find_if(ids.begin(), ids.end(),
                           [&](const auto& x) { return x.first == id->as_string(); });
    if (at != ids.end()) {
      at->second = e;
    } else if (ids.size() < kMaxOrderReadsPerRound) {
      ids.emplace_back(id->as_string(), e);
    } else {
      refreshing_[key].events.push_back(e);  // read in the next round
    }
  }
  auto self = shared_from_this();
  auto done = [self, user, key] {
    Refresh& state = self->refreshing_[key];
    state.in_flight = false;
    if (!state.events.empty())
      self->start_refresh(user, "orders");
    else
      self->refreshing_.erase(key);
  };
  if (ids.empty()) return done();
  auto left = std::make_shared<std::size_t>(ids.size());
  for (const auto& [id, last] : ids) {
    http::OutgoingRequest req{http::Method::get, "/api/v1/orders/" + id, {{"X-User-ID", user}}, {}};
    for (auto& h : service::internal_headers(*s_.ctx)) req.headers.push_back(std::move(h));
    s_.client->request(
        s_.trading, std::move(req), [self, key, last, left, done](Result<http::Response> res) {
          std::lock_guard lock(self->mu_);
          const bool ok = res && res->status == 200 && json::parse(res->body).has_value();
          self->broadcast_as(key, "orders", "orders", ok ? res->body : last);
          if (--*left == 0) done();
        });
  }
}

void Hub::start_refresh(const std::string& user, const std::string& kind) {
  const std::string key = private_key(user, kind);
  Refresh& r = refreshing_[key];
  if (r.overflow) {
    // Events were dropped: every session on this stream gets the whole state again (a snapshot,
    // read from trading like the first one), which covers every event, dropped or waiting.
    r.overflow = false;
    r.events.clear();
    if (auto subs = subscribers_.find(key); subs != subscribers_.end()) {
      for (Session* session : subs->second)
        subscribe_private(session->conn->id(), user, kind, nullptr);
    }
    refreshing_.erase(key);
    return;
  }
  r.in_flight = true;
  auto events = std::make_shared<std::vector<std::string>>(std::move(r.events));
  r.events.clear();
  if (kind == "orders") return refresh_orders(user, key, events);
  http::OutgoingRequest req{http::Method::get,
                            kind == "positions" ? "/api/v1/positions" : "/api/v1/balances",
                            {{"X-User-ID", user}},
                            {}};
  for (auto& h : service::internal_headers(*s_.ctx)) req.headers.push_back(std::move(h));
  auto self = shared_from_this();
  s_.client->request(
      s_.trading, std::move(req), [self, user, kind, key, events](Result<http::Response> res) {
        std::lock_guard lock(self->mu_);
        std::optional<json::Value> doc;
        if (res && res->status == 200) {
          if (auto d = json::parse(res->body); d && d->is_array()) doc = std::move(*d);
        }
        if (!doc) {
          // Trading did not answer: the events as they came (a subscriber still sees each change).
          for (const auto& e : *events) self->broadcast_as(key, kind, kind, e);
        } else if (kind == "balances") {
          for (const auto& item : doc->items())
            self->broadcast_as(key, kind, kind, json::dump(item));
        } else {
          // Each market an event named, once: its REST position, or the event itself when the
          // position is closed (REST lists open positions only).
          std::vector<std::pair<std::string, const std::string*>> symbols;
          for (const auto& e : *events) {
            auto ev = json::parse(e);
            const json::Value* sym = ev && ev->is_object() ? ev->find("symbol") : nullptr;
            if (!sym || !sym->is_string()) continue;
            auto at = std::find_if(symbols.begin(), symbols.end(),
                                   [&](const auto& x) { return x.first == sym->as_string(); });
            if (at == symbols.end())
              symbols.emplace_back(sym->as_string(), &e);
            else
              at->second = &e;
          }
          for (const auto& [symbol, last] : symbols) {
            const json::Value* found = nullptr;
            for (const auto& item : doc->items()) {
              const json::Value* s = item.is_object() ? item.find("symbol") : nullptr;
              if (s && s->is_string() && s->as_string() == symbol) found = &item;
            }
            self->broadcast_as(key, kind, kind, found ? json::dump(*found) : *last);
          }
        }
        Refresh& state = self->refreshing_[key];
        state.in_flight = false;
        if (!state.events.empty())
          self->start_refresh(user, kind);
        else
          self->refreshing_.erase(key);
      });
}

void Hub::broadcast_as(const std::string& key, const std::string& channel, std::string_view type,
                       const std::string& data) {
  const std::uint64_t seq = ++seq_[key];
  auto subs = subscribers_.find(key);
  if (subs == subscribers_.end() || subs->second.empty()) return;
  json::Writer w;
  w.begin_object().field("type", type).field("channel", channel).field("seq", static_cast<std::int64_t>(seq));
  w.key("data").raw_value(data).end_object();
  const auto message = std::make_shared<const std::string>(w.take());
  const std::int64_t now = now_ms();
  for (Session* session : subs->second) deliver(*session, message, now);
}

void Hub::send_snapshot(Session& session, const std::string& stream) {
  if (stream == "orders" || stream == "fills" || stream == "positions" || stream == "balances") {
    subscribe_private(session.conn->id(), session.user, stream, nullptr);  // fresh state from trading
    return;
  }
  const std::string type = stream_type(stream);
  const std::string symbol = stream.substr(stream.rfind('.') + 1);
  std::string data = "null";
  if (type == "ticker") {
    // One market's ticker object per message (`ticker`: one message per market, all at the
    // stream's current seq). Before the first ticker round there is none yet: the subscription
    // waits for one, started now, and gets its snapshot from it.
    std::vector<const std::string*> tickers;
    for (const auto& m : s_.catalog.all()) {
      if (stream != "ticker" && m.symbol != symbol) continue;
      auto t = last_ticker_.find(m.symbol);
      if (t == last_ticker_.end()) {
        ticker_waiting_.insert({session.conn->id(), stream});
        // A round now, at most once a second (when tickers cannot be computed, the 1 s tick
        // tries again; no loop of rounds).
        if (const std::int64_t now = now_ms(); now - ticker_kick_ms_ >= 1000) {
          ticker_kick_ms_ = now;
          std::weak_ptr<Hub> weak = shared_from_this();
          s_.ctx->runtime->post([weak] {
            if (auto self = weak.lock()) self->ticker_round();
          });
        }
        return;
      }
      tickers.push_back(&t->second);
    }
    for (const std::string* t : tickers) {
      json::Writer w;
      w.begin_object()
          .field("type", "ticker")
          .field("channel", stream)
          .field("seq", static_cast<std::int64_t>(seq_[stream]));
      w.field("snapshot", true).key("data").raw_value(*t).end_object();
      if (!session.conn->send(w.take())) {
        session.resyncing = true;
        return;
      }
    }
    return;
  } else if (type == "mark") {
    if (auto t = last_mark_.find(symbol); t != last_mark_.end()) data = t->second;
  } else if (type == "market") {
    if (auto t = last_market_.find(symbol); t != last_market_.end()) data = t->second;
  } else if (type == "depth") {
    Book& b = books_[symbol];
    if (!b.ready) return;  // sent when the book arrives (fetch_book)
    json::Writer w;
    w.begin_object();
    for (auto [name, side] : {std::pair{"bids", &b.bids}, std::pair{"asks", &b.asks}}) {
      w.key(name).begin_array();
      std::vector<std::pair<std::int64_t, const std::pair<const std::string, std::string>*>> levels;
      for (const auto& level : *side) levels.emplace_back(units8(level.first), &level);
      std::sort(levels.begin(), levels.end(), [&](auto& a, auto& c) { return side == &b.bids ? a.first > c.first : a.first < c.first; });
      for (const auto& [u, level] : levels) w.begin_array().raw_number(level->first).raw_number(level->second).end_array();
      w.end_array();
    }
    w.field("engine_seq", static_cast<std::int64_t>(b.engine_seq)).end_object();
    data = w.take();
  } else if (type == "trade") {
    json::Writer w;
    w.begin_array();
    if (auto t = recent_trades_.find(symbol); t != recent_trades_.end()) {
      for (const auto& trade : t->second) w.raw_value(trade);
    }
    w.end_array();
    data = w.take();
  } else if (type == "kline") {
    // The stored current bar (REST klines' values), then the trades after it: sent once loaded.
    Bar& bar = bars_[stream];
    bar.idle_since_ms = 0;
    if (!bar.ready) {
      if (!bar.loading) load_bar(stream);
      return;
    }
    const std::string interval = stream.substr(6, stream.find('.', 6) - 6);
    data = bar_json(interval, bar);
  }
  json::Writer w;
  w.begin_object().field("type", type).field("channel", stream).field("seq", static_cast<std::int64_t>(seq_[stream]));
  w.field("snapshot", true).key("data").raw_value(data).end_object();
  if (!session.conn->send(w.take())) {
    session.resyncing = true;  // overflowing already: resync when it drains
  }
}

void Hub::deliver(Session& session, const std::shared_ptr<const std::string>& message, std::int64_t now) {
  if (session.dropped) return;
  auto drop = [&] {
    dropped_sessions().inc();
    session.dropped = true;
    session.resyncing = false;
    session.conn->abort();  // it does not read: a close frame would never reach it
  };
  if (session.resyncing) {
    if (session.conn->queued_messages() > 64) {
      // Still not reading: drop the message (a snapshot follows), or the session when it has
      // fallen too far behind or stayed stuck too long.
      if (++session.missed > max_behind_ || now - session.last_resync_ms > kResyncWindowMs) drop();
      return;
    }
    session.resyncing = false;
    session.missed = 0;
    for (const auto& stream : session.streams) send_snapshot(session, stream);
  }
  if (session.conn->send_shared(message)) return;
  if (session.last_resync_ms != 0 && now - session.last_resync_ms < kResyncWindowMs) {
    drop();  // a second overflow soon after a resync
    return;
  }
  resyncs().inc();
  session.resyncing = true;
  session.missed = 0;
  session.last_resync_ms = now;
}

void Hub::broadcast(const std::string& stream, std::string_view type, const std::string& data) {
  const std::uint64_t seq = ++seq_[stream];
  auto subs = subscribers_.find(stream);
  if (subs == subscribers_.end() || subs->second.empty()) return;
  json::Writer w;
  w.begin_object().field("type", type).field("channel", stream).field("seq", static_cast<std::int64_t>(seq));
  w.key("data").raw_value(data).end_object();
  const auto message = std::make_shared<const std::string>(w.take());
  const std::int64_t now = now_ms();
  for (Session* session : subs->second) deliver(*session, message, now);
}

void Hub::on_redis(std::string_view channel_name, std::string_view message) {
  // Channels and messages as libs/events defines them (trading's side includes the same header);
  // a message that does not decode is dropped.
  const events::Channel channel = events::parse_channel(channel_name);
  if (channel.kind == events::Channel::Kind::user) {
    const std::string& user = channel.user;
    const std::string& kind = channel.user_kind;
    std::lock_guard lock(mu_);
    if (kind == "positions" || kind == "balances" || kind == "orders") {
      refresh_private(user, kind, std::string(message));
      return;
    }
    broadcast_as(private_key(user, kind), kind, kind, std::string(message));
    return;
  }
  if (channel.kind == events::Channel::Kind::trades) {
    auto t = events::decode_trade(message);
    if (!t || t->seq < 0 || t->time < 0) return;
    const std::string& symbol = channel.symbol;
    std::lock_guard lock(mu_);
    json::Writer w;
    w.begin_object().field("id", std::to_string(t->seq)).field("symbol", symbol);
    w.key("price").raw_number(t->price).key("amount").raw_number(t->amount).field("side", t->side);
    w.field("time", t->time).field("time_ms", t->time_ms).end_object();
    const std::string trade = w.take();
    broadcast("trade." + symbol, "trade", trade);
    auto& newest = last_trade_seq_[symbol];
    newest = std::max(newest, static_cast<std::uint64_t>(t->seq));
    // Recent trades for snapshots, newest first, already rendered.
    auto& recent = recent_trades_[symbol];
    recent.push_front(trade);
    if (recent.size() > kRecentTrades) recent.pop_back();
    // Klines of this symbol that someone watches (or watched within the minute).
    const BarTrade bar_trade_of{static_cast<std::uint64_t>(t->seq), t->time, t->price, t->amount};
    for (const auto& [interval, expr] : kline_intervals()) {
      const std::string stream = "kline." + interval + "." + symbol;
      auto subs = subscribers_.find(stream);
      const bool watched = subs != subscribers_.end() && !subs->second.empty();
      auto kept = bars_.find(stream);
      if (!watched && (kept == bars_.end() || !kept->second.ready)) continue;
      Bar& bar = bars_[stream];
      if (!bar.ready) {
        if (bar.pending.size() >= kMaxPendingBarTrades) {
          // The load has not come for a long time: start it again (a newer load counts these).
          bar.pending.clear();
          bar.loading = false;
          load_bar(stream);
          continue;
        }
        bar.pending.push_back(bar_trade_of);  // applied after the stored bar arrives
        if (!bar.loading) load_bar(stream);
        continue;
      }
      bar_trade(stream, interval, bar, bar_trade_of, true);
    }
  } else if (channel.kind == events::Channel::Kind::book) {
    const std::string& symbol = channel.symbol;
    std::lock_guard lock(mu_);
    Book& b = books_[symbol];
    if (!b.ready) {
      b.pending.emplace_back(message);
      return;
    }
    auto level = events::decode_book_level(message);
    if (!level || level->seq < 0 || static_cast<std::uint64_t>(level->seq) <= b.engine_seq) return;
    b.engine_seq = static_cast<std::uint64_t>(level->seq);
    auto& side = level->bid ? b.bids : b.asks;
    if (units8(level->size) == 0)
      side.erase(level->price);
    else
      side[level->price] = level->size;
    json::Writer w;
    w.begin_object()
        .key(level->bid ? "bids" : "asks")
        .begin_array()
        .begin_array()
        .raw_number(level->price);
    w.raw_number(level->size).end_array().end_array();
    w.key(level->bid ? "asks" : "bids")
        .begin_array()
        .end_array()
        .field("engine_seq", level->seq)
        .end_object();
    broadcast("depth." + symbol, "depth", w.take());
  } else if (channel.kind == events::Channel::Kind::market) {
    auto mm = events::decode_market(message);
    if (!mm) return;
    json::Writer w;
    w.begin_object().field("symbol", channel.symbol).field("status", mm->status);
    w.key("maker_fee_rate").raw_number(mm->maker_fee_rate).key("taker_fee_rate").raw_number(mm->taker_fee_rate);
    w.field("max_leverage", mm->max_leverage).key("final_price");
    if (mm->final_price.empty()) w.null(); else w.raw_number(mm->final_price);
    w.field("time_ms", mm->time_ms).end_object();
    std::lock_guard lock(mu_);
    last_market_[channel.symbol] = w.take();
    broadcast("market." + channel.symbol, "market", last_market_[channel.symbol]);
  } else if (channel.kind == events::Channel::Kind::mark) {
    auto mark = events::decode_mark(message);
    if (!mark) return;
    const std::string& symbol = channel.symbol;
    std::lock_guard lock(mu_);
    json::Writer w;
    w.begin_object().field("symbol", symbol).key("mark_price").raw_number(mark->mark_price);
    w.field("time_ms", mark->time_ms).end_object();
    last_mark_[symbol] = w.take();
    broadcast("mark." + symbol, "mark", last_mark_[symbol]);
  }
}

std::string Hub::bar_json(const std::string& interval, const Bar& bar,
                          std::optional<bool> closed) const {
  const std::int64_t now_open = bar_open(interval, now_ms() / 1000);
  json::Writer w;
  if (bar.t < 0) {
    // No trade ever: an empty bar at the current open, at the mark when there is one.
    const std::string price = bar.o.empty() ? std::string("0") : bar.o;
    w.begin_object().field("t", now_open).key("o").raw_number(price).key("h").raw_number(price);
    w.key("l")
        .raw_number(price)
        .key("c")
        .raw_number(price)
        .key("v")
        .raw_number("0")
        .field("x", false)
        .end_object();
    return w.take();
  }
  w.begin_object().field("t", bar.t).key("o").raw_number(bar.o).key("h").raw_number(bar.h);
  w.key("l").raw_number(bar.l).key("c").raw_number(bar.c).key("v").raw_number(bar.v);
  w.field("x", closed.value_or(bar.t != now_open)).end_object();
  return w.take();
}

void Hub::bar_trade(const std::string& stream, const std::string& interval, Bar& bar,
                    const BarTrade& trade, bool publish) {
  if (trade.seq != 0 && trade.seq <= bar.last_seq) return;  // inside the stored bar already
  const std::int64_t open = bar_open(interval, trade.t);
  if (bar.t == open) {
    if (units8(trade.price) > units8(bar.h)) bar.h = trade.price;
    if (units8(trade.price) < units8(bar.l)) bar.l = trade.price;
    bar.c = trade.price;
    bar.v = text8(units8(bar.v) + units8(trade.amount));
  } else if (open > bar.t) {
    if (bar.t >= 0 && publish) broadcast(stream, "kline", bar_json(interval, bar, true));
    bar.t = open;
    bar.o = bar.h = bar.l = bar.c = trade.price;
    bar.v = trade.amount;
  } else {
    return;  // a late trade for an older bar: the REST klines have it
  }
  bar.last_seq = std::max(bar.last_seq, trade.seq);
  if (publish) broadcast(stream, "kline", bar_json(interval, bar, false));
}

void Hub::expire_idle_bars() {
  const std::int64_t now = now_ms();
  for (auto it = bars_.begin(); it != bars_.end();) {
    auto subs = subscribers_.find(it->first);
    const bool watched = subs != subscribers_.end() && !subs->second.empty();
    if (!watched && it->second.idle_since_ms != 0 && now - it->second.idle_since_ms > kIdleBarMs &&
        !it->second.loading)
      it = bars_.erase(it);
    else
      ++it;
  }
}

void Hub::order_entry(Session& session, const WsRequest& request) {
  const json::Value* id = request.id ? &*request.id : nullptr;
  if (session.user.empty()) {
    session.conn->send(reply_error(id, "AUTH_REQUIRED", "order entry needs an authenticated connection"));
    return;
  }
  if (session.scope != "trade") {
    session.conn->send(reply_error(id, "FORBIDDEN", "this API key may only read"));
    return;
  }
  if (session.orders_in_flight >= kMaxOrdersInFlight) {
    session.conn->send(reply_error(id, "TOO_MANY_REQUESTS", "at most 32 order requests waiting per connection"));
    return;
  }
  const std::int64_t now = now_ms();
  if (order_budget_.size() > 100'000) order_budget_.clear();  // bounded (a fresh budget is a full one)
  OrderBudget& budget = order_budget_[session.user];
  if (budget.tokens < 0) {
    budget.tokens = s_.ws_order_burst;
  } else {
    budget.tokens = std::min(s_.ws_order_burst,
                             budget.tokens + static_cast<double>(now - budget.at_ms) * s_.ws_orders_per_s / 1000.0);
  }
  budget.at_ms = now;
  const double weight = static_cast<double>(request.weight);
  if (budget.tokens < weight) {
    session.conn->send(reply_error(id, "RATE_LIMITED", "too many order requests; retry later"));
    return;
  }
  budget.tokens -= weight;
  http::OutgoingRequest req;
  if (request.method == "order.place") {
    req.method = http::Method::post;
    req.target = "/api/v1/orders";
    req.body = json::dump(*request.params);
  } else if (request.method == "order.batch_place" || request.method == "order.batch_cancel") {
    req.method = request.method == "order.batch_place" ? http::Method::post : http::Method::del;
    req.target = "/api/v1/orders/batch";
    req.body = json::dump(*request.params);
  } else if (request.method == "order.cancel_all_after") {
    req.method = http::Method::post;
    req.target = "/api/v1/orders/cancel-all-after";
    req.body = json::dump(*request.params);
  } else if (request.method == "order.amend") {
    auto order = Uuid::parse(request.order_id);
    if (!order) {
      session.conn->send(reply_error(id, "NOT_FOUND", "no such order"));
      return;
    }
    req.method = http::Method::patch;
    req.target = "/api/v1/orders/" + order->to_string();
    req.body = json::dump(*request.params);
  } else if (request.method == "order.cancel" && !request.client_order_id.empty()) {
    // (The id's characters are checked by trading; here only that it stays one path segment.)
    if (request.client_order_id.find_first_not_of(
            "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.:-") != std::string::npos) {
      session.conn->send(reply_error(id, "INVALID_FIELD", "client_order_id must be 1-36 characters of A-Z a-z 0-9 _ . : -",
                                     "client_order_id"));
      return;
    }
    req.method = http::Method::del;
    req.target = "/api/v1/orders/by-client-id/" + request.client_order_id;
  } else if (request.method == "order.cancel") {
    auto order = Uuid::parse(request.order_id);
    if (!order) {
      session.conn->send(reply_error(id, "NOT_FOUND", "no such order"));
      return;
    }
    req.method = http::Method::del;
    req.target = "/api/v1/orders/" + order->to_string();
  } else {
    req.method = http::Method::del;
    req.target = "/api/v1/orders";
    if (!request.symbol.empty()) {
      const catalog::MarketInfo* m = s_.catalog.find(request.symbol);
      if (!m) {
        session.conn->send(reply_error(id, "INVALID_FIELD", "unknown symbol", request.symbol));
        return;
      }
      req.target += "?symbol=" + m->symbol;
    }
  }
  req.headers = {{"X-User-ID", session.user}, {"Content-Type", "application/json"}};
  for (auto& h : service::internal_headers(*s_.ctx)) req.headers.push_back(std::move(h));
  ++session.orders_in_flight;
  const std::uint64_t sid = session.conn->id();
  std::weak_ptr<Hub> weak = shared_from_this();
  const std::optional<json::Value> id_copy = request.id;
  s_.client->request(s_.trading, std::move(req), [weak, sid, id_copy](Result<http::Response> res) {
    auto self = weak.lock();
    if (!self) return;
    std::lock_guard lock(self->mu_);
    auto it = self->sessions_.find(sid);
    if (it == self->sessions_.end() || it->second.dropped) return;
    --it->second.orders_in_flight;
    const json::Value* rid = id_copy ? &*id_copy : nullptr;
    if (!res) {
      it->second.conn->send(reply_error(rid, "UNAVAILABLE", "trading unavailable; the order's fate is unknown, check GET /orders"));
      return;
    }
    // Trading's answer as REST gives it: the body under "result" (2xx) or its error under "error".
    auto body = json::parse(res->body);
    json::Writer w;
    w.begin_object();
    write_id(w, rid);
    w.field("status", res->status);
    if (res->status >= 200 && res->status < 300 && body) {
      w.key("result").raw_value(json::dump(*body));
    } else if (body && body->is_object() && body->find("error")) {
      w.key("error").raw_value(json::dump(*body->find("error")));
    } else {
      w.key("error").begin_object().field("code", "UNAVAILABLE").field("message", "trading answered nonsense").end_object();
    }
    w.end_object();
    it->second.conn->send(w.take());
  });
}

void Hub::load_bar_later(const std::string& stream, std::uint64_t generation, std::chrono::milliseconds delay) {
  std::weak_ptr<Hub> weak = shared_from_this();
  s_.ctx->runtime->after(delay, [weak, stream, generation] {
    auto hub = weak.lock();
    if (!hub) return;
    std::lock_guard lock(hub->mu_);
    auto b = hub->bars_.find(stream);
    // Still the same load (a reset bar has a newer one, or none) and still not loaded.
    if (b != hub->bars_.end() && b->second.generation == generation && !b->second.ready) hub->load_bar(stream, true);
  });
}

void Hub::load_bar(const std::string& stream, bool again) {
  Bar& bar = bars_[stream];
  // Trades seen before this load are not kept for it: the stored bar must already hold them.
  // Trading writes the read tables behind its acknowledgement (and its publication), so a bar
  // read before they reach the newest trade seen when the load began is read again shortly.
  if (!again) bar.wait_seq = last_trade_seq_[stream.substr(stream.rfind('.') + 1)];
  bar.loading = true;
  bar.generation = ++bar_generation_;
  if (bar_loads_in_flight_ >= kMaxBarLoadsInFlight) {
    load_bar_later(stream, bar.generation, std::chrono::milliseconds(100));  // its turn comes
    return;
  }
  const std::string interval = stream.substr(6, stream.find('.', 6) - 6);
  const catalog::MarketInfo* m = s_.catalog.find(stream.substr(stream.rfind('.') + 1));
  if (!m) return;
  ++bar_loads_in_flight_;
  std::weak_ptr<Hub> weak = shared_from_this();
  auto retry = [weak, stream, generation = bar.generation] {
    if (auto self = weak.lock()) self->load_bar_later(stream, generation, std::chrono::seconds(1));
  };
  const std::uint64_t seen = bar.wait_seq;
  const bool queued = s_.ctx->runtime->try_blocking(
      [weak, stream, interval, m, generation = bar.generation, retry, seen] {
        auto self = weak.lock();
        if (!self) return;
        auto current = [&] {
          auto b = self->bars_.find(stream);
          return b != self->bars_.end() && b->second.generation == generation;
        };
        {
          std::lock_guard lock(self->mu_);
          if (!current()) {  // reset or gone before its turn: no query
            --self->bar_loads_in_flight_;
            return;
          }
        }
        auto stored = latest_bar(self->s_, *m, interval);
        std::lock_guard lock(self->mu_);
        --self->bar_loads_in_flight_;
        auto b = self->bars_.find(stream);
        if (!current()) return;  // reset meanwhile
        if (!stored) return retry();
        if (stored->projected_seq < seen) {
          return self->load_bar_later(stream, generation, std::chrono::milliseconds(50));
        }
        Bar& loaded = b->second;
        loaded.t = stored->t;
        loaded.o = stored->o;
        loaded.h = stored->h;
        loaded.l = stored->l;
        loaded.c = stored->c;
        loaded.v = stored->v;
        loaded.last_seq = stored->last_seq;
        auto pending = std::move(loaded.pending);
        loaded.pending.clear();
        std::sort(pending.begin(), pending.end(),
                  [](const BarTrade& a, const BarTrade& c) { return a.seq < c.seq; });
        for (const auto& trade : pending) self->bar_trade(stream, interval, loaded, trade, false);
        loaded.ready = true;
        loaded.loading = false;
        for (Session* session : self->subscribers_[stream]) self->send_snapshot(*session, stream);
      });
  if (!queued) {
    --bar_loads_in_flight_;
    retry();
  }
}

void Hub::fetch_book(const std::string& symbol) {
  auto self = shared_from_this();
  http::OutgoingRequest req{http::Method::get,
                            "/internal/v1/orderbook?symbol=" + symbol + "&depth=1000",
                            service::internal_headers(*s_.ctx),
                            {}};
  s_.client->request(s_.trading, std::move(req), [self, symbol](Result<http::Response> r) {
    if (!r || r->status != 200) {
      self->s_.ctx->runtime->after(std::chrono::seconds(1), [self, symbol] { self->fetch_book(symbol); });
      return;
    }
    auto doc = json::parse(r->body);
    if (!doc) return;
    std::lock_guard lock(self->mu_);
    Book& b = self->books_[symbol];
    b.bids.clear();
    b.asks.clear();
    for (auto [name, side] : {std::pair{"bids", &b.bids}, std::pair{"asks", &b.asks}}) {
      for (const auto& level : doc->find(name)->items()) {
        (*side)[std::string(level.items()[0].number_text())] = std::string(level.items()[1].number_text());
      }
    }
    b.engine_seq = static_cast<std::uint64_t>(*doc->find("seq")->as_int(0, INT64_MAX));
    b.ready = true;
    auto pending = std::move(b.pending);
    b.pending.clear();
    for (const auto& message : pending) {
      // Deltas newer than the snapshot, in order (older ones are inside it).
      self->mu_.unlock();
      self->on_redis(events::book_channel(symbol), message);
      self->mu_.lock();
    }
    // Everyone watching this book gets it whole: a first snapshot, or a resync after a reconnect.
    const std::string stream = "depth." + symbol;
    for (Session* session : self->subscribers_[stream]) self->send_snapshot(*session, stream);
  });
}

void Hub::recheck_credentials() {
  std::vector<std::pair<std::uint64_t, std::string>> due;  // session, credential hash
  {
    std::lock_guard lock(mu_);
    const std::int64_t now = now_ms();
    if (now - last_recheck_ms_ < s_.ws_auth_recheck_ms) return;
    last_recheck_ms_ = now;
    for (const auto& [sid, session] : sessions_) {
      if (!session.credential.empty() && !session.dropped)
        due.emplace_back(sid, session.credential);
    }
  }
  if (due.empty()) return;
  std::weak_ptr<Hub> weak = shared_from_this();
  (void)s_.ctx->runtime->try_blocking([weak, due = std::move(due)] {
    auto self = weak.lock();
    if (!self) return;
    std::map<std::string, bool> live;  // hash → still live (each looked up once)
    for (const auto& [sid, hash] : due) {
      if (live.count(hash)) continue;
      auto cred =
          service::resolve_credential(*self->s_.ctx, *self->s_.client, self->s_.user_service, hash);
      live[hash] = !cred || cred->has_value();  // unavailable: keep (checked again next round)
    }
    std::lock_guard guard(self->mu_);
    for (const auto& [sid, hash] : due) {
      auto it = self->sessions_.find(sid);
      if (it == self->sessions_.end() || it->second.credential != hash) continue;
      Session& session = it->second;
      if (live[hash]) {
        session.checked_ms = now_ms();
        continue;
      }
      // Revoked or expired: its private streams end; public ones go on, anonymously.
      std::vector<std::string> ended;
      for (const auto& [stream, key] : session.private_as) ended.push_back(stream);
      for (const auto& stream : {"orders", "fills", "positions", "balances"}) {
        if (session.streams.count(stream)) ended.push_back(stream);
      }
      for (const auto& stream : ended) {
        self->leave(session, stream);
        session.streams.erase(stream);
      }
      session.user.clear();
      session.scope.clear();
      session.credential.clear();
      session.conn->send(reply_error(nullptr, "AUTH_EXPIRED",
                                     "the session or API key ended: private streams stopped"));
    }
  });
}

void Hub::tick() {
  recheck_credentials();
  {
    std::lock_guard lock(mu_);
    expire_idle_bars();
  }
  ticker_round();
}

// Every second (and at once for a subscription waiting for its first ticker): each watched
// market's ticker, computed on the blocking pool, then one message per market on `ticker` and
// on `ticker.<S>`.
void Hub::ticker_round() {
  std::vector<const catalog::MarketInfo*> wanted;
  {
    std::lock_guard lock(mu_);
    if (ticker_round_running_) return;
    auto a = subscribers_.find("ticker");
    const bool all = a != subscribers_.end() && !a->second.empty();
    for (const auto& m : s_.catalog.all()) {
      auto one = subscribers_.find("ticker." + m.symbol);
      if (all || (one != subscribers_.end() && !one->second.empty())) wanted.push_back(&m);
    }
    if (wanted.empty()) return;
    ticker_round_running_ = true;
  }
  auto self = shared_from_this();
  const bool queued = s_.ctx->runtime->try_blocking([self, wanted] {
    std::vector<std::pair<std::string, std::string>> tickers;
    for (const auto* m : wanted) {
      auto t = ticker_json(self->s_, *m, false);
      if (t) tickers.emplace_back(m->symbol, *t);
    }
    std::lock_guard lock(self->mu_);
    self->ticker_round_running_ = false;
    for (const auto& [symbol, t] : tickers) self->last_ticker_[symbol] = t;
    // Waiting subscriptions get their snapshot first (at the seq the updates below follow).
    auto waiting = std::move(self->ticker_waiting_);
    self->ticker_waiting_.clear();
    for (const auto& [sid, stream] : waiting) {
      auto it = self->sessions_.find(sid);
      if (it != self->sessions_.end() && it->second.streams.count(stream) && !it->second.dropped)
        self->send_snapshot(it->second, stream);
    }
    for (const auto& [symbol, t] : tickers) {
      self->broadcast("ticker." + symbol, "ticker", t);
      self->broadcast("ticker", "ticker", t);
    }
  });
  if (!queued) {
    std::lock_guard lock(mu_);
    ticker_round_running_ = false;
  }
}

void Hub::stop() {
  subscriber_.reset();  // joins the subscriber thread
  std::lock_guard lock(mu_);
  sessions_.clear();
  subscribers_.clear();
}

void Hub::load_markets() {
  auto plain = [](std::string_view numeric) {
    auto d = decimal::parse(numeric);
    return d ? decimal::format(*d) : std::string(numeric);
  };
  std::unordered_map<std::string, std::string> loaded;
  for (const auto& m : s_.catalog.all()) {  // as listed, unless market_state says otherwise
    json::Writer w;
    w.begin_object().field("symbol", m.symbol).field("status", "ACTIVE");
    w.key("maker_fee_rate").raw_number(decimal::format(static_cast<std::int64_t>(m.spec.maker_fee_ppm), 6));
    w.key("taker_fee_rate").raw_number(decimal::format(static_cast<std::int64_t>(m.spec.taker_fee_ppm), 6));
    w.field("max_leverage", static_cast<std::int64_t>(m.spec.max_leverage)).key("final_price").null();
    w.field("time_ms", std::int64_t{0}).end_object();
    loaded[m.symbol] = w.take();
  }
  std::unordered_map<std::string, std::string> stored;  // market_state rows: the truth when read
  if (auto lease = s_.ctx->db->acquire(); !lease) {
    log::warn("market states not loaded (the market stream's snapshots show the listing until a change)",
              {{"error", lease.error().message}});
  } else {
    auto rows = (*lease)->exec(db::Query{"hub_market_state",
                                         "SELECT m.symbol, s.status, s.maker_fee_rate::text, s.taker_fee_rate::text, s.max_leverage,"
                                         " s.final_price::text, (extract(epoch from s.updated_at) * 1000)::bigint"
                                         " FROM market_state s JOIN markets m ON m.id = s.market_id"});
    for (int i = 0; rows && i < rows->size(); ++i) {
      json::Writer w;
      w.begin_object().field("symbol", rows->get(i, 0)).field("status", rows->get(i, 1));
      w.key("maker_fee_rate").raw_number(plain(rows->get(i, 2))).key("taker_fee_rate").raw_number(plain(rows->get(i, 3)));
      w.key("max_leverage").raw_number(rows->get(i, 4)).key("final_price");
      if (rows->is_null(i, 5)) w.null(); else w.raw_number(plain(rows->get(i, 5)));
      w.key("time_ms").raw_number(rows->get(i, 6)).end_object();
      stored[std::string(rows->get(i, 0))] = w.take();
    }
    if (!rows) log::warn("market states not loaded", {{"error", rows.error().message}});
  }
  std::lock_guard lock(mu_);
  for (auto& [symbol, data] : stored) last_market_[symbol] = std::move(data);
  for (auto& [symbol, data] : loaded) last_market_.try_emplace(symbol, std::move(data));
}

void Hub::start() {
  load_markets();
  auto self = shared_from_this();
  subscriber_ = std::make_unique<redis::Subscriber>(
      s_.ctx->redis_address, std::vector<std::string>{}, events::hub_patterns(),
      [self](std::string_view channel, std::string_view message) {
        self->on_redis(channel, message);
      },
      [self] {
        // Messages were lost while Redis was away: rebuild the books and resend every snapshot
        // (the markets' status read again: a halt or delisting may be among what was lost).
        self->load_markets();
        std::vector<std::string> symbols;
        {
          std::lock_guard lock(self->mu_);
          for (auto& [symbol, book] : self->books_) {
            book.ready = false;
            book.pending.clear();
            symbols.push_back(symbol);
          }
          // Trades were lost too: every watched bar is loaded again (send_snapshot below).
          for (auto& [stream, bar] : self->bars_) {
            bar.ready = bar.loading = false;
            bar.pending.clear();
            bar.generation = ++self->bar_generation_;
          }
          for (auto& [id, session] : self->sessions_) {
            for (const auto& stream : session.streams) {
              if (self->stream_type(stream) != "depth") self->send_snapshot(session, stream);
            }
          }
        }
        for (const auto& symbol : symbols) self->fetch_book(symbol);
      });
  for (const auto& m : s_.catalog.all()) {
    {
      std::lock_guard lock(mu_);
      books_[m.symbol];
    }
    fetch_book(m.symbol);
  }
  s_.ctx->runtime->every(std::chrono::seconds(1), [self] { self->tick(); });
}

}  // namespace hydrox::market
