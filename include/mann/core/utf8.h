// UTF-8 checks and repair for text that crosses a boundary: JSON bodies, log lines, metric
// labels and notifications must be valid UTF-8 even when what they quote (a header, a URL, a
// receiver's answer) is not.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace mann {

// The length (1 to 4) of the UTF-8 sequence starting at text[i], or 0 when none is valid there:
// overlong forms, UTF-16 surrogates and code points above U+10FFFF are not UTF-8. i < size.
std::size_t Utf8SequenceLength(std::string_view text, std::size_t i);

bool IsValidUtf8(std::string_view text);

// `text` with every byte that does not start a valid sequence replaced by U+FFFD.
std::string ToValidUtf8(std::string_view text);

// The longest prefix of `text` of at most `limit` bytes that does not cut a sequence in two.
std::string_view Utf8Prefix(std::string_view text, std::size_t limit);

}  // namespace mann
