#include "hydrox/http/router.hpp"

namespace hydrox::http {
namespace {

std::vector<std::string_view> split_path(std::string_view path) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < path.size()) {
    if (path[i] == '/') {
      ++i;
      continue;
    }
    std::size_t j = path.find('/', i);
    if (j == std::string_view::npos) j = path.size();
    out.push_back(path.substr(i, j - i));
    i = j;
  }
  return out;
}

// Score of a match: higher is more specific. -1: no match.
int match_segments(const std::vector<std::string>& pattern, const std::vector<std::string_view>& path,
                   std::string_view full_path,
                   std::vector<std::pair<std::string, std::string>>* params) {
  int score = 0;
  for (std::size_t i = 0; i < pattern.size(); ++i) {
    const std::string& seg = pattern[i];
    if (seg == "*" && i + 1 == pattern.size()) {
      if (path.size() <= i) return -1;
      if (params) {
        // The rest of the path, from the start of segment i.
        std::size_t offset = static_cast<std::size_t>(path[i].data() - full_path.data());
        params->emplace_back("*", std::string(full_path.substr(offset)));
      }
      return score;
    }
    if (i >= path.size()) return -1;
    if (seg.size() > 2 && seg.front() == '{' && seg.back() == '}') {
      if (params) params->emplace_back(seg.substr(1, seg.size() - 2), std::string(path[i]));
      score += 1;
    } else if (seg == path[i]) {
      score += 2;
    } else {
      return -1;
    }
  }
  return path.size() == pattern.size() ? score + 1 : -1;
}

}  // namespace

void Router::add(Method method, std::string_view pattern, Handler handler) {
  Route r{method, false, std::string(pattern), {}, std::move(handler)};
  for (auto s : split_path(pattern)) r.segments.emplace_back(s);
  routes_.push_back(std::move(r));
}

void Router::any(std::string_view pattern, Handler handler) {
  add(Method::other, pattern, std::move(handler));
  routes_.back().any_method = true;
}

Router::Match Router::match(Method method, std::string_view path) const {
  auto segments = split_path(path);
  Match best;
  int best_score = -1;
  for (const Route& r : routes_) {
    int score = match_segments(r.segments, segments, path, nullptr);
    if (score < 0) continue;
    if (!r.any_method && r.method != method &&
        !(method == Method::head && r.method == Method::get)) {
      best.method_not_allowed = true;
      continue;
    }
    if (score > best_score) {
      best_score = score;
      best.handler = &r.handler;
      best.pattern = r.pattern;
      best.params.clear();
      match_segments(r.segments, segments, path, &best.params);
    }
  }
  if (best.handler) best.method_not_allowed = false;
  return best;
}

}  // namespace hydrox::http
