// Small string helpers for parsing settings and headers. ASCII only on purpose: the text they see
// (keys, hosts, origins, rule lists) is ASCII by its grammar, and a locale must not change them.
#pragma once

#include <string>
#include <string_view>

namespace mann {

// `text` without leading and trailing white space (space, \t, \n, \v, \f, \r).
std::string_view TrimSpace(std::string_view text);

// `text` with A-Z made a-z; every other byte unchanged.
std::string AsciiLower(std::string_view text);

}  // namespace mann
