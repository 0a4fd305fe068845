#include <charconv>
#include <cmath>

#include <fmt/format.h>

#include <mann/api/validation.h>
#include <mann/core/log.h>
#include <mann/metrics/registry.h>

namespace mann::api {
namespace {

namespace json = boost::json;

// Numbers in messages as pydantic writes them: 3, not 3.000000.
std::string Num(double v) { return metrics::FormatValue(v); }

std::optional<double> ParseDouble(std::string_view text) {
  double v = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || end != text.data() + text.size() || !std::isfinite(v)) {
    return std::nullopt;
  }
  return v;
}

}  // namespace

FieldReader::FieldReader(const json::value& value, std::string location)
    : location_(std::move(location)) {
  if (value.is_object()) {
    fields_ = value.as_object();
  } else {
    root_is_object_ = false;
    errors_.push_back(
        {json::array{json::string(location_)}, "Input should be a valid dictionary", "dict_type"});
  }
}

FieldReader::FieldReader(const server::QueryParams& query) : from_query_(true), location_("query") {
  for (const auto& [name, value] : query.items()) {
    if (json::value* seen = fields_.if_contains(name)) {
      if (!seen->is_array()) *seen = json::array{*seen};
      seen->as_array().emplace_back(value);
    } else {
      fields_[name] = value;
    }
  }
}

json::array FieldReader::Loc(std::string_view field) const {
  return json::array{json::string(location_), json::string(field)};
}

void FieldReader::AddError(std::string_view field, std::string msg, std::string type) {
  errors_.push_back({Loc(field), std::move(msg), std::move(type)});
}

const json::value* FieldReader::Find(std::string_view field, bool required) {
  const json::value* v = fields_.if_contains(field);
  if (v == nullptr || v->is_null()) {
    if (required && root_is_object_) AddError(field, "Field required", "missing");
    return nullptr;
  }
  // A repeated query parameter given where one value is expected: the first counts.
  if (from_query_ && v->is_array() && !v->as_array().empty()) return &v->as_array().front();
  return v;
}

std::optional<std::string> FieldReader::String(std::string_view field, StringRule rule) {
  const json::value* v = Find(field, rule.required);
  if (v == nullptr) return std::nullopt;
  if (!v->is_string()) {
    AddError(field, "Input should be a valid string", "string_type");
    return std::nullopt;
  }
  std::string s(v->as_string());
  if (s.size() < rule.min_length) {
    AddError(field,
             fmt::format("String should have at least {} character{}", rule.min_length,
                         rule.min_length == 1 ? "" : "s"),
             "string_too_short");
    return std::nullopt;
  }
  return s;
}

std::optional<double> FieldReader::Number(std::string_view field, NumberRule rule) {
  const json::value* v = Find(field, rule.required);
  if (v == nullptr) return std::nullopt;
  std::optional<double> out;
  if (v->is_number()) {
    out = v->to_number<double>();
  } else if (from_query_ && v->is_string()) {
    out = ParseDouble(v->as_string());
  }
  if (!out) {
    AddError(field, "Input should be a valid number", "float_type");
    return std::nullopt;
  }
  if (rule.min && *out < *rule.min) {
    AddError(field, "Input should be greater than or equal to " + Num(*rule.min),
             "greater_than_equal");
    return std::nullopt;
  }
  if (rule.max && *out > *rule.max) {
    AddError(field, "Input should be less than or equal to " + Num(*rule.max), "less_than_equal");
    return std::nullopt;
  }
  return out;
}

std::optional<std::int64_t> FieldReader::Integer(std::string_view field, NumberRule rule) {
  const json::value* v = Find(field, rule.required);
  if (v == nullptr) return std::nullopt;
  std::optional<std::int64_t> out;
  if (v->is_int64()) {
    out = v->as_int64();
  } else if (v->is_uint64()) {
    out = v->as_uint64() > static_cast<std::uint64_t>(INT64_MAX) ? INT64_MAX
                                                                 : std::int64_t(v->as_uint64());
  } else if (v->is_double() && std::trunc(v->as_double()) == v->as_double() &&
             std::abs(v->as_double()) < 9e15) {
    out = static_cast<std::int64_t>(v->as_double());  // 5.0 is an integer, as pydantic holds
  } else if (from_query_ && v->is_string()) {
    std::string_view text = v->as_string();
    std::int64_t n = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec == std::errc() && end == text.data() + text.size()) out = n;
  }
  if (!out) {
    AddError(field, "Input should be a valid integer", "int_type");
    return std::nullopt;
  }
  if (rule.min && double(*out) < *rule.min) {
    AddError(field, "Input should be greater than or equal to " + Num(*rule.min),
             "greater_than_equal");
    return std::nullopt;
  }
  if (rule.max && double(*out) > *rule.max) {
    AddError(field, "Input should be less than or equal to " + Num(*rule.max), "less_than_equal");
    return std::nullopt;
  }
  return out;
}

std::optional<bool> FieldReader::Bool(std::string_view field, bool required) {
  const json::value* v = Find(field, required);
  if (v == nullptr) return std::nullopt;
  if (v->is_bool()) return v->as_bool();
  if (from_query_ && v->is_string()) {
    const std::string_view t = v->as_string();
    if (t == "true" || t == "1" || t == "yes" || t == "on") return true;
    if (t == "false" || t == "0" || t == "no" || t == "off") return false;
  }
  AddError(field, "Input should be a valid boolean", "bool_type");
  return std::nullopt;
}

std::optional<std::vector<std::string>> FieldReader::StringList(std::string_view field) {
  const json::value* raw = fields_.if_contains(field);
  if (raw == nullptr || raw->is_null()) return std::nullopt;
  if (from_query_ && raw->is_string())
    return std::vector<std::string>{std::string(raw->as_string())};
  if (!raw->is_array()) {
    AddError(field, "Input should be a valid list", "list_type");
    return std::nullopt;
  }
  std::vector<std::string> out;
  bool good = true;
  const json::array& items = raw->as_array();
  for (std::size_t i = 0; i < items.size(); ++i) {
    if (!items[i].is_string()) {
      json::array loc = Loc(field);
      loc.emplace_back(static_cast<std::int64_t>(i));
      errors_.push_back({std::move(loc), "Input should be a valid string", "string_type"});
      good = false;
      continue;
    }
    out.emplace_back(items[i].as_string());
  }
  if (!good) return std::nullopt;
  return out;
}

std::optional<json::object> FieldReader::Object(std::string_view field) {
  const json::value* v = Find(field, false);
  if (v == nullptr) return std::nullopt;
  if (!v->is_object()) {
    AddError(field, "Input should be a valid dictionary", "dict_type");
    return std::nullopt;
  }
  return v->as_object();
}

std::string FieldOfMessage(std::string_view message) {
  std::size_t n = 0;
  while (n < message.size() &&
         (std::isalnum(static_cast<unsigned char>(message[n])) || message[n] == '_')) {
    ++n;
  }
  return std::string(message.substr(0, n));
}

server::Response ErrorFromStatus(const Status& status, std::string_view location) {
  switch (status.code()) {
    case StatusCode::kOk:
      log::Get("api")->error("ErrorFromStatus called with OK; answering 500");
      return server::InternalServerError();
    case StatusCode::kInvalidArgument: {
      json::array loc{json::string(location)};
      if (std::string field = FieldOfMessage(status.message()); !field.empty()) {
        loc.emplace_back(field);
      }
      return server::ValidationError({{std::move(loc), status.message(), "value_error"}});
    }
    case StatusCode::kNotFound:
      return server::ErrorResponse(404, status.message());
    case StatusCode::kAlreadyExists:
      return server::ErrorResponse(409, status.message());
    case StatusCode::kPermissionDenied:
      return server::ErrorResponse(403, status.message());
    case StatusCode::kFailedPrecondition:
    case StatusCode::kResourceExhausted:
    case StatusCode::kUnavailable:
    case StatusCode::kDataLoss:
      log::Get("api")->warn("storage failed, answering 503: {}", status.ToString());
      return server::ServiceUnavailable("storage unavailable: " + status.message());
    case StatusCode::kInternal:
      break;
  }
  log::Get("api")->error("internal error, answering 500: {}", status.ToString());
  return server::InternalServerError();
}

}  // namespace mann::api
