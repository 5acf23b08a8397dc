#include "hydrox/redis/redis.hpp"

#include <hiredis/hiredis.h>

#include <poll.h>

#include <cerrno>
#include <charconv>

#include "hydrox/log/log.hpp"

namespace hydrox::redis {

namespace {

timeval to_timeval(std::chrono::milliseconds ms) {
  return timeval{static_cast<time_t>(ms.count() / 1000),
                 static_cast<suseconds_t>((ms.count() % 1000) * 1000)};
}

Reply convert(const redisReply* r) {
  Reply out;
  switch (r->type) {
    case REDIS_REPLY_STRING:
      out.type = Reply::Type::string;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_STATUS:
      out.type = Reply::Type::status;
      out.str.assign(r->str, r->len);
      break;
    case REDIS_REPLY_INTEGER:
      out.type = Reply::Type::integer;
      out.integer = r->integer;
      break;
    case REDIS_REPLY_ARRAY:
      out.type = Reply::Type::array;
      for (std::size_t i = 0; i < r->elements; ++i) out.elements.push_back(convert(r->element[i]));
      break;
    default:
      break;
  }
  return out;
}

Error unavailable(std::string what) { return fail(Code::unavailable, "redis: " + what); }

// Runs a command; nullptr reply means the connection is broken.
redisReply* run_command(redisContext* c, const std::vector<std::string>& args) {
  std::vector<const char*> argv;
  std::vector<std::size_t> lens;
  for (const auto& a : args) {
    argv.push_back(a.data());
    lens.push_back(a.size());
  }
  return static_cast<redisReply*>(
      redisCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()));
}

redisContext* open(const Address& a, std::chrono::milliseconds timeout, std::string* error) {
  timeval tv = to_timeval(timeout);
  redisContext* c = redisConnectWithTimeout(a.host.c_str(), a.port, tv);
  if (c == nullptr || c->err) {
    *error = c ? c->errstr : "out of memory";
    if (c) redisFree(c);
    return nullptr;
  }
  redisSetTimeout(c, tv);
  auto setup = [&](std::vector<std::string> args) {
    redisReply* r = run_command(c, args);
    bool ok = r && r->type != REDIS_REPLY_ERROR;
    if (!ok) *error = r ? std::string(r->str, r->len) : std::string(c->errstr);
    if (r) freeReplyObject(r);
    return ok;
  };
  if ((!a.password.empty() && !setup({"AUTH", a.password})) ||
      (a.db != 0 && !setup({"SELECT", std::to_string(a.db)}))) {
    redisFree(c);
    return nullptr;
  }
  return c;
}

}  // namespace

Result<Address> parse_url(std::string_view url) {
  Address a;
  std::string_view rest = url;
  if (rest.starts_with("redis://")) rest.remove_prefix(8);
  if (auto at = rest.rfind('@'); at != std::string_view::npos) {
    std::string_view cred = rest.substr(0, at);
    if (auto colon = cred.find(':'); colon != std::string_view::npos) cred.remove_prefix(colon + 1);
    a.password = std::string(cred);
    rest.remove_prefix(at + 1);
  }
  if (auto slash = rest.find('/'); slash != std::string_view::npos) {
    std::string_view db = rest.substr(slash + 1);
    if (!db.empty()) {
      auto [p, ec] = std::from_chars(db.data(), db.data() + db.size(), a.db);
      if (ec != std::errc() || p != db.data() + db.size() || a.db < 0 || a.db > 15) {
        return fail(Code::invalid_field, "bad Redis database number");
      }
    }
    rest = rest.substr(0, slash);
  }
  if (auto colon = rest.rfind(':'); colon != std::string_view::npos) {
    std::string_view port = rest.substr(colon + 1);
    unsigned v = 0;
    auto [p, ec] = std::from_chars(port.data(), port.data() + port.size(), v);
    if (ec != std::errc() || p != port.data() + port.size() || v == 0 || v > 65535) {
      return fail(Code::invalid_field, "bad Redis port");
    }
    a.port = static_cast<std::uint16_t>(v);
    rest = rest.substr(0, colon);
  }
  if (rest.empty()) return fail(Code::invalid_field, "no Redis host");
  a.host = std::string(rest);
  return a;
}

struct Client::Conn {
  redisContext* ctx = nullptr;
  ~Conn() {
    if (ctx) redisFree(ctx);
  }
};

Client::Client(Address address, Options options)
    : address_(std::move(address)), options_(options) {}
Client::~Client() = default;

Result<std::unique_ptr<Client::Conn>> Client::connect() {
  std::string error;
  redisContext* c = open(address_, options_.timeout, &error);
  std::lock_guard lock(mu_);
  if (c == nullptr) {
    // Back off so that a Redis outage costs callers one fast failure, not a timeout each.
    backoff_ = std::min(options_.max_backoff,
                        backoff_.count() == 0 ? std::chrono::milliseconds(100) : backoff_ * 2);
    retry_after_ = std::chrono::steady_clock::now() + backoff_;
    return unavailable("cannot connect: " + error);
  }
  backoff_ = std::chrono::milliseconds(0);
  auto conn = std::make_unique<Conn>();
  conn->ctx = c;
  return conn;
}

Result<std::unique_ptr<Client::Conn>> Client::acquire() {
  std::unique_lock lock(mu_);
  auto deadline = std::chrono::steady_clock::now() + options_.acquire_timeout;
  for (;;) {
    if (!idle_.empty()) {
      auto c = std::move(idle_.back());
      idle_.pop_back();
      return c;
    }
    if (open_ < options_.max_connections) {
      if (std::chrono::steady_clock::now() < retry_after_) return unavailable("down (backing off)");
      ++open_;
      lock.unlock();
      auto c = connect();
      if (!c) {
        std::lock_guard relock(mu_);
        --open_;
        cv_.notify_one();
      }
      return c;
    }
    if (cv_.wait_until(lock, deadline) == std::cv_status::timeout) {
      return fail(Code::overloaded, "no Redis connection free");
    }
  }
}

void Client::give_back(std::unique_ptr<Conn> c, bool healthy) {
  std::lock_guard lock(mu_);
  if (healthy) {
    idle_.push_back(std::move(c));
  } else {
    --open_;
  }
  cv_.notify_one();
}

Result<Reply> Client::exec(const std::vector<std::string>& args, std::string* error_reply) {
  auto conn = acquire();
  if (!conn) return conn.error();
  redisReply* r = run_command((*conn)->ctx, args);
  if (r == nullptr) {
    std::string err = (*conn)->ctx->errstr;
    give_back(std::move(*conn), false);
    return unavailable(err);
  }
  give_back(std::move(*conn), true);
  if (r->type == REDIS_REPLY_ERROR) {
    error_reply->assign(r->str, r->len);
    freeReplyObject(r);
    return fail(Code::internal, "redis command failed");
  }
  Reply out = convert(r);
  freeReplyObject(r);
  return out;
}

Result<Reply> Client::command(const std::vector<std::string>& args) {
  std::string error_reply;
  auto r = exec(args, &error_reply);
  if (!r && !error_reply.empty()) {
    log::error("redis command failed",
               {{"command", args.empty() ? "" : args[0]}, {"error", error_reply}});
  }
  return r;
}

Result<Reply> Client::eval(Script& script, const std::vector<std::string>& keys,
                           const std::vector<std::string>& args) {
  const auto load = [&]() -> Result<std::string> {
    auto r = command({"SCRIPT", "LOAD", script.body_});
    if (!r) return r.error();
    if (r->type != Reply::Type::string)
      return fail(Code::internal, "redis: SCRIPT LOAD gave no SHA1");
    std::lock_guard lock(script.mu_);
    script.sha_ = r->str;
    return r->str;
  };
  std::string sha;
  {
    std::lock_guard lock(script.mu_);
    sha = script.sha_;
  }
  if (sha.empty()) {
    auto loaded = load();
    if (!loaded) return loaded.error();
    sha = std::move(*loaded);
  }
  std::vector<std::string> call;
  call.reserve(3 + keys.size() + args.size());
  call.insert(call.end(), {"EVALSHA", sha, std::to_string(keys.size())});
  call.insert(call.end(), keys.begin(), keys.end());
  call.insert(call.end(), args.begin(), args.end());
  std::string error_reply;
  auto r = exec(call, &error_reply);
  if (r || !error_reply.starts_with("NOSCRIPT")) {
    if (!r && !error_reply.empty()) log::error("redis script failed", {{"error", error_reply}});
    return r;
  }
  // Redis lost its script cache (restarted, or SCRIPT FLUSH): load the script again, once.
  auto loaded = load();
  if (!loaded) return loaded.error();
  call[1] = std::move(*loaded);
  return command(call);
}

Result<void> Client::ping() {
  auto r = command({"PING"});
  if (!r) return r.error();
  return {};
}

Result<std::optional<std::string>> Client::get(std::string_view key) {
  auto r = command({"GET", std::string(key)});
  if (!r) return r.error();
  if (r->type == Reply::Type::nil) return std::optional<std::string>();
  return std::optional<std::string>(std::move(r->str));
}

Result<void> Client::set(std::string_view key, std::string_view value,
                         std::chrono::milliseconds ttl) {
  auto r = command({"SET", std::string(key), std::string(value), "PX", std::to_string(ttl.count())});
  if (!r) return r.error();
  return {};
}

Result<void> Client::del(std::string_view key) {
  auto r = command({"DEL", std::string(key)});
  if (!r) return r.error();
  return {};
}

Result<std::int64_t> Client::publish(std::string_view channel, std::string_view message) {
  auto r = command({"PUBLISH", std::string(channel), std::string(message)});
  if (!r) return r.error();
  return r->integer;
}

Result<void> Client::pipeline(const std::vector<std::vector<std::string>>& commands) {
  if (commands.empty()) return {};
  auto conn = acquire();
  if (!conn) return conn.error();
  redisContext* c = (*conn)->ctx;
  for (const auto& args : commands) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    for (const auto& a : args) {
      argv.push_back(a.data());
      lens.push_back(a.size());
    }
    redisAppendCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data());
  }
  for (std::size_t i = 0; i < commands.size(); ++i) {
    void* reply = nullptr;
    if (redisGetReply(c, &reply) != REDIS_OK) {
      std::string err = c->errstr;
      give_back(std::move(*conn), false);
      return unavailable(err);
    }
    freeReplyObject(reply);
  }
  give_back(std::move(*conn), true);
  return {};
}

Subscriber::Subscriber(Address address, std::vector<std::string> channels,
                       std::vector<std::string> patterns, OnMessage on_message,
                       std::function<void()> on_reconnect, Options options)
    : address_(std::move(address)),
      channels_(std::move(channels)),
      patterns_(std::move(patterns)),
      on_message_(std::move(on_message)),
      on_reconnect_(std::move(on_reconnect)),
      options_(options),
      thread_([this] { run(); }) {}

Subscriber::~Subscriber() { stop(); }

void Subscriber::stop() {
  stop_.store(true);
  if (thread_.joinable()) thread_.join();
}

void Subscriber::run() {
  std::chrono::milliseconds backoff(100);
  bool first = true;
  while (!stop_.load()) {
    std::string error;
    redisContext* c = open(address_, options_.timeout, &error);
    bool ok = c != nullptr;
    auto subscribe = [&](const char* verb, const std::vector<std::string>& names) {
      if (!ok || names.empty()) return;
      std::vector<std::string> args{verb};
      args.insert(args.end(), names.begin(), names.end());
      std::vector<const char*> argv;
      std::vector<std::size_t> lens;
      for (const auto& a : args) {
        argv.push_back(a.data());
        lens.push_back(a.size());
      }
      ok = redisAppendCommandArgv(c, static_cast<int>(args.size()), argv.data(), lens.data()) ==
           REDIS_OK;
    };
    subscribe("SUBSCRIBE", channels_);
    subscribe("PSUBSCRIBE", patterns_);
    if (!ok) {
      if (c) redisFree(c);
      if (first) log::warn("redis subscriber cannot connect", {{"error", error}});
      first = false;
      auto until = std::chrono::steady_clock::now() + backoff;
      while (!stop_.load() && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      backoff = std::min(options_.max_backoff, backoff * 2);
      continue;
    }
    backoff = std::chrono::milliseconds(100);
    std::size_t confirmations = channels_.size() + patterns_.size();
    bool announced = false;
    // Flush the SUBSCRIBE commands, then read replies as they arrive; poll() with a short timeout
    // keeps stop() responsive without relying on hiredis read timeouts.
    int done = 0;
    while (!done) {
      if (redisBufferWrite(c, &done) != REDIS_OK) break;
    }
    while (!stop_.load()) {
      void* raw = nullptr;
      if (redisGetReplyFromReader(c, &raw) != REDIS_OK) break;
      if (raw == nullptr) {
        pollfd pfd{c->fd, POLLIN, 0};
        int n = ::poll(&pfd, 1, 200);
        if (n < 0 && errno != EINTR) break;
        if (n > 0 && redisBufferRead(c) != REDIS_OK) break;  // connection lost
        continue;
      }
      auto* r = static_cast<redisReply*>(raw);
      if (r->type == REDIS_REPLY_ARRAY && r->elements >= 3) {
        std::string_view kind(r->element[0]->str, r->element[0]->len);
        if (kind == "message") {
          on_message_({r->element[1]->str, r->element[1]->len},
                      {r->element[2]->str, r->element[2]->len});
        } else if (kind == "pmessage" && r->elements >= 4) {
          on_message_({r->element[2]->str, r->element[2]->len},
                      {r->element[3]->str, r->element[3]->len});
        } else if ((kind == "subscribe" || kind == "psubscribe") && confirmations > 0) {
          if (--confirmations == 0 && !announced) {
            announced = true;
            connected_.store(true);
            if (!first && on_reconnect_) on_reconnect_();
            if (!first) log::info("redis subscriber reconnected");
            first = false;
          }
        }
      }
      freeReplyObject(r);
    }
    connected_.store(false);
    redisFree(c);
    if (!stop_.load()) log::warn("redis subscriber lost its connection");
  }
}

}  // namespace hydrox::redis
