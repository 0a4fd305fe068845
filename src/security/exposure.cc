#include <cctype>
#include <string>

#include <arpa/inet.h>
#include <fmt/format.h>
#include <netinet/in.h>

#include <mann/security/exposure.h>

namespace mann::security {

bool IsLoopbackHost(std::string_view host) {
  if (host.size() > 1 && host.back() == '.') host.remove_suffix(1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  std::string text(host);
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (text == "localhost") return true;

  // inet_pton reads only the strict dotted quad and standard IPv6 text, so names that merely
  // start with digits ("127.0.0.1.example.com") are not taken for addresses.
  in_addr v4{};
  if (inet_pton(AF_INET, text.c_str(), &v4) == 1) {
    return (ntohl(v4.s_addr) >> 24) == 127;
  }
  in6_addr v6{};
  if (inet_pton(AF_INET6, text.c_str(), &v6) == 1) {
    if (IN6_IS_ADDR_LOOPBACK(&v6)) return true;
    return IN6_IS_ADDR_V4MAPPED(&v6) && v6.s6_addr[12] == 127;
  }
  return false;
}

Status CheckExposure(std::string_view bind_host, bool keys_configured, bool allow_unauthenticated) {
  if (keys_configured || allow_unauthenticated || IsLoopbackHost(bind_host)) return Status::Ok();
  return FailedPreconditionError(fmt::format(
      "refusing to serve on \"{}\" without API keys: anyone who can reach that address could "
      "read and change every namespace. Configure security.api_keys_file with the hashes of "
      "your keys, or pass --allow-unauthenticated if something in front of the server (a proxy, "
      "a private network) already controls access",
      bind_host));
}

}  // namespace mann::security
