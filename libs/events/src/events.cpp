#include "hydrox/events/events.hpp"

#include "hydrox/json/json.hpp"

namespace hydrox::events {

namespace {

std::string join(std::string_view prefix, std::string_view rest) {
  std::string out(prefix);
  out += rest;
  return out;
}

// Field readers for the decoders: a missing or mistyped field makes the message nothing.
std::optional<std::string> text(const json::Value& doc, std::string_view key) {
  const json::Value* v = doc.find(key);
  if (!v || !v->is_string()) return std::nullopt;
  return v->as_string();
}
std::optional<std::string> number(const json::Value& doc, std::string_view key) {
  const json::Value* v = doc.find(key);
  if (!v || !v->is_number()) return std::nullopt;
  return std::string(v->number_text());
}
std::optional<std::int64_t> integer(const json::Value& doc, std::string_view key) {
  const json::Value* v = doc.find(key);
  if (!v || !v->is_number()) return std::nullopt;
  auto n = v->as_int(INT64_MIN, INT64_MAX);
  if (!n) return std::nullopt;
  return *n;
}
std::optional<json::Value> object(std::string_view message) {
  auto doc = json::parse(message);
  if (!doc || !doc->is_object()) return std::nullopt;
  return std::move(*doc);
}

}  // namespace

bool user_kind(std::string_view kind) {
  for (auto k : kUserKinds) {
    if (k == kind) return true;
  }
  return false;
}

std::string trades_channel(std::string_view symbol) {
  return join(kTrades, symbol);
}
std::string book_channel(std::string_view symbol) {
  return join(kBook, symbol);
}
std::string mark_channel(std::string_view symbol) {
  return join(kMark, symbol);
}
std::string market_channel(std::string_view symbol) { return join(kMarket, symbol); }
std::string funding_channel(std::string_view symbol) {
  return join(kFunding, symbol);
}
std::string index_channel(std::string_view symbol) {
  return join(kIndex, symbol);
}
std::string index_last_key(std::string_view symbol) {
  return join("hydrox:index:last:", symbol);
}
std::string user_channel(std::string_view user_id, std::string_view kind) {
  std::string out = join(kUser, user_id);
  out += ':';
  out += kind;
  return out;
}

std::vector<std::string> hub_patterns() {
  return {join(kTrades, "*"), join(kBook, "*"), join(kMark, "*"), join(kUser, "*"), join(kMarket, "*")};
}

Channel parse_channel(std::string_view channel) {
  Channel c;
  for (auto [prefix, kind] :
       {std::pair{kTrades, Channel::Kind::trades}, std::pair{kBook, Channel::Kind::book},
        std::pair{kMark, Channel::Kind::mark}, std::pair{kFunding, Channel::Kind::funding},
        std::pair{kIndex, Channel::Kind::index}, std::pair{kMarket, Channel::Kind::market}}) {
    if (channel.starts_with(prefix) && channel.size() > prefix.size()) {
      c.kind = kind;
      c.symbol = std::string(channel.substr(prefix.size()));
      return c;
    }
  }
  if (channel.starts_with(kUser)) {
    const std::string_view rest = channel.substr(kUser.size());
    const auto colon = rest.find(':');
    if (colon == std::string_view::npos || colon == 0 || !user_kind(rest.substr(colon + 1)))
      return c;
    c.kind = Channel::Kind::user;
    c.user = std::string(rest.substr(0, colon));
    c.user_kind = std::string(rest.substr(colon + 1));
  }
  return c;
}

std::string encode(const TradeMessage& m) {
  json::Writer w;
  w.begin_object().field("id", m.seq).field("symbol", m.symbol);
  w.key("price").raw_number(m.price).key("amount").raw_number(m.amount);
  w.field("side", m.side).field("time", m.time).field("time_ms", m.time_ms).end_object();
  return w.take();
}

std::optional<TradeMessage> decode_trade(std::string_view message) {
  auto doc = object(message);
  if (!doc) return std::nullopt;
  auto seq = integer(*doc, "id");
  auto symbol = text(*doc, "symbol");
  auto price = number(*doc, "price");
  auto amount = number(*doc, "amount");
  auto side = text(*doc, "side");
  auto time = integer(*doc, "time");
  auto time_ms = integer(*doc, "time_ms");
  if (!seq || !symbol || !price || !amount || !side || !time || !time_ms) return std::nullopt;
  return TradeMessage{*seq, *symbol, *price, *amount, *side, *time, *time_ms};
}

std::string encode(const BookLevelMessage& m) {
  json::Writer w;
  w.begin_object()
      .field("seq", m.seq)
      .field("symbol", m.symbol)
      .field("side", m.bid ? "bid" : "ask");
  w.key("price").raw_number(m.price).key("size").raw_number(m.size).end_object();
  return w.take();
}

std::optional<BookLevelMessage> decode_book_level(std::string_view message) {
  auto doc = object(message);
  if (!doc) return std::nullopt;
  auto seq = integer(*doc, "seq");
  auto symbol = text(*doc, "symbol");
  auto side = text(*doc, "side");
  auto price = number(*doc, "price");
  auto size = number(*doc, "size");
  if (!seq || !symbol || !side || (*side != "bid" && *side != "ask") || !price || !size)
    return std::nullopt;
  return BookLevelMessage{*seq, *symbol, *side == "bid", *price, *size};
}

std::string encode(const MarkMessage& m) {
  json::Writer w;
  w.begin_object()
      .field("seq", m.seq)
      .field("symbol", m.symbol)
      .key("mark_price")
      .raw_number(m.mark_price);
  w.field("time_ms", m.time_ms).end_object();
  return w.take();
}

std::optional<MarkMessage> decode_mark(std::string_view message) {
  auto doc = object(message);
  if (!doc) return std::nullopt;
  auto seq = integer(*doc, "seq");
  auto symbol = text(*doc, "symbol");
  auto mark = number(*doc, "mark_price");
  auto time_ms = integer(*doc, "time_ms");
  if (!seq || !symbol || !mark || !time_ms) return std::nullopt;
  return MarkMessage{*seq, *symbol, *mark, *time_ms};
}

std::string encode(const MarketMessage& m) {
  json::Writer w;
  w.begin_object().field("seq", m.seq).field("symbol", m.symbol).field("status", m.status);
  w.key("maker_fee_rate").raw_number(m.maker_fee_rate).key("taker_fee_rate").raw_number(m.taker_fee_rate);
  w.field("max_leverage", m.max_leverage).key("final_price");
  if (m.final_price.empty()) w.null(); else w.raw_number(m.final_price);
  w.field("time_ms", m.time_ms).end_object();
  return w.take();
}

std::optional<MarketMessage> decode_market(std::string_view message) {
  auto doc = object(message);
  if (!doc) return std::nullopt;
  auto seq = integer(*doc, "seq");
  auto symbol = text(*doc, "symbol");
  auto status = text(*doc, "status");
  auto maker = number(*doc, "maker_fee_rate");
  auto taker = number(*doc, "taker_fee_rate");
  auto leverage = integer(*doc, "max_leverage");
  auto time_ms = integer(*doc, "time_ms");
  if (!seq || !symbol || !status || !maker || !taker || !leverage || !time_ms) return std::nullopt;
  if (*status != "ACTIVE" && *status != "HALTED" && *status != "DELISTED") return std::nullopt;
  std::string final_price;
  if (const json::Value* f = doc->find("final_price"); f && !f->is_null()) {
    auto fp = number(*doc, "final_price");
    if (!fp) return std::nullopt;
    final_price = *fp;
  }
  return MarketMessage{*seq, *symbol, *status, *maker, *taker, *leverage, final_price, *time_ms};
}

std::string encode(const FundingMessage& m) {
  json::Writer w;
  w.begin_object().field("seq", m.seq).field("symbol", m.symbol).field("time", m.time);
  w.key("rate").raw_number(m.rate).key("mark_price").raw_number(m.mark_price).end_object();
  return w.take();
}

std::optional<FundingMessage> decode_funding(std::string_view message) {
  auto doc = object(message);
  if (!doc) return std::nullopt;
  auto seq = integer(*doc, "seq");
  auto symbol = text(*doc, "symbol");
  auto time = integer(*doc, "time");
  auto rate = number(*doc, "rate");
  auto mark = number(*doc, "mark_price");
  if (!seq || !symbol || !time || !rate || !mark) return std::nullopt;
  return FundingMessage{*seq, *symbol, *time, *rate, *mark};
}

std::string encode(const IndexMessage& m) {
  json::Writer w;
  w.begin_object().field("symbol", m.symbol).key("price").raw_number(m.price);
  w.field("time_ms", m.time_ms).field("source", m.source).end_object();
  return w.take();
}

std::optional<IndexMessage> decode_index(std::string_view message) {
  auto doc = object(message);
  if (!doc) return std::nullopt;
  auto symbol = text(*doc, "symbol");
  auto price = number(*doc, "price");
  if (!price) {
    // A pusher may send the price as a decimal string (as the API accepts everywhere): its text,
    // when it is a plain decimal number.
    const json::Value* v = doc->find("price");
    if (v && v->is_string() && v->as_decimal()) price = v->as_string();
  }
  auto time_ms = integer(*doc, "time_ms");
  auto source = text(*doc, "source");
  if (!symbol || !price || !time_ms) return std::nullopt;
  return IndexMessage{*symbol, *price, *time_ms, source.value_or("")};
}

}  // namespace hydrox::events
