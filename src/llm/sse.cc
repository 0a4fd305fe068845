#include <mann/llm/sse.h>

namespace mann::llm {

bool SseParser::Feed(std::string_view bytes) {
  if (stopped_) return false;
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    const char c = bytes[i];
    if (c == '\n' && after_cr_) {
      // The LF of a CRLF whose CR ended the line already (possibly in the previous Feed()).
      after_cr_ = false;
      continue;
    }
    after_cr_ = c == '\r';
    if (c == '\r' || c == '\n') {
      const bool go_on = Line(line_);
      line_.clear();
      if (!go_on) {
        stopped_ = true;
        return false;
      }
      continue;
    }
    // Everything up to the next line break in one append, not byte by byte.
    const std::size_t end = bytes.find_first_of("\r\n", i);
    const std::size_t n = (end == std::string_view::npos ? bytes.size() : end) - i;
    if (line_.size() + n > max_line_bytes_) {
      overflowed_ = true;
      stopped_ = true;
      return false;
    }
    line_.append(bytes.substr(i, n));
    i += n - 1;
  }
  return true;
}

bool SseParser::Line(std::string_view line) {
  if (line.empty()) {
    // A blank line dispatches the event, if it carried data.
    if (!has_data_) return true;
    std::string data;
    data.swap(data_);
    has_data_ = false;
    return sink_(data);
  }
  if (line.front() == ':') return true;  // a comment, often sent as a keep-alive

  const std::size_t colon = line.find(':');
  const std::string_view field = line.substr(0, colon);
  std::string_view value;
  if (colon != std::string_view::npos) {
    value = line.substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.remove_prefix(1);
  }
  if (field == "data") {
    if (has_data_) data_ += '\n';
    data_.append(value);
    has_data_ = true;
  }
  // event, id, retry and unknown fields carry nothing a chat completion needs.
  return true;
}

}  // namespace mann::llm
