#pragma once
// The Redis channels between the services and what travels on them, in one place: trading
// publishes its committed events (trades, book levels, marks, funding, each user's orders, fills,
// positions and balances), market publishes index samples; market's WebSocket hub and trading's
// mark clock read them. Both sides include this header, so a name or a field changes once, and a
// unit test round-trips every message (tests/unit/events_test.cpp).
//
// Prices, sizes and amounts travel as the exact decimal text their sender rendered (JSON numbers
// written verbatim), never through binary floating point.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace hydrox::events {

// Channel prefixes; the rest of a channel's name is a symbol, or "<user uuid>:<kind>".
inline constexpr std::string_view kTrades = "hydrox:trades:";    // trading → market
inline constexpr std::string_view kBook = "hydrox:book:";        // trading → market
inline constexpr std::string_view kMark = "hydrox:mark:";        // trading → market
inline constexpr std::string_view kFunding = "hydrox:funding:";  // trading → (anyone)
inline constexpr std::string_view kUser = "hydrox:user:";    // trading → market (private streams)
inline constexpr std::string_view kIndex = "hydrox:index:";  // market → trading
inline constexpr std::string_view kMarket = "hydrox:market:";  // trading → market (the lifecycle)

// The private kinds on a user channel.
inline constexpr std::string_view kUserKinds[] = {"orders", "fills", "positions", "balances"};
bool user_kind(std::string_view kind);

std::string trades_channel(std::string_view symbol);
std::string book_channel(std::string_view symbol);
std::string mark_channel(std::string_view symbol);
std::string funding_channel(std::string_view symbol);
std::string index_channel(std::string_view symbol);
std::string market_channel(std::string_view symbol);
std::string user_channel(std::string_view user_id, std::string_view kind);
// The patterns market's hub subscribes to (PSUBSCRIBE).
std::vector<std::string> hub_patterns();

// A channel's name taken apart.
struct Channel {
  enum class Kind { trades, book, mark, funding, user, index, market, unknown } kind = Kind::unknown;
  std::string symbol;     // trades, book, mark, funding, index
  std::string user;       // user
  std::string user_kind;  // user: orders, fills, positions, balances
};
Channel parse_channel(std::string_view channel);

// hydrox:trades:<S> — one public trade (liquidation backstop and ADL transfers are not trades of
// the book and are not published here).
struct TradeMessage {
  std::int64_t seq = 0;  // the engine event's sequence: the trade id
  std::string symbol;
  std::string price, amount;  // decimal text
  std::string side;           // the taker's: Buy or Sell
  std::int64_t time = 0;      // Unix seconds (floor)
  std::int64_t time_ms = 0;
  friend bool operator==(const TradeMessage&, const TradeMessage&) = default;
};
std::string encode(const TradeMessage& m);
std::optional<TradeMessage> decode_trade(std::string_view json);

// hydrox:book:<S> — one price level's new absolute size (0: gone), with the engine sequence that
// orders it against the order book snapshot (/internal/v1/orderbook's seq).
struct BookLevelMessage {
  std::int64_t seq = 0;
  std::string symbol;
  bool bid = true;
  std::string price, size;
  friend bool operator==(const BookLevelMessage&, const BookLevelMessage&) = default;
};
std::string encode(const BookLevelMessage& m);
std::optional<BookLevelMessage> decode_book_level(std::string_view json);

// hydrox:mark:<S> — a new mark price.
struct MarkMessage {
  std::int64_t seq = 0;
  std::string symbol;
  std::string mark_price;
  std::int64_t time_ms = 0;
  friend bool operator==(const MarkMessage&, const MarkMessage&) = default;
};
std::string encode(const MarkMessage& m);
std::optional<MarkMessage> decode_mark(std::string_view json);

// hydrox:funding:<S> — a settled funding interval.
struct FundingMessage {
  std::int64_t seq = 0;
  std::string symbol;
  std::int64_t time = 0;  // the interval's end, Unix seconds
  std::string rate, mark_price;
  friend bool operator==(const FundingMessage&, const FundingMessage&) = default;
};
std::string encode(const FundingMessage& m);
std::optional<FundingMessage> decode_funding(std::string_view json);

// hydrox:market:<S> — a market's status or parameters changed (halted, resumed, delisted, fees,
// maximum leverage); the `market.<S>` WebSocket stream.
struct MarketMessage {
  std::int64_t seq = 0;
  std::string symbol;
  std::string status;  // ACTIVE, HALTED, DELISTED
  std::string maker_fee_rate, taker_fee_rate;  // decimal text
  std::int64_t max_leverage = 0;
  std::string final_price;  // DELISTED: decimal text; else empty
  std::int64_t time_ms = 0;
  friend bool operator==(const MarketMessage&, const MarketMessage&) = default;
};
std::string encode(const MarketMessage& m);
std::optional<MarketMessage> decode_market(std::string_view json);

}  // namespace hydrox::events

namespace hydrox::events {

// hydrox:index:<S> — an index (oracle) sample, from market's simulated feed or a signed push.
struct IndexMessage {
  std::string symbol;
  std::string price;  // decimal text, on the market's tick
  std::int64_t time_ms = 0;
  std::string source;  // "simulated", "oracle:<key id>"
  friend bool operator==(const IndexMessage&, const IndexMessage&) = default;
};
std::string encode(const IndexMessage& m);
std::optional<IndexMessage> decode_index(std::string_view json);
// The key under which the newest sample is kept (60 s) for a reader that starts later.
std::string index_last_key(std::string_view symbol);

}  // namespace hydrox::events
