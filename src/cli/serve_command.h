// `mann serve`: the REST API (api::Api) on the HTTP server, until SIGTERM or SIGINT.
//
// Shutdown, on either signal: readiness fails at once (HttpServer::BeginDrain), requests in
// progress get up to server.drain_timeout to finish, the bank is flushed, and the process exits
// 0 (1 when the flush fails). The signal handler only writes the signal number to a pipe; the
// waiting and the shutdown run on the main thread.
#pragma once

#include "memory_commands.h"

namespace mann::cli {

// Serves until a signal. Prints "mann: serving on http://<host>:<port>" on standard output once
// listening. Exit 1 when the server cannot start (address in use, bad limits).
int RunServe(CommandEnv& env);

}  // namespace mann::cli
