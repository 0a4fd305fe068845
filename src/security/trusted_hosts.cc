#include <algorithm>
#include <cctype>
#include <optional>

#include <fmt/format.h>

#include <mann/core/log.h>
#include <mann/core/strings.h>
#include <mann/security/trusted_hosts.h>

namespace mann::security {
namespace {

// Host names as RFC 1123 writes them, plus '_' (container and service names carry it): dot-
// separated labels of 1 to 63 letters, digits, '-' or '_', 253 characters at most. IPv4
// literals pass too. `name` is lower-case and has no trailing dot.
bool IsHostName(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  std::size_t label = 0;
  for (char c : name) {
    if (c == '.') {
      if (label == 0) return false;
      label = 0;
      continue;
    }
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) return false;
    if (++label > 63) return false;
  }
  return label > 0;
}

// The text between an IPv6 literal's brackets: hex digits, ':' and '.' (an embedded IPv4),
// with at least two colons.
bool IsIpv6Text(std::string_view text) {
  return std::count(text.begin(), text.end(), ':') >= 2 &&
         std::all_of(text.begin(), text.end(), [](char c) {
           return std::isxdigit(static_cast<unsigned char>(c)) || c == ':' || c == '.';
         });
}

std::string_view DropTrailingDot(std::string_view name) {
  if (name.size() > 1 && name.back() == '.') name.remove_suffix(1);
  return name;
}

// The host a Host header names, lower-case, without port or trailing dot; nullopt when the
// header is not `host[:port]`.
std::optional<std::string> HostOf(std::string_view header) {
  std::string_view value = TrimSpace(header);
  std::string_view host;
  std::string_view rest;
  if (value.starts_with('[')) {
    const std::size_t close = value.find(']');
    if (close == std::string_view::npos || !IsIpv6Text(value.substr(1, close - 1))) {
      return std::nullopt;
    }
    host = value.substr(0, close + 1);
    rest = value.substr(close + 1);
  } else {
    const std::size_t colon = value.find(':');
    host = value.substr(0, colon);
    rest = colon == std::string_view::npos ? std::string_view() : value.substr(colon);
  }
  if (!rest.empty()) {
    if (rest.front() != ':') return std::nullopt;
    rest.remove_prefix(1);
    if (!std::all_of(rest.begin(), rest.end(),
                     [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
      return std::nullopt;
    }
  }
  std::string lower = AsciiLower(DropTrailingDot(host));
  if (!lower.starts_with('[') && !IsHostName(lower)) return std::nullopt;
  return lower;
}

// One list entry in stored form, or the reason it is not one.
Result<std::string> ParseHostEntry(std::string_view entry) {
  auto refuse = [&](std::string_view why) {
    return InvalidArgumentError(fmt::format("trusted host \"{}\" {}", entry, why));
  };
  if (entry == "*") return std::string("*");
  const std::string lower = AsciiLower(entry);

  if (lower.find("://") != std::string::npos) {
    return refuse("is a URL; list the host name alone, e.g. \"api.example.com\"");
  }
  if (lower.starts_with('[')) {
    if (!lower.ends_with(']')) {
      return refuse(lower.find("]:") != std::string::npos
                        ? "carries a port; list the host alone (ports are ignored when matching)"
                        : "has an unclosed IPv6 bracket");
    }
    if (!IsIpv6Text(std::string_view(lower).substr(1, lower.size() - 2))) {
      return refuse("is not an IPv6 address");
    }
    return lower;
  }
  if (IsIpv6Text(lower)) return "[" + lower + "]";
  if (lower.find(':') != std::string::npos) {
    return refuse("carries a port; list the host alone (ports are ignored when matching)");
  }

  std::string_view name = DropTrailingDot(lower);
  const bool suffix = name.starts_with("*.");
  if (suffix) name.remove_prefix(2);
  if (name.find('*') != std::string_view::npos) {
    return refuse("has a wildcard other than a leading \"*.\" (as in \"*.example.com\")");
  }
  if (!IsHostName(name)) {
    return refuse("is not a host name, an IP address or \"*.\" followed by a domain");
  }
  return (suffix ? "*." : "") + std::string(name);
}

}  // namespace

std::vector<std::string> DefaultTrustedHosts(std::string_view bind_host) {
  std::vector<std::string> hosts;
  auto add = [&](std::string host) {
    if (!host.empty() && std::find(hosts.begin(), hosts.end(), host) == hosts.end()) {
      hosts.push_back(std::move(host));
    }
  };
  std::string bind = AsciiLower(DropTrailingDot(TrimSpace(bind_host)));
  if (bind.find(':') != std::string::npos && !bind.starts_with('[')) bind = "[" + bind + "]";
  add(std::move(bind));
  add("localhost");
  add("127.0.0.1");
  add("[::1]");
  return hosts;
}

Result<std::vector<std::string>> ParseHostList(std::string_view comma_separated) {
  std::vector<std::string> hosts;
  std::string_view rest = comma_separated;
  while (!rest.empty()) {
    const std::size_t comma = rest.find(',');
    const std::string_view entry = TrimSpace(rest.substr(0, comma));
    rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    if (entry.empty()) continue;
    MANN_ASSIGN_OR_RETURN(std::string host, ParseHostEntry(entry));
    if (std::find(hosts.begin(), hosts.end(), host) == hosts.end()) {
      hosts.push_back(std::move(host));
    }
  }
  return hosts;
}

server::Middleware TrustedHostsMiddleware(std::vector<std::string> hosts) {
  struct Policy {
    bool any = false;
    std::vector<std::string> exact;
    std::vector<std::string> suffixes;  // ".example.com"

    bool Allows(const std::string& host) const {
      if (any) return true;
      if (std::find(exact.begin(), exact.end(), host) != exact.end()) return true;
      return std::any_of(suffixes.begin(), suffixes.end(), [&](const std::string& suffix) {
        return host.size() > suffix.size() && host.ends_with(suffix);
      });
    }
  };
  Policy policy;
  for (const std::string& host : hosts) {
    if (host == "*") {
      policy.any = true;
    } else if (host.starts_with("*.")) {
      policy.suffixes.push_back(host.substr(1));
    } else {
      policy.exact.push_back(AsciiLower(DropTrailingDot(host)));
    }
  }

  return [policy = std::move(policy), log = log::Get("security")](
             server::Request& request, const server::Next& next) -> server::Response {
    if (policy.any) return next(request);
    const std::optional<std::string_view> header = request.Header("Host");
    const std::optional<std::string> host = header ? HostOf(*header) : std::nullopt;
    if (!host || !policy.Allows(*host)) {
      log->debug("request refused: untrusted host header host={} request_id={} client={}",
                 header ? fmt::format("\"{}\"", *header) : "(none)", request.request_id,
                 request.client_address);
      return server::BadRequest("Invalid host header");
    }
    return next(request);
  };
}

}  // namespace mann::security
