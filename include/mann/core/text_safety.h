// Making text from outside (a server's answer, an error from a library) safe to put in a log
// line or an error message: no secrets in it, and on one line of bounded length.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace mann {

// `text` with every occurrence of each secret replaced by "[redacted]", longest secret first (so
// a URL goes as a whole before a token inside it is looked for). Secrets shorter than 4 bytes are
// skipped: redacting every "a" would destroy the message and hide nothing.
std::string RedactSecrets(std::string text, const std::vector<std::string>& secrets);

// Control characters and runs of white space become single spaces, ends trimmed; cut to `limit`
// bytes on a UTF-8 boundary with "..." appended when cut. For logs and errors, where bytes are
// what is bounded; OneLine in entry_json.h cuts by characters, for a terminal.
std::string ClipToOneLine(std::string_view text, std::size_t limit);

}  // namespace mann
