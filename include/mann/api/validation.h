// Reading API request bodies and query strings into typed values, and turning the core's Status
// into the HTTP answer a client sees.
//
// A FieldReader checks one JSON object field by field and keeps going after a bad field, so a
// 422 lists every problem of the request at once, as FastAPI (whose clients we serve) does:
//
//   api::FieldReader in(body, "body");
//   auto content = in.String("content", {.required = true, .min_length = 1});
//   auto importance = in.Number("importance_weight", {.min = 0, .max = 3});
//   if (!in.ok()) return server::ValidationError(in.errors());
//
// A field that is absent, or null, yields std::nullopt (and a "missing" error when required).
// Unknown fields are ignored. Error types and messages follow pydantic 2: "missing",
// "string_type", "int_type", "float_type", "bool_type", "list_type", "dict_type",
// "string_too_short", "greater_than_equal", "less_than_equal".
//
// Thread-safety: a FieldReader is a value used by one thread; the free functions are pure.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <mann/core/status.h>
#include <mann/server/http_message.h>

namespace mann::api {

struct StringRule {
  bool required = false;
  std::size_t min_length = 0;  // in bytes; 1 makes "" a "string_too_short" error
};

struct NumberRule {
  bool required = false;
  std::optional<double> min;  // inclusive
  std::optional<double> max;  // inclusive
};

class FieldReader {
 public:
  // Reads the fields of `value`, which must be an object (else one "dict_type" error at
  // [location]). `location` is the first element of every error's loc: "body" or "query".
  FieldReader(const boost::json::value& value, std::string location);
  // Reads query parameters as strings; numbers and booleans are parsed from their text.
  FieldReader(const server::QueryParams& query);

  std::optional<std::string> String(std::string_view field, StringRule rule = {});
  std::optional<double> Number(std::string_view field, NumberRule rule = {});
  // An integer; a JSON number with a fraction is an "int_type" error.
  std::optional<std::int64_t> Integer(std::string_view field, NumberRule rule = {});
  std::optional<bool> Bool(std::string_view field, bool required = false);
  // A list of strings; a bad item is reported at its index: ["body", "tags", 2].
  std::optional<std::vector<std::string>> StringList(std::string_view field);
  std::optional<boost::json::object> Object(std::string_view field);

  // Records an error found by the caller (e.g. a relation between two fields).
  void AddError(std::string_view field, std::string msg, std::string type);

  bool ok() const { return errors_.empty(); }
  const std::vector<server::FieldError>& errors() const { return errors_; }

 private:
  // The field's value; nullptr when absent or null (recording "missing" when required).
  const boost::json::value* Find(std::string_view field, bool required);
  boost::json::array Loc(std::string_view field) const;

  boost::json::object fields_;
  bool from_query_ = false;
  bool root_is_object_ = true;  // false: the one error is the root's, fields are not looked at
  std::string location_;
  std::vector<server::FieldError> errors_;
};

// The one place that maps the core's Status onto HTTP. `location` is where the request's
// fields came from ("body" or "query"), for the loc of a 422.
//   InvalidArgument      422, one item at [location, <the field the message starts with>]
//   NotFound             404 with the message
//   AlreadyExists        409
//   PermissionDenied     403
//   FailedPrecondition, ResourceExhausted, Unavailable, DataLoss
//                        503 "storage unavailable: <message>" (a condition of the service, not
//                        of the request; a retry elsewhere or later may succeed)
//   Internal             500, with the cause logged and not shown
server::Response ErrorFromStatus(const Status& status, std::string_view location = "body");

// The field a core validation message names: its leading identifier ("importance_weight must
// lie in [0, 3]" -> "importance_weight"); empty when the message does not start with one.
std::string FieldOfMessage(std::string_view message);

}  // namespace mann::api
