#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "hydrox/db/db.hpp"
#include "hydrox/log/log.hpp"

namespace hydrox::db {

namespace {
constexpr Query kCreateTable{"create_schema_migrations",
                             "CREATE TABLE IF NOT EXISTS schema_migrations ("
                             " version text PRIMARY KEY,"
                             " applied_at timestamptz NOT NULL DEFAULT now())"};
constexpr Query kLock{"migrations_lock", "SELECT pg_advisory_xact_lock(7262013)"};
constexpr Query kApplied{"migration_applied", "SELECT 1 FROM schema_migrations WHERE version = $1"};
constexpr Query kRecord{"migration_record", "INSERT INTO schema_migrations(version) VALUES ($1)"};
}  // namespace

Result<int> migrate(Connection& c, const std::string& directory) {
  namespace fs = std::filesystem;
  std::error_code ec;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(directory, ec)) {
    if (entry.path().extension() == ".sql") files.push_back(entry.path());
  }
  if (ec) return fail(Code::internal, "cannot read migrations in " + directory + ": " + ec.message());
  std::sort(files.begin(), files.end());

  auto created = c.exec(kCreateTable);
  if (!created) return created.error();
  int applied = 0;
  for (const auto& file : files) {
    const std::string version = file.stem().string();
    Transaction tx(c);
    if (auto b = tx.begin_status(); !b) return b.error();
    if (auto l = tx.exec(kLock); !l) return l.error();
    auto seen = tx.exec(kApplied, {version});
    if (!seen) return seen.error();
    if (seen->size() > 0) continue;
    std::ifstream in(file);
    std::stringstream sql;
    sql << in.rdbuf();
    if (auto r = c.exec_script(sql.str()); !r) {
      return fail(Code::internal, "migration " + version + " failed");
    }
    if (auto r = tx.exec(kRecord, {version}); !r) return r.error();
    if (auto r = tx.commit(); !r) return r.error();
    log::info("migration applied", {{"version", version}});
    ++applied;
  }
  return applied;
}

}  // namespace hydrox::db
