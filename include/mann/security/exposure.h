// Exposure: refuses to serve an unauthenticated API on an address others can reach.
//
//   MANN_RETURN_IF_ERROR(security::CheckExposure(options.host, !keys.empty(),
//                                                flags.allow_unauthenticated));
//
// Without API keys every caller may read and change every namespace. That is fine on loopback,
// where only this machine's users reach the server, and a mistake almost everywhere else, so
// binding elsewhere without keys takes an explicit flag.
//
// Thread-safety: pure functions.
#pragma once

#include <string_view>

#include <mann/core/status.h>

namespace mann::security {

// True for an address only this machine can reach: IPv4 127.0.0.0/8, IPv6 ::1 (also written
// "[::1]" or as the IPv4-mapped ::ffff:127.x.y.z) and the name "localhost" (any case, trailing
// dot allowed). False for everything else, including wildcard binds ("0.0.0.0", "::") and the
// empty string, which listen on every interface.
bool IsLoopbackHost(std::string_view host);

// OK when `bind_host` is loopback, keys are configured or the operator allowed unauthenticated
// access; otherwise FailedPrecondition naming the address and both ways out: configure
// security.api_keys_file, or pass --allow-unauthenticated.
Status CheckExposure(std::string_view bind_host, bool keys_configured, bool allow_unauthenticated);

}  // namespace mann::security
