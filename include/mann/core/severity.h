// How serious an alert is, lowest first. The monitor raises an alert at a severity, the pager
// delivers it at the same one and filters on it (pager.min_level), so both share this type.
#pragma once

#include <array>
#include <optional>
#include <string_view>

namespace mann {

enum class Severity { kInfo, kWarning, kError, kCritical };

inline constexpr std::array<Severity, 4> kSeverities = {Severity::kInfo, Severity::kWarning,
                                                        Severity::kError, Severity::kCritical};

// "info", "warning", "error", "critical".
std::string_view SeverityName(Severity severity);
// The inverse of SeverityName; nullopt for any other text.
std::optional<Severity> ParseSeverity(std::string_view name);

}  // namespace mann
