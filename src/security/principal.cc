#include <algorithm>
#include <any>

#include <mann/security/principal.h>

namespace mann::security {

bool Principal::MayAccess(std::string_view ns) const {
  return admin || std::find(namespaces.begin(), namespaces.end(), ns) != namespaces.end();
}

const Principal* PrincipalOf(const server::Request& request) {
  auto it = request.attributes.find(kPrincipalAttribute);
  if (it == request.attributes.end()) return nullptr;
  return std::any_cast<Principal>(&it->second);
}

void AttachPrincipal(server::Request& request, Principal principal) {
  request.attributes.insert_or_assign(std::string(kPrincipalAttribute), std::move(principal));
}

}  // namespace mann::security
