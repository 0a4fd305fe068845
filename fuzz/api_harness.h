// What the fuzz targets share: the service under test and the contract every answer must keep.
//
// The service is the real one, minus the sockets: a runtime::Runtime over a temporary data
// directory (SQLite, hashed encoder), the api::Api and a server::Router holding its routes, all
// created once per process by Harness::Init() from LLVMFuzzerInitialize and kept for the whole
// run, so memories written by one input are there for the next (as on a live server). The data
// directory is made under $TMPDIR (scripts/fuzz.sh points it at a scratch directory, on tmpfs
// where there is one, so SQLite's fsyncs cost little) and removed at exit.
//
// A broken contract is reported on stderr with the request and response, then __builtin_trap()
// stops the process, which libFuzzer records as a crash with the input that caused it.
//
// Thread-safety: none; libFuzzer runs one input at a time on one thread.
#pragma once

#include <string>
#include <string_view>

#include <mann/server/http_message.h>

namespace mann::fuzz {

class Harness {
 public:
  // Opens the runtime and registers the routes; exits the process with a message on failure.
  // `program` is argv[0], for that message.
  static void Init(std::string_view program);
  // The harness Init() made.
  static Harness& Get();

  // Runs `request` through the router and checks the answer against CheckResponse(); a Handle()
  // that throws breaks the router's contract ("never throws") and traps too.
  server::Response Handle(server::Request& request);

 private:
  Harness() = default;
};

// Traps unless `response` keeps the contract every answer of the API has:
//   - the status is one the server writes as is (200..599), and never 500, which means an
//     exception escaped a handler or the core reported an internal error;
//   - every header field has a token for a name and no CR, LF or NUL in its value, and so has
//     the content type (the server would replace such a response by a 500);
//   - 204 has no body; 405 lists the allowed methods in Allow;
//   - an error (4xx, 5xx) is JSON with a `detail` field: a list of {loc, msg, type} items for
//     422, a string otherwise;
//   - a JSON success body parses as JSON.
void CheckResponse(const server::Request& request, const server::Response& response);

// Reports `what` with the request and response on stderr, then traps.
[[noreturn]] void Fail(std::string_view what, const server::Request& request,
                       const server::Response& response);

// `text` with every byte outside [A-Za-z0-9-._~] percent-encoded, for building targets.
std::string PercentEncode(std::string_view text);

}  // namespace mann::fuzz
