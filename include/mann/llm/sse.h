// SseParser: the server-sent events framing (the WHATWG "text/event-stream" format) as a
// streamed chat completion uses it, fed with bytes in whatever pieces the network delivers.
//
//   data: {"choices":[{"delta":{"content":"Hel"}}]}
//   <blank line ends the event>
//   : a comment line, ignored
//   data: [DONE]
//
// Lines end in LF, CRLF or CR; a line or a CRLF pair may be split across two Feed() calls. An
// event's data is its `data:` lines joined with LF (one space after the colon is dropped, as the
// format says); `event:`, `id:` and `retry:` fields are parsed and ignored, since chat
// completion streams do not use them. An event with no data line is not reported.
//
// Thread-safety: a value; one parser belongs to one stream and one thread.
#pragma once

#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

namespace mann::llm {

class SseParser {
 public:
  // Receives each complete event's data. Returning false stops the parse: Feed() returns at
  // once and ignores the rest of its input.
  using EventSink = std::function<bool(std::string_view data)>;

  // `max_line_bytes` bounds one buffered line, so a server that never sends a line break
  // cannot make the parser grow without limit.
  explicit SseParser(EventSink sink, std::size_t max_line_bytes = 1 << 20)
      : sink_(std::move(sink)), max_line_bytes_(max_line_bytes) {}

  // Parses `bytes`; false when the sink asked to stop or a line exceeded max_line_bytes
  // (overflowed() tells which).
  bool Feed(std::string_view bytes);

  // The end of the stream: a last event not closed by a blank line is dropped, as the format
  // requires (a cut stream must not deliver half an event). True when nothing was pending.
  bool Finish() const { return line_.empty() && data_.empty() && !has_data_; }

  bool overflowed() const { return overflowed_; }

 private:
  bool Line(std::string_view line);  // false: stop

  EventSink sink_;
  std::size_t max_line_bytes_;
  std::string line_;       // the incomplete line carried over from the previous Feed()
  std::string data_;       // the current event's data so far
  bool has_data_ = false;  // a data line was seen in the current event
  bool after_cr_ = false;  // the previous byte was CR: an LF now completes a CRLF
  bool overflowed_ = false;
  bool stopped_ = false;
};

}  // namespace mann::llm
