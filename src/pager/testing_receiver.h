// Test support: an HTTP receiver on 127.0.0.1 (an ephemeral port) standing in for Slack,
// PagerDuty or a webhook. It records every request and answers from a script: 200, 202, 400,
// 429 with Retry-After, 500, or a stall (the request is read and never answered, so the client
// times out).
//
//   test_support::Receiver receiver;
//   receiver.Script({Answer::Status(500), Answer::Status(500)});  // then 200 "ok" for the rest
//   ... post to receiver.Url("/hook") ...
//   ASSERT_TRUE(receiver.WaitForRequests(3, 2s));
//
// Header-only and included only by *_test.cc files. Boost.Beast over Asio, one coroutine per
// connection on one I/O thread. The destructor stops the thread; stalled connections are
// dropped with it.
//
// Thread-safety: every member may be called from any thread.
#pragma once

#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

namespace mann::pager::test_support {

struct Received {
  std::string method;
  std::string target;                          // path and query
  std::map<std::string, std::string> headers;  // names in lower case
  std::string body;
  boost::json::value json;  // the parsed body; null when it is not JSON
  std::chrono::steady_clock::time_point at;

  std::string Header(const std::string& lower_name) const {
    auto it = headers.find(lower_name);
    return it == headers.end() ? std::string() : it->second;
  }
};

struct Answer {
  int status = 200;
  std::string body = "ok";
  std::vector<std::pair<std::string, std::string>> headers;
  bool stall = false;

  static Answer Status(int status, std::string body = "") {
    Answer a;
    a.status = status;
    a.body = body.empty() ? std::to_string(status) : std::move(body);
    return a;
  }
  static Answer TooManyRequests(std::string retry_after) {
    Answer a = Status(429, "rate limited");
    a.headers.emplace_back("Retry-After", std::move(retry_after));
    return a;
  }
  static Answer Stall() {
    Answer a;
    a.stall = true;
    return a;
  }
};

class Receiver {
 public:
  Receiver() : acceptor_(io_, {boost::asio::ip::make_address("127.0.0.1"), 0}) {
    port_ = acceptor_.local_endpoint().port();
    boost::asio::co_spawn(io_, Accept(), boost::asio::detached);
    thread_ = std::thread([this] { io_.run(); });
  }

  ~Receiver() {
    io_.stop();
    thread_.join();
  }

  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  std::uint16_t port() const { return port_; }
  std::string Url(std::string_view path = "/hook") const {
    return "http://127.0.0.1:" + std::to_string(port_) + std::string(path);
  }

  // Answers the next requests with `script`, in order, and every later one with `otherwise`.
  void Script(std::vector<Answer> script, Answer otherwise = Answer()) {
    std::lock_guard lock(mu_);
    script_.assign(script.begin(), script.end());
    otherwise_ = std::move(otherwise);
  }

  std::vector<Received> requests() const {
    std::lock_guard lock(mu_);
    return requests_;
  }
  std::size_t request_count() const {
    std::lock_guard lock(mu_);
    return requests_.size();
  }

  // True once at least `n` requests have arrived; false after `timeout` otherwise.
  bool WaitForRequests(std::size_t n, std::chrono::milliseconds timeout) const {
    std::unique_lock lock(mu_);
    return arrived_.wait_for(lock, timeout, [&] { return requests_.size() >= n; });
  }

 private:
  using tcp = boost::asio::ip::tcp;
  static constexpr auto kTuple = boost::asio::as_tuple(boost::asio::use_awaitable);

  boost::asio::awaitable<void> Accept() {
    for (;;) {
      auto [ec, socket] = co_await acceptor_.async_accept(kTuple);
      if (ec) co_return;
      boost::asio::co_spawn(io_, Serve(std::move(socket)), boost::asio::detached);
    }
  }

  boost::asio::awaitable<void> Serve(tcp::socket socket) {
    namespace http = boost::beast::http;
    boost::beast::flat_buffer buffer;
    for (;;) {
      http::request<http::string_body> request;
      auto [read_error, read] = co_await http::async_read(socket, buffer, request, kTuple);
      if (read_error) co_return;
      const Answer answer = Record(request);

      if (answer.stall) {
        // Holds the connection open without a word until the receiver is destroyed.
        boost::asio::steady_timer forever(io_, std::chrono::hours(1));
        co_await forever.async_wait(kTuple);
        co_return;
      }
      http::response<http::string_body> response{static_cast<http::status>(answer.status),
                                                 request.version()};
      response.set(http::field::content_type, "text/plain");
      for (const auto& [name, value] : answer.headers) response.set(name, value);
      response.body() = answer.body;
      response.keep_alive(request.keep_alive());
      response.prepare_payload();
      auto [write_error, written] = co_await http::async_write(socket, response, kTuple);
      if (write_error || !response.keep_alive()) co_return;
    }
  }

  Answer Record(const boost::beast::http::request<boost::beast::http::string_body>& request) {
    Received r;
    r.method = std::string(request.method_string());
    r.target = std::string(request.target());
    for (const auto& field : request) {
      std::string name(field.name_string());
      for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      r.headers[name] = std::string(field.value());
    }
    r.body = request.body();
    boost::system::error_code ec;
    r.json = boost::json::parse(r.body, ec);
    if (ec) r.json = nullptr;
    r.at = std::chrono::steady_clock::now();

    std::lock_guard lock(mu_);
    requests_.push_back(std::move(r));
    arrived_.notify_all();
    if (script_.empty()) return otherwise_;
    Answer next = std::move(script_.front());
    script_.pop_front();
    return next;
  }

  boost::asio::io_context io_;
  tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  std::thread thread_;

  mutable std::mutex mu_;
  mutable std::condition_variable arrived_;
  std::deque<Answer> script_;       // guarded by mu_
  Answer otherwise_;                // guarded by mu_
  std::vector<Received> requests_;  // guarded by mu_
};

}  // namespace mann::pager::test_support
