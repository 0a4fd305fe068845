// A one-line progress bar for long runs (import), drawn on standard error only when it is a
// terminal and only once the run is long enough to be worth it, so pipes and logs never see it.
//
// Thread-safety: none; one owner.
#pragma once

#include <cstddef>
#include <cstdint>
#include <iosfwd>
#include <string>

namespace mann::cli {

class Progress {
 public:
  // Runs of at most this many lines never show a bar.
  static constexpr std::size_t kMinLines = 200;

  // `total_bytes` 0: size unknown (standard input); the bar then shows a line count only.
  Progress(std::ostream& err, bool is_tty, std::string label, std::uintmax_t total_bytes);
  ~Progress();

  // Redraws at most every few lines.
  void Update(std::size_t lines, std::uintmax_t bytes);
  // Redraws as a count of items: "label [####------]  40%  400/1000". Shown only on a
  // terminal and for more than kMinLines items.
  void Step(std::size_t done, std::size_t total);
  // Erases the bar (before printing an error line); the next Update redraws it.
  void Clear();
  // Erases the bar for good.
  void Finish();

 private:
  std::ostream& err_;
  bool enabled_;
  std::string label_;
  std::uintmax_t total_bytes_;
  std::size_t width_ = 0;  // characters of the bar currently on screen
  bool finished_ = false;
};

}  // namespace mann::cli
