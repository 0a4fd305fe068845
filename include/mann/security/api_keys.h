// API keys: the keys file, the store that checks a presented key, and the authentication
// middleware that turns a valid key into a Principal.
//
//   MANN_ASSIGN_OR_RETURN(security::KeyStore keys, security::KeyStore::LoadFile(path));
//   router.Use(security::AuthMiddleware(std::make_shared<const security::KeyStore>(keys)));
//
// The keys file (TOML) holds one table per key, never the key itself, only its SHA-256:
//
//   [[keys]]
//   name = "billing-app"                          # required, unique, [A-Za-z0-9_.-]{1,64}
//   hash = "sha256:<64 hex digits>"               # required, unique: HashKey(key)
//   namespaces = ["billing", "billing-staging"]   # required unless admin; non-empty
//   default_namespace = "billing"                 # optional; must be one of namespaces
//
//   [[keys]]
//   name = "ops"
//   hash = "sha256:..."
//   admin = true                                  # may touch every namespace
//
// default_namespace defaults to the first of namespaces, or "default" for an admin without
// any; an admin's may name any namespace. Namespace names follow ValidateNamespace
// (core/memory_bank.h). A namespace listed twice, an unknown field or a value of the wrong type
// is an error.
//
// Why hashes, and why plain SHA-256: the file is read by the server, backed up, copied into
// images and shown in reviews, so it must not grant access by itself; a digest lets the server
// recognise a key without being able to produce one. A password needs a slow, salted hash
// because people choose guessable ones; our keys are 256 bits from the system's CSPRNG
// (GenerateKey), so no dictionary or brute-force search over them is feasible whatever the
// hash's speed, and a fast unsalted digest loses nothing.
//
// Errors: KeyStore::LoadFile answers NotFound for a missing file, PermissionDenied for one this
// process may not read, Unavailable for another read failure and InvalidArgument for a
// directory, naming the path. A malformed file is InvalidArgument listing every problem, one per
// line, each naming the file, the entry (its index from 0, and its name) and the field:
//   /etc/mann/keys.toml: keys[1] ("ops"): hash must be "sha256:" followed by 64 hex digits
//
// Thread-safety: a KeyStore is immutable after loading; Authenticate may run on any number of
// threads at once. The middleware is safe to call concurrently.
#pragma once

#include <array>
#include <cstddef>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <mann/core/status.h>
#include <mann/security/principal.h>
#include <mann/server/router.h>

namespace mann::metrics {
class Registry;
}

namespace mann::security {

// A fresh key: "mann_" followed by the unpadded base64url text of 32 random bytes (48 characters
// in all). The bytes come from OpenSSL's RAND_bytes; when the CSPRNG cannot deliver, the process
// stops with a logged reason rather than hand out a guessable key.
std::string GenerateKey();

// "sha256:" followed by the lower-case hex SHA-256 of `key`, as the keys file stores it.
std::string HashKey(std::string_view key);

// The keys a server accepts, each with the principal it authenticates.
class KeyStore {
 public:
  // An empty store: it authenticates nothing.
  KeyStore() = default;

  // Reads and parses the keys file at `path` (see above for the errors).
  static Result<KeyStore> LoadFile(const std::string& path);
  // Parses keys-file text; `source_name` (usually the path) prefixes every error. A file with no
  // [[keys]] entry is InvalidArgument: a configured keys file that admits nobody is a mistake.
  static Result<KeyStore> FromToml(std::string_view text, std::string_view source_name);

  bool empty() const { return entries_.empty(); }
  std::size_t size() const { return entries_.size(); }

  // The principal of the key whose digest matches SHA-256(presented_key), or std::nullopt.
  // Every stored digest is compared (CRYPTO_memcmp, no early exit), so the time taken does not
  // depend on whether, or where, the key is found.
  std::optional<Principal> Authenticate(std::string_view presented_key) const;

 private:
  struct Entry {
    std::array<unsigned char, 32> digest;
    Principal principal;
  };
  std::vector<Entry> entries_;
};

struct AuthOptions {
  // Route templates (Request::route) that GET and HEAD requests may reach without a key:
  // probes and scrapers carry no credentials. Other methods on them still need one.
  std::vector<std::string> public_routes = {"/health", "/ready", "/metrics", "/openapi.json"};
  // Where mann_http_auth_failures_total goes; nullptr: metrics::Registry::Default(). Must
  // outlive the middleware.
  metrics::Registry* registry = nullptr;
};

// Requires a valid key on every request except GET/HEAD on a public route. The key is read from
// `Authorization: Bearer <key>` (scheme in any case) or `X-API-Key: <key>`:
//   no key                          401, `WWW-Authenticate: Bearer`, a detail saying how to send
//                                   one;
//   a key that matches none         401 "Invalid API key",
//                                   `WWW-Authenticate: Bearer error="invalid_token"`;
//   two different keys (both        400 naming both headers;
//   headers, or a header repeated)
//   a valid key                     the Principal is attached (AttachPrincipal) and the request
//                                   goes on.
// A refused request does not reach the handler. The key is never logged or echoed.
// Metric: mann_http_auth_failures_total{reason="missing"|"invalid"|"conflicting"}.
// `keys` must not be null.
server::Middleware AuthMiddleware(std::shared_ptr<const KeyStore> keys, AuthOptions options = {});

}  // namespace mann::security
