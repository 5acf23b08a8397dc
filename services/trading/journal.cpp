#include "journal.hpp"

#include "hydrox/json/json.hpp"

namespace hydrox::trading {

using namespace engine;

std::string_view side_name(Side s) { return s == Side::buy ? "Buy" : "Sell"; }
std::string_view type_name(OrderType t) {
  switch (t) {
    case OrderType::limit: return "Limit";
    case OrderType::market: return "Market";
    case OrderType::stop_limit: return "StopLimit";
    case OrderType::stop_market: return "StopMarket";
    case OrderType::take_profit_limit: return "TakeProfitLimit";
    case OrderType::take_profit_market: return "TakeProfitMarket";
  }
  return "Limit";
}
std::string_view tif_name(TimeInForce t) {
  switch (t) {
    case TimeInForce::gtc: return "GTC";
    case TimeInForce::ioc: return "IOC";
    case TimeInForce::fok: return "FOK";
    case TimeInForce::post_only: return "PostOnly";
  }
  return "GTC";
}
std::string_view status_name(OrderStatus s) {
  switch (s) {
    case OrderStatus::open: return "Open";
    case OrderStatus::partially_filled: return "PartiallyFilled";
    case OrderStatus::filled: return "Filled";
    case OrderStatus::cancelled: return "Cancelled";
    case OrderStatus::rejected: return "Rejected";
    case OrderStatus::untriggered: return "Untriggered";
    case OrderStatus::triggered: return "Triggered";
  }
  return "Open";
}

std::string command_kind(const Command& c) {
  static constexpr const char* kNames[] = {
      "place",    "cancel",  "cancel_all",   "deposit",       "withdraw",       "mark",
      "leverage", "funding", "vault_create", "vault_deposit", "vault_withdraw", "market_limits",
      "amend",    "cancel_after", "cancel_expired", "margin",        "tpsl",           "withdrawal_request",
      "withdrawal_update", "market_status", "market_params"};
  static_assert(std::size(kNames) == std::variant_size_v<Command>);
  return kNames[c.index()];
}

std::string encode_command(const Command& command, const Catalog& catalog) {
  json::Writer w;
  w.begin_object();
  std::visit(
      [&](const auto& c) {
        using T = std::decay_t<decltype(c)>;
        w.field("t", command_kind(command));
        if constexpr (std::is_same_v<T, PlaceOrder>) {
          w.field("user", c.user.value().to_string()).field("id", c.id.value().to_string());
          w.field("market", catalog.at(c.market).id);
          w.field("side", side_name(c.side)).field("type", type_name(c.type)).field("tif", tif_name(c.tif));
          w.field("price", c.price).field("qty", c.qty).field("reduce_only", c.reduce_only);
          w.field("leverage", c.leverage).field("slippage_bps", c.max_slippage_bps);
          if (!c.client_order_id.empty()) w.field("client_order_id", c.client_order_id.view());
          if (c.trigger_price != 0) w.field("trigger", c.trigger_price);
          if (c.margin_mode != MarginMode::unchanged) w.field("margin_mode", c.margin_mode == MarginMode::isolated ? "isolated" : "cross");
          if (c.trigger_by == TriggerBy::last) w.field("trigger_by", "last");
        } else if constexpr (std::is_same_v<T, SetPositionTpSl>) {
          w.field("user", c.user.value().to_string()).field("market", catalog.at(c.market).id);
          w.field("tp_id", c.take_profit_id.value().to_string()).field("sl_id", c.stop_loss_id.value().to_string());
          w.field("tp", c.take_profit).field("sl", c.stop_loss).field("qty", c.qty);
          w.field("trigger_by", c.trigger_by == TriggerBy::last ? "last" : "mark");
        } else if constexpr (std::is_same_v<T, CancelOrder>) {
          w.field("user", c.user.value().to_string()).field("id", c.id.value().to_string());
          if (!c.client_order_id.empty()) w.field("client_order_id", c.client_order_id.view());
        } else if constexpr (std::is_same_v<T, AmendOrder>) {
          w.field("user", c.user.value().to_string()).field("id", c.id.value().to_string());
          if (!c.client_order_id.empty()) w.field("client_order_id", c.client_order_id.view());
          w.field("market", catalog.at(c.market).id).field("price", c.price).field("qty", c.qty);
        } else if constexpr (std::is_same_v<T, AdjustMargin>) {
          w.field("user", c.user.value().to_string()).field("market", catalog.at(c.market).id);
          w.field("delta", c.delta);
        } else if constexpr (std::is_same_v<T, SetCancelAfter>) {
          w.field("user", c.user.value().to_string()).field("timeout_ms", c.timeout_ms);
        } else if constexpr (std::is_same_v<T, RequestWithdrawal>) {
          w.field("id", c.id.to_string()).field("user", c.user.value().to_string());
          w.field("amount", c.amount).field("daily_limit", c.daily_limit);
        } else if constexpr (std::is_same_v<T, SetMarketStatus>) {
          w.field("market", catalog.at(c.market).id).field("status", market_status_code(c.status));
          w.field("final_price", c.final_price);
        } else if constexpr (std::is_same_v<T, SetMarketParams>) {
          w.field("market", catalog.at(c.market).id).field("maker_fee_ppm", static_cast<std::int64_t>(c.maker_fee_ppm));
          w.field("taker_fee_ppm", static_cast<std::int64_t>(c.taker_fee_ppm));
          w.field("max_leverage", static_cast<std::int64_t>(c.max_leverage));
        } else if constexpr (std::is_same_v<T, UpdateWithdrawal>) {
          w.field("id", c.id.to_string()).field("user", c.user.value().to_string());
          w.field("status", withdrawal_status_code(c.status));
        } else if constexpr (std::is_same_v<T, CancelAll>) {
          w.field("user", c.user.value().to_string());
          w.field("market", c.market < 0 ? -1 : catalog.at(static_cast<std::uint32_t>(c.market)).id);
        } else if constexpr (std::is_same_v<T, Deposit> || std::is_same_v<T, Withdraw>) {
          w.field("user", c.user.value().to_string()).field("amount", c.amount);
        } else if constexpr (std::is_same_v<T, SetMark>) {
          w.field("market", catalog.at(c.market).id).field("mark", c.mark);
        } else if constexpr (std::is_same_v<T, SetLeverage>) {
          w.field("user", c.user.value().to_string()).field("market", catalog.at(c.market).id);
          w.field("leverage", c.leverage);
          if (c.margin_mode != MarginMode::unchanged) w.field("margin_mode", c.margin_mode == MarginMode::isolated ? "isolated" : "cross");
        } else if constexpr (std::is_same_v<T, SettleFunding>) {
          w.field("market", catalog.at(c.market).id).field("interval", c.interval_ms);
          w.field("rate_ppb", c.rate_ppb).field("index", c.index);
        } else if constexpr (std::is_same_v<T, CreateVault>) {
          w.field("vault", c.vault.to_string()).field("leader", c.leader.value().to_string());
          w.field("account", c.account.value().to_string()).field("initial", c.initial);
          w.field("lock_ms", c.lock_ms).field("performance_fee_ppm", c.performance_fee_ppm);
          w.field("management_fee_ppm", c.management_fee_ppm).field("min_deposit", c.min_deposit);
          w.field("capacity", c.capacity).field("protocol", c.protocol);
        } else if constexpr (std::is_same_v<T, VaultDeposit> || std::is_same_v<T, VaultWithdraw>) {
          w.field("vault", c.vault.to_string()).field("user", c.user.value().to_string()).field("amount", c.amount);
        } else if constexpr (std::is_same_v<T, SetMarketLimits>) {
          w.field("market", catalog.at(c.market).id).field("max_order_qty", c.max_order_qty);
          w.field("max_market_order_qty", c.max_market_order_qty)
              .field("max_order_notional", c.max_order_notional);
          w.field("max_position_notional", c.max_position_notional);
        }
        w.field("ts", c.ts_ms);
      },
      command);
  w.end_object();
  return w.take();
}

namespace {

struct Reader {
  const json::Value& v;
  bool ok = true;
  std::int64_t num(std::string_view k) {
    const auto* f = v.find(k);
    if (!f) {
      ok = false;
      return 0;
    }
    auto r = f->as_int(INT64_MIN, INT64_MAX);
    if (!r) ok = false;
    return r ? *r : 0;
  }
  std::string str(std::string_view k) {
    const auto* f = v.find(k);
    if (!f || !f->is_string()) return {};
    return f->as_string();
  }
  Uuid uuid(std::string_view k) {
    auto u = Uuid::parse(str(k));
    if (!u) ok = false;
    return u ? *u : Uuid{};
  }
};

}  // namespace

Result<Command> decode_command(std::string_view text, const Catalog& catalog) {
  auto doc = json::parse(text);
  if (!doc) return doc.error();
  Reader r{*doc};
  const std::string t = r.str("t");
  auto market = [&](std::string_view k) -> std::int64_t {
    std::int64_t id = r.num(k);
    if (id < 0) return -1;
    const MarketInfo* m = catalog.by_id(static_cast<int>(id));
    if (!m) {
      r.ok = false;
      return 0;
    }
    return m->index;
  };
  Command out;
  if (t == "place") {
    PlaceOrder p;
    p.user = UserId{r.uuid("user")};
    p.id = OrderId{r.uuid("id")};
    p.market = static_cast<std::uint32_t>(market("market"));
    p.side = r.str("side") == "Buy" ? Side::buy : Side::sell;
    const std::string type = r.str("type");
    p.type = type == "Market" ? OrderType::market : type == "StopLimit" ? OrderType::stop_limit
           : type == "StopMarket" ? OrderType::stop_market : type == "TakeProfitLimit" ? OrderType::take_profit_limit
           : type == "TakeProfitMarket" ? OrderType::take_profit_market : OrderType::limit;
    if (doc->find("trigger")) p.trigger_price = r.num("trigger");
    const std::string tif = r.str("tif");
    p.tif = tif == "IOC" ? TimeInForce::ioc : tif == "FOK" ? TimeInForce::fok
          : tif == "PostOnly" ? TimeInForce::post_only : TimeInForce::gtc;
    p.price = r.num("price");
    p.qty = r.num("qty");
    const auto* ro = doc->find("reduce_only");
    p.reduce_only = ro && ro->is_bool() && ro->as_bool();
    p.leverage = static_cast<std::int32_t>(r.num("leverage"));
    p.max_slippage_bps = static_cast<std::int32_t>(r.num("slippage_bps"));
    p.client_order_id = ClientOrderId::from(r.str("client_order_id"));
    if (const auto* mm = doc->find("margin_mode"); mm && mm->is_string()) {
      p.margin_mode = mm->as_string() == "isolated" ? MarginMode::isolated : MarginMode::cross;
    }
    if (r.str("trigger_by") == "last") p.trigger_by = TriggerBy::last;
    p.ts_ms = r.num("ts");
    out = p;
  } else if (t == "tpsl") {
    SetPositionTpSl c;
    c.user = UserId{r.uuid("user")};
    c.market = static_cast<std::uint32_t>(market("market"));
    c.take_profit_id = OrderId{r.uuid("tp_id")};
    c.stop_loss_id = OrderId{r.uuid("sl_id")};
    c.take_profit = r.num("tp");
    c.stop_loss = r.num("sl");
    c.qty = r.num("qty");
    c.trigger_by = r.str("trigger_by") == "last" ? TriggerBy::last : TriggerBy::mark;
    c.ts_ms = r.num("ts");
    out = c;
  } else if (t == "cancel") {
    out = CancelOrder{UserId{r.uuid("user")}, OrderId{r.uuid("id")}, r.num("ts"),
                      ClientOrderId::from(r.str("client_order_id"))};
  } else if (t == "amend") {
    out = AmendOrder{UserId{r.uuid("user")}, OrderId{r.uuid("id")}, static_cast<std::uint32_t>(market("market")),
                     r.num("price"), r.num("qty"), r.num("ts"), ClientOrderId::from(r.str("client_order_id"))};
  } else if (t == "cancel_after") {
    out = SetCancelAfter{UserId{r.uuid("user")}, r.num("timeout_ms"), r.num("ts")};
  } else if (t == "withdrawal_request") {
    out = RequestWithdrawal{r.uuid("id"), UserId{r.uuid("user")}, r.num("amount"), r.num("daily_limit"), r.num("ts")};
  } else if (t == "market_status") {
    const std::string status = r.str("status");
    SetMarketStatus c{static_cast<std::uint32_t>(market("market")), MarketStatus::active, r.num("final_price"), r.num("ts")};
    if (status == "HALTED") c.status = MarketStatus::halted;
    else if (status == "DELISTED") c.status = MarketStatus::delisted;
    else if (status != "ACTIVE") return fail(Code::internal, "malformed journal entry: market status");
    out = c;
  } else if (t == "market_params") {
    const std::int64_t maker = r.num("maker_fee_ppm"), taker = r.num("taker_fee_ppm"), lev = r.num("max_leverage");
    for (std::int64_t v : {maker, taker, lev}) {
      if (v < INT32_MIN || v > INT32_MAX) return fail(Code::internal, "malformed journal entry: market params");
    }
    out = SetMarketParams{static_cast<std::uint32_t>(market("market")), static_cast<std::int32_t>(maker),
                          static_cast<std::int32_t>(taker), static_cast<std::int32_t>(lev), r.num("ts")};
  } else if (t == "withdrawal_update") {
    const std::string status = r.str("status");
    WithdrawalStatus to = WithdrawalStatus::pending;
    for (auto st : {WithdrawalStatus::processing, WithdrawalStatus::completed, WithdrawalStatus::rejected,
                    WithdrawalStatus::cancelled}) {
      if (status == withdrawal_status_code(st)) to = st;
    }
    if (to == WithdrawalStatus::pending) return fail(Code::internal, "malformed journal entry: withdrawal status");
    out = UpdateWithdrawal{r.uuid("id"), UserId{r.uuid("user")}, to, r.num("ts")};
  } else if (t == "margin") {
    out = AdjustMargin{UserId{r.uuid("user")}, static_cast<std::uint32_t>(market("market")), r.num("delta"), r.num("ts")};
  } else if (t == "cancel_expired") {
    out = CancelExpired{r.num("ts")};
  } else if (t == "cancel_all") {
    out = CancelAll{UserId{r.uuid("user")}, static_cast<std::int32_t>(market("market")), r.num("ts")};
  } else if (t == "deposit") {
    out = Deposit{UserId{r.uuid("user")}, r.num("amount"), r.num("ts")};
  } else if (t == "withdraw") {
    out = Withdraw{UserId{r.uuid("user")}, r.num("amount"), r.num("ts")};
  } else if (t == "mark") {
    out = SetMark{static_cast<std::uint32_t>(market("market")), r.num("mark"), r.num("ts")};
  } else if (t == "leverage") {
    SetLeverage l{UserId{r.uuid("user")}, static_cast<std::uint32_t>(market("market")),
                  static_cast<std::int32_t>(r.num("leverage")), r.num("ts")};
    if (const auto* mm = doc->find("margin_mode"); mm && mm->is_string()) {
      l.margin_mode = mm->as_string() == "isolated" ? MarginMode::isolated : MarginMode::cross;
    }
    out = l;
  } else if (t == "funding") {
    out = SettleFunding{static_cast<std::uint32_t>(market("market")), r.num("interval"), r.num("rate_ppb"),
                        r.num("index"), r.num("ts")};
  } else if (t == "vault_create") {
    CreateVault c;
    c.vault = r.uuid("vault");
    c.leader = UserId{r.uuid("leader")};
    c.account = UserId{r.uuid("account")};
    c.initial = r.num("initial");
    c.lock_ms = r.num("lock_ms");
    c.performance_fee_ppm = static_cast<std::int32_t>(r.num("performance_fee_ppm"));
    c.management_fee_ppm = static_cast<std::int32_t>(r.num("management_fee_ppm"));
    c.min_deposit = r.num("min_deposit");
    c.capacity = r.num("capacity");
    const auto* p = doc->find("protocol");
    c.protocol = p && p->is_bool() && p->as_bool();
    c.ts_ms = r.num("ts");
    out = c;
  } else if (t == "vault_deposit") {
    out = VaultDeposit{r.uuid("vault"), UserId{r.uuid("user")}, r.num("amount"), r.num("ts")};
  } else if (t == "vault_withdraw") {
    out = VaultWithdraw{r.uuid("vault"), UserId{r.uuid("user")}, r.num("amount"), r.num("ts")};
  } else if (t == "market_limits") {
    out = SetMarketLimits{static_cast<std::uint32_t>(market("market")),
                          r.num("max_order_qty"),
                          r.num("max_market_order_qty"),
                          r.num("max_order_notional"),
                          r.num("max_position_notional"),
                          r.num("ts")};
  } else {
    return fail(Code::internal, "unknown journal command kind " + t);
  }
  if (!r.ok) return fail(Code::internal, "malformed journal entry");
  return out;
}

}  // namespace hydrox::trading
