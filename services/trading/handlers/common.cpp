#include "common.hpp"

#include <charconv>

#include "hydrox/core/secret.hpp"
#include "hydrox/decimal/decimal.hpp"

namespace hydrox::trading {

Result<UserId> caller(const http::Request& req) { return service::caller(req); }

Result<UserId> acting(const Services& s, const http::Request& req, std::optional<std::string> account) {
  auto user = caller(req);
  if (!user) return user;
  if (!account) {
    if (auto q = req.query_param("account")) account = std::string(*q);
  }
  if (!account || account->empty()) return user;
  auto id = Uuid::parse(*account);
  if (!id) return fail(Code::invalid_field, "account must be a vault id", "account");
  auto ref = s.host->vault_ref(*id);
  if (!ref) return fail(Code::not_found, "no such vault", "account");
  if (ref->leader != *user) return fail(Code::forbidden, "only the vault's leader acts for its account", "account");
  return ref->account;
}

std::string plain(std::string_view numeric) {
  auto d = decimal::parse(numeric);
  return d ? decimal::format(*d) : std::string(numeric);
}

std::optional<std::string> body_account(const json::Value& body) {
  const json::Value* a = body.find("account");
  if (!a || a->is_null()) return std::nullopt;
  return a->is_string() ? a->as_string() : std::string("not a vault id");
}

Result<ListParams> list_params(const http::Request& req, const Catalog& catalog,
                               std::initializer_list<std::string_view> extra_allowed) {
  ListParams p;
  for (const auto& name : req.query_names()) {
    bool ok = name == "limit" || name == "before" || name == "symbol" || name == "account";
    for (auto e : extra_allowed) ok = ok || name == e;
    if (!ok) return fail(Code::unknown_field, "unknown query parameter " + name, name);
  }
  if (auto l = req.query_param("limit")) {
    int v = 0;
    auto [ptr, ec] = std::from_chars(l->data(), l->data() + l->size(), v);
    if (ec != std::errc() || ptr != l->data() + l->size() || v < 1 || v > 1000) {
      return fail(Code::invalid_field, "limit must be an integer from 1 to 1000", "limit");
    }
    p.limit = v;
  }
  if (auto b = req.query_param("before"); b && !b->empty()) p.before = *b;
  if (auto s = req.query_param("symbol"); s && !s->empty()) {
    p.market = catalog.find(*s);
    if (!p.market) return fail(Code::invalid_field, "unknown symbol " + *s, "symbol");
  }
  return p;
}

Result<void> authorize(const Services& s, const http::Request& req) {
  if (s.operator_token.empty()) return fail(Code::forbidden, "the operator API is disabled (OPERATOR_TOKEN unset)");
  auto h = req.header("Authorization");
  const std::string_view prefix = "Bearer ";
  if (!h || !h->starts_with(prefix) || !constant_time_equal(h->substr(prefix.size()), s.operator_token)) {
    return fail(Code::unauthenticated, "operator token required");
  }
  return {};
}

Result<engine::Usdm> amount_field(const json::Value& doc) {
  const json::Value* v = doc.find("amount");
  if (!v) return fail(Code::missing_field, "amount is required", "amount");
  auto d = v->as_decimal();
  if (!d) return fail(Code::invalid_field, "amount must be a decimal number", "amount");
  auto units = decimal::to_units(*d, 6, decimal::Rounding::exact);
  if (!units) return fail(units.error().code, "amount must have at most 6 decimals and be in range", "amount");
  if (*units <= 0) return fail(Code::invalid_field, "amount must be positive", "amount");
  if (*units > 1'000'000'000LL * 1'000'000) return fail(Code::number_out_of_range, "amount is out of range", "amount");
  return *units;
}

http::Response error_response(const Error& e, const http::Request& req) {
  return http::Response::error(e, req.request_id);
}

http::Response json_response(int status, std::string body) { return http::Response::json(status, std::move(body)); }

namespace {

void respond_when_projected(Services& s, std::string request_id, UserId user, http::Respond respond,
                            std::function<Result<http::Response>()> work,
                            std::chrono::steady_clock::time_point deadline) {
  if (s.host->await_projected(user, std::chrono::milliseconds(0))) {
    http::Request r;  // respond_blocking reads its request id only
    r.request_id = std::move(request_id);
    return service::respond_blocking(*s.ctx, r, std::move(respond), std::move(work));
  }
  // PostgreSQL unreachable (the journal writer degraded, or the projector cannot connect): the
  // rows cannot come, and the read could not be answered either; say so at once.
  if (s.host->degraded() || !s.host->projector_reachable()) {
    return respond(http::Response::error(
        fail(Code::unavailable, "the database is unavailable; retry shortly"), request_id));
  }
  if (std::chrono::steady_clock::now() >= deadline) {
    return respond(http::Response::error(
        fail(Code::unavailable, "recent changes are still being recorded; retry shortly"), request_id));
  }
  s.ctx->runtime->after(std::chrono::milliseconds(5),
                        [&s, request_id = std::move(request_id), user, respond = std::move(respond),
                         work = std::move(work), deadline]() mutable {
                          respond_when_projected(s, std::move(request_id), user, std::move(respond), std::move(work),
                                                 deadline);
                        });
}

}  // namespace

void respond_projected(Services& s, std::string request_id, const UserId& user, http::Respond respond,
                       std::function<Result<http::Response>()> work) {
  respond_when_projected(s, std::move(request_id), user, std::move(respond), std::move(work),
                         std::chrono::steady_clock::now() + kProjectionWait);
}

void submit(Services& s, http::Request& req, http::Respond respond, Job job) {
  if (!s.host->submit(std::move(job))) {
    if (s.host->degraded()) {
      return respond(error_response(fail(Code::unavailable, "the database is unavailable; nothing was done, retry shortly"), req));
    }
    respond(error_response(fail(Code::overloaded, "the order queue is full, retry shortly"), req));
  }
}

}  // namespace hydrox::trading
