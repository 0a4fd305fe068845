#include <algorithm>
#include <array>
#include <cctype>
#include <ctime>
#include <span>

#include <fmt/format.h>

#include <mann/chat/responder.h>
#include <mann/core/write_head.h>

namespace mann::chat {
namespace {

using text::Language;

bool StartsWithAny(const std::vector<std::string>& folded,
                   std::span<const std::string_view> words) {
  if (folded.empty()) return false;
  for (std::string_view w : words) {
    if (folded.front() == w) return true;
  }
  return false;
}

bool ContainsAny(const std::vector<std::string>& folded, std::span<const std::string_view> words) {
  for (const std::string& f : folded) {
    for (std::string_view w : words) {
      if (f == w) return true;
    }
  }
  return false;
}

// Folded words that open an English question.
constexpr std::string_view kEnglishQuestionOpeners[] = {
    "what",  "where", "who",   "whom",   "whose", "which", "when", "why",    "how",
    "do",    "does",  "did",   "is",     "are",   "am",    "was",  "were",   "can",
    "could", "will",  "would", "should", "have",  "has",   "tell", "remind", "recall"};

// Folded openings of short greetings and thanks ("xin chào", "cảm ơn").
constexpr std::string_view kGreetings[] = {"hi", "hello", "hey", "chao", "xin"};
constexpr std::string_view kThanks[] = {"thanks", "thank", "thx", "cam"};

// Vietnamese question words. Unlike English they usually close the sentence ("tôi sống ở đâu",
// "tên tôi là gì"). Typed with diacritics they are unambiguous; typed without, a few collide with
// common words ("may" is also "máy", machine), so the unaccented list is shorter.
constexpr std::string_view kVietnameseQuestionWords[] = {"gì",  "đâu", "nào", "ai",
                                                         "mấy", "sao", "bao"};
constexpr std::string_view kVietnameseQuestionWordsFolded[] = {"gi", "dau", "nao",
                                                               "ai", "sao", "bao"};
// Particles that make a question only when they close it ("bạn có nhớ không"); inside a
// sentence "không" and "chưa" mean "not".
constexpr std::string_view kVietnameseClosingParticles[] = {"không", "chưa", "nhỉ", "hả",
                                                            "khong", "chua", "nhi"};

std::string AsciiLower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

bool IsVietnameseQuestion(const std::vector<std::string>& words,
                          const std::vector<std::string>& folded) {
  std::vector<std::string> lower;
  lower.reserve(words.size());
  for (const std::string& w : words) lower.push_back(AsciiLower(w));
  if (ContainsAny(lower, kVietnameseClosingParticles) &&
      std::find(std::begin(kVietnameseClosingParticles), std::end(kVietnameseClosingParticles),
                lower.back()) != std::end(kVietnameseClosingParticles)) {
    return true;
  }
  if (ContainsAny(lower, kVietnameseQuestionWords)) return true;
  // Only words typed without any diacritic may match the folded list.
  for (std::size_t i = 0; i < words.size(); ++i) {
    if (lower[i] != folded[i]) continue;
    for (std::string_view q : kVietnameseQuestionWordsFolded) {
      if (folded[i] == q) return true;
    }
  }
  return false;
}

// Phrases a memory's content is introduced with, per language.
std::string Quote(const MemoryEntry& e) {
  std::string c = e.content;
  while (!c.empty() && (c.back() == '.' || c.back() == ' ')) c.pop_back();
  return c;
}

constexpr double kRunnerUpRatio = 0.8;

std::string Answer(const ResponderInput& in, const GroundedOptions& o) {
  const bool vi = in.language == Language::kVietnamese;
  if (in.relevant.empty()) {
    return vi ? "Tôi chưa biết gì về điều đó. Hãy kể cho tôi, tôi sẽ ghi nhớ."
              : "I don't know anything about that yet. Tell me and I'll remember it.";
  }
  std::string out;
  const std::size_t n = std::min(o.max_quoted, in.relevant.size());
  for (std::size_t i = 0; i < n; ++i) {
    // A second memory is worth quoting only when it is nearly as relevant as the first; a weak
    // runner-up ("two cats named Miso" for "what is my name") reads as noise.
    if (i > 0 && in.relevant[i]->similarity < kRunnerUpRatio * in.relevant[0]->similarity) break;
    const MemoryEntry& e = in.relevant[i]->entry;
    const std::string day = FormatDay(e.created_ms, in.language, o.utc_offset_minutes);
    if (i == 0) {
      out += vi ? fmt::format("Bạn đã nói với tôi vào ngày {}: {}.", day, Quote(e))
                : fmt::format("You told me on {}: {}.", day, Quote(e));
    } else {
      out += vi ? fmt::format(" Ngoài ra, ngày {}: {}.", day, Quote(e))
                : fmt::format(" Also, on {}: {}.", day, Quote(e));
    }
  }
  return out;
}

std::string Acknowledge(const ResponderInput& in) {
  const bool vi = in.language == Language::kVietnamese;
  if (in.writes.empty()) return vi ? "Tôi đã nghe." : "I heard you.";
  const WriteOutcome& w = in.writes.front();
  switch (w.action) {
    case WriteAction::kAdd:
      return vi ? "Đã ghi nhớ." : "Got it, I'll remember that.";
    case WriteAction::kUpdate:
      return vi ? "Tôi đã cập nhật điều tôi biết." : "Noted, I've updated what I knew.";
    case WriteAction::kNoop:
      return vi ? "Tôi đã biết điều đó rồi." : "I already knew that.";
    case WriteAction::kDelete:
      return vi ? "Tôi đã quên điều đó." : "Done, I've forgotten that.";
  }
  return "";
}

std::string ConfirmForget(const ResponderInput& in) {
  const bool vi = in.language == Language::kVietnamese;
  if (!in.writes.empty() && in.writes.front().action == WriteAction::kDelete) {
    return vi ? "Được rồi, tôi đã quên điều đó." : "Done, I've forgotten that.";
  }
  return vi ? "Tôi không có ghi nhớ nào như vậy để quên." : "I had nothing like that to forget.";
}

}  // namespace

std::string_view IntentName(Intent intent) {
  switch (intent) {
    case Intent::kQuestion:
      return "question";
    case Intent::kStatement:
      return "statement";
    case Intent::kForget:
      return "forget";
    case Intent::kGreeting:
      return "greeting";
    case Intent::kThanks:
      return "thanks";
  }
  return "statement";
}

Intent Classify(std::string_view message) {
  if (ParseForgetRequest(message)) return Intent::kForget;

  const std::vector<std::string> words = text::Words(message);
  std::vector<std::string> folded;
  folded.reserve(words.size());
  for (const std::string& w : words) folded.push_back(text::FoldForSearch(w));

  std::string_view trimmed = message;
  while (!trimmed.empty() && (trimmed.back() == ' ' || trimmed.back() == '\n')) {
    trimmed.remove_suffix(1);
  }
  if (!trimmed.empty() && trimmed.back() == '?') return Intent::kQuestion;
  // A full-width question mark (U+FF1F) closes CJK questions.
  if (trimmed.size() >= 3 && trimmed.substr(trimmed.size() - 3) == "\xEF\xBC\x9F") {
    return Intent::kQuestion;
  }

  if (folded.size() <= 3) {
    if (StartsWithAny(folded, kGreetings)) return Intent::kGreeting;
    if (StartsWithAny(folded, kThanks)) return Intent::kThanks;
  }

  if (folded.empty()) return Intent::kStatement;
  if (text::DetectLanguage(message) == Language::kVietnamese) {
    return IsVietnameseQuestion(words, folded) ? Intent::kQuestion : Intent::kStatement;
  }
  if (StartsWithAny(folded, kEnglishQuestionOpeners)) return Intent::kQuestion;
  return Intent::kStatement;
}

std::string FormatDay(TimestampMs ms, text::Language language, int utc_offset_minutes) {
  const std::time_t t =
      static_cast<std::time_t>(ms / 1000) + static_cast<std::time_t>(utc_offset_minutes) * 60;
  std::tm tm{};
  gmtime_r(&t, &tm);
  if (language == text::Language::kVietnamese) {
    return fmt::format("{}/{}", tm.tm_mday, tm.tm_mon + 1);
  }
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  return fmt::format("{} {}", tm.tm_mday, kMonths[static_cast<std::size_t>(tm.tm_mon)]);
}

Result<std::string> GroundedResponder::Reply(const ResponderInput& in) {
  const bool vi = in.language == Language::kVietnamese;
  switch (in.intent) {
    case Intent::kQuestion:
      return Answer(in, options_);
    case Intent::kStatement:
      return Acknowledge(in);
    case Intent::kForget:
      return ConfirmForget(in);
    case Intent::kGreeting:
      return std::string(vi ? "Xin chào! Hãy kể cho tôi điều gì đó để ghi nhớ, hoặc hỏi tôi "
                              "điều bạn đã kể."
                            : "Hello! Tell me something to remember, or ask me what you told "
                              "me.");
    case Intent::kThanks:
      return std::string(vi ? "Không có gì!" : "You're welcome!");
  }
  return std::string();
}

}  // namespace mann::chat
