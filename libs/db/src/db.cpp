#include "hydrox/db/db.hpp"

#include <libpq-fe.h>

#include <algorithm>

#include "hydrox/log/log.hpp"

namespace hydrox::db {

Rows::Rows(pg_result* r) : r_(r) {}
Rows::Rows(Rows&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
Rows& Rows::operator=(Rows&& o) noexcept {
  if (this != &o) {
    if (r_) PQclear(r_);
    r_ = o.r_;
    o.r_ = nullptr;
  }
  return *this;
}
Rows::~Rows() {
  if (r_) PQclear(r_);
}
int Rows::size() const { return r_ ? PQntuples(r_) : 0; }
int Rows::columns() const { return r_ ? PQnfields(r_) : 0; }
bool Rows::is_null(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }
std::string_view Rows::get(int row, int col) const {
  return {PQgetvalue(r_, row, col), static_cast<std::size_t>(PQgetlength(r_, row, col))};
}
std::int64_t Rows::affected() const {
  const char* n = r_ ? PQcmdTuples(r_) : "";
  return *n ? std::stoll(n) : 0;
}

Connection::~Connection() { PQfinish(c_); }

bool Connection::healthy() const { return PQstatus(c_) == CONNECTION_OK; }

bool Connection::alive() {
  // Reads whatever the server sent while idle (a shutdown notice, EOF) without blocking.
  if (PQconsumeInput(c_) == 0) return false;
  return PQstatus(c_) == CONNECTION_OK;
}

namespace {
Error db_error(std::string_view what, pg_conn* c, pg_result* r) {
  // The SQL text and server detail go to the log only, never to a client.
  const char* state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  std::string sqlstate = state ? state : "";
  log::error("database error", {{"query", std::string(what)},
                                {"sqlstate", sqlstate},
                                {"detail", r ? PQresultErrorMessage(r) : PQerrorMessage(c)}});
  // 23505: unique violation, the caller may treat it as a conflict.
  if (sqlstate == "23505") return fail(Code::conflict, "duplicate");
  return fail(Code::unavailable, "database unavailable");
}
}  // namespace

Result<Rows> Connection::exec(const Query& q, const std::vector<Param>& params) {
  std::vector<const char*> values;
  values.reserve(params.size());
  for (const auto& p : params) values.push_back(p ? p->c_str() : nullptr);
  std::vector<int> lengths, formats;
  if (q.binary_params != 0) {  // binary values may hold NULs: their lengths are passed
    for (std::size_t i = 0; i < params.size(); ++i) {
      const bool binary = i < 32 && (q.binary_params >> i & 1u) != 0;
      formats.push_back(binary ? 1 : 0);
      lengths.push_back(binary && params[i] ? static_cast<int>(params[i]->size()) : 0);
    }
  }
  std::string sql(q.sql);
  pg_result* r = PQexecParams(c_, sql.c_str(), static_cast<int>(values.size()), nullptr, values.data(),
                              lengths.empty() ? nullptr : lengths.data(), formats.empty() ? nullptr : formats.data(),
                              q.binary_result ? 1 : 0);
  auto status = PQresultStatus(r);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    Error e = db_error(q.name, c_, r);
    PQclear(r);
    return e;
  }
  return Rows(r);
}

Result<void> Connection::exec_pipeline(const std::vector<Statement>& statements) {
  if (PQenterPipelineMode(c_) == 0) return db_error("pipeline", c_, nullptr);
  std::optional<Error> first;
  std::vector<const Statement*> sent;  // one per query sent (a prepare counts), for error names
  std::vector<std::string_view> newly_prepared;
  for (const auto& s : statements) {
    std::vector<const char*> values;
    values.reserve(s.params.size());
    for (const auto& p : s.params) values.push_back(p ? p->c_str() : nullptr);
    const int n = static_cast<int>(values.size());
    int ok = 1;
    if (s.prepare) {
      if (!prepared_.contains(s.name) &&
          std::find(newly_prepared.begin(), newly_prepared.end(), s.name) == newly_prepared.end()) {
        ok = PQsendPrepare(c_, s.name.c_str(), s.sql.c_str(), n, nullptr);
        if (ok) {
          sent.push_back(&s);
          newly_prepared.push_back(s.name);
        }
      }
      if (ok) ok = PQsendQueryPrepared(c_, s.name.c_str(), n, values.data(), nullptr, nullptr, 0);
    } else {
      ok = PQsendQueryParams(c_, s.sql.c_str(), n, nullptr, values.data(), nullptr, nullptr, 0);
    }
    if (!ok) {
      first = db_error(s.name, c_, nullptr);
      break;
    }
    sent.push_back(&s);
  }
  if (PQpipelineSync(c_) == 0 && !first) first = db_error("pipeline sync", c_, nullptr);
  // Each query's results end with a null; the sync's own result ends the pipeline.
  for (std::size_t i = 0; i < sent.size() && PQstatus(c_) == CONNECTION_OK; ++i) {
    while (pg_result* r = PQgetResult(c_)) {
      const auto status = PQresultStatus(r);
      if (!first && status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
        first = status == PGRES_PIPELINE_ABORTED ? fail(Code::unavailable, "pipeline aborted")
                                                 : db_error(sent[i]->name, c_, r);
      }
      PQclear(r);
    }
  }
  for (int nulls = 0; PQstatus(c_) == CONNECTION_OK && nulls < 4;) {
    pg_result* r = PQgetResult(c_);
    if (r == nullptr) {  // (between results)
      ++nulls;
      continue;
    }
    const bool sync = PQresultStatus(r) == PGRES_PIPELINE_SYNC;
    PQclear(r);
    if (sync) break;
  }
  PQexitPipelineMode(c_);
  if (PQstatus(c_) != CONNECTION_OK) return first ? *first : db_error("pipeline", c_, nullptr);
  if (first) {
    // What was prepared before the failure is unknown: start the session's set afresh.
    if (PQtransactionStatus(c_) != PQTRANS_IDLE) (void)exec_script("ROLLBACK");
    (void)exec_script("DEALLOCATE ALL");
    prepared_.clear();
    return *first;
  }
  for (auto name : newly_prepared) prepared_.emplace(name);
  return {};
}

Result<void> Connection::exec_script(std::string_view sql) {
  std::string text(sql);
  pg_result* r = PQexec(c_, text.c_str());
  auto status = PQresultStatus(r);
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
    Error e = db_error("script", c_, r);
    PQclear(r);
    return e;
  }
  PQclear(r);
  return {};
}

Lease::~Lease() {
  if (pool_ && c_) pool_->give_back(std::move(c_));
}

Pool::Pool(std::string url, PoolOptions options) : url_(std::move(url)), options_(options) {}
Pool::~Pool() = default;

Result<std::unique_ptr<Connection>> connect(const std::string& url, const PoolOptions& options) {
  std::string timeout = std::to_string(options.connect_timeout_s);
  const char* keys[] = {"dbname", "connect_timeout", "application_name", nullptr};
  const char* values[] = {url.c_str(), timeout.c_str(), options.application_name.c_str(), nullptr};
  pg_conn* c = PQconnectdbParams(keys, values, 1);
  if (PQstatus(c) != CONNECTION_OK) {
    std::string msg = PQerrorMessage(c);
    PQfinish(c);
    while (!msg.empty() && (msg.back() == '\n' || msg.back() == ' ')) msg.pop_back();
    return fail(Code::unavailable, "cannot connect to PostgreSQL: " + msg);
  }
  // Server notices (e.g. "already exists, skipping") are not errors; keep them off stderr.
  PQsetNoticeProcessor(c, [](void*, const char*) {}, nullptr);
  return std::make_unique<Connection>(c);
}

Result<Lease> Pool::acquire() {
  std::unique_lock lock(mu_);
  auto deadline = std::chrono::steady_clock::now() + options_.acquire_timeout;
  for (;;) {
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      // A server restart leaves idle connections closed: find out now (a non-blocking read)
      // rather than fail the caller's query.
      if (!c->alive()) {
        --open_;
        continue;
      }
      return Lease(this, std::move(c));
    }
    if (open_ < options_.max_connections) {
      ++open_;
      lock.unlock();
      auto c = db::connect(url_, options_);
      if (!c) {
        std::lock_guard relock(mu_);
        --open_;
        cv_.notify_one();
        return c.error();
      }
      return Lease(this, std::move(*c));
    }
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      return fail(Code::overloaded, "no database connection free");
    }
  }
}

void Pool::give_back(std::unique_ptr<Connection> c) {
  std::lock_guard lock(mu_);
  if (c->healthy()) {
    idle_.push_back(std::move(c));
  } else {
    --open_;  // a broken connection is dropped; the next acquire opens a fresh one
  }
  cv_.notify_one();
}

Result<void> Pool::ping() {
  auto lease = acquire();
  if (!lease) return lease.error();
  static constexpr Query kPing{"ping", "SELECT 1"};
  auto r = (*lease)->exec(kPing);
  if (!r) return r.error();
  return {};
}

Transaction::Transaction(Connection& c) : c_(c), begun_(c.exec_script("BEGIN")) {
  if (!begun_) done_ = true;
}

Transaction::~Transaction() {
  if (!done_) (void)c_.exec_script("ROLLBACK");
}

Result<void> Transaction::commit() {
  if (done_) return fail(Code::internal, "transaction already finished");
  done_ = true;
  return c_.exec_script("COMMIT");
}

}  // namespace hydrox::db
