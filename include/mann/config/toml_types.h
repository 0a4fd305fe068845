// The names of TOML value types as error messages give them ("got an integer"), for every parser
// of a TOML file: the configuration, the API keys file.
#pragma once

#include <string_view>

#include <toml++/toml.h>

namespace mann::config {

// "a string", "an integer", "a floating-point number", "a boolean", "a table", "an array",
// "a date or time", or "nothing".
std::string_view TomlTypeName(toml::node_type type);

}  // namespace mann::config
