// Trusted hosts: answers only requests whose Host header names this server.
//
//   MANN_ASSIGN_OR_RETURN(auto hosts, security::ParseHostList("api.example.com, *.internal"));
//   router.Use(security::TrustedHostsMiddleware(hosts));  // outermost
//
// Why: a web page can point a name it controls at 127.0.0.1 (DNS rebinding) and then call a
// loopback-only server as if it were its own origin, past CORS. The browser still sends the
// page's name in Host, so refusing unknown names closes that door; it also keeps a server from
// answering for names a misrouted proxy sends it.
//
// Matching: the Host header's port is dropped ("[::1]:8000" -> "[::1]"), case is ignored and a
// trailing dot is dropped. An entry matches a host exactly, "*.example.com" matches any name
// ending in ".example.com" (not "example.com" itself), and "*" matches every host. A request
// without Host, with a malformed one or with one not allowed is answered 400
// {"detail": "Invalid host header"} before anything else runs.
//
// Thread-safety: the functions are pure; the middleware is safe to call concurrently.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <mann/core/status.h>
#include <mann/server/router.h>

namespace mann::security {

// The names a client of a server bound to `bind_host` uses when nothing else is configured: the
// bind address itself (an IPv6 address written in brackets, as Host carries it), "localhost",
// "127.0.0.1" and "[::1]", without repeats. A wildcard bind ("0.0.0.0", "::") is kept as
// written and admits no other names: a server reachable from elsewhere must have its public
// names listed by the operator, since they cannot be guessed from the bind address.
std::vector<std::string> DefaultTrustedHosts(std::string_view bind_host);

// Parses a comma-separated list of host names, IPv4 literals, bracketed IPv6 literals ("[::1]";
// an unbracketed one is accepted and bracketed), "*.suffix" wildcards and "*". Blanks around
// entries are trimmed, empty entries and repeats dropped; entries are stored lower-case without
// a trailing dot. InvalidArgument naming the entry for anything else, including an entry with a
// port (Host ports are ignored when matching) or a wildcard other than a leading "*.".
Result<std::vector<std::string>> ParseHostList(std::string_view comma_separated);

// The middleware described above; `hosts` as ParseHostList or DefaultTrustedHosts returns them.
// An empty list refuses every request.
server::Middleware TrustedHostsMiddleware(std::vector<std::string> hosts);

}  // namespace mann::security
