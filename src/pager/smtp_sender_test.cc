// SmtpSender against a fake SMTP server that speaks only clear text. Delivery over TLS is
// exercised against a real server (tests/integration/smtp_receiver.py); what these tests pin
// down is the refusal side: no path through SmtpSender sends MAIL FROM unencrypted.
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <stop_token>
#include <string>
#include <thread>
#include <vector>

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <mann/pager/payloads.h>
#include <mann/pager/smtp_sender.h>

namespace mann::pager {
namespace {

using ::testing::Contains;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;
using namespace std::chrono_literals;

// What the fake server does when asked to upgrade.
enum class Tls {
  kNotOffered,  // EHLO does not list STARTTLS
  kRefused,     // EHLO lists it, STARTTLS is answered 454
};

// One connection at a time, clear text only; records every line a client sends. A client that
// reached MAIL FROM would be answered as a real server would, so a test failing to refuse
// would visibly go on to send the message.
class FakeSmtpServer {
 public:
  explicit FakeSmtpServer(Tls tls) : tls_(tls) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof(addr);
    if (listen_fd_ < 0 || ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 ||
        ::listen(listen_fd_, 8) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "fake SMTP server cannot listen: " << std::strerror(errno);
      return;
    }
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { Run(); });
  }

  ~FakeSmtpServer() {
    stopping_ = true;
    ::shutdown(listen_fd_, SHUT_RDWR);
    {
      std::lock_guard lock(mu_);
      if (client_fd_ >= 0) ::shutdown(client_fd_, SHUT_RDWR);
    }
    if (thread_.joinable()) thread_.join();
    ::close(listen_fd_);
  }

  std::string Url(std::string_view scheme = "smtp") const {
    return std::string(scheme) + "://127.0.0.1:" + std::to_string(port_);
  }

  std::vector<std::string> lines() const {
    std::lock_guard lock(mu_);
    return lines_;
  }

 private:
  void Run() {
    while (!stopping_) {
      const int fd = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd < 0) return;
      {
        std::lock_guard lock(mu_);
        client_fd_ = fd;
      }
      Converse(fd);
      {
        std::lock_guard lock(mu_);
        client_fd_ = -1;
      }
      ::close(fd);
    }
  }

  void Send(int fd, std::string_view text) { ::send(fd, text.data(), text.size(), MSG_NOSIGNAL); }

  void Converse(int fd) {
    Send(fd, "220 fake.example ESMTP\r\n");
    std::string buffer;
    bool in_data = false;
    char chunk[4096];
    for (;;) {
      const ssize_t n = ::recv(fd, chunk, sizeof(chunk), 0);
      if (n <= 0) return;
      buffer.append(chunk, static_cast<std::size_t>(n));
      std::size_t eol;
      while ((eol = buffer.find("\r\n")) != std::string::npos) {
        const std::string line = buffer.substr(0, eol);
        buffer.erase(0, eol + 2);
        {
          std::lock_guard lock(mu_);
          lines_.push_back(line);
        }
        if (in_data) {
          if (line == ".") {
            in_data = false;
            Send(fd, "250 2.0.0 queued\r\n");
          }
          continue;
        }
        if (line.starts_with("EHLO")) {
          Send(fd, tls_ == Tls::kRefused ? "250-fake.example\r\n250-STARTTLS\r\n250 8BITMIME\r\n"
                                         : "250-fake.example\r\n250 8BITMIME\r\n");
        } else if (line == "STARTTLS") {
          Send(fd, "454 4.7.0 TLS not available\r\n");
        } else if (line.starts_with("DATA")) {
          in_data = true;
          Send(fd, "354 go ahead\r\n");
        } else if (line == "QUIT") {
          Send(fd, "221 bye\r\n");
          return;
        } else {
          Send(fd, "250 OK\r\n");  // HELO, MAIL FROM, RCPT TO, RSET, ...
        }
      }
    }
  }

  const Tls tls_;
  int listen_fd_ = -1;
  int port_ = 0;
  std::atomic<bool> stopping_{false};
  std::thread thread_;
  mutable std::mutex mu_;
  int client_fd_ = -1;              // guarded by mu_
  std::vector<std::string> lines_;  // guarded by mu_
};

SmtpOptions Options(std::string url) {
  SmtpOptions o;
  o.url = std::move(url);
  o.username = "mann";
  o.password = "sm7p-pa55word";
  o.connect_timeout = 1000ms;
  o.timeout = 3000ms;
  return o;
}

const SmtpEnvelope kEnvelope{"alerts@example.com", {"oncall@example.com"}};

bool SentMail(const std::vector<std::string>& lines) {
  for (const std::string& line : lines) {
    if (line.starts_with("MAIL FROM") || line.starts_with("AUTH") || line.starts_with("DATA")) {
      return true;
    }
  }
  return false;
}

TEST(SmtpSender, ServerWithoutStartTlsIsAPermanentFailureAndNothingIsSent) {
  FakeSmtpServer server(Tls::kNotOffered);
  SmtpOptions options = Options(server.Url());
  options.helo_domain = "mann.example";
  SmtpSender sender(options);
  Result<Delivery> d = sender.Send("Subject: x\r\n\r\nbody\r\n", kEnvelope);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_FALSE(d->succeeded());
  EXPECT_TRUE(d->permanent);
  EXPECT_THAT(d->error, HasSubstr("does not offer STARTTLS"));
  EXPECT_THAT(d->error, HasSubstr("never sends mail in clear text"));
  const std::vector<std::string> lines = server.lines();
  EXPECT_THAT(lines, Contains("EHLO mann.example"));
  EXPECT_FALSE(SentMail(lines)) << "the envelope, login or message went out in clear text";
  EXPECT_THAT(d->error, Not(HasSubstr("sm7p-pa55word")));
}

TEST(SmtpSender, RefusedStartTlsIsAPermanentFailureAndNothingIsSent) {
  FakeSmtpServer server(Tls::kRefused);
  SmtpSender sender(Options(server.Url()));
  Result<Delivery> d = sender.Send("Subject: x\r\n\r\nbody\r\n", kEnvelope);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_FALSE(d->succeeded());
  EXPECT_TRUE(d->permanent);
  const std::vector<std::string> lines = server.lines();
  EXPECT_THAT(lines, Contains("STARTTLS")) << "the upgrade was asked for";
  EXPECT_FALSE(SentMail(lines));
}

TEST(SmtpSender, ImplicitTlsToAClearTextServerFailsBeforeAnyCommand) {
  FakeSmtpServer server(Tls::kNotOffered);
  SmtpSender sender(Options(server.Url("smtps")));
  Result<Delivery> d = sender.Send("Subject: x\r\n\r\nbody\r\n", kEnvelope);
  ASSERT_TRUE(d.ok()) << d.status().ToString();
  EXPECT_FALSE(d->succeeded());
  EXPECT_FALSE(d->error.empty());
  EXPECT_FALSE(SentMail(server.lines()));
}

TEST(SmtpSender, ValidateNamesTheBadOption) {
  struct Case {
    SmtpOptions options;
    const char* fragment;
  };
  SmtpOptions http = Options("http://mail.example.com");
  SmtpOptions no_host = Options("smtp://");
  SmtpOptions missing_ca = Options("smtp://mail.example.com:587");
  missing_ca.ca_file = "/nonexistent/ca.pem";
  SmtpOptions control = Options("smtp://mail.example.com:587");
  control.password = "pass\r\nRSET";
  SmtpOptions zero = Options("smtps://mail.example.com");
  zero.timeout = 0ms;
  const Case cases[] = {
      {http, "smtp:// or smtps://"},       {no_host, "url"},
      {missing_ca, "/nonexistent/ca.pem"}, {control, "control characters"},
      {zero, "timeouts must be positive"},
  };
  for (const Case& c : cases) {
    Status s = SmtpSender(c.options).Validate();
    EXPECT_EQ(s.code(), StatusCode::kInvalidArgument) << c.fragment;
    EXPECT_THAT(s.message(), HasSubstr(c.fragment));
  }
  EXPECT_TRUE(SmtpSender(Options("smtp://mail.example.com:587")).Validate().ok());
  EXPECT_TRUE(SmtpSender(Options("smtps://mail.example.com")).Validate().ok());
}

TEST(SmtpSender, BadEnvelopeIsRefusedBeforeConnecting) {
  FakeSmtpServer server(Tls::kNotOffered);
  SmtpSender sender(Options(server.Url()));
  Result<Delivery> none = sender.Send("x", SmtpEnvelope{"alerts@example.com", {}});
  EXPECT_EQ(none.status().code(), StatusCode::kInvalidArgument);
  Result<Delivery> injected =
      sender.Send("x", SmtpEnvelope{"alerts@example.com", {"a@b.example>\r\nRCPT TO:<c@d"}});
  EXPECT_EQ(injected.status().code(), StatusCode::kInvalidArgument);
  EXPECT_TRUE(server.lines().empty());
}

TEST(SmtpSender, StoppedBeforeSendingIsCancelled) {
  FakeSmtpServer server(Tls::kNotOffered);
  std::stop_source stop;
  stop.request_stop();
  Result<Delivery> d = SmtpSender(Options(server.Url())).Send("x", kEnvelope, stop.get_token());
  ASSERT_FALSE(d.ok());
  EXPECT_EQ(d.status().code(), StatusCode::kUnavailable);
  EXPECT_THAT(d.status().message(), HasSubstr("cancelled"));
}

}  // namespace
}  // namespace mann::pager
