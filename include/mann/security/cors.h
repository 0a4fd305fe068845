// CORS: lets web pages served from other origins call the API from a browser, and no others.
//
//   MANN_ASSIGN_OR_RETURN(options.allowed_origins,
//                         security::ParseOriginList("https://app.example.com,
//                         http://localhost:3000"));
//   MANN_RETURN_IF_ERROR(security::ValidateCors(options));
//   router.Use(security::CorsMiddleware(options));  // after TrustedHosts, before Auth
//
// CORS is a browser's protocol, not access control: a client outside a browser ignores it, and
// authentication still applies to every request the browser sends. What the middleware decides
// is which pages a browser lets read our answers.
//
// Behaviour, for a request carrying Origin (a request without one passes untouched):
//   preflight (OPTIONS with Access-Control-Request-Method), origin and method allowed:
//     204 with Access-Control-Allow-Origin/-Methods/-Headers/-Max-Age (and -Allow-Credentials
//     when configured); it reaches neither authentication nor a handler, since browsers send
//     preflights without credentials;
//   preflight with an origin or method not allowed: 403 whose detail names what is refused;
//   any other request from an allowed origin: handled as usual, then Access-Control-Allow-Origin,
//     -Allow-Credentials and -Expose-Headers are added to whatever came back, errors included,
//     so a page can read a 401 or a 429 and its Retry-After;
//   any other request from another origin: handled without CORS headers (the browser withholds
//     the answer from the page).
// Origins match exactly, ignoring case. "null" never matches, even with "*". Unless the list is
// "*", responses to requests carrying Origin get `Vary: Origin` (appended to any Vary already
// there), so a shared cache does not hand one origin's answer to another.
//
// Thread-safety: the functions are pure; the middleware is safe to call concurrently.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/status.h>
#include <mann/server/router.h>

namespace mann::security {

struct CorsOptions {
  // "*" alone, or origins as ParseOriginList returns them (lower-case scheme://host[:port]).
  std::vector<std::string> allowed_origins;
  // Lets pages send cookies and HTTP authentication along (Access-Control-Allow-Credentials).
  bool allow_credentials = false;
  std::vector<std::string> allowed_methods = {"GET", "HEAD", "POST", "PUT", "DELETE"};
  std::vector<std::string> allowed_headers = {"Authorization", "Content-Type", "X-API-Key",
                                              "X-Request-ID"};
  std::vector<std::string> exposed_headers = {"X-Request-ID", "Retry-After"};
  // How long a browser may cache a preflight's answer.
  std::chrono::seconds max_age{600};
};

// Parses a comma-separated origin list: blanks around entries are trimmed, empty entries and
// repeats are dropped, and the empty string gives an empty list. Each entry is "*" or an origin
// `scheme://host[:port]` with scheme http or https and nothing after the authority (no path, not
// even a trailing slash, no query or fragment) and no userinfo; it is stored lower-case, without
// the scheme's default port (":443" for https, ":80" for http), as browsers send it.
// InvalidArgument naming the entry otherwise. "null" is refused: sandboxed iframes, file://
// pages and redirected requests all send it, so allowing it would admit any of them.
Result<std::vector<std::string>> ParseOriginList(std::string_view comma_separated);

// InvalidArgument when the options cannot be served as written: "*" with allow_credentials
// (browsers reject that answer, and echoing every origin instead would hand any site its
// visitors' credentials), "*" together with other entries (ambiguous), an entry that is not an
// origin as ParseOriginList stores it, or an empty method or header name, or a negative max_age.
Status ValidateCors(const CorsOptions& options);

// The middleware described above. Call ValidateCors first; with "*" it never sends
// Access-Control-Allow-Credentials, whatever the options say.
server::Middleware CorsMiddleware(CorsOptions options);

}  // namespace mann::security
