#pragma once
// PostgreSQL through libpq: a bounded connection pool (max 50, as the original service), named
// queries, RAII transactions that roll back unless committed, and a migrations runner.
// Calls block: run them on the Runtime's blocking pool, never on an IO thread.
#include "hydrox/core/error.hpp"

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

struct pg_conn;
struct pg_result;

namespace hydrox::db {

// SQL lives in named constants beside the code that uses it; the name shows up in logs and errors.
struct Query {
  std::string_view name;
  std::string_view sql;
  // Rows in PostgreSQL's binary format instead of text: for a `bytea` column the bytes themselves
  // (half the size of its hex text, no decoding). Every column is binary then: only for queries
  // whose columns are all `bytea` (or read as such).
  bool binary_result = false;
  // Parameters sent in binary format, by position (bit i: $i+1): for a `bytea` parameter the bytes
  // themselves, not their hex text (half the size, no encoding). The statement must give such a
  // parameter its type (a column it goes into, or a cast).
  std::uint32_t binary_params = 0;
};

using Param = std::optional<std::string>;  // nullopt is SQL NULL

// One statement of a pipeline (Connection::exec_pipeline). With `prepare`, the SQL is prepared
// under `name` the first time the connection sees it (a name must always carry the same SQL) and
// executed by name after that: parsed and planned once, not on every batch.
struct Statement {
  std::string name;
  std::string sql;
  std::vector<Param> params;
  bool prepare = false;
};

class Rows {
 public:
  Rows() = default;
  explicit Rows(pg_result* r);
  Rows(Rows&&) noexcept;
  Rows& operator=(Rows&&) noexcept;
  ~Rows();
  int size() const;
  int columns() const;
  bool is_null(int row, int col) const;
  std::string_view get(int row, int col) const;
  std::int64_t affected() const;  // rows touched by INSERT/UPDATE/DELETE

 private:
  pg_result* r_ = nullptr;
};

class Connection {
 public:
  explicit Connection(pg_conn* c) : c_(c) {}
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  Result<Rows> exec(const Query& q, const std::vector<Param>& params = {});
  // Sends every statement before reading any answer (libpq pipeline mode): one round trip for
  // the lot instead of one each. Statements after a failed one are not run; the first error is
  // returned, and a transaction the statements opened is rolled back.
  Result<void> exec_pipeline(const std::vector<Statement>& statements);
  // Several statements without parameters (migrations).
  Result<void> exec_script(std::string_view sql);
  bool healthy() const;
  // healthy(), after reading what the server may have sent while the connection was idle.
  bool alive();

 private:
  pg_conn* c_;
  std::set<std::string, std::less<>> prepared_;  // statement names prepared on this session
};

struct PoolOptions {
  std::size_t max_connections = 50;
  std::chrono::milliseconds acquire_timeout{2000};
  int connect_timeout_s = 2;
  std::string application_name = "hydrox";
};

class Pool;

// One connection outside any pool (a session that must live as long as the process: the trading
// engine's writer, which holds the engine's advisory lock).
Result<std::unique_ptr<Connection>> connect(const std::string& url, const PoolOptions& options = {});

// A connection borrowed from the pool; returned (or dropped if broken) on destruction.
class Lease {
 public:
  Lease(Pool* pool, std::unique_ptr<Connection> c) : pool_(pool), c_(std::move(c)) {}
  Lease(Lease&&) = default;
  Lease& operator=(Lease&&) = default;
  ~Lease();
  Connection* operator->() { return c_.get(); }
  Connection& operator*() { return *c_; }

 private:
  Pool* pool_;
  std::unique_ptr<Connection> c_;
};

class Pool {
 public:
  Pool(std::string url, PoolOptions options = {});
  ~Pool();
  Result<Lease> acquire();
  // SELECT 1 on a pooled connection (readiness).
  Result<void> ping();
  const std::string& url() const { return url_; }

 private:
  friend class Lease;
  void give_back(std::unique_ptr<Connection> c);

  std::string url_;
  PoolOptions options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Connection>> idle_;
  std::size_t open_ = 0;
};

// BEGIN on construction; ROLLBACK on destruction unless commit() succeeded.
class Transaction {
 public:
  explicit Transaction(Connection& c);
  ~Transaction();
  Result<void> begin_status() const { return begun_; }
  Result<Rows> exec(const Query& q, const std::vector<Param>& params = {}) { return c_.exec(q, params); }
  Result<void> commit();

 private:
  Connection& c_;
  Result<void> begun_;
  bool done_ = false;
};

// Applies db/migrations/NNNN_name.sql files in order, each once, recorded in schema_migrations;
// an advisory lock makes concurrent runners safe. Returns the number applied now.
Result<int> migrate(Connection& c, const std::string& directory);

}  // namespace hydrox::db
