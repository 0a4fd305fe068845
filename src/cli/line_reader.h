// Reading chat input: libedit line editing with a persistent history when standard input is a
// terminal, plain lines from a stream otherwise (pipes, files, tests).
//
// Thread-safety: none; libedit's readline state is process-global, so at most one
// EditLineReader may exist at a time.
#pragma once

#include <iosfwd>
#include <memory>
#include <optional>
#include <string>

namespace mann::cli {

class LineReader {
 public:
  virtual ~LineReader() = default;
  // The next line without its newline; nullopt at end of input (Ctrl-D).
  virtual std::optional<std::string> Read(const std::string& prompt) = 0;
  // Records a line the user entered in the history (a no-op for streams).
  virtual void Remember(const std::string& line) = 0;
};

// libedit's readline interface. Loads `history_file` when it exists and saves it (mode 0600,
// the newest `max_history` lines) after every remembered line, so a killed session keeps it.
std::unique_ptr<LineReader> MakeEditLineReader(std::string history_file,
                                               std::size_t max_history = 1000);

// Lines from `in`; prints no prompt.
std::unique_ptr<LineReader> MakeStreamReader(std::istream& in);

}  // namespace mann::cli
