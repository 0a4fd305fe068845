// Test support: runs part of a test as an unprivileged user, so that permission checks (a
// read-only directory, an unreadable file) are exercised even when the test binary runs as root,
// as it does in CI, where root ignores file permission bits.
//
// Header-only on purpose and included only by *_test.cc files: CMake compiles every
// src/core/*.cc into mann_lib, which must not carry fork/setuid code.
//
// Thread-safety: RunUnprivileged forks, so call it only while the process has one thread. In
// particular no SqliteStore may be open in the parent at that moment: its writer thread would not
// exist in the child, and any lock it held would stay held there forever.
#pragma once

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <utility>

#include <fcntl.h>
#include <grp.h>
#include <poll.h>
#include <signal.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <mann/core/status.h>

namespace mann::test_support {

// nobody / nogroup on Debian; any unprivileged ids would do.
inline constexpr uid_t kUnprivilegedUid = 65534;
inline constexpr gid_t kUnprivilegedGid = 65534;

inline bool RunningAsRoot() { return geteuid() == 0; }

// As root, makes kUnprivilegedUid/Gid the owner of `path` and of everything below it, so that the
// owner permission bits a test then sets apply to the child of RunUnprivileged exactly as they
// would to an ordinary user running the test. Does nothing when not root. Every ancestor of `path`
// must already be traversable by others (::testing::TempDir() is /tmp/ unless TEST_TMPDIR says
// otherwise). Returns kInternal naming the path when a chown fails.
inline Status GiveToUnprivilegedUser(const std::filesystem::path& path) {
  if (!RunningAsRoot()) return Status::Ok();
  auto give = [](const std::filesystem::path& p) -> Status {
    if (lchown(p.c_str(), kUnprivilegedUid, kUnprivilegedGid) != 0) {
      return InternalError("chown " + p.string() + " to uid " + std::to_string(kUnprivilegedUid) +
                           " failed: " + std::strerror(errno));
    }
    return Status::Ok();
  };
  MANN_RETURN_IF_ERROR(give(path));
  std::error_code ec;
  if (!std::filesystem::is_directory(std::filesystem::symlink_status(path, ec))) {
    return Status::Ok();
  }
  for (const auto& entry : std::filesystem::recursive_directory_iterator(path, ec)) {
    MANN_RETURN_IF_ERROR(give(entry.path()));
  }
  if (ec) return InternalError("listing " + path.string() + " failed: " + ec.message());
  return Status::Ok();
}

namespace internal {

inline bool WriteAll(int fd, const void* data, size_t size) {
  const char* p = static_cast<const char*>(data);
  while (size > 0) {
    const ssize_t n = write(fd, p, size);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    p += n;
    size -= static_cast<size_t>(n);
  }
  return true;
}

// Report format on the pipe: the code as an int32, then the message bytes up to EOF.
[[noreturn]] inline void ReportAndExit(int fd, const Status& status) {
  const auto code = static_cast<int32_t>(status.code());
  const bool sent = WriteAll(fd, &code, sizeof code) &&
                    WriteAll(fd, status.message().data(), status.message().size());
  // _exit, not exit: the child must not run the parent's atexit handlers, flush its stdio
  // buffers or let the leak checker report the parent's memory a second time.
  _exit(sent ? 0 : 1);
}

inline Status DropPrivileges() {
  if (setgroups(0, nullptr) != 0 || setgid(kUnprivilegedGid) != 0 ||
      setuid(kUnprivilegedUid) != 0) {
    return InternalError("unprivileged child: could not drop to uid " +
                         std::to_string(kUnprivilegedUid) + ": " + std::strerror(errno));
  }
  // A setuid that silently kept root would make every permission test pass for nothing.
  if (geteuid() == 0 || getegid() == 0) {
    return InternalError("unprivileged child: still root after setuid");
  }
  return Status::Ok();
}

inline std::string DescribeWaitStatus(int wstatus) {
  if (WIFSIGNALED(wstatus)) return "killed by signal " + std::to_string(WTERMSIG(wstatus));
  if (WIFEXITED(wstatus)) return "exited with code " + std::to_string(WEXITSTATUS(wstatus));
  return "stopped";
}

}  // namespace internal

// Runs `fn` and returns the Status it returns.
//
// When not root, `fn` simply runs in this process. As root, it runs in a forked child that first
// drops to kUnprivilegedUid/Gid with no supplementary groups; the child's Status comes back
// through a pipe. `fn` must therefore only compute and return: gtest assertions made inside it
// would be lost with the child, and anything it changes in memory stays in the child.
//
// Returns kInternal, with a message starting "unprivileged child", when privileges cannot be
// dropped, when the child dies without reporting, or when it takes longer than `timeout` (it is
// then killed).
inline Status RunUnprivileged(const std::function<Status()>& fn,
                              std::chrono::milliseconds timeout = std::chrono::seconds(30)) {
  if (!RunningAsRoot()) return fn();

  int fds[2];
  if (pipe2(fds, O_CLOEXEC) != 0) {
    return InternalError(std::string("unprivileged child: pipe failed: ") + std::strerror(errno));
  }
  // Anything still buffered would otherwise be written twice if the child flushed it.
  std::fflush(nullptr);
  const pid_t pid = fork();
  if (pid < 0) {
    const int fork_errno = errno;
    close(fds[0]);
    close(fds[1]);
    return InternalError(std::string("unprivileged child: fork failed: ") +
                         std::strerror(fork_errno));
  }

  // Child: report and leave. An exception must not unwind into gtest, which would catch it and
  // carry on running the rest of the suite in the child.
  if (pid == 0) {
    close(fds[0]);
    Status dropped = internal::DropPrivileges();
    if (!dropped.ok()) internal::ReportAndExit(fds[1], dropped);
    try {
      internal::ReportAndExit(fds[1], fn());
    } catch (...) {
      internal::ReportAndExit(fds[1], InternalError("unprivileged child: the function threw"));
    }
  }

  // Parent: read the report until EOF, then reap the child, all within `timeout`.
  close(fds[1]);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  auto remaining_ms = [&] {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<int64_t>(0, left.count()));
  };
  std::string report;
  bool timed_out = false;
  for (;;) {
    pollfd pfd{fds[0], POLLIN, 0};
    const int ready = poll(&pfd, 1, remaining_ms());
    if (ready < 0 && errno == EINTR) continue;
    if (ready <= 0) {
      timed_out = true;
      break;
    }
    char buf[4096];
    const ssize_t n = read(fds[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    report.append(buf, static_cast<size_t>(n));
  }
  close(fds[0]);

  int wstatus = 0;
  for (;;) {
    const pid_t done = waitpid(pid, &wstatus, WNOHANG);
    if (done == pid || (done < 0 && errno != EINTR)) break;
    if (timed_out || remaining_ms() == 0) {
      timed_out = true;
      kill(pid, SIGKILL);
      waitpid(pid, &wstatus, 0);
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  }
  if (timed_out) {
    return InternalError("unprivileged child: no report within " + std::to_string(timeout.count()) +
                         " ms; killed");
  }

  int32_t code = 0;
  if (report.size() < sizeof code || !WIFEXITED(wstatus) || WEXITSTATUS(wstatus) != 0) {
    return InternalError("unprivileged child: " + internal::DescribeWaitStatus(wstatus) +
                         " without a complete report");
  }
  std::memcpy(&code, report.data(), sizeof code);
  if (code < static_cast<int32_t>(StatusCode::kOk) ||
      code > static_cast<int32_t>(StatusCode::kInternal)) {
    return InternalError("unprivileged child: reported unknown status code " +
                         std::to_string(code));
  }
  if (code == static_cast<int32_t>(StatusCode::kOk)) return Status::Ok();
  return Status(static_cast<StatusCode>(code), report.substr(sizeof code));
}

}  // namespace mann::test_support
