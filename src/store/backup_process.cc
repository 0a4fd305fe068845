// Running other programs for backups (an upload command, pg_dump, pg_restore): argv only,
// never a shell, so a path with spaces or quotes stays one argument.

#include <cerrno>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <fcntl.h>
#include <fmt/format.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mann/store/backup.h>

extern char** environ;

namespace mann::store {
namespace {

constexpr std::size_t kStderrTail = 4096;

// The process environment with `extra` ("NAME=value") replacing variables of the same name.
std::vector<std::string> MergedEnvironment(const std::vector<std::string>& extra) {
  std::map<std::string, std::string> merged;
  auto add = [&](const std::string& entry) {
    const auto eq = entry.find('=');
    if (eq == std::string::npos) return;
    merged[entry.substr(0, eq)] = entry;
  };
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) add(*e);
  for (const std::string& entry : extra) add(entry);
  std::vector<std::string> out;
  out.reserve(merged.size());
  for (auto& [name, entry] : merged) out.push_back(std::move(entry));
  return out;
}

std::vector<char*> Pointers(std::vector<std::string>& strings) {
  std::vector<char*> out;
  out.reserve(strings.size() + 1);
  for (std::string& s : strings) out.push_back(s.data());
  out.push_back(nullptr);
  return out;
}

}  // namespace

Result<std::vector<std::string>> SplitCommandLine(std::string_view text) {
  std::vector<std::string> words;
  std::string word;
  bool in_word = false;
  char quote = 0;
  for (std::size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (quote == '\'') {
      if (c == '\'') {
        quote = 0;
      } else {
        word += c;
      }
      continue;
    }
    if (c == '\\') {
      // Inside double quotes a backslash escapes only what the shell lets it escape.
      const bool escapes =
          i + 1 < text.size() && (quote == 0 || std::strchr("\"\\$`", text[i + 1]) != nullptr);
      if (escapes) {
        word += text[++i];
      } else {
        word += c;
      }
      in_word = true;
      continue;
    }
    if (quote == '"') {
      if (c == '"') {
        quote = 0;
      } else {
        word += c;
      }
      continue;
    }
    if (c == '\'' || c == '"') {
      quote = c;
      in_word = true;
      continue;
    }
    if (c == ' ' || c == '\t' || c == '\n') {
      if (in_word) words.push_back(std::move(word));
      word.clear();
      in_word = false;
      continue;
    }
    word += c;
    in_word = true;
  }
  if (quote != 0) {
    return InvalidArgumentError(fmt::format("unterminated {} quote", quote == '"' ? "\"" : "'"));
  }
  if (in_word) words.push_back(std::move(word));
  if (words.empty()) return InvalidArgumentError("the command is empty");
  return words;
}

Result<ProcessOutcome> RunProcess(const std::vector<std::string>& argv,
                                  const std::vector<std::string>& env, bool capture_stderr) {
  if (argv.empty() || argv.front().empty()) return InvalidArgumentError("no program to run");
  std::vector<std::string> args = argv;
  std::vector<std::string> environment = MergedEnvironment(env);
  std::vector<char*> arg_pointers = Pointers(args);
  std::vector<char*> env_pointers = Pointers(environment);

  int err_pipe[2] = {-1, -1};
  if (capture_stderr && ::pipe2(err_pipe, O_CLOEXEC) != 0) {
    return UnavailableError(fmt::format("cannot create a pipe: {}", std::strerror(errno)));
  }
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // Our standard output may be a JSON document (--json): the child's goes to standard error.
  posix_spawn_file_actions_adddup2(&actions, STDERR_FILENO, STDOUT_FILENO);
  if (capture_stderr) posix_spawn_file_actions_adddup2(&actions, err_pipe[1], STDERR_FILENO);

  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, args.front().c_str(), &actions, nullptr, arg_pointers.data(),
                                env_pointers.data());
  posix_spawn_file_actions_destroy(&actions);
  if (capture_stderr) ::close(err_pipe[1]);
  if (rc != 0) {
    if (capture_stderr) ::close(err_pipe[0]);
    return FailedPreconditionError(
        fmt::format("cannot run {}: {}", args.front(), std::strerror(rc)));
  }

  ProcessOutcome outcome;
  if (capture_stderr) {
    char buffer[4096];
    for (;;) {
      const ssize_t n = ::read(err_pipe[0], buffer, sizeof buffer);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) break;
      outcome.stderr_tail.append(buffer, static_cast<std::size_t>(n));
      if (outcome.stderr_tail.size() > 2 * kStderrTail) {
        outcome.stderr_tail.erase(0, outcome.stderr_tail.size() - kStderrTail);
      }
    }
    ::close(err_pipe[0]);
    if (outcome.stderr_tail.size() > kStderrTail) {
      outcome.stderr_tail.erase(0, outcome.stderr_tail.size() - kStderrTail);
    }
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      return InternalError(fmt::format("waitpid for {}: {}", args.front(), std::strerror(errno)));
    }
  }
  if (WIFEXITED(status)) outcome.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) outcome.signal = WTERMSIG(status);
  return outcome;
}

}  // namespace mann::store
