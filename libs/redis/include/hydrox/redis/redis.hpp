#pragma once
// Redis through hiredis: a bounded pool of command connections (max 100, as the original
// service) with per-call timeouts and a reconnect backoff, cache get/set with TTL, PUBLISH, and a
// Subscriber on its own connection and thread that reconnects and resubscribes by itself.
// Calls block (bounded by the timeout): use them from the blocking pool, not from IO threads.
#include "hydrox/core/error.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

struct redisContext;

namespace hydrox::redis {

struct Address {
  std::string host = "localhost";
  std::uint16_t port = 6379;
  int db = 0;
  std::string password;
};

// "host:port" (the original README's form) or redis://[:password@]host[:port][/db].
Result<Address> parse_url(std::string_view url);

struct Options {
  std::size_t max_connections = 100;
  std::chrono::milliseconds timeout{500};            // connect and each command
  std::chrono::milliseconds acquire_timeout{1000};
  std::chrono::milliseconds max_backoff{2000};       // after a failed connect, fail fast this long at most
};

// A reply flattened to what callers need.
struct Reply {
  enum class Type : std::uint8_t { nil, string, integer, array, status } type = Type::nil;
  std::string str;
  std::int64_t integer = 0;
  std::vector<Reply> elements;
};

// A Lua script run through Redis's script cache (EVALSHA): its SHA1 is learnt from SCRIPT LOAD on
// first use and kept; when Redis no longer has it (restart, SCRIPT FLUSH) it is loaded again.
class Script {
 public:
  explicit Script(std::string body) : body_(std::move(body)) {}
  const std::string& body() const { return body_; }

 private:
  friend class Client;
  std::string body_;
  std::mutex mu_;
  std::string sha_;  // empty until loaded
};

class Client {
 public:
  Client(Address address, Options options = {});
  ~Client();
  Result<Reply> command(const std::vector<std::string>& args);
  // EVALSHA of the script with its keys and arguments (one round trip once the script is known).
  Result<Reply> eval(Script& script, const std::vector<std::string>& keys,
                     const std::vector<std::string>& args);
  Result<void> ping();
  Result<std::optional<std::string>> get(std::string_view key);
  Result<void> set(std::string_view key, std::string_view value, std::chrono::milliseconds ttl);
  Result<void> del(std::string_view key);
  Result<std::int64_t> publish(std::string_view channel, std::string_view message);
  // Sends all commands on one connection, then reads all replies (one round trip).
  Result<void> pipeline(const std::vector<std::vector<std::string>>& commands);

 private:
  struct Conn;
  // command(), with an error reply's text in *error_reply (and Code::internal) instead of logged.
  Result<Reply> exec(const std::vector<std::string>& args, std::string* error_reply);
  Result<std::unique_ptr<Conn>> connect();
  Result<std::unique_ptr<Conn>> acquire();
  void give_back(std::unique_ptr<Conn> c, bool healthy);

  Address address_;
  Options options_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::unique_ptr<Conn>> idle_;
  std::size_t open_ = 0;
  std::chrono::steady_clock::time_point retry_after_{};
  std::chrono::milliseconds backoff_{0};
};

// Subscribes to channels (or patterns) on a dedicated connection; on_message runs on the
// subscriber's thread. After a reconnect, on_reconnect runs (listeners resync from a snapshot).
class Subscriber {
 public:
  using OnMessage = std::function<void(std::string_view channel, std::string_view message)>;
  Subscriber(Address address, std::vector<std::string> channels, std::vector<std::string> patterns,
             OnMessage on_message, std::function<void()> on_reconnect = {},
             Options options = {});
  ~Subscriber();
  void stop();
  bool connected() const { return connected_.load(); }

 private:
  void run();
  Address address_;
  std::vector<std::string> channels_, patterns_;
  OnMessage on_message_;
  std::function<void()> on_reconnect_;
  Options options_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> connected_{false};
  std::thread thread_;
};

}  // namespace hydrox::redis
