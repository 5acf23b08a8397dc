#include "hydrox/metrics/metrics.hpp"

#include <algorithm>
#include <map>

namespace hydrox::metrics {
namespace {

std::string escape_label(const std::string& v) {
  std::string out;
  for (char c : v) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
  return out;
}

std::string render_labels(const Labels& labels, const std::string& extra = {}) {
  if (labels.empty() && extra.empty()) return {};
  std::string out = "{";
  bool first = true;
  for (const auto& [k, v] : labels) {
    if (!first) out.push_back(',');
    first = false;
    out += k + "=\"" + escape_label(v) + "\"";
  }
  if (!extra.empty()) {
    if (!first) out.push_back(',');
    out += extra;
  }
  out.push_back('}');
  return out;
}

}  // namespace

void Histogram::observe_us(std::uint64_t us) {
  for (std::size_t i = 0; i < kBucketsUs.size(); ++i) {
    if (us <= kBucketsUs[i]) {
      buckets_[i].fetch_add(1, std::memory_order_relaxed);
      break;
    }
  }
  count_.fetch_add(1, std::memory_order_relaxed);
  sum_us_.fetch_add(us, std::memory_order_relaxed);
}

Registry::Series* Registry::find(const std::string& name, const Labels& labels) {
  for (auto& s : series_) {
    if (s.name == name && s.labels == labels) return &s;
  }
  return nullptr;
}

Counter& Registry::counter(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  if (auto* s = find(name, labels); s && s->counter) return *s->counter;
  Counter& c = counters_.emplace_back();
  series_.push_back(Series{name, help, Type::counter, labels, &c, nullptr, nullptr});
  return c;
}

Gauge& Registry::gauge(const std::string& name, const std::string& help, const Labels& labels) {
  std::lock_guard lock(mu_);
  if (auto* s = find(name, labels); s && s->gauge) return *s->gauge;
  Gauge& g = gauges_.emplace_back();
  series_.push_back(Series{name, help, Type::gauge, labels, nullptr, &g, nullptr});
  return g;
}

Histogram& Registry::histogram(const std::string& name, const std::string& help,
                               const Labels& labels) {
  std::lock_guard lock(mu_);
  if (auto* s = find(name, labels); s && s->histogram) return *s->histogram;
  Histogram& h = histograms_.emplace_back();
  series_.push_back(Series{name, help, Type::histogram, labels, nullptr, nullptr, &h});
  return h;
}

std::string Registry::render() const {
  std::lock_guard lock(mu_);
  // Group series by name so HELP/TYPE appear once per metric family.
  std::map<std::string, std::vector<const Series*>> families;
  for (const auto& s : series_) families[s.name].push_back(&s);
  std::string out;
  for (const auto& [name, list] : families) {
    const Series& first = *list.front();
    static constexpr const char* kTypeNames[] = {"counter", "gauge", "histogram"};
    out += "# HELP " + name + " " + first.help + "\n";
    out += "# TYPE " + name + " " + kTypeNames[static_cast<int>(first.type)] + "\n";
    for (const Series* s : list) {
      switch (s->type) {
        case Type::counter:
          out += name + render_labels(s->labels) + " " + std::to_string(s->counter->value()) + "\n";
          break;
        case Type::gauge:
          out += name + render_labels(s->labels) + " " + std::to_string(s->gauge->value()) + "\n";
          break;
        case Type::histogram: {
          const Histogram& h = *s->histogram;
          std::uint64_t cumulative = 0;
          for (std::size_t i = 0; i < Histogram::kBucketsUs.size(); ++i) {
            cumulative += h.buckets_[i].load(std::memory_order_relaxed);
            // Buckets in seconds, as Prometheus expects.
            std::uint64_t us = Histogram::kBucketsUs[i];
            std::string le = std::to_string(us / 1000000) + "." +
                             std::string(6 - std::to_string(us % 1000000).size(), '0') +
                             std::to_string(us % 1000000);
            out += name + "_bucket" + render_labels(s->labels, "le=\"" + le + "\"") + " " +
                   std::to_string(cumulative) + "\n";
          }
          out += name + "_bucket" + render_labels(s->labels, "le=\"+Inf\"") + " " +
                 std::to_string(h.count()) + "\n";
          std::uint64_t sum = h.sum_us_.load(std::memory_order_relaxed);
          out += name + "_sum" + render_labels(s->labels) + " " + std::to_string(sum / 1000000) +
                 "." + std::string(6 - std::to_string(sum % 1000000).size(), '0') +
                 std::to_string(sum % 1000000) + "\n";
          out += name + "_count" + render_labels(s->labels) + " " + std::to_string(h.count()) +
                 "\n";
          break;
        }
      }
    }
  }
  return out;
}

Registry& Registry::global() {
  static Registry r;
  return r;
}

}  // namespace hydrox::metrics
