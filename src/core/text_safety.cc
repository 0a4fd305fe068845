#include <algorithm>

#include <mann/core/text_safety.h>
#include <mann/core/utf8.h>

namespace mann {

std::string RedactSecrets(std::string text, const std::vector<std::string>& secrets) {
  constexpr std::string_view kMark = "[redacted]";
  // Longest first, so a URL goes as a whole before its path is looked for.
  std::vector<const std::string*> ordered;
  for (const std::string& s : secrets) {
    if (s.size() >= 4) ordered.push_back(&s);
  }
  std::sort(ordered.begin(), ordered.end(),
            [](const std::string* a, const std::string* b) { return a->size() > b->size(); });
  for (const std::string* secret : ordered) {
    for (std::size_t at = text.find(*secret); at != std::string::npos;
         at = text.find(*secret, at + kMark.size())) {
      text.replace(at, secret->size(), kMark);
    }
  }
  return text;
}

std::string ClipToOneLine(std::string_view text, std::size_t limit) {
  std::string line;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == ' ') {
      if (!line.empty() && line.back() != ' ') line.push_back(' ');
    } else {
      line.push_back(c);
    }
  }
  while (!line.empty() && line.back() == ' ') line.pop_back();
  if (line.size() <= limit) return line;
  std::string cut(Utf8Prefix(line, limit));
  cut += "...";
  return cut;
}

}  // namespace mann
