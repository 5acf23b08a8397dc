#pragma once
// Routes with path parameters ("/api/v1/markets/{symbol}/ticker") and a trailing wildcard
// ("/api/v1/markets/*", for the gateway's proxy). Literal segments win over parameters, and
// parameters over wildcards. A path that matches with another method gives 405.
#include "hydrox/http/message.hpp"

#include <string>
#include <string_view>
#include <vector>

namespace hydrox::http {

class Router {
 public:
  // pattern segments: literal, {name}, or a final "*" that matches one or more segments (the
  // rest of the path is available as path_param("*")).
  void add(Method method, std::string_view pattern, Handler handler);
  void get(std::string_view p, Handler h) { add(Method::get, p, std::move(h)); }
  void post(std::string_view p, Handler h) { add(Method::post, p, std::move(h)); }
  void del(std::string_view p, Handler h) { add(Method::del, p, std::move(h)); }
  void patch(std::string_view p, Handler h) { add(Method::patch, p, std::move(h)); }
  // Any method (the gateway's proxy routes).
  void any(std::string_view pattern, Handler handler);

  struct Match {
    const Handler* handler = nullptr;  // null: no route
    bool method_not_allowed = false;   // the path exists with other methods
    std::string pattern;               // the matched route pattern (a low-cardinality metric label)
    std::vector<std::pair<std::string, std::string>> params;
  };
  Match match(Method method, std::string_view path) const;

 private:
  struct Route {
    Method method;
    bool any_method;
    std::string pattern;
    std::vector<std::string> segments;
    Handler handler;
  };
  std::vector<Route> routes_;
};

}  // namespace hydrox::http
