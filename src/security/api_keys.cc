#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <toml++/toml.h>

#include <mann/config/toml_types.h>
#include <mann/core/entry.h>
#include <mann/core/log.h>
#include <mann/core/memory_bank.h>
#include <mann/metrics/registry.h>
#include <mann/security/api_keys.h>

namespace mann::security {
namespace {

using Digest = std::array<unsigned char, 32>;

constexpr std::string_view kHashPrefix = "sha256:";
constexpr std::string_view kKeyPrefix = "mann_";

Digest Sha256(std::string_view data) {
  Digest digest{};
  unsigned int length = 0;
  // EVP_Digest with SHA-256 fails only on allocation failure inside OpenSSL.
  if (EVP_Digest(data.data(), data.size(), digest.data(), &length, EVP_sha256(), nullptr) != 1 ||
      length != digest.size()) {
    log::Get("auth")->critical("SHA-256 failed in OpenSSL; stopping, since no key can be checked");
    std::abort();
  }
  return digest;
}

std::string Hex(const Digest& digest) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(digest.size() * 2);
  for (unsigned char byte : digest) {
    out += kDigits[byte >> 4];
    out += kDigits[byte & 0xf];
  }
  return out;
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// The digest of a "sha256:<64 hex>" text, or nullopt when it is not one.
std::optional<Digest> ParseHash(std::string_view text) {
  if (!text.starts_with(kHashPrefix)) return std::nullopt;
  text.remove_prefix(kHashPrefix.size());
  Digest digest{};
  if (text.size() != digest.size() * 2) return std::nullopt;
  for (std::size_t i = 0; i < digest.size(); ++i) {
    const int hi = HexValue(text[2 * i]);
    const int lo = HexValue(text[2 * i + 1]);
    if (hi < 0 || lo < 0) return std::nullopt;
    digest[i] = static_cast<unsigned char>(hi << 4 | lo);
  }
  return digest;
}

std::string Base64UrlNoPadding(const unsigned char* data, std::size_t size) {
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((size * 4 + 2) / 3);
  std::size_t i = 0;
  for (; i + 3 <= size; i += 3) {
    const unsigned v = data[i] << 16 | data[i + 1] << 8 | data[i + 2];
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
    out += kAlphabet[v & 63];
  }
  if (size - i == 1) {
    const unsigned v = data[i] << 16;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
  } else if (size - i == 2) {
    const unsigned v = data[i] << 16 | data[i + 1] << 8;
    out += kAlphabet[v >> 18 & 63];
    out += kAlphabet[v >> 12 & 63];
    out += kAlphabet[v >> 6 & 63];
  }
  return out;
}

// A double-quoted rendering of text from the file, with control characters escaped, so one
// line of the error report stays one line.
std::string Quote(std::string_view text) {
  std::string out = "\"";
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (u < 0x20 || u == 0x7f) {
      out += fmt::format("\\x{:02x}", u);
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string_view TomlTypeName(const toml::node& node) { return config::TomlTypeName(node.type()); }

bool IsValidKeyName(std::string_view name) {
  if (name.empty() || name.size() > 64) return false;
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' || c == '-';
  });
}

constexpr std::array<std::string_view, 5> kFields = {"name", "hash", "namespaces",
                                                     "default_namespace", "admin"};

// Parses a keys file, collecting every problem before answering.
class KeysParser {
 public:
  explicit KeysParser(std::string_view source) : source_(source) {}

  // The entries, or InvalidArgument listing every problem one per line.
  Result<std::vector<std::pair<Digest, Principal>>> Parse(std::string_view text) {
    toml::table root;
    try {
      root = toml::parse(text, std::string(source_));
    } catch (const toml::parse_error& e) {
      return InvalidArgumentError(fmt::format("{}:{}:{}: invalid TOML: {}", source_,
                                              e.source().begin.line, e.source().begin.column,
                                              e.description()));
    }

    for (auto&& [key, node] : root) {
      if (key.str() != "keys") {
        errors_.push_back(fmt::format("{}: unknown top-level key {}; the file holds only [[keys]]",
                                      source_, Quote(key.str())));
      }
    }
    const toml::node* keys = root.get("keys");
    const toml::array* array = keys != nullptr ? keys->as_array() : nullptr;
    if (keys == nullptr || (array != nullptr && array->empty())) {
      errors_.push_back(fmt::format(
          "{}: no [[keys]] entries; add one per application, with the hash of its key", source_));
    } else if (array == nullptr || !array->is_array_of_tables()) {
      errors_.push_back(
          fmt::format("{}: keys must be an array of tables ([[keys]]), got {}", source_,
                      array != nullptr ? "an array of other values" : TomlTypeName(*keys)));
    } else {
      for (std::size_t i = 0; i < array->size(); ++i) ParseEntry(i, *array->get(i)->as_table());
    }

    if (!errors_.empty()) return InvalidArgumentError(fmt::format("{}", fmt::join(errors_, "\n")));
    return std::move(entries_);
  }

 private:
  void ParseEntry(std::size_t index, const toml::table& table) {
    // The name comes first: every other message names the entry by it.
    std::string name;
    bool name_ok = false;
    const toml::node* name_node = table.get("name");
    if (name_node != nullptr && name_node->is_string()) {
      name = name_node->as_string()->get();
      name_ok = IsValidKeyName(name);
    }
    const std::string where = name_node != nullptr && name_node->is_string()
                                  ? fmt::format("{}: keys[{}] ({})", source_, index, Quote(name))
                                  : fmt::format("{}: keys[{}]", source_, index);
    auto error = [&](std::string message) {
      errors_.push_back(fmt::format("{}: {}", where, message));
    };

    for (auto&& [key, value] : table) {
      if (std::find(kFields.begin(), kFields.end(), key.str()) == kFields.end()) {
        error(fmt::format("unknown field {}; allowed: {}", Quote(key.str()),
                          fmt::join(kFields, ", ")));
      }
    }

    bool ok = true;
    if (name_node == nullptr) {
      error("name is required");
      ok = false;
    } else if (!name_node->is_string()) {
      error(fmt::format("name must be a string, got {}", TomlTypeName(*name_node)));
      ok = false;
    } else if (!name_ok) {
      error("name must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' or '-'");
      ok = false;
    } else if (!names_.insert(name).second) {
      error("name is used by an earlier entry; names must be unique");
      ok = false;
    }

    std::optional<Digest> digest;
    if (const toml::node* hash = table.get("hash"); hash == nullptr) {
      error("hash is required");
    } else if (!hash->is_string()) {
      error(fmt::format("hash must be a string, got {}", TomlTypeName(*hash)));
    } else if (!(digest = ParseHash(hash->as_string()->get()))) {
      error("hash must be \"sha256:\" followed by 64 hex digits");
    } else if (!digests_.insert(*digest).second) {
      error("hash is the same as an earlier entry's; each application needs its own key");
      digest.reset();
    }
    if (!digest) ok = false;

    Principal principal;
    principal.key_name = name;
    if (const toml::node* admin = table.get("admin"); admin != nullptr) {
      if (!admin->is_boolean()) {
        error(fmt::format("admin must be a boolean, got {}", TomlTypeName(*admin)));
        ok = false;
      } else {
        principal.admin = admin->as_boolean()->get();
      }
    }

    if (!ParseNamespaces(table, principal, error)) ok = false;
    if (!ParseDefaultNamespace(table, principal, error)) ok = false;
    if (ok) entries_.emplace_back(*digest, std::move(principal));
  }

  template <typename Error>
  bool ParseNamespaces(const toml::table& table, Principal& principal, const Error& error) {
    const toml::node* node = table.get("namespaces");
    if (node == nullptr) {
      if (principal.admin) return true;
      error("namespaces is required unless admin = true: list the namespaces this key may touch");
      return false;
    }
    const toml::array* list = node->as_array();
    if (list == nullptr) {
      error(fmt::format("namespaces must be an array of strings, got {}", TomlTypeName(*node)));
      return false;
    }
    if (list->empty()) {
      error("namespaces must not be empty: list the namespaces this key may touch");
      return false;
    }
    bool ok = true;
    for (std::size_t i = 0; i < list->size(); ++i) {
      const toml::node& item = *list->get(i);
      if (!item.is_string()) {
        error(fmt::format("namespaces[{}] must be a string, got {}", i, TomlTypeName(item)));
        ok = false;
        continue;
      }
      const std::string& ns = item.as_string()->get();
      if (Status s = ValidateNamespace(ns); !s.ok()) {
        error(fmt::format("namespaces[{}] ({}): {}", i, Quote(ns), s.message()));
        ok = false;
      } else if (std::find(principal.namespaces.begin(), principal.namespaces.end(), ns) !=
                 principal.namespaces.end()) {
        error(fmt::format("namespaces[{}] ({}) is listed twice", i, Quote(ns)));
        ok = false;
      } else {
        principal.namespaces.push_back(ns);
      }
    }
    return ok;
  }

  template <typename Error>
  bool ParseDefaultNamespace(const toml::table& table, Principal& principal, const Error& error) {
    const toml::node* node = table.get("default_namespace");
    if (node == nullptr) {
      principal.default_namespace = !principal.namespaces.empty() ? principal.namespaces.front()
                                                                  : std::string(kDefaultNamespace);
      return true;
    }
    if (!node->is_string()) {
      error(fmt::format("default_namespace must be a string, got {}", TomlTypeName(*node)));
      return false;
    }
    const std::string& ns = node->as_string()->get();
    if (Status s = ValidateNamespace(ns); !s.ok()) {
      error(fmt::format("default_namespace ({}): {}", Quote(ns), s.message()));
      return false;
    }
    principal.default_namespace = ns;
    if (principal.admin) return true;
    if (std::find(principal.namespaces.begin(), principal.namespaces.end(), ns) ==
        principal.namespaces.end()) {
      error(fmt::format("default_namespace {} must be one of namespaces", Quote(ns)));
      return false;
    }
    return true;
  }

  std::string_view source_;
  std::vector<std::string> errors_;
  std::set<std::string> names_;
  std::set<Digest> digests_;
  std::vector<std::pair<Digest, Principal>> entries_;
};

// ---- Middleware ------------------------------------------------------------------------------

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

constexpr std::string_view kHowToSend =
    "Not authenticated: send an API key as \"Authorization: Bearer <key>\" or \"X-API-Key: <key>\"";

// What the request offers as a key.
struct Presented {
  std::vector<std::string_view> keys;  // every non-empty key offered, from either header
  std::string_view other_scheme;       // an Authorization scheme other than Bearer, if any
};

Presented CollectKeys(const server::Request& request) {
  Presented out;
  for (const auto& [name, value] : request.headers.fields()) {
    if (EqualsIgnoreCase(name, "X-API-Key")) {
      if (std::string_view key = Trim(value); !key.empty()) out.keys.push_back(key);
    } else if (EqualsIgnoreCase(name, "Authorization")) {
      std::string_view credentials = Trim(value);
      const std::size_t space = credentials.find_first_of(" \t");
      const std::string_view scheme = credentials.substr(0, space);
      if (!EqualsIgnoreCase(scheme, "Bearer")) {
        out.other_scheme = scheme;
        continue;
      }
      if (space == std::string_view::npos) continue;
      if (std::string_view key = Trim(credentials.substr(space)); !key.empty()) {
        out.keys.push_back(key);
      }
    }
  }
  return out;
}

struct AuthMetrics {
  metrics::Counter* missing = nullptr;
  metrics::Counter* invalid = nullptr;
  metrics::Counter* conflicting = nullptr;

  static AuthMetrics Register(metrics::Registry* registry) {
    metrics::Registry& r = registry != nullptr ? *registry : metrics::Registry::Default();
    auto family =
        r.AddCounter("mann_http_auth_failures_total",
                     "Requests refused by API-key authentication, by reason.", {"reason"});
    if (!family.ok()) {
      // Only a family of the same name and another shape gets here; refusing requests for a
      // metric's sake would be worse than not counting them.
      log::Get("auth")->error("auth failures will not be counted: {}", family.status().ToString());
      return {};
    }
    return {&(*family)->WithLabels({"missing"}), &(*family)->WithLabels({"invalid"}),
            &(*family)->WithLabels({"conflicting"})};
  }
};

void Count(metrics::Counter* counter) {
  if (counter != nullptr) counter->Inc();
}

}  // namespace

std::string GenerateKey() {
  std::array<unsigned char, 32> bytes{};
  if (RAND_bytes(bytes.data(), static_cast<int>(bytes.size())) != 1) {
    log::Get("auth")->critical(
        "random key generation failed: OpenSSL's CSPRNG could not deliver; stopping rather than "
        "issue a guessable key");
    std::abort();
  }
  std::string key(kKeyPrefix);
  key += Base64UrlNoPadding(bytes.data(), bytes.size());
  OPENSSL_cleanse(bytes.data(), bytes.size());
  return key;
}

std::string HashKey(std::string_view key) { return std::string(kHashPrefix) + Hex(Sha256(key)); }

Result<KeyStore> KeyStore::LoadFile(const std::string& path) {
  std::error_code ec;
  const auto status = std::filesystem::status(path, ec);
  if (!std::filesystem::exists(status)) {
    return NotFoundError(fmt::format("API keys file {} does not exist", Quote(path)));
  }
  if (std::filesystem::is_directory(status)) {
    return InvalidArgumentError(
        fmt::format("API keys file {} is a directory, not a TOML file", Quote(path)));
  }
  std::ifstream in(path, std::ios::binary);
  std::ostringstream content;
  if (in.is_open()) content << in.rdbuf();
  if (!in.is_open() || in.bad()) {
    const int error = errno;
    // As the config module does: a permission problem is the operator's to fix, anything else
    // (an I/O error, a file system gone away) may pass.
    const StatusCode code = error == EACCES || error == EPERM ? StatusCode::kPermissionDenied
                                                              : StatusCode::kUnavailable;
    return Status(code, fmt::format("API keys file {} could not be read: {}", Quote(path),
                                    std::strerror(error)));
  }
  return FromToml(content.str(), path);
}

Result<KeyStore> KeyStore::FromToml(std::string_view text, std::string_view source_name) {
  KeysParser parser(source_name);
  MANN_ASSIGN_OR_RETURN(auto entries, parser.Parse(text));
  KeyStore store;
  store.entries_.reserve(entries.size());
  for (auto& [digest, principal] : entries) {
    store.entries_.push_back({digest, std::move(principal)});
  }
  return store;
}

std::optional<Principal> KeyStore::Authenticate(std::string_view presented_key) const {
  const Digest digest = Sha256(presented_key);
  // Look at every entry and pick the match with arithmetic instead of a branch that leaves the
  // loop, so neither the loop length nor the comparisons reveal the matching position. Digests
  // are unique (the parser refuses repeats), so at most one entry matches.
  std::size_t found = entries_.size();
  for (std::size_t i = 0; i < entries_.size(); ++i) {
    const std::size_t equal = static_cast<std::size_t>(
        CRYPTO_memcmp(digest.data(), entries_[i].digest.data(), digest.size()) == 0);
    const std::size_t mask = ~(equal - 1);  // all ones when equal, zero otherwise
    found = (i & mask) | (found & ~mask);
  }
  if (found == entries_.size()) return std::nullopt;
  return entries_[found].principal;
}

server::Middleware AuthMiddleware(std::shared_ptr<const KeyStore> keys, AuthOptions options) {
  const AuthMetrics counters = AuthMetrics::Register(options.registry);
  return [keys = std::move(keys), public_routes = std::move(options.public_routes), counters,
          log = log::Get("auth")](server::Request& request,
                                  const server::Next& next) -> server::Response {
    const bool is_public =
        (request.method == "GET" || request.method == "HEAD") && !request.route.empty() &&
        std::find(public_routes.begin(), public_routes.end(), request.route) != public_routes.end();
    if (is_public) return next(request);

    const Presented presented = CollectKeys(request);
    if (presented.keys.empty()) {
      Count(counters.missing);
      log->debug("auth refused reason=missing request_id={} client={} route={}", request.request_id,
                 request.client_address, request.route);
      std::string detail(kHowToSend);
      if (!presented.other_scheme.empty()) {
        detail += fmt::format(" (the Authorization scheme {} is not supported)",
                              Quote(presented.other_scheme));
      }
      server::Response response = server::ErrorResponse(401, detail);
      response.headers.Set("WWW-Authenticate", "Bearer");
      return response;
    }
    const bool conflicting =
        std::any_of(presented.keys.begin() + 1, presented.keys.end(),
                    [&](std::string_view key) { return key != presented.keys.front(); });
    if (conflicting) {
      Count(counters.conflicting);
      log->debug("auth refused reason=conflicting request_id={} client={} route={}",
                 request.request_id, request.client_address, request.route);
      return server::BadRequest(
          "conflicting API keys: the Authorization and X-API-Key headers carry different keys; "
          "send one key, in one of them");
    }

    std::optional<Principal> principal = keys->Authenticate(presented.keys.front());
    if (!principal) {
      Count(counters.invalid);
      log->info("auth refused reason=invalid request_id={} client={} route={}", request.request_id,
                request.client_address, request.route);
      server::Response response = server::ErrorResponse(401, "Invalid API key");
      response.headers.Set("WWW-Authenticate", "Bearer error=\"invalid_token\"");
      return response;
    }
    AttachPrincipal(request, std::move(*principal));
    return next(request);
  };
}

}  // namespace mann::security
