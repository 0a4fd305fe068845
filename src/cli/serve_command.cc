#include "serve_command.h"

#include <cerrno>
#include <cstring>
#include <ostream>

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <unistd.h>

#include <mann/api/api.h>
#include <mann/core/log.h>
#include <mann/metrics/process_collector.h>
#include <mann/server/http_server.h>

#include "context.h"

namespace mann::cli {
namespace {

// The write end of the self-pipe; the handler's only state.
volatile sig_atomic_t g_signal_fd = -1;

extern "C" void OnShutdownSignal(int signo) {
  const int saved = errno;
  const unsigned char byte = static_cast<unsigned char>(signo);
  // write(2) is async-signal-safe; a full pipe means a signal is already pending.
  if (g_signal_fd >= 0) (void)!::write(g_signal_fd, &byte, 1);
  errno = saved;
}

// Installs the handler for SIGTERM and SIGINT for its lifetime, and restores the old ones after.
class ShutdownSignals {
 public:
  Status Install() {
    if (::pipe2(fds_, O_CLOEXEC) != 0) {
      return UnavailableError(
          fmt::format("cannot create the signal pipe: {}", std::strerror(errno)));
    }
    ::fcntl(fds_[1], F_SETFL, O_NONBLOCK);
    g_signal_fd = fds_[1];
    struct sigaction action {};
    action.sa_handler = OnShutdownSignal;
    sigemptyset(&action.sa_mask);
    action.sa_flags = SA_RESTART;
    ::sigaction(SIGTERM, &action, &old_term_);
    ::sigaction(SIGINT, &action, &old_int_);
    installed_ = true;
    return {};
  }

  // Blocks until one of the signals arrives; returns its number.
  int Wait() {
    unsigned char byte = 0;
    for (;;) {
      const ssize_t n = ::read(fds_[0], &byte, 1);
      if (n == 1) return byte;
      if (n < 0 && errno == EINTR) continue;
      return SIGTERM;  // the pipe broke: treat it as a request to stop rather than spin
    }
  }

  ~ShutdownSignals() {
    if (installed_) {
      ::sigaction(SIGTERM, &old_term_, nullptr);
      ::sigaction(SIGINT, &old_int_, nullptr);
    }
    g_signal_fd = -1;
    for (int fd : fds_) {
      if (fd >= 0) ::close(fd);
    }
  }

 private:
  int fds_[2] = {-1, -1};
  bool installed_ = false;
  struct sigaction old_term_ {};
  struct sigaction old_int_ {};
};

server::ServerOptions OptionsFromConfig(const config::ServerConfig& c) {
  server::ServerOptions o;
  o.host = c.host;
  o.port = static_cast<std::uint16_t>(c.port);
  o.max_connections = static_cast<std::size_t>(c.max_connections);
  o.max_header_bytes = static_cast<std::size_t>(c.max_header_bytes);
  o.max_body_bytes = static_cast<std::size_t>(c.max_body_bytes);
  o.header_timeout = c.header_timeout;
  o.body_timeout = c.body_timeout;
  o.idle_timeout = c.idle_timeout;
  o.write_timeout = c.write_timeout;
  o.drain_timeout = c.drain_timeout;
  return o;
}

}  // namespace

int RunServe(CommandEnv& env) {
  auto log = log::Get("serve");
  // Signals first: one arriving while the server starts must still stop it cleanly.
  ShutdownSignals signals;
  if (Status st = signals.Install(); !st.ok()) return ReportError(env.io.err, st);

  const server::ServerOptions options = OptionsFromConfig(env.rt.config().server);
  server::HttpServer http(options);
  api::Api api(env.rt, {.draining = [&http] { return http.draining(); }});
  if (Status st = api.RegisterRoutes(http.router()); !st.ok()) return ReportError(env.io.err, st);
  if (Status st = api.RegisterMetrics(metrics::Registry::Default()); !st.ok()) {
    return ReportError(env.io.err, st);
  }
  auto process = metrics::ProcessCollector::Register(metrics::Registry::Default());
  if (!process.ok()) return ReportError(env.io.err, process.status());
  if (Status st = http.Start(); !st.ok()) {
    env.io.err << "error: " << st.message() << '\n';
    return kExitFailure;
  }
  log->info("serving on http://{} (data in {})", http.address(), env.rt.database_path());
  env.io.out << "mann: serving on http://" << http.address() << std::endl;

  const int signo = signals.Wait();
  log->info("{} received: draining (up to {} ms)", signo == SIGINT ? "SIGINT" : "SIGTERM",
            options.drain_timeout.count());
  http.BeginDrain();
  const server::StopResult stopped = http.Stop(options.drain_timeout);
  if (!stopped.drained()) {
    log->warn(
        "drain timeout: closed {} connection(s) with requests in progress; raise "
        "server.drain_timeout if this repeats",
        stopped.force_closed);
  }
  if (Status st = env.rt.bank().Flush(); !st.ok()) {
    log->error("flushing the bank at shutdown failed: {}", st.ToString());
    env.io.err << "error: flushing the bank at shutdown failed: " << st.message() << '\n';
    return kExitFailure;
  }
  log->info("stopped");
  return kExitOk;
}

}  // namespace mann::cli
