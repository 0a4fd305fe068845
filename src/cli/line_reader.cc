#include "line_reader.h"

#include <cstdlib>
#include <istream>

#include <editline/readline.h>
#include <sys/stat.h>

#include <mann/core/log.h>

namespace mann::cli {
namespace {

class EditLineReader final : public LineReader {
 public:
  EditLineReader(std::string history_file, std::size_t max_history)
      : history_file_(std::move(history_file)) {
    using_history();
    stifle_history(static_cast<int>(max_history));
    // A missing file is the normal first run; anything else is worth a debug line only, since
    // the chat works without history.
    if (!history_file_.empty() && read_history(history_file_.c_str()) != 0) {
      log::Get("cli")->debug("no chat history loaded file={}", history_file_);
    }
  }

  std::optional<std::string> Read(const std::string& prompt) override {
    char* raw = readline(prompt.c_str());
    if (raw == nullptr) return std::nullopt;
    std::string line(raw);
    std::free(raw);
    return line;
  }

  void Remember(const std::string& line) override {
    if (line.empty()) return;
    add_history(line.c_str());
    if (history_file_.empty()) return;
    if (write_history(history_file_.c_str()) != 0) {
      if (!warned_) log::Get("cli")->warn("cannot save chat history file={}", history_file_);
      warned_ = true;
      return;
    }
    // What was said in a chat is private.
    ::chmod(history_file_.c_str(), 0600);
  }

 private:
  std::string history_file_;
  bool warned_ = false;
};

class StreamReader final : public LineReader {
 public:
  explicit StreamReader(std::istream& in) : in_(in) {}

  std::optional<std::string> Read(const std::string&) override {
    std::string line;
    if (!std::getline(in_, line)) return std::nullopt;
    if (!line.empty() && line.back() == '\r') line.pop_back();
    return line;
  }

  void Remember(const std::string&) override {}

 private:
  std::istream& in_;
};

}  // namespace

std::unique_ptr<LineReader> MakeEditLineReader(std::string history_file, std::size_t max_history) {
  return std::make_unique<EditLineReader>(std::move(history_file), max_history);
}

std::unique_ptr<LineReader> MakeStreamReader(std::istream& in) {
  return std::make_unique<StreamReader>(in);
}

}  // namespace mann::cli
