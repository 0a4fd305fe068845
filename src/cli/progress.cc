#include "progress.h"

#include <algorithm>
#include <ostream>

#include <fmt/format.h>

namespace mann::cli {
namespace {

constexpr std::size_t kRedrawEvery = 50;  // lines
constexpr int kBarCells = 30;

}  // namespace

Progress::Progress(std::ostream& err, bool is_tty, std::string label, std::uintmax_t total_bytes)
    : err_(err), enabled_(is_tty), label_(std::move(label)), total_bytes_(total_bytes) {}

Progress::~Progress() { Finish(); }

void Progress::Update(std::size_t lines, std::uintmax_t bytes) {
  if (!enabled_ || finished_ || lines <= kMinLines || lines % kRedrawEvery != 0) return;
  std::string text;
  if (total_bytes_ > 0) {
    const double fraction = std::min(1.0, static_cast<double>(bytes) / total_bytes_);
    const int filled = static_cast<int>(fraction * kBarCells);
    text = fmt::format("{} [{}{}] {:3.0f}%  {} lines", label_, std::string(filled, '#'),
                       std::string(kBarCells - filled, '-'), fraction * 100.0, lines);
  } else {
    text = fmt::format("{} {} lines", label_, lines);
  }
  // Pad over a longer previous bar instead of using terminal escapes.
  const std::size_t pad = width_ > text.size() ? width_ - text.size() : 0;
  err_ << '\r' << text << std::string(pad, ' ') << std::flush;
  width_ = text.size();
}

void Progress::Step(std::size_t done, std::size_t total) {
  if (!enabled_ || finished_ || total <= kMinLines) return;
  const double fraction = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
  const int filled = static_cast<int>(fraction * kBarCells);
  const std::string text =
      fmt::format("{} [{}{}] {:3.0f}%  {}/{}", label_, std::string(filled, '#'),
                  std::string(kBarCells - filled, '-'), fraction * 100.0, done, total);
  const std::size_t pad = width_ > text.size() ? width_ - text.size() : 0;
  err_ << '\r' << text << std::string(pad, ' ') << std::flush;
  width_ = text.size();
}

void Progress::Clear() {
  if (width_ == 0) return;
  err_ << '\r' << std::string(width_, ' ') << '\r' << std::flush;
  width_ = 0;
}

void Progress::Finish() {
  Clear();
  finished_ = true;
}

}  // namespace mann::cli
