#include "serve_command.h"

#include <cerrno>
#include <cstring>
#include <ostream>

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <unistd.h>

#include <mann/api/api.h>
#include <mann/cache/embedding_cache.h>
#include <mann/cache/redis.h>
#include <mann/cache/result_cache.h>
#include <mann/core/log.h>
#include <mann/metrics/process_collector.h>
#include <mann/monitor/monitor.h>
#include <mann/monitor/window.h>
#include <mann/pager/pager.h>
#include <mann/security/api_keys.h>
#include <mann/security/cors.h>
#include <mann/security/exposure.h>
#include <mann/security/rate_limit.h>
#include <mann/security/trusted_hosts.h>
#include <mann/server/http_server.h>

#include "context.h"
#include "monitoring.h"

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

  // Waits up to `timeout` for another signal; true when one came.
  bool WaitFor(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
          deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd pfd{.fd = fds_[0], .events = POLLIN, .revents = 0};
      const int n = ::poll(&pfd, 1, static_cast<int>(left.count()));
      if (n > 0) return Wait() >= 0;
      if (n < 0 && errno != EINTR) return false;
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

server::ServerOptions OptionsFromConfig(const config::ServerConfig& c,
                                        const config::LogConfig& log) {
  server::ServerOptions o;
  o.host = c.host;
  o.port = static_cast<std::uint16_t>(c.port);
  o.handler_threads = c.handler_threads;
  o.max_connections = static_cast<std::size_t>(c.max_connections);
  o.max_header_bytes = static_cast<std::size_t>(c.max_header_bytes);
  o.max_body_bytes = static_cast<std::size_t>(c.max_body_bytes);
  o.header_timeout = c.header_timeout;
  o.body_timeout = c.body_timeout;
  o.idle_timeout = c.idle_timeout;
  o.write_timeout = c.write_timeout;
  o.drain_timeout = c.drain_timeout;
  if (!log.access_log_probes) o.quiet_routes = {"/health", "/ready", "/metrics"};
  return o;
}

// The middleware chain from the security settings, outermost first: trusted hosts (a request
// for another host reaches nothing), CORS (preflights are answered before authentication, and
// error answers still carry the headers a browser needs to read them), API keys, rate limits
// (after the key is known, so that limits are per key). With `redis` the limits' buckets live
// there, shared by every replica.
Status InstallSecurity(const config::Config& config, server::Router& router,
                       std::shared_ptr<cache::RedisClient> redis) {
  const config::SecurityConfig& sec = config.security;
  std::vector<std::string> hosts;
  if (sec.trusted_hosts.empty()) {
    hosts = security::DefaultTrustedHosts(config.server.host);
  } else {
    MANN_ASSIGN_OR_RETURN(hosts, security::ParseHostList(sec.trusted_hosts));
  }
  router.Use(security::TrustedHostsMiddleware(std::move(hosts)));

  if (!sec.cors_origins.empty()) {
    security::CorsOptions cors;
    MANN_ASSIGN_OR_RETURN(cors.allowed_origins, security::ParseOriginList(sec.cors_origins));
    cors.allow_credentials = sec.cors_allow_credentials;
    MANN_RETURN_IF_ERROR(security::ValidateCors(cors));
    router.Use(security::CorsMiddleware(std::move(cors)));
  }

  bool have_keys = false;
  if (!sec.api_keys_file.empty()) {
    MANN_ASSIGN_OR_RETURN(security::KeyStore keys, security::KeyStore::LoadFile(sec.api_keys_file));
    have_keys = !keys.empty();
    if (!have_keys) {
      return InvalidArgumentError(fmt::format(
          "{} (security.api_keys_file) holds no keys: add one with `mann key create`, or unset "
          "the setting",
          sec.api_keys_file));
    }
    log::Get("serve")->info("API keys: {} loaded from {}", keys.size(), sec.api_keys_file);
    router.Use(
        security::AuthMiddleware(std::make_shared<const security::KeyStore>(std::move(keys))));
  }
  MANN_RETURN_IF_ERROR(
      security::CheckExposure(config.server.host, have_keys, sec.allow_unauthenticated));

  if (config.rate_limit.enabled && !config.rate_limit.rules.empty()) {
    security::RateLimitOptions limits;
    MANN_ASSIGN_OR_RETURN(limits.rules, security::ParseRateLimitRules(config.rate_limit.rules));
    if (Status st = security::CheckRuleRoutes(limits.rules, router.Routes()); !st.ok()) {
      return InvalidArgumentError("rate_limit.rules: " + st.message());
    }
    if (redis != nullptr) {
      limits.store =
          std::make_shared<security::RedisRateLimitStore>(security::RedisRateLimitStoreOptions{
              .redis = std::move(redis), .key_prefix = config.redis.key_prefix});
    }
    router.Use(security::RateLimitMiddleware(std::move(limits)));
  }
  return {};
}

// What `mann serve` runs beside the HTTP server: the pager and the monitor when configured, and
// the health checks /health?detail=1 answers with. Declared before the server in RunServe, so
// that it outlives the router whose recording middleware writes into the monitor's window.
// Takes the shared embedding tier off the router when serving ends: the runtime (and its router)
// outlives the server, the Redis client should not.
struct SharedEmbeddings {
  encode::Router* router = nullptr;  // set while the router uses the tier
  SharedEmbeddings() = default;
  SharedEmbeddings(const SharedEmbeddings&) = delete;
  SharedEmbeddings& operator=(const SharedEmbeddings&) = delete;
  ~SharedEmbeddings() {
    if (router != nullptr) router->SetSharedCache(nullptr);
  }
};

struct Operations {
  // The shared Redis (redis.url), or nullptr; first, so that it outlives everything using it.
  std::shared_ptr<cache::RedisClient> redis;
  // Embeddings shared through that Redis (cache.enabled), behind the router's own cache.
  SharedEmbeddings shared_embeddings;
  // POST /search answers (cache.enabled), or nullptr.
  std::unique_ptr<cache::ResultCache> search_cache;
  std::unique_ptr<pager::Pager> pager;
  std::unique_ptr<monitor::Monitor> monitor;
  // The checks of a server without a monitor; with one, the monitor's own are used.
  std::unique_ptr<monitor::HealthChecker> health;

  monitor::HealthChecker& checker() { return monitor ? monitor->health() : *health; }
  // Members are destroyed bottom-up: the monitor (whose sink and "pager" check use the pager)
  // stops before the pager does.
};

// The scope of the search cache's keys: replicas that share a database share answers; a
// SQLite file is never shared between hosts, so its host and path make it unique.
std::string CacheScope(runtime::Runtime& rt) {
  if (rt.config().storage.backend != "sqlite") return {};
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) host[0] = '\0';
  return fmt::format("sqlite:{}:{}", host, rt.database_path());
}

// Connects to Redis (redis.url) and builds the search cache (cache.enabled): in Redis when
// there is one, else in process. With Redis, embeddings are shared through it too.
Status BuildCache(runtime::Runtime& rt, Operations& ops) {
  const config::Config& config = rt.config();
  auto log = log::Get("serve");
  if (!config.redis.url.empty()) {
    MANN_ASSIGN_OR_RETURN(
        ops.redis, cache::RedisClient::Create({.url = config.redis.url,
                                               .connect_timeout = config.redis.connect_timeout,
                                               .command_timeout = config.redis.command_timeout}));
    log->info("redis: {} ({}), keys prefixed \"{}\"", ops.redis->endpoint().Describe(),
              ops.redis->up() ? "up" : "down, serving without it until it answers",
              config.redis.key_prefix);
  }
  if (config.cache.enabled) {
    ops.search_cache = std::make_unique<cache::ResultCache>(
        cache::ResultCacheOptions{.max_entries = static_cast<std::size_t>(config.cache.size),
                                  .ttl = config.cache.ttl,
                                  .redis = ops.redis,
                                  .key_prefix = config.redis.key_prefix,
                                  .scope = CacheScope(rt),
                                  .name = "search"});
  }
  // Embeddings are content-addressed, so every replica sharing the Redis may share them,
  // whatever database it reads (no scope).
  if (config.cache.enabled && ops.redis != nullptr && config.cache.ttl.count() > 0) {
    MANN_ASSIGN_OR_RETURN(
        auto shared,
        cache::RedisEmbeddingCache::Create(
            {.redis = ops.redis, .ttl = config.cache.ttl, .key_prefix = config.redis.key_prefix}));
    rt.mutable_router().SetSharedCache(std::move(shared));
    ops.shared_embeddings.router = &rt.mutable_router();
    log->info("embeddings: shared in redis under \"{}emb:\" for {} s", config.redis.key_prefix,
              config.cache.ttl.count());
  }
  return {};
}

// Builds the pager (pager.enabled) and the monitor (monitoring.enabled) from the configuration,
// with the service's health checks. Starts nothing.
Status BuildOperations(runtime::Runtime& rt, Operations& ops) {
  const config::Config& config = rt.config();
  auto log = log::Get("serve");
  MANN_RETURN_IF_ERROR(BuildCache(rt, ops));

  if (config.pager.enabled) {
    MANN_ASSIGN_OR_RETURN(pager::PagerOptions options, PagerOptionsFromConfig(config));
    MANN_ASSIGN_OR_RETURN(ops.pager, pager::Pager::Create(std::move(options), rt.store()));
    if (!config.monitoring.enabled) {
      log->warn(
          "pager enabled without monitoring: no alert will be raised, only deliveries a previous "
          "process left are resumed; set monitoring.enabled=true (MANN_ENABLE_MONITORING)");
    }
  }

  if (!config.monitoring.enabled) {
    ops.health = std::make_unique<monitor::HealthChecker>();
    return RegisterServiceChecks(
        *ops.health, rt, {.pager = ops.pager.get(), .system = true, .redis = ops.redis.get()});
  }

  MANN_ASSIGN_OR_RETURN(monitor::MonitorOptions options, MonitorOptionsFromConfig(config));
  if (ops.pager) options.sink = PagerSink(*ops.pager);
  options.may_notify = ReplicaNotifyGate(config, ops.redis);
  MANN_ASSIGN_OR_RETURN(ops.monitor, monitor::Monitor::Create(std::move(options), rt.clock()));
  MANN_RETURN_IF_ERROR(
      ops.monitor->AddSource("memory_utilization", UtilizationByNamespace(rt.bank()), "namespace"));
  MANN_RETURN_IF_ERROR(RegisterServiceChecks(ops.monitor->health(), rt,
                                             {.pager = ops.pager.get(), .redis = ops.redis.get()}));
  // A rule on a metric nothing reports would never fire: refuse it rather than watch nothing.
  if (Status st = ops.monitor->CheckRules(); !st.ok()) {
    return InvalidArgumentError("monitoring.alert_rules: " + st.message());
  }
  return ops.monitor->RegisterMetrics(metrics::Registry::Default());
}

}  // namespace

int RunServe(CommandEnv& env) {
  auto log = log::Get("serve");
  // Signals first: one arriving while the server starts must still stop it cleanly.
  ShutdownSignals signals;
  if (Status st = signals.Install(); !st.ok()) return ReportError(env.io.err, st);

  Operations ops;
  if (Status st = BuildOperations(env.rt, ops); !st.ok()) return ReportError(env.io.err, st);
  // Another replica's write reached this one's memory: answers cached before it are stale. An
  // empty `ns` is a full reload (the follower fell behind the change log's pruning), after which
  // any namespace may have changed.
  runtime::ScopedOnApplied invalidate_on_replica_change(
      env.rt.follower(),
      [cache = ops.search_cache.get(), &bank = env.rt.bank()](const std::string& ns) {
        if (cache == nullptr) return;
        if (!ns.empty()) {
          cache->InvalidateNamespace(ns);
          return;
        }
        // Every namespace held now may have changed, and one the reload found gone is no
        // longer listed although answers for it may still be cached.
        std::vector<std::string> changed = bank.TakeNamespacesDroppedByReload();
        for (const NamespaceStats& s : bank.Stats().namespaces) changed.push_back(s.ns);
        for (const std::string& name : changed) cache->InvalidateNamespace(name);
      });

  const server::ServerOptions options =
      OptionsFromConfig(env.rt.config().server, env.rt.config().log);
  server::HttpServer http(options);
  // Outermost, so the window times everything a client waits for, refusals by the security
  // middleware included.
  if (ops.monitor) http.router().Use(monitor::RecordingMiddleware(ops.monitor->window()));
  api::Api api(env.rt, {.draining = [&http] { return http.draining(); },
                        .health = &ops.checker(),
                        .alerts = ops.monitor ? &ops.monitor->alerts() : nullptr,
                        .search_cache = ops.search_cache.get(),
                        .redis = ops.redis.get()});
  if (Status st = api.RegisterRoutes(http.router()); !st.ok()) return ReportError(env.io.err, st);
  if (Status st = InstallSecurity(env.rt.config(), http.router(), ops.redis); !st.ok()) {
    return ReportError(env.io.err, st);
  }
  if (Status st = api.RegisterMetrics(metrics::Registry::Default()); !st.ok()) {
    return ReportError(env.io.err, st);
  }
  auto process = metrics::ProcessCollector::Register(metrics::Registry::Default());
  if (!process.ok()) return ReportError(env.io.err, process.status());

  // The pager resumes what a previous process left before anything new is raised.
  if (ops.pager) {
    if (Status st = ops.pager->Start(); !st.ok()) return ReportError(env.io.err, st);
    log->info("pager started channels={}", fmt::join(ops.pager->ChannelNames(), ","));
  }
  if (Status st = http.Start(); !st.ok()) {
    env.io.err << "error: " << st.message() << '\n';
    return kExitFailure;
  }
  log->info("serving on http://{} (data in {})", http.address(), env.rt.database_path());
  env.io.out << "mann: serving on http://" << http.address() << std::endl;
  // After listening: the first tick's request figures then describe a serving process.
  if (ops.monitor) {
    if (Status st = ops.monitor->Start(); !st.ok()) log->error("monitor: {}", st.ToString());
  }

  const int signo = signals.Wait();
  log->info("{} received: draining (up to {} ms)", signo == SIGINT ? "SIGINT" : "SIGTERM",
            options.drain_timeout.count());
  http.BeginDrain();
  const std::chrono::milliseconds grace = env.rt.config().server.shutdown_grace;
  if (grace.count() > 0) {
    // Readiness already fails; keep serving so that requests routed here before the load
    // balancer noticed still succeed. A second signal cuts the wait short.
    log->info("readiness is failing; serving for {} ms more before closing the listener",
              grace.count());
    if (signals.WaitFor(grace)) log->info("second signal: closing the listener now");
  }
  const server::StopResult stopped = http.Stop(options.drain_timeout);
  if (!stopped.drained()) {
    log->warn(
        "drain timeout: closed {} connection(s) with requests in progress; raise "
        "server.drain_timeout if this repeats",
        stopped.force_closed);
  }
  // Before the pager, so that no event is enqueued into a stopped pager; Stop() waits for a
  // tick in progress.
  if (ops.monitor) ops.monitor->Stop();
  const Status flushed = env.rt.bank().Flush();
  // Last: a delivery in progress is abandoned, its row stays pending and the next start sends it.
  if (ops.pager) ops.pager->Stop();
  if (!flushed.ok()) {
    log->error("flushing the bank at shutdown failed: {}", flushed.ToString());
    env.io.err << "error: flushing the bank at shutdown failed: " << flushed.message() << '\n';
    return kExitFailure;
  }
  log->info("stopped");
  return kExitOk;
}

}  // namespace mann::cli
