#include <algorithm>
#include <cctype>
#include <charconv>

#include <fmt/format.h>

#include <mann/core/strings.h>
#include <mann/security/cors.h>

namespace mann::security {
namespace {

bool IsHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

// The canonical form of one origin (lower-case, default port dropped), or the reason it is not
// an origin.
Result<std::string> CanonicalOrigin(std::string_view entry) {
  auto refuse = [&](std::string_view why) {
    return InvalidArgumentError(fmt::format("CORS origin \"{}\" {}", entry, why));
  };
  const std::string text = AsciiLower(entry);
  if (text == "null") {
    return refuse(
        "is refused: browsers send \"null\" from sandboxed iframes, file:// pages and "
        "redirects, so it proves nothing about the page; list the real origins instead");
  }
  const std::size_t sep = text.find("://");
  if (sep == std::string::npos) return refuse("must be scheme://host[:port], e.g. https://a.com");
  const std::string scheme = text.substr(0, sep);
  if (scheme != "http" && scheme != "https") {
    return refuse("must use the http or https scheme");
  }
  std::string_view authority = std::string_view(text).substr(sep + 3);
  if (authority.find_first_of("/?#") != std::string_view::npos) {
    return refuse(
        "must not carry a path, query or fragment (not even a trailing slash): browsers send "
        "scheme://host[:port] only");
  }
  if (authority.find('@') != std::string_view::npos) return refuse("must not carry userinfo");
  if (authority.empty()) return refuse("has no host");

  std::string_view host = authority;
  std::string_view port;
  if (host.front() == '[') {
    const std::size_t close = host.find(']');
    if (close == std::string_view::npos) return refuse("has an unclosed IPv6 bracket");
    const std::string_view inside = host.substr(1, close - 1);
    if (inside.empty() || !std::all_of(inside.begin(), inside.end(), [](char c) {
          return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
        })) {
      return refuse("has a malformed IPv6 address");
    }
    std::string_view rest = host.substr(close + 1);
    host = host.substr(0, close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return refuse("has text after the IPv6 address");
      port = rest.substr(1);
      if (port.empty()) return refuse("has an empty port");
    }
  } else {
    const std::size_t colon = host.find(':');
    if (colon != std::string_view::npos) {
      port = host.substr(colon + 1);
      host = host.substr(0, colon);
      if (port.empty()) return refuse("has an empty port");
    }
    if (host.empty() || !std::all_of(host.begin(), host.end(), IsHostChar) || host.front() == '.' ||
        host.back() == '.' || host.find("..") != std::string_view::npos) {
      return refuse("has a malformed host name");
    }
  }

  std::string canonical = scheme + "://" + std::string(host);
  if (!port.empty()) {
    int value = 0;
    const auto [end, ec] = std::from_chars(port.data(), port.data() + port.size(), value);
    if (ec != std::errc() || end != port.data() + port.size() || value < 1 || value > 65535 ||
        !std::isdigit(static_cast<unsigned char>(port.front()))) {
      return refuse("has a port that is not a number in 1..65535");
    }
    const bool default_port =
        (scheme == "https" && value == 443) || (scheme == "http" && value == 80);
    if (!default_port) canonical += fmt::format(":{}", value);
  }
  return canonical;
}

std::string Join(const std::vector<std::string>& items) {
  return fmt::format("{}", fmt::join(items, ", "));
}

// True when a comma-separated Vary value already names `token` (or is "*").
bool VaryCovers(std::string_view vary, std::string_view token) {
  while (!vary.empty()) {
    const std::size_t comma = vary.find(',');
    const std::string_view item = TrimSpace(vary.substr(0, comma));
    if (item == "*" || AsciiLower(item) == AsciiLower(token)) return true;
    if (comma == std::string_view::npos) break;
    vary.remove_prefix(comma + 1);
  }
  return false;
}

void AddVaryOrigin(server::Response& response) {
  std::string combined;
  for (const auto& [name, value] : response.headers.fields()) {
    if (AsciiLower(name) != "vary" || TrimSpace(value).empty()) continue;
    if (!combined.empty()) combined += ", ";
    combined += TrimSpace(value);
  }
  if (VaryCovers(combined, "Origin")) return;
  response.headers.Set("Vary", combined.empty() ? "Origin" : combined + ", Origin");
}

// The options in the form the middleware serves them.
struct CorsPolicy {
  bool wildcard = false;
  bool credentials = false;
  std::vector<std::string> origins;  // lower-case
  std::vector<std::string> methods;
  std::string methods_text;
  std::string headers_text;
  std::string exposed_text;
  std::string max_age_text;

  bool Allows(std::string_view origin) const {
    const std::string lower = AsciiLower(origin);
    if (lower == "null") return false;
    if (wildcard) return true;
    return std::find(origins.begin(), origins.end(), lower) != origins.end();
  }

  // Access-Control-Allow-Origin (and -Allow-Credentials) for an allowed origin.
  void AddAllowOrigin(server::Response& response, std::string_view origin) const {
    if (wildcard) {
      response.headers.Set("Access-Control-Allow-Origin", "*");
      return;
    }
    response.headers.Set("Access-Control-Allow-Origin", std::string(origin));
    if (credentials) response.headers.Set("Access-Control-Allow-Credentials", "true");
  }

  server::Response Preflight(std::string_view origin, std::string_view method) const {
    server::Response response;
    if (!Allows(origin)) {
      response = server::ErrorResponse(
          403, fmt::format("CORS preflight refused: origin \"{}\" is not allowed", origin));
    } else if (std::find(methods.begin(), methods.end(), method) == methods.end()) {
      response = server::ErrorResponse(
          403, fmt::format("CORS preflight refused: method \"{}\" is not allowed; allowed: {}",
                           method, methods_text));
    } else {
      response = server::Response::Empty(204);
      AddAllowOrigin(response, origin);
      response.headers.Set("Access-Control-Allow-Methods", methods_text);
      if (!headers_text.empty()) response.headers.Set("Access-Control-Allow-Headers", headers_text);
      response.headers.Set("Access-Control-Max-Age", max_age_text);
    }
    if (!wildcard) AddVaryOrigin(response);
    return response;
  }

  void Decorate(server::Response& response, std::string_view origin) const {
    if (Allows(origin)) {
      AddAllowOrigin(response, origin);
      if (!exposed_text.empty()) {
        response.headers.Set("Access-Control-Expose-Headers", exposed_text);
      }
    }
    if (!wildcard) AddVaryOrigin(response);
  }
};

}  // namespace

Result<std::vector<std::string>> ParseOriginList(std::string_view comma_separated) {
  std::vector<std::string> origins;
  std::string_view rest = comma_separated;
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    const std::string_view entry = TrimSpace(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (entry.empty()) continue;
    std::string origin;
    if (entry == "*") {
      origin = "*";
    } else {
      MANN_ASSIGN_OR_RETURN(origin, CanonicalOrigin(entry));
    }
    if (std::find(origins.begin(), origins.end(), origin) == origins.end()) {
      origins.push_back(std::move(origin));
    }
  }
  return origins;
}

Status ValidateCors(const CorsOptions& options) {
  const auto& origins = options.allowed_origins;
  const bool wildcard = std::find(origins.begin(), origins.end(), "*") != origins.end();
  if (wildcard && origins.size() > 1) {
    return InvalidArgumentError(
        "CORS allowed origins: \"*\" together with other origins is ambiguous; list either \"*\" "
        "alone or the origins");
  }
  if (wildcard && options.allow_credentials) {
    return InvalidArgumentError(
        "CORS allowed origins \"*\" cannot be combined with credentials: browsers reject that "
        "answer, and echoing every origin instead would let any site use its visitors' "
        "credentials; list the origins that may send credentials");
  }
  for (const std::string& origin : origins) {
    if (origin == "*") continue;
    MANN_ASSIGN_OR_RETURN(std::string canonical, CanonicalOrigin(origin));
    if (canonical != origin) {
      return InvalidArgumentError(fmt::format(
          "CORS origin \"{}\" is not in canonical form; write \"{}\"", origin, canonical));
    }
  }
  for (const auto* list :
       {&options.allowed_methods, &options.allowed_headers, &options.exposed_headers}) {
    for (const std::string& item : *list) {
      if (TrimSpace(item).empty() || item.find_first_of(", \t\r\n") != std::string::npos) {
        return InvalidArgumentError(
            fmt::format("CORS method and header names must be single tokens, got \"{}\"", item));
      }
    }
  }
  if (options.max_age.count() < 0) {
    return InvalidArgumentError(
        fmt::format("CORS max_age must not be negative, got {} s", options.max_age.count()));
  }
  return Status::Ok();
}

server::Middleware CorsMiddleware(CorsOptions options) {
  CorsPolicy policy;
  for (const std::string& origin : options.allowed_origins) {
    if (origin == "*") {
      policy.wildcard = true;
    } else {
      policy.origins.push_back(AsciiLower(origin));
    }
  }
  policy.credentials = options.allow_credentials && !policy.wildcard;
  policy.methods = options.allowed_methods;
  policy.methods_text = Join(options.allowed_methods);
  policy.headers_text = Join(options.allowed_headers);
  policy.exposed_text = Join(options.exposed_headers);
  policy.max_age_text = std::to_string(std::max<std::int64_t>(0, options.max_age.count()));

  return [policy = std::move(policy)](server::Request& request,
                                      const server::Next& next) -> server::Response {
    const std::optional<std::string_view> origin = request.Header("Origin");
    if (!origin) return next(request);
    // Copied: the handler may change the request's headers.
    const std::string origin_text(*origin);

    if (request.method == "OPTIONS") {
      if (auto method = request.Header("Access-Control-Request-Method")) {
        return policy.Preflight(origin_text, *method);
      }
    }
    server::Response response = next(request);
    policy.Decorate(response, origin_text);
    return response;
  };
}

}  // namespace mann::security
