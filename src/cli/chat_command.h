// `mann chat`: the interactive terminal chat over the memory bank.
//
// Every line that is not a slash command is one ChatEngine turn; its reply is printed. The
// session (both sides of every turn) is stored, so `--session ID` resumes it later. Slash
// commands inspect and edit memory directly:
//   /help  /stats  /health  /search <query>  /remember <text>  /forget <id or text>
//   /history <id>  /session  /quit (also /exit, Ctrl-D)
// `/forget <id>` purges that entry and its history; `/forget <text>` asks the write head to
// forget the best matching memory (as the message "forget <text>" would), keeping its history.
//
// Colour is used only when standard output is a terminal, NO_COLOR is unset or empty and
// --no-color was not given. With standard input not a terminal, lines are read plainly and no
// prompt is printed.
#pragma once

#include <optional>
#include <string>

#include <mann/config/config.h>
#include <mann/runtime/runtime.h>

#include "context.h"

namespace mann::cli {

struct ChatArgs {
  std::optional<std::string> session;  // resume this session
  bool no_color = false;
};

int RunChat(runtime::Runtime& rt, const std::string& ns, const ChatArgs& args, Io& io,
            const config::Environment& env);

}  // namespace mann::cli
