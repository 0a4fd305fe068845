// `mann memory ...`, `mann stats` and the hidden `mann debug ...` commands, independent of the
// argument parser: each takes its parsed arguments, an open Runtime and the output streams, and
// returns the process exit code (see context.h).
//
// With `json` set a command prints exactly one JSON document on standard output; otherwise
// readable text. Errors always go to standard error.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <vector>

#include <mann/runtime/runtime.h>

#include "context.h"

namespace mann::cli {

struct CommandEnv {
  runtime::Runtime& rt;
  const std::string& ns;
  Io& io;
  bool json = false;
  double open_seconds = 0;  // how long opening the runtime took (re-embedding included)
};

struct AddArgs {
  std::string content;
  std::string context;
  std::vector<std::string> tags;
  double importance = 1.0;
  std::optional<std::string> metadata;  // a JSON object
};
int RunAdd(CommandEnv& env, const AddArgs& args);

int RunGet(CommandEnv& env, const std::string& id);

struct ListArgs {
  std::vector<std::string> tags;
  std::optional<std::string> since;
  std::optional<std::string> until;
  std::optional<std::string> meta;  // KEY or KEY=JSONVALUE
  std::size_t limit = 50;
  std::string cursor;
};
int RunList(CommandEnv& env, const ListArgs& args);

struct SearchArgs {
  std::string query;
  std::optional<std::size_t> top_k;  // default: retrieval.default_top_k
  double min_similarity = 0.0;
};
int RunSearch(CommandEnv& env, const SearchArgs& args);

struct UpdateArgs {
  std::string id;
  std::optional<std::string> content;
  std::optional<std::string> context;
  std::optional<std::vector<std::string>> tags;
  std::optional<double> importance;
  std::optional<std::string> metadata;
};
int RunUpdate(CommandEnv& env, const UpdateArgs& args);

int RunDelete(CommandEnv& env, const std::string& id);
int RunForget(CommandEnv& env, const std::string& id);
int RunHistory(CommandEnv& env, const std::string& id);

// JSON Lines in, one entry per line; "-" reads standard input. Lines with an "id" restore that
// entry exactly (id, times, usage, version); lines without one are added as new entries. Both
// bypass the write head. A bad line is reported with its number and skipped; the run continues
// and exits 1 when any line failed. Entries whose id already exists are skipped, not replaced.
struct ImportArgs {
  std::string file;  // path or "-"
};
int RunImport(CommandEnv& env, const ImportArgs& args, std::istream& in);

struct ExportArgs {
  std::string file = "-";  // path or "-"
  bool all_namespaces = false;
};
int RunExport(CommandEnv& env, const ExportArgs& args);

int RunStats(CommandEnv& env);

// Reports what opening the runtime re-embedded: every memory whose vector was not made by the
// lane its text belongs to (or all of them, when the runtime was opened with reembed_all).
// Fails, re-embedding nothing durably, when the configured encoder is unavailable.
int RunReindex(CommandEnv& env);

// Adds `count` memories one after another (write head bypassed), printing `ack <id>` and
// flushing after each acknowledged write: the durability test kills it mid-stream.
int RunDebugWriteStream(CommandEnv& env, std::size_t count);

// Runs the store's integrity check; prints "ok".
int RunDebugCheck(CommandEnv& env);

}  // namespace mann::cli
