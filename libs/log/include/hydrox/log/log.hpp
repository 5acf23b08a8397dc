#pragma once
// Structured logs: one JSON object per line on stderr, e.g.
// {"ts":"2026-11-26T11:38:40.123Z","level":"info","service":"gateway","msg":"listening","port":"8080"}
#include <cstdint>
#include <initializer_list>
#include <string>
#include <string_view>
#include <utility>

namespace hydrox::log {

enum class Level : std::uint8_t { debug, info, warn, error };

struct Field {
  std::string_view key;
  std::string value;
  Field(std::string_view k, std::string v) : key(k), value(std::move(v)) {}
  Field(std::string_view k, std::string_view v) : key(k), value(v) {}
  Field(std::string_view k, const char* v) : key(k), value(v) {}
  Field(std::string_view k, std::int64_t v) : key(k), value(std::to_string(v)) {}
  Field(std::string_view k, int v) : key(k), value(std::to_string(v)) {}
};

// Set once at startup (before threads); LOG_LEVEL=debug|info|warn|error.
void init(std::string_view service, Level min_level = Level::info);
Level parse_level(std::string_view text, Level fallback);

void write(Level level, std::string_view msg, std::initializer_list<Field> fields = {});
bool enabled(Level level);
inline void debug(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::debug, m, f); }
inline void info(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::info, m, f); }
inline void warn(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::warn, m, f); }
inline void error(std::string_view m, std::initializer_list<Field> f = {}) { write(Level::error, m, f); }

}  // namespace hydrox::log
