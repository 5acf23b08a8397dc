#include "pipeline/publisher.hpp"

#include "hydrox/events/events.hpp"
#include "hydrox/json/json.hpp"
#include "journal.hpp"
#include "pipeline/rows.hpp"

namespace hydrox::trading {

using namespace engine;

std::vector<std::vector<std::string>> publish_commands(const Batch& b, const Catalog& catalog_) {
  std::vector<std::vector<std::string>> cmds;
  auto user_channel = [](const UserId& u, std::string_view kind) {
    return events::user_channel(u.value().to_string(), kind);
  };
  for (const auto& e : b.events) {
    std::visit(
        [&](const auto& ev) {
          using T = std::decay_t<decltype(ev)>;
          json::Writer w;
          if constexpr (std::is_same_v<T, Trade>) {
            const MarketInfo& m = catalog_.at(ev.market);
            if (ev.liquidation == Liquidation::none || ev.liquidation == Liquidation::book) {
              const events::TradeMessage trade{static_cast<std::int64_t>(e.seq),
                                               m.symbol,
                                               Catalog::price_text(m, ev.price),
                                               Catalog::amount_text(m, ev.qty),
                                               std::string(side_name(ev.taker_side)),
                                               ev.ts_ms / 1000,
                                               ev.ts_ms};
              cmds.push_back({"PUBLISH", events::trades_channel(m.symbol), events::encode(trade)});
            }
            for (auto [user, order, liq, fee, pnl, side] :
                 {std::tuple{ev.maker, ev.maker_order, "maker", ev.maker_fee, ev.maker_realized_pnl, opposite(ev.taker_side)},
                  std::tuple{ev.taker, ev.taker_order, "taker", ev.taker_fee, ev.taker_realized_pnl, ev.taker_side}}) {
              json::Writer f;
              // The REST fill's shape (GET /fills): the id a string, time_ms, liquidation null or
              // its code.
              f.begin_object()
                  .field("id", std::to_string(e.seq))
                  .field("order_id", order.value().to_string());
              f.field("symbol", m.symbol).field("side", side_name(side));
              f.key("price");
              Catalog::write_price(f, m, ev.price);
              f.key("amount");
              Catalog::write_amount(f, m, ev.qty);
              f.key("fee").raw_number(usdm_text(fee)).key("realized_pnl").raw_number(usdm_text(pnl));
              f.field("liquidity", liq).field("time", ev.ts_ms / 1000).field("time_ms", ev.ts_ms);
              if (ev.liquidation != Liquidation::none) f.field("liquidation", liquidation_code(ev.liquidation));
              else
                f.key("liquidation").null();
              f.end_object();
              cmds.push_back({"PUBLISH", user_channel(user, "fills"), f.take()});
            }
          } else if constexpr (std::is_same_v<T, BookLevelChanged>) {
            const MarketInfo& m = catalog_.at(ev.market);
            const events::BookLevelMessage level{
                static_cast<std::int64_t>(e.seq), m.symbol, ev.side == Side::buy,
                Catalog::price_text(m, ev.price), Catalog::amount_text(m, ev.size)};
            cmds.push_back({"PUBLISH", events::book_channel(m.symbol), events::encode(level)});
          } else if constexpr (std::is_same_v<T, MarkChanged>) {
            const MarketInfo& m = catalog_.at(ev.market);
            const events::MarkMessage mark{static_cast<std::int64_t>(e.seq), m.symbol,
                                           Catalog::price_text(m, ev.mark), ev.ts_ms};
            cmds.push_back({"PUBLISH", events::mark_channel(m.symbol), events::encode(mark)});
          } else if constexpr (std::is_same_v<T, MarketChanged>) {
            const MarketInfo& m = catalog_.at(ev.market);
            const events::MarketMessage mm{static_cast<std::int64_t>(e.seq), m.symbol, std::string(market_status_code(ev.status)),
                                           decimal::format(static_cast<std::int64_t>(ev.maker_fee_ppm), 6),
                                           decimal::format(static_cast<std::int64_t>(ev.taker_fee_ppm), 6), ev.max_leverage,
                                           ev.final_price > 0 ? Catalog::price_text(m, ev.final_price) : std::string(), ev.ts_ms};
            cmds.push_back({"PUBLISH", events::market_channel(m.symbol), events::encode(mm)});
          } else if constexpr (std::is_same_v<T, FundingSettled>) {
            const MarketInfo& m = catalog_.at(ev.market);
            const events::FundingMessage funding{static_cast<std::int64_t>(e.seq), m.symbol,
                                                 ev.interval_ms / 1000, rate_text(ev.rate_ppb, 8),
                                                 Catalog::price_text(m, ev.mark)};
            cmds.push_back({"PUBLISH", events::funding_channel(m.symbol), events::encode(funding)});
          } else if constexpr (std::is_same_v<T, OrderUpdated>) {
            const MarketInfo& m = catalog_.at(ev.market);
            w.begin_object().field("seq", static_cast<std::int64_t>(e.seq)).field("id", ev.id.value().to_string());
            w.field("symbol", m.symbol).field("status", status_name(ev.status)).key("filled");
            Catalog::write_amount(w, m, ev.filled);
            w.key("remaining");
            Catalog::write_amount(w, m, ev.remaining);
            if (ev.status == OrderStatus::cancelled) w.field("cancel_reason", cancel_reason_code(ev.cancel_reason));
            w.end_object();
            cmds.push_back({"PUBLISH", user_channel(ev.user, "orders"), w.take()});
          } else if constexpr (std::is_same_v<T, OrderAmended>) {
            // An amendment: the order's new price, total size and resting remainder (a repriced
            // order that matches at once is followed by its fills' updates).
            const MarketInfo& m = catalog_.at(ev.market);
            w.begin_object().field("seq", static_cast<std::int64_t>(e.seq)).field("id", ev.id.value().to_string());
            w.field("symbol", m.symbol).field("amended", true).field("kept_priority", ev.kept_priority);
            w.key("price");
            Catalog::write_price(w, m, ev.price);
            w.key("amount");
            Catalog::write_amount(w, m, ev.qty);
            w.key("remaining");
            Catalog::write_amount(w, m, ev.remaining);
            w.end_object();
            cmds.push_back({"PUBLISH", user_channel(ev.user, "orders"), w.take()});
          } else if constexpr (std::is_same_v<T, PositionChanged>) {
            const MarketInfo& m = catalog_.at(ev.market);
            w.begin_object().field("seq", static_cast<std::int64_t>(e.seq)).field("symbol", m.symbol);
            w.field("side", ev.size >= 0 ? "Long" : "Short").key("size");
            Catalog::write_amount(w, m, ev.size < 0 ? -ev.size : ev.size);
            w.key("realized_pnl").raw_number(usdm_text(ev.realized_pnl));
            w.key("funding_paid").raw_number(usdm_text(ev.funding));
            w.field("margin_mode", ev.isolated ? "isolated" : "cross").key("isolated_margin").raw_number(usdm_text(ev.margin));
            w.end_object();
            cmds.push_back({"PUBLISH", user_channel(ev.user, "positions"), w.take()});
          }
        },
        e.body);
  }
  for (const BalanceRow& bal : last_balances(b.balances)) {
    json::Writer w;
    w.begin_object().field("asset", "USDM").key("collateral").raw_number(usdm_text(bal.collateral)).end_object();
    cmds.push_back({"PUBLISH", user_channel(bal.user, "balances"), w.take()});
  }
  return cmds;
}

}  // namespace hydrox::trading
