#include <mann/core/severity.h>

namespace mann {

std::string_view SeverityName(Severity severity) {
  switch (severity) {
    case Severity::kInfo:
      return "info";
    case Severity::kWarning:
      return "warning";
    case Severity::kError:
      return "error";
    case Severity::kCritical:
      return "critical";
  }
  return "critical";  // unreachable: every enumerator is handled above
}

std::optional<Severity> ParseSeverity(std::string_view name) {
  for (Severity severity : kSeverities) {
    if (SeverityName(severity) == name) return severity;
  }
  return std::nullopt;
}

}  // namespace mann
