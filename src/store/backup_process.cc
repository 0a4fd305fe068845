// Running other programs for backups (an upload command, pg_dump, pg_restore): argv only,
// never a shell, so a path with spaces or quotes stays one argument.

#include <cerrno>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mann/store/backup.h>

extern char** environ;

namespace mann::store {
namespace {

namespace fs = std::filesystem;
using SteadyClock = std::chrono::steady_clock;

constexpr std::size_t kStderrTail = 4096;

// The last line of a program's standard error with text in it, for an error message.
std::string OneLineTail(const std::string& text) {
  std::size_t end = text.find_last_not_of(" \t\r\n");
  if (end == std::string::npos) return "";
  const std::size_t newline = text.rfind('\n', end);
  const std::size_t begin = newline == std::string::npos ? 0 : newline + 1;
  return text.substr(begin, end + 1 - begin);
}

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
                                  const std::vector<std::string>& env, bool capture_stderr,
                                  const ProcessLimits& limits) {
  if (argv.empty() || argv.front().empty()) return InvalidArgumentError("no program to run");
  if (limits.time_limit.count() < 0 || limits.grace.count() < 0) {
    return InvalidArgumentError("a process time limit and its grace period must not be negative");
  }
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
  // With a time limit the child leads a process group of its own, so that what it started (a
  // script's upload tool) is stopped with it rather than left running.
  const bool limited = limits.time_limit.count() > 0;
  posix_spawnattr_t attributes;
  posix_spawnattr_init(&attributes);
  if (limited) {
    posix_spawnattr_setflags(&attributes, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&attributes, 0);
  }

  pid_t pid = 0;
  const int rc = ::posix_spawnp(&pid, args.front().c_str(), &actions, &attributes,
                                arg_pointers.data(), env_pointers.data());
  posix_spawn_file_actions_destroy(&actions);
  posix_spawnattr_destroy(&attributes);
  if (capture_stderr) ::close(err_pipe[1]);
  if (rc != 0) {
    if (capture_stderr) ::close(err_pipe[0]);
    return FailedPreconditionError(
        fmt::format("cannot run {}: {}", args.front(), std::strerror(rc)));
  }

  ProcessOutcome outcome;
  int err_fd = capture_stderr ? err_pipe[0] : -1;
  // Appends what the pipe holds; closes it at end of file. `wait_ms` bounds the wait for data.
  auto read_stderr = [&](int wait_ms) {
    pollfd entry{err_fd, POLLIN, 0};
    const int ready = ::poll(&entry, 1, wait_ms);
    if (ready <= 0) return;
    char buffer[4096];
    const ssize_t n = ::read(err_fd, buffer, sizeof buffer);
    if (n < 0 && errno == EINTR) return;
    if (n <= 0) {
      ::close(err_fd);
      err_fd = -1;
      return;
    }
    outcome.stderr_tail.append(buffer, static_cast<std::size_t>(n));
    if (outcome.stderr_tail.size() > 2 * kStderrTail) {
      outcome.stderr_tail.erase(0, outcome.stderr_tail.size() - kStderrTail);
    }
  };

  // Wait for the child; past the limit, SIGTERM to its group, and SIGKILL once the grace period
  // is over too. Checked every kTick at least, so an expiry is noticed within that.
  constexpr auto kTick = std::chrono::milliseconds(100);
  const auto started = SteadyClock::now();
  const auto term_at = started + limits.time_limit;
  auto kill_at = SteadyClock::time_point::max();
  enum class Stop { kNone, kTerminated, kKilled } stop = Stop::kNone;
  int status = 0;
  for (;;) {
    const pid_t waited = ::waitpid(pid, &status, WNOHANG);
    if (waited == pid) break;
    if (waited < 0 && errno != EINTR) {
      const int error = errno;
      if (err_fd >= 0) ::close(err_fd);
      return InternalError(fmt::format("waitpid for {}: {}", args.front(), std::strerror(error)));
    }
    const auto now = SteadyClock::now();
    if (limited && stop == Stop::kNone && now >= term_at) {
      ::kill(-pid, SIGTERM);
      stop = Stop::kTerminated;
      kill_at = now + limits.grace;
    } else if (stop == Stop::kTerminated && now >= kill_at) {
      ::kill(-pid, SIGKILL);
      stop = Stop::kKilled;
    }
    if (err_fd >= 0) {
      read_stderr(static_cast<int>(kTick.count()));
    } else {
      ::poll(nullptr, 0, static_cast<int>(kTick.count()));
    }
  }
  // A stopped child's group may hold members that ignored SIGTERM; none may outlive the run.
  if (stop != Stop::kNone) ::kill(-pid, SIGKILL);
  // What is already in the pipe; a descendant still holding it open must not hold us.
  for (int i = 0; err_fd >= 0 && i < 1024; ++i) {
    const std::size_t before = outcome.stderr_tail.size();
    read_stderr(0);
    if (err_fd >= 0 && outcome.stderr_tail.size() == before) break;
  }
  if (err_fd >= 0) ::close(err_fd);
  if (outcome.stderr_tail.size() > kStderrTail) {
    outcome.stderr_tail.erase(0, outcome.stderr_tail.size() - kStderrTail);
  }
  if (WIFEXITED(status)) outcome.exit_code = WEXITSTATUS(status);
  if (WIFSIGNALED(status)) outcome.signal = WTERMSIG(status);

  if (stop != Stop::kNone) {
    const auto limit_s = std::chrono::duration<double>(limits.time_limit).count();
    const auto grace_s = std::chrono::duration<double>(limits.grace).count();
    return UnavailableError(fmt::format(
        "{} did not finish within {:g} s{}; it was stopped with {}{}",
        fs::path(args.front()).filename().string(), limit_s,
        limits.limit_key.empty() ? "" : fmt::format(" ({})", limits.limit_key),
        stop == Stop::kKilled ? fmt::format("SIGKILL, {:g} s after a SIGTERM it ignored", grace_s)
                              : std::string("SIGTERM"),
        outcome.stderr_tail.empty() ? "" : fmt::format(": {}", OneLineTail(outcome.stderr_tail))));
  }
  return outcome;
}

}  // namespace mann::store
