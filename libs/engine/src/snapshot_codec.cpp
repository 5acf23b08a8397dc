#include "hydrox/engine/snapshot_codec.hpp"

#include <cstring>
#include <map>
#include <set>
#include <type_traits>

namespace hydrox::engine {

namespace {

constexpr char kMagic[8] = {'H', 'X', 'S', 'N', 'A', 'P', '\0', '\0'};
// 2: the markets' order limits after last_trade; 3: the dead man's switches after the vaults;
// 4: the orders' trigger_by and take-profit / stop-loss links after them (1 to 3 are still read).
constexpr std::uint32_t kVersion = 5;
// magic, version, body length, body checksum
constexpr std::size_t kHeader = sizeof(kMagic) + 4 + 8 + 8;

// FNV-1a over the body, 64 bits: detects truncation and stray changes (not an adversary: the
// snapshot lives in the exchange's own database).
std::uint64_t checksum(std::string_view body) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : body) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

class Writer {
 public:
  std::string out;
  template <class T>
  void put(T v) {
    static_assert(std::is_integral_v<T> || std::is_enum_v<T>);
    if constexpr (std::is_enum_v<T>) {
      put(static_cast<std::underlying_type_t<T>>(v));
    } else if constexpr (std::is_same_v<T, bool>) {
      put(static_cast<std::uint8_t>(v ? 1 : 0));
    } else {
      using U = std::make_unsigned_t<T>;
      U u = static_cast<U>(v);
      for (std::size_t i = 0; i < sizeof(T); ++i) out.push_back(static_cast<char>((u >> (8 * i)) & 0xff));
    }
  }
  void put(const Uuid& u) {
    put(u.hi);
    put(u.lo);
  }
  void count(std::size_t n) { put(static_cast<std::uint64_t>(n)); }
};

class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}
  bool ok() const { return ok_; }
  void invalidate() { ok_ = false; }
  bool done() const { return pos_ == in_.size(); }
  template <class T>
  T get() {
    static_assert(std::is_integral_v<T> || std::is_enum_v<T>);
    if constexpr (std::is_enum_v<T>) {
      return static_cast<T>(get<std::underlying_type_t<T>>());
    } else if constexpr (std::is_same_v<T, bool>) {
      const auto b = get<std::uint8_t>();
      if (b > 1) ok_ = false;
      return b == 1;
    } else {
      using U = std::make_unsigned_t<T>;
      if (in_.size() - pos_ < sizeof(T)) {
        ok_ = false;
        pos_ = in_.size();
        return T{};
      }
      U u = 0;
      for (std::size_t i = 0; i < sizeof(T); ++i) u |= static_cast<U>(static_cast<unsigned char>(in_[pos_ + i])) << (8 * i);
      pos_ += sizeof(T);
      return static_cast<T>(u);
    }
  }
  Uuid uuid() {
    Uuid u;
    u.hi = get<std::uint64_t>();
    u.lo = get<std::uint64_t>();
    return u;
  }
  // A element count, bounded by the bytes left (each element takes at least `min_size`), so a
  // corrupt count cannot make the decoder reserve gigabytes.
  std::size_t count(std::size_t min_size) {
    const auto n = get<std::uint64_t>();
    if (!ok_ || n > (in_.size() - pos_) / min_size) {
      ok_ = false;
      return 0;
    }
    return static_cast<std::size_t>(n);
  }

 private:
  std::string_view in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
};

void put_position(Writer& w, const Position& p) {
  w.put(p.size);
  w.put(p.cost);
  w.put(p.realized_pnl);
  w.put(p.leverage);
  w.put(p.funding);
  w.put(p.isolated);
  w.put(p.margin);
}

Position get_position(Reader& r) {
  Position p;
  p.size = r.get<Qty>();
  p.cost = r.get<Usdm>();
  p.realized_pnl = r.get<Usdm>();
  p.leverage = r.get<std::int32_t>();
  p.funding = r.get<Usdm>();
  p.isolated = r.get<bool>();
  p.margin = r.get<Usdm>();
  return p;
}

void put_client_id(Writer& w, const ClientOrderId& c) {
  w.put(c.len);
  for (std::size_t i = 0; i < c.len; ++i) w.put(static_cast<std::uint8_t>(c.data[i]));
}

ClientOrderId get_client_id(Reader& r) {
  ClientOrderId c;
  const auto len = r.get<std::uint8_t>();
  if (len > c.data.size()) {
    r.invalidate();
    return c;
  }
  c.len = len;
  for (std::size_t i = 0; i < len; ++i) c.data[i] = static_cast<char>(r.get<std::uint8_t>());
  return c;
}

void put_order(Writer& w, const Order& o) {
  w.put(o.id.value());
  w.put(o.account);
  w.put(o.market);
  w.put(o.side);
  w.put(o.type);
  w.put(o.tif);
  w.put(o.status);
  w.put(o.reduce_only);
  w.put(o.leverage);
  w.put(o.price);
  w.put(o.qty);
  w.put(o.filled);
  w.put(o.remaining);
  w.put(o.filled_notional);
  w.put(o.margin);
  w.put(o.priority);
  w.put(o.trigger_price);
  w.put(o.ts_ms);
  put_client_id(w, o.client_order_id);
}

Order get_order(Reader& r) {
  Order o;
  o.id = OrderId{r.uuid()};
  o.account = r.get<std::uint32_t>();
  o.market = r.get<std::uint32_t>();
  o.side = r.get<Side>();
  o.type = r.get<OrderType>();
  o.tif = r.get<TimeInForce>();
  o.status = r.get<OrderStatus>();
  o.reduce_only = r.get<bool>();
  o.leverage = r.get<std::int32_t>();
  o.price = r.get<Price>();
  o.qty = r.get<Qty>();
  o.filled = r.get<Qty>();
  o.remaining = r.get<Qty>();
  o.filled_notional = r.get<Usdm>();
  o.margin = r.get<Usdm>();
  o.priority = r.get<Seq>();
  o.trigger_price = r.get<Price>();
  o.ts_ms = r.get<std::int64_t>();
  o.client_order_id = get_client_id(r);
  return o;
}

void put_vault(Writer& w, const Vault& v) {
  w.put(v.id);
  w.put(v.account);
  w.put(v.leader);
  w.put(v.total_shares);
  w.put(v.lock_ms);
  w.put(v.performance_fee_ppm);
  w.put(v.management_fee_ppm);
  w.put(v.min_deposit);
  w.put(v.capacity);
  w.put(v.protocol);
  w.put(v.last_fee_ms);
  w.count(v.holders.size());
  for (const auto& [account, h] : v.holders) {
    w.put(account);
    w.put(h.shares);
    w.put(h.cost);
    w.count(h.lots.size());
    for (const auto& lot : h.lots) {
      w.put(lot.shares);
      w.put(lot.unlock_ms);
    }
  }
}

Vault get_vault(Reader& r) {
  Vault v;
  v.id = r.uuid();
  v.account = r.get<std::uint32_t>();
  v.leader = r.get<std::uint32_t>();
  v.total_shares = r.get<Usdm>();
  v.lock_ms = r.get<std::int64_t>();
  v.performance_fee_ppm = r.get<std::int32_t>();
  v.management_fee_ppm = r.get<std::int32_t>();
  v.min_deposit = r.get<Usdm>();
  v.capacity = r.get<Usdm>();
  v.protocol = r.get<bool>();
  v.last_fee_ms = r.get<std::int64_t>();
  const std::size_t holders = r.count(4 + 8 + 8 + 8);
  for (std::size_t i = 0; i < holders && r.ok(); ++i) {
    const auto account = r.get<std::uint32_t>();
    VaultHolding h;
    h.shares = r.get<Usdm>();
    h.cost = r.get<Usdm>();
    const std::size_t lots = r.count(16);
    h.lots.reserve(lots);
    for (std::size_t k = 0; k < lots && r.ok(); ++k) {
      VaultLot lot;
      lot.shares = r.get<Usdm>();
      lot.unlock_ms = r.get<std::int64_t>();
      h.lots.push_back(lot);
    }
    v.holders.emplace(account, std::move(h));
  }
  return v;
}

template <class T>
void put_values(Writer& w, const std::vector<T>& values) {
  w.count(values.size());
  for (const T& v : values) w.put(v);
}

template <class T>
std::vector<T> get_values(Reader& r) {
  std::vector<T> out(r.count(sizeof(T)));
  for (auto& v : out) v = r.get<T>();
  return out;
}

}  // namespace

std::string encode_snapshot(const Snapshot& s) {
  Writer w;
  w.out.reserve(64 + s.accounts.size() * 64 + s.orders.size() * 120);
  w.put(s.seq);
  w.put(s.net_deposits);
  put_values(w, s.marks);
  put_values(w, s.last_funding_ms);
  put_values(w, s.last_trade);
  w.count(s.limits.size());
  for (const auto& l : s.limits) {
    for (std::int64_t v : l) w.put(v);
  }
  w.count(s.accounts.size());
  for (const auto& a : s.accounts) {
    w.put(a.user.value());
    w.put(a.collateral);
    w.count(a.positions.size());
    for (const auto& p : a.positions) put_position(w, p);
  }
  w.count(s.orders.size());
  for (const auto& o : s.orders) put_order(w, o);
  w.count(s.client_ids.size());
  for (const auto& c : s.client_ids) {
    w.put(c.user.value());
    put_client_id(w, c.client_order_id);
    w.put(c.order.value());
  }
  w.count(s.vaults.size());
  for (const auto& v : s.vaults) put_vault(w, v);
  w.count(s.cancel_after.size());
  for (const auto& [account, deadline] : s.cancel_after) {
    w.put(account);
    w.put(deadline);
  }
  w.count(s.order_links.size());
  for (const auto& l : s.order_links) {
    w.put(l.order.value());
    w.put(l.trigger_by);
    w.put(l.links);
    w.put(l.partner.value());
  }
  w.count(s.withdrawals.size());
  for (const auto& [id, wd] : s.withdrawals) {
    w.put(id);
    w.put(wd.account);
    w.put(wd.amount);
    w.put(static_cast<std::uint8_t>(wd.status));
    w.put(wd.day);
    w.put(wd.seq);
  }
  w.count(s.market_state.size());
  for (const auto& ms : s.market_state) {
    for (std::int64_t x : ms) w.put(x);
  }  // (6 values each)
  w.count(s.withdrawn_today.size());
  for (const auto& t : s.withdrawn_today) {
    w.put(t.account);
    w.put(t.day);
    w.put(t.amount);
  }

  Writer head;
  head.out.append(kMagic, sizeof(kMagic));
  head.put(kVersion);
  head.put(static_cast<std::uint64_t>(w.out.size()));
  head.put(checksum(w.out));
  return head.out + w.out;
}

Result<Snapshot> decode_snapshot(std::string_view bytes) {
  if (bytes.size() < kHeader || std::memcmp(bytes.data(), kMagic, sizeof(kMagic)) != 0) {
    return fail(Code::internal, "not an engine snapshot");
  }
  Reader head(bytes.substr(sizeof(kMagic), kHeader - sizeof(kMagic)));
  const auto version = head.get<std::uint32_t>();
  const auto length = head.get<std::uint64_t>();
  const auto sum = head.get<std::uint64_t>();
  if (version < 1 || version > kVersion) {
    return fail(Code::internal, "engine snapshot format " + std::to_string(version) +
                                    ", expected " + std::to_string(kVersion));
  }
  const std::string_view body = bytes.substr(kHeader);
  if (length != body.size() || checksum(body) != sum) return fail(Code::internal, "engine snapshot truncated or altered");

  Reader r(body);
  Snapshot s;
  s.seq = r.get<Seq>();
  s.net_deposits = r.get<Usdm>();
  s.marks = get_values<Price>(r);
  s.last_funding_ms = get_values<std::int64_t>(r);
  s.last_trade = get_values<Price>(r);
  if (version >= 2) {
    const std::size_t markets = r.count(4 * 8);
    for (std::size_t i = 0; i < markets && r.ok(); ++i) {
      std::array<std::int64_t, 4> l{};
      for (auto& v : l) v = r.get<std::int64_t>();
      if (l[0] <= 0 || l[1] <= 0 || l[2] <= 0 || l[3] <= 0)
        return fail(Code::internal, "engine snapshot has bad market limits");
      s.limits.push_back(l);
    }
  }
  const std::size_t accounts = r.count(16 + 8 + 8);
  s.accounts.reserve(accounts);
  for (std::size_t i = 0; i < accounts && r.ok(); ++i) {
    Snapshot::AccountState a;
    a.user = UserId{r.uuid()};
    a.collateral = r.get<Usdm>();
    const std::size_t positions = r.count(8 * 5 + 4 + 1);
    a.positions.reserve(positions);
    for (std::size_t k = 0; k < positions && r.ok(); ++k) a.positions.push_back(get_position(r));
    s.accounts.push_back(std::move(a));
  }
  const std::size_t orders = r.count(100);
  s.orders.reserve(orders);
  for (std::size_t i = 0; i < orders && r.ok(); ++i) s.orders.push_back(get_order(r));
  const std::size_t client_ids = r.count(16 + 1 + 16);
  s.client_ids.reserve(client_ids);
  for (std::size_t i = 0; i < client_ids && r.ok(); ++i) {
    Snapshot::ClientId c;
    c.user = UserId{r.uuid()};
    c.client_order_id = get_client_id(r);
    c.order = OrderId{r.uuid()};
    s.client_ids.push_back(c);
  }
  const std::size_t vaults = r.count(16 + 8 * 8);
  for (std::size_t i = 0; i < vaults && r.ok(); ++i) s.vaults.push_back(get_vault(r));
  if (version >= 3) {
    const std::size_t switches = r.count(4 + 8);
    for (std::size_t i = 0; i < switches && r.ok(); ++i) {
      const auto account = r.get<std::uint32_t>();
      const auto deadline = r.get<std::int64_t>();
      s.cancel_after.emplace_back(account, deadline);
    }
  }
  if (version >= 4) {
    const std::size_t links = r.count(16 + 1 + 1 + 16);
    for (std::size_t i = 0; i < links && r.ok(); ++i) {
      Snapshot::OrderLinks l;
      l.order = OrderId{r.uuid()};
      const auto by = r.get<std::uint8_t>();
      l.links = r.get<std::uint8_t>();
      l.partner = OrderId{r.uuid()};
      if (by > 1 || l.links > (kLinkPosition | kLinkOco)) return fail(Code::internal, "engine snapshot has bad order links");
      l.trigger_by = static_cast<TriggerBy>(by);
      s.order_links.push_back(l);
    }
  }
  if (version >= 5) {
    const std::size_t withdrawals = r.count(16 + 4 + 8 + 1 + 8 + 8);
    for (std::size_t i = 0; i < withdrawals && r.ok(); ++i) {
      const Uuid id = r.uuid();
      Withdrawal w;
      w.account = r.get<std::uint32_t>();
      w.amount = r.get<std::int64_t>();
      const auto status = r.get<std::uint8_t>();
      w.day = r.get<std::int64_t>();
      w.seq = r.get<std::uint64_t>();
      if (status > static_cast<std::uint8_t>(WithdrawalStatus::processing)) {
        return fail(Code::internal, "engine snapshot has a withdrawal that is not in flight");
      }
      w.status = static_cast<WithdrawalStatus>(status);
      s.withdrawals.emplace_back(id, w);
    }
    const std::size_t markets = r.count(6 * 8);
    for (std::size_t i = 0; i < markets && r.ok(); ++i) {
      std::array<std::int64_t, 6> ms{};
      for (auto& x : ms) x = r.get<std::int64_t>();
      if (ms[0] < 0 || ms[0] > static_cast<std::int64_t>(MarketStatus::delisted) || ms[1] < 0 || ms[1] > kMaxMarketNotional ||
          ms[2] < 0 || ms[2] > kMaxFeePpm || ms[3] < 0 || ms[3] > kMaxFeePpm || ms[4] < 1 || ms[4] > kMaxLeverage ||
          (ms[0] == static_cast<std::int64_t>(MarketStatus::delisted)) != (ms[1] > 0)) {
        return fail(Code::internal, "engine snapshot has a bad market state");
      }
      s.market_state.push_back(ms);
    }
    const std::size_t days = r.count(4 + 8 + 8);
    for (std::size_t i = 0; i < days && r.ok(); ++i) {
      Snapshot::WithdrawnToday t;
      t.account = r.get<std::uint32_t>();
      t.day = r.get<std::int64_t>();
      t.amount = r.get<std::int64_t>();
      s.withdrawn_today.push_back(t);
    }
  }
  if (!r.ok() || !r.done()) return fail(Code::internal, "engine snapshot malformed");
  // References the engine's load() follows: every order's account and market, every vault's.
  for (const auto& o : s.orders) {
    if (o.account >= s.accounts.size() || o.market >= s.marks.size()) return fail(Code::internal, "engine snapshot references a missing account or market");
  }
  for (const auto& v : s.vaults) {
    if (v.account >= s.accounts.size() || v.leader >= s.accounts.size()) return fail(Code::internal, "engine snapshot references a missing account");
  }
  for (const auto& [account, deadline] : s.cancel_after) {
    if (account >= s.accounts.size() || deadline <= 0) return fail(Code::internal, "engine snapshot has a bad dead man's switch");
  }
  if (!s.market_state.empty() && s.market_state.size() != s.marks.size()) {
    return fail(Code::internal, "engine snapshot has a market state per market or none");
  }
  // A delisted market holds nothing: no order, no position.
  for (std::size_t m = 0; m < s.market_state.size(); ++m) {
    if (s.market_state[m][0] != static_cast<std::int64_t>(MarketStatus::delisted)) continue;
    for (const auto& o : s.orders) {
      if (o.market == m) return fail(Code::internal, "engine snapshot has an order in a delisted market");
    }
    for (const auto& a : s.accounts) {
      if (m < a.positions.size() && a.positions[m].size != 0) return fail(Code::internal, "engine snapshot has a position in a delisted market");
    }
  }
  {
    std::set<Uuid> ids;
    std::map<std::uint32_t, std::pair<Usdm, std::uint32_t>> per_account;
    for (const auto& [id, w] : s.withdrawals) {
      if (w.account >= s.accounts.size() || w.amount <= 0 || w.amount > kMaxTotalUsdm || id.is_nil() ||
          !ids.insert(id).second) {
        return fail(Code::internal, "engine snapshot has a bad withdrawal");
      }
      auto& [in_flight, count] = per_account[w.account];
      in_flight += w.amount;
      if (in_flight > kMaxTotalUsdm || ++count > kMaxWithdrawalsInFlight) {
        return fail(Code::internal, "engine snapshot has too much in flight for one account");
      }
    }
    std::set<std::uint32_t> days;
    for (const auto& t : s.withdrawn_today) {
      if (t.account >= s.accounts.size() || t.amount < 0 || t.amount > kMaxTotalUsdm || !days.insert(t.account).second) {
        return fail(Code::internal, "engine snapshot has a bad withdrawal day");
      }
    }
  }
  // Order links: each names an order of the snapshot; a trigger_by or an OCO link only a held
  // order; an OCO partner another held order of the same account that names this one back.
  if (!s.order_links.empty()) {
    std::map<Uuid, const Order*> by_id;
    for (const auto& o : s.orders) by_id[o.id.value()] = &o;
    std::map<Uuid, const Snapshot::OrderLinks*> links;
    for (const auto& l : s.order_links) links[l.order.value()] = &l;
    for (const auto& l : s.order_links) {
      auto o = by_id.find(l.order.value());
      if (o == by_id.end()) return fail(Code::internal, "engine snapshot links a missing order");
      const bool held = o->second->status == OrderStatus::untriggered;
      if ((l.trigger_by != TriggerBy::mark || (l.links & kLinkOco)) && !held) {
        return fail(Code::internal, "engine snapshot links an order that is not held");
      }
      if (l.links & kLinkOco) {
        auto p = by_id.find(l.partner.value());
        auto back = links.find(l.partner.value());
        if (l.partner == l.order || p == by_id.end() || p->second->account != o->second->account ||
            back == links.end() || !(back->second->links & kLinkOco) || back->second->partner != l.order) {
          return fail(Code::internal, "engine snapshot has a bad take-profit / stop-loss pair");
        }
      }
    }
  }
  return s;
}

}  // namespace hydrox::engine
