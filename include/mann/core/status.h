// Status and Result: the one way expected failures travel through mann.
//
// A Status is a canonical code plus a human-readable message. Messages are written for the
// operator: they name the thing that failed (a file, a field, an id) and, where there is one,
// what to do about it. Result<T> holds either a value or a non-OK Status.
//
// Both are [[nodiscard]]: a caller that really means to drop an error writes
// `status.IgnoreError();` so the swallow can be found with grep.
//
// Thread-safety: values, safe to copy between threads.
#pragma once

#include <cassert>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace mann {

enum class StatusCode {
  kOk = 0,
  kInvalidArgument,     // the caller's input is wrong; retrying it unchanged cannot help
  kNotFound,            // the named thing does not exist (in this namespace)
  kAlreadyExists,       // a create collided with an existing thing
  kFailedPrecondition,  // the system is not in a state where this can run (e.g. read-only file)
  kResourceExhausted,   // out of space, over a limit, over a quota
  kUnavailable,         // transient: locked, busy, unreachable; retrying later may help
  kDataLoss,            // stored data is corrupt or unreadable
  kPermissionDenied,    // the caller may not do this
  kInternal,            // a bug: an invariant broke
};

// Stable lower-case name of a code ("invalid_argument"), for logs and JSON.
std::string_view StatusCodeName(StatusCode code);

class [[nodiscard]] Status {
 public:
  Status() = default;  // OK
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() { return {}; }

  bool ok() const { return code_ == StatusCode::kOk; }
  StatusCode code() const { return code_; }
  const std::string& message() const { return message_; }

  // "invalid_argument: importance_weight must lie in [0, 3], got 4".
  std::string ToString() const;

  // Returns a copy whose message is prefixed by `context` and ": ".
  Status WithContext(std::string_view context) const;

  // Marks a deliberate swallow of an error.
  void IgnoreError() const {}

  friend bool operator==(const Status& a, const Status& b) {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

inline Status InvalidArgumentError(std::string m) {
  return {StatusCode::kInvalidArgument, std::move(m)};
}
inline Status NotFoundError(std::string m) { return {StatusCode::kNotFound, std::move(m)}; }
inline Status AlreadyExistsError(std::string m) {
  return {StatusCode::kAlreadyExists, std::move(m)};
}
inline Status FailedPreconditionError(std::string m) {
  return {StatusCode::kFailedPrecondition, std::move(m)};
}
inline Status ResourceExhaustedError(std::string m) {
  return {StatusCode::kResourceExhausted, std::move(m)};
}
inline Status UnavailableError(std::string m) { return {StatusCode::kUnavailable, std::move(m)}; }
inline Status DataLossError(std::string m) { return {StatusCode::kDataLoss, std::move(m)}; }
inline Status PermissionDeniedError(std::string m) {
  return {StatusCode::kPermissionDenied, std::move(m)};
}
inline Status InternalError(std::string m) { return {StatusCode::kInternal, std::move(m)}; }

// Either a T or a non-OK Status. Accessing the value of an error Result is a bug (asserted).
template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : data_(std::move(value)) {}        // NOLINT: implicit by design
  Result(Status status) : data_(std::move(status)) {  // NOLINT: implicit by design
    assert(!std::get<Status>(data_).ok() && "Result constructed from an OK status");
  }

  bool ok() const { return std::holds_alternative<T>(data_); }
  explicit operator bool() const { return ok(); }

  // The error; OK when the Result holds a value.
  Status status() const { return ok() ? Status::Ok() : std::get<Status>(data_); }

  T& value() & {
    assert(ok());
    return std::get<T>(data_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<T>(data_);
  }
  T&& value() && {
    assert(ok());
    return std::get<T>(std::move(data_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  void IgnoreError() const {}

 private:
  std::variant<T, Status> data_;
};

}  // namespace mann

// Evaluates `expr` (a Status); returns it from the enclosing function when it is not OK.
#define MANN_RETURN_IF_ERROR(expr)               \
  do {                                           \
    ::mann::Status mann_status_ = (expr);        \
    if (!mann_status_.ok()) return mann_status_; \
  } while (0)

#define MANN_CONCAT_INNER_(a, b) a##b
#define MANN_CONCAT_(a, b) MANN_CONCAT_INNER_(a, b)

// `MANN_ASSIGN_OR_RETURN(auto x, MakeX());` binds the value or returns the error.
#define MANN_ASSIGN_OR_RETURN(lhs, expr) \
  MANN_ASSIGN_OR_RETURN_IMPL_(MANN_CONCAT_(mann_result_, __LINE__), lhs, expr)
#define MANN_ASSIGN_OR_RETURN_IMPL_(tmp, lhs, expr) \
  auto tmp = (expr);                                \
  if (!tmp.ok()) return tmp.status();               \
  lhs = std::move(tmp).value()
