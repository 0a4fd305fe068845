#include <array>
#include <vector>

#include <mann/core/write_head.h>
#include <mann/text/analyzer.h>

namespace mann {
namespace {

// Openings of a forget request, as folded words (accents removed, lower case), longest first
// so "forget that" wins over "forget". Vietnamese: "quên" (forget), "hãy" (please, imperative),
// "rằng"/"là" (that), "đi" (a softener), "xóa" (delete).
constexpr std::array<std::array<std::string_view, 3>, 16> kOpenings = {{
    {"please", "forget", "that"},
    {"please", "forget", "about"},
    {"please", "forget", ""},
    {"forget", "that", ""},
    {"forget", "about", ""},
    {"forget", "", ""},
    {"hay", "quen", "rang"},
    {"hay", "quen", "la"},
    {"hay", "quen", "di"},
    {"hay", "quen", ""},
    {"quen", "rang", ""},
    {"quen", "la", ""},
    {"quen", "di", ""},
    {"quen", "", ""},
    {"xoa", "", ""},
    {"hay", "xoa", ""},
}};

}  // namespace

std::optional<std::string> ParseForgetRequest(std::string_view text) {
  const std::vector<std::string> words = text::Words(text);
  if (words.size() < 2) return std::nullopt;
  std::vector<std::string> folded;
  folded.reserve(std::min<std::size_t>(words.size(), 3));
  for (std::size_t i = 0; i < words.size() && i < 3; ++i) {
    folded.push_back(text::FoldForSearch(words[i]));
  }

  for (const auto& opening : kOpenings) {
    std::size_t n = 0;
    while (n < opening.size() && !opening[n].empty()) ++n;
    if (n > folded.size()) continue;
    bool match = true;
    for (std::size_t i = 0; i < n && match; ++i) match = folded[i] == opening[i];
    if (!match) continue;
    // The longest opening matched: with nothing after it ("forget that", "quên đi") there is
    // no subject, and a shorter opening must not take the connective word for one.
    if (n >= words.size()) return std::nullopt;

    std::string subject;
    for (std::size_t i = n; i < words.size(); ++i) {
      if (!subject.empty()) subject += ' ';
      subject += words[i];
    }
    return subject;
  }
  return std::nullopt;
}

}  // namespace mann
