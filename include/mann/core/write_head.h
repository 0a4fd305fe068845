// The write head's text rules: recognising a request to forget something.
//
// The numeric decision rules live in MemoryBank::Add; this file holds the language-dependent
// part so it can be tested on its own and grown per language.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace mann {

// When `text` asks to forget something, returns what is to be forgotten:
//   "Forget that I live in Hanoi"      -> "I live in Hanoi"
//   "please forget my phone number"    -> "my phone number"
//   "quên rằng tôi sống ở Hà Nội"      -> "tôi sống ở Hà Nội"
//   "hay quen la toi song o Ha Noi"    -> "toi song o Ha Noi"
// Returns nullopt otherwise, and for a bare "forget" with nothing after it.
std::optional<std::string> ParseForgetRequest(std::string_view text);

}  // namespace mann
