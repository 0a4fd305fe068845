// `mann serve`: the REST API (api::Api) on the HTTP server, until SIGTERM or SIGINT, with the
// monitor (monitoring.enabled) and the pager (pager.enabled) beside it.
//
// Start-up: the pager is built and started first (it resumes deliveries a previous process
// left), then the server listens, then the monitor starts ticking. In front of the API sit the
// security middlewares (trusted hosts, CORS, API keys, rate limits); without keys, an address
// other than loopback is refused unless security.allow_unauthenticated is set. Every request is
// recorded in the monitor's window; alert events go to the pager's outbox (see monitoring.h).
//
// Shutdown, on either signal: readiness fails at once (HttpServer::BeginDrain), the server keeps
// serving for server.shutdown_grace (a second signal cuts it short), requests in
// progress get up to server.drain_timeout to finish, the monitor stops, the bank is flushed, the
// pager stops, and the process exits 0 (1 when the flush fails). The signal handler only writes
// the signal number to a pipe; the waiting and the shutdown run on the main thread.
#pragma once

#include "memory_commands.h"

namespace mann::cli {

// Serves until a signal. Prints "mann: serving on http://<host>:<port>" on standard output once
// listening. Exit 1 when the server cannot start (address in use, bad limits); 2 when the
// monitor or the pager refuses its configuration (a rule on a metric nothing reports, an SMTP
// CA file that does not exist).
int RunServe(CommandEnv& env);

}  // namespace mann::cli
