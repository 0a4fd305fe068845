// The `mann` command line: argument parsing (CLI11) and dispatch to the commands.
//
//   mann [--config PATH] [--data-dir DIR] [--log-level LEVEL] [--set KEY=VALUE]... [-u NS]
//        chat | memory <add|get|list|search|update|delete|forget|history|import|export>
//        | config show | stats
//
// Global options may also follow the subcommand. Exit codes are those of context.h.
#pragma once

namespace mann::cli {

// Runs the command line and returns the process exit code. Reads the process environment.
int Main(int argc, char** argv);

}  // namespace mann::cli
