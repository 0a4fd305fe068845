#include "chat_command.h"

#include <clocale>
#include <cstring>
#include <iostream>

#include <fmt/format.h>
#include <langinfo.h>

#include <mann/core/entry_json.h>
#include <mann/core/id.h>
#include <mann/core/version.h>
#include <mann/core/write_head.h>
#include <mann/monitor/health.h>

#include "line_reader.h"
#include "monitoring.h"

namespace mann::cli {
namespace {

// libedit decodes multibyte input by the locale; the chat is UTF-8 throughout, so a "C" locale
// (common in containers and under CI) is upgraded to C.UTF-8 rather than mangling "phở".
void UseUtf8Locale() {
  std::setlocale(LC_CTYPE, "");
  const char* codeset = nl_langinfo(CODESET);
  if (codeset == nullptr || std::strcmp(codeset, "UTF-8") != 0) {
    std::setlocale(LC_CTYPE, "C.UTF-8");
  }
}

struct Style {
  bool on = false;
  std::string Paint(std::string_view code, std::string_view text) const {
    if (!on) return std::string(text);
    return fmt::format("\033[{}m{}\033[0m", code, text);
  }
  std::string Reply(std::string_view t) const { return Paint("36", t); }  // cyan
  // A reply printed in pieces as it streams: the colour opens once and closes at the end.
  std::string_view ReplyOpen() const { return on ? "\033[36m" : ""; }
  std::string_view ReplyClose() const { return on ? "\033[0m" : ""; }
  std::string Dim(std::string_view t) const { return Paint("2", t); }
  std::string Error(std::string_view t) const { return Paint("31", t); }  // red
};

constexpr std::string_view kHelp =
    "Type a message to chat: statements are remembered, questions are answered from memory.\n"
    "Commands:\n"
    "  /help              this list\n"
    "  /search <query>    the memories that best match <query>\n"
    "  /remember <text>   store <text> as a memory\n"
    "  /forget <id>       erase one memory and all its history\n"
    "  /forget <text>     forget the memory that best matches <text>\n"
    "  /history <id>      every version of one memory\n"
    "  /stats             how much is stored\n"
    "  /health            check the memory bank, the store and the machine\n"
    "  /session           this session's id (resume it with mann chat --session ID)\n"
    "  /quit              leave (also /exit or Ctrl-D)\n";

class ChatShell {
 public:
  ChatShell(runtime::Runtime& rt, const std::string& ns, Io& io, Style style,
            std::string session_id)
      : rt_(rt), ns_(ns), io_(io), style_(style), session_id_(std::move(session_id)) {}

  std::size_t CountInNamespace() const {
    for (const auto& s : rt_.bank().Stats().namespaces) {
      if (s.ns == ns_) return s.total_memories;
    }
    return 0;
  }

  void Banner() {
    const std::size_t n = CountInNamespace();
    io_.out << fmt::format(
                   "mann {}: {} {} stored for \"{}\". Type /help for commands, /quit to "
                   "leave.\n",
                   kVersion, n, n == 1 ? "memory" : "memories", ns_)
            << style_.Dim("session " + session_id_) << '\n';
    io_.out.flush();
  }

  // Handles one line; false when the user asked to leave.
  bool Handle(const std::string& raw) {
    const std::string line = Trim(raw);
    if (line.empty()) return true;
    if (line.front() == '/') {
      const auto space = line.find(' ');
      const std::string command = line.substr(0, space);
      const std::string arg = space == std::string::npos ? "" : Trim(line.substr(space + 1));
      if (command == "/quit" || command == "/exit") return false;
      Command(command, arg);
    } else {
      ChatTurn(line);
    }
    io_.out.flush();
    return true;
  }

 private:
  static std::string Trim(std::string_view s) {
    const auto b = s.find_first_not_of(" \t\r\n");
    if (b == std::string_view::npos) return "";
    const auto e = s.find_last_not_of(" \t\r\n");
    return std::string(s.substr(b, e - b + 1));
  }

  void Fail(const Status& st) {
    io_.err << style_.Error("error: " + st.message()) << '\n';
    io_.err.flush();
  }

  // The reply is printed as it comes: a model's answer piece by piece, the memory-only answer
  // whole.
  void ChatTurn(const std::string& line) {
    bool printing = false;
    const auto print = [&](std::string_view piece) {
      if (!printing) io_.out << style_.ReplyOpen();
      printing = true;
      io_.out << piece;
      io_.out.flush();
    };
    auto turn = rt_.chat().Turn(ns_, session_id_, line, /*retrieve=*/true, print);
    if (printing) io_.out << style_.ReplyClose() << '\n';
    if (!turn.ok()) return Fail(turn.status());
  }

  void Command(const std::string& command, const std::string& arg) {
    if (command == "/help") {
      io_.out << kHelp;
    } else if (command == "/search") {
      Search(arg);
    } else if (command == "/remember") {
      Remember(arg);
    } else if (command == "/forget") {
      Forget(arg);
    } else if (command == "/history") {
      History(arg);
    } else if (command == "/stats") {
      Stats();
    } else if (command == "/health") {
      Health();
    } else if (command == "/session") {
      io_.out << "session " << session_id_ << '\n';
    } else {
      Fail(InvalidArgumentError("unknown command " + command + "; type /help for the list"));
    }
  }

  void Search(const std::string& query) {
    if (query.empty()) return Fail(InvalidArgumentError("usage: /search <query>"));
    SearchRequest r;
    r.ns = ns_;
    r.query = query;
    r.top_k = static_cast<std::size_t>(rt_.config().retrieval.default_top_k);
    auto hits = rt_.bank().Search(r);
    if (!hits.ok()) return Fail(hits.status());
    if (hits->empty()) io_.out << "no matching memories\n";
    int rank = 0;
    for (const auto& h : *hits) {
      io_.out << fmt::format("{:2d}. {:.2f}  {}  {}\n", ++rank, h.similarity,
                             style_.Dim(h.entry.id), OneLine(h.entry.content, 72));
    }
  }

  void Remember(const std::string& text) {
    if (text.empty()) return Fail(InvalidArgumentError("usage: /remember <text>"));
    AddRequest r;
    r.ns = ns_;
    r.content = text;
    r.source = "chat";
    auto w = rt_.bank().Add(r);
    if (!w.ok()) return Fail(w.status());
    switch (w->action) {
      case WriteAction::kAdd:
        io_.out << "remembered (" << w->memory_id << ")\n";
        break;
      case WriteAction::kUpdate:
        io_.out << "updated " << w->memory_id << "\n";
        break;
      case WriteAction::kNoop:
        io_.out << "already known (" << w->memory_id << ")\n";
        break;
      case WriteAction::kDelete:
        PrintForgotten(*w);
        break;
    }
  }

  void Forget(const std::string& arg) {
    if (arg.empty()) return Fail(InvalidArgumentError("usage: /forget <id or text>"));
    if (IsUuid(arg)) {
      Status st = rt_.bank().Forget(ns_, arg);
      if (!st.ok()) return Fail(st);
      io_.out << "forgot " << arg << " and all its history\n";
      return;
    }
    // Through the write head, exactly as the message "forget <text>" would go.
    const std::string request = "forget " + arg;
    if (!ParseForgetRequest(request)) {
      return Fail(InvalidArgumentError("cannot tell what to forget in \"" + arg + "\""));
    }
    AddRequest r;
    r.ns = ns_;
    r.content = request;
    r.source = "chat";
    auto w = rt_.bank().Add(r);
    if (!w.ok()) return Fail(w.status());
    PrintForgotten(*w);
  }

  void PrintForgotten(const WriteOutcome& w) {
    if (w.action != WriteAction::kDelete || w.memory_id.empty()) {
      io_.out << "nothing matched, nothing forgotten\n";
      return;
    }
    std::string what;
    if (auto history = rt_.bank().History(ns_, w.memory_id); history.ok() && !history->empty()) {
      what = ": " + OneLine(history->back().content, 72);
    }
    io_.out << "forgot " << w.memory_id << what << '\n';
  }

  void History(const std::string& id) {
    if (id.empty()) return Fail(InvalidArgumentError("usage: /history <id>"));
    auto history = rt_.bank().History(ns_, id);
    if (!history.ok()) return Fail(history.status());
    if (history->empty()) return Fail(NotFoundError("no memory or history with id " + id));
    for (const auto& h : *history) {
      io_.out << fmt::format("v{} {:<6} {}  {}\n", h.version, HistoryActionName(h.action),
                             FormatTimestamp(h.at_ms).substr(0, 19), OneLine(h.content, 64));
    }
  }

  void Stats() {
    const BankStats s = rt_.bank().Stats();
    const NamespaceStats* mine = nullptr;
    for (const auto& n : s.namespaces) {
      if (n.ns == ns_) mine = &n;
    }
    const NamespaceStats empty;
    const NamespaceStats& n = mine != nullptr ? *mine : empty;
    io_.out << fmt::format(
        "memories: {} in \"{}\" ({} in all), utilization {:.1f}% of {}, reads {}, writes {}\n",
        n.total_memories, ns_, s.overall.total_memories, n.utilization * 100.0, s.memory_size,
        n.reads, n.writes);
  }

  // The checks `mann serve` reports on /health?detail=1, with the store's full integrity check
  // (a person asked, so the time is well spent).
  void Health() {
    if (!health_) {
      auto checker = std::make_unique<monitor::HealthChecker>();
      Status st = RegisterServiceChecks(*checker, rt_, {.storage_integrity = true, .system = true});
      if (!st.ok()) return Fail(st);
      health_ = std::move(checker);
    }
    io_.out << FormatHealthReport(health_->RunAll());
  }

  runtime::Runtime& rt_;
  const std::string& ns_;
  Io& io_;
  Style style_;
  std::string session_id_;
  std::unique_ptr<monitor::HealthChecker> health_;  // made by the first /health
};

}  // namespace

int RunChat(runtime::Runtime& rt, const std::string& ns, const ChatArgs& args, Io& io,
            const config::Environment& env) {
  std::string session_id;
  if (args.session) {
    Status st = rt.chat().ResumeSession(*args.session, ns);
    if (!st.ok()) return ReportError(io.err, st);
    session_id = *args.session;
  } else {
    auto started = rt.chat().StartSession(ns);
    if (!started.ok()) return ReportError(io.err, started.status());
    session_id = std::move(started).value();
  }

  std::unique_ptr<LineReader> reader;
  if (io.in_is_tty) {
    UseUtf8Locale();
    reader = MakeEditLineReader(rt.config().chat.history_file);
  } else {
    reader = MakeStreamReader(std::cin);
  }

  ChatShell shell(rt, ns, io, Style{ColorAllowed(io.out_is_tty, env, args.no_color)}, session_id);
  shell.Banner();
  while (auto line = reader->Read("you> ")) {
    reader->Remember(*line);
    if (!shell.Handle(*line)) return kExitOk;
  }
  // Ctrl-D leaves the cursor after the prompt; end the line so the shell prompt starts clean.
  if (io.in_is_tty) io.out << '\n';
  return kExitOk;
}

}  // namespace mann::cli
