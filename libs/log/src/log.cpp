#include "hydrox/log/log.hpp"

#include <unistd.h>

#include "hydrox/core/clock.hpp"
#include "hydrox/json/json.hpp"

namespace hydrox::log {
namespace {

std::string g_service = "hydrox";
Level g_min = Level::info;

std::string_view level_name(Level l) {
  switch (l) {
    case Level::debug: return "debug";
    case Level::info: return "info";
    case Level::warn: return "warn";
    case Level::error: return "error";
  }
  return "info";
}

}  // namespace

void init(std::string_view service, Level min_level) {
  g_service = std::string(service);
  g_min = min_level;
}

Level parse_level(std::string_view text, Level fallback) {
  if (text == "debug") return Level::debug;
  if (text == "info") return Level::info;
  if (text == "warn") return Level::warn;
  if (text == "error") return Level::error;
  return fallback;
}

bool enabled(Level level) { return level >= g_min; }

void write(Level level, std::string_view msg, std::initializer_list<Field> fields) {
  if (level < g_min) return;
  json::Writer w;
  w.begin_object()
      .field("ts", format_rfc3339_ms(SystemClock::instance().now_ms()))
      .field("level", level_name(level))
      .field("service", g_service)
      .field("msg", msg);
  for (const auto& f : fields) w.field(f.key, f.value);
  w.end_object();
  std::string line = w.take();
  line.push_back('\n');
  // One write(2) per line keeps lines whole when several threads log at once.
  ssize_t ignored = ::write(STDERR_FILENO, line.data(), line.size());
  (void)ignored;
}

}  // namespace hydrox::log
