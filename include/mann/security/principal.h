// Principal: who a request speaks for, as the authentication middleware established it, and the
// namespaces that caller may touch.
//
//   const security::Principal* who = security::PrincipalOf(request);
//   if (who && !who->MayAccess(ns)) return server::ErrorResponse(403, ...);
//
// A request carries a principal only when API keys are configured and the request presented a
// valid key. Without keys (a loopback-only or explicitly unauthenticated server) there is none,
// and every namespace is open to every caller.
//
// Thread-safety: a value; the authentication middleware attaches a copy to each request.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include <mann/server/http_message.h>

namespace mann::security {

struct Principal {
  std::string key_name;  // the configured name of the key, for logs and rate-limit buckets
  bool admin = false;    // may touch every namespace
  std::vector<std::string> namespaces;  // the namespaces a non-admin key may touch
  std::string default_namespace;        // used when a request names none

  bool MayAccess(std::string_view ns) const;
};

// The key under which the middleware stores the Principal in Request::attributes.
inline constexpr std::string_view kPrincipalAttribute = "mann.principal";

// The request's principal, or nullptr when none was attached.
const Principal* PrincipalOf(const server::Request& request);
void AttachPrincipal(server::Request& request, Principal principal);

}  // namespace mann::security
