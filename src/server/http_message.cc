#include <algorithm>
#include <cctype>
#include <string>

#include <mann/core/utf8.h>
#include <mann/metrics/registry.h>
#include <mann/server/http_message.h>

namespace mann::server {
namespace {

namespace json = boost::json;

bool EqualsIgnoreCase(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

std::string_view Trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

// ---- Headers, QueryParams, Request -------------------------------------------------------------

std::optional<std::string_view> Headers::Get(std::string_view name) const {
  for (const auto& [n, v] : fields_) {
    if (EqualsIgnoreCase(n, name)) return std::string_view(v);
  }
  return std::nullopt;
}

void Headers::Add(std::string name, std::string value) {
  fields_.emplace_back(std::move(name), std::move(value));
}

void Headers::Set(std::string name, std::string value) {
  Remove(name);
  Add(std::move(name), std::move(value));
}

void Headers::Remove(std::string_view name) {
  std::erase_if(fields_, [&](const auto& field) { return EqualsIgnoreCase(field.first, name); });
}

std::optional<std::string_view> QueryParams::Get(std::string_view name) const {
  for (const auto& [n, v] : items_) {
    if (n == name) return std::string_view(v);
  }
  return std::nullopt;
}

std::vector<std::string_view> QueryParams::GetAll(std::string_view name) const {
  std::vector<std::string_view> values;
  for (const auto& [n, v] : items_) {
    if (n == name) values.emplace_back(v);
  }
  return values;
}

void QueryParams::Add(std::string name, std::string value) {
  items_.emplace_back(std::move(name), std::move(value));
}

std::string_view Request::PathParam(std::string_view name) const {
  auto it = path_params.find(name);
  return it == path_params.end() ? std::string_view() : std::string_view(it->second);
}

// ---- Response --------------------------------------------------------------------------------

Response Response::Json(const json::value& body, int status) {
  Response response;
  response.status = status;
  response.body = json::serialize(body);
  // Boost.JSON writes string bytes as they are. Text quoted from a request (a header, a decoded
  // path) can hold bytes that are not UTF-8, and a body with them is not JSON to a client. Such
  // bytes can only sit inside strings, so replacing them keeps the document well formed.
  if (!IsValidUtf8(response.body)) response.body = ToValidUtf8(response.body);
  return response;
}

Response Response::Text(std::string body, int status, std::string content_type) {
  Response response;
  response.status = status;
  response.content_type = std::move(content_type);
  response.body = std::move(body);
  return response;
}

Response Response::Empty(int status) {
  Response response;
  response.status = status;
  response.content_type.clear();
  return response;
}

// ---- Errors ----------------------------------------------------------------------------------

Response ErrorResponse(int status, std::string_view detail) {
  return Response::Json(json::object{{"detail", detail}}, status);
}

Response BadRequest(std::string_view detail) { return ErrorResponse(400, detail); }

Response NotFound(std::string_view detail) { return ErrorResponse(404, detail); }

Response MethodNotAllowed(const std::vector<std::string>& allowed) {
  Response response = ErrorResponse(405, "Method Not Allowed");
  std::string allow;
  for (const auto& method : allowed) {
    if (!allow.empty()) allow += ", ";
    allow += method;
  }
  response.headers.Set("Allow", std::move(allow));
  return response;
}

Response PayloadTooLarge(std::size_t limit_bytes) {
  return ErrorResponse(
      413, "request body is larger than the limit of " + std::to_string(limit_bytes) + " bytes");
}

Response UnsupportedMediaType(std::string_view got) {
  std::string what =
      got.empty() ? std::string("no Content-Type") : "Content-Type '" + std::string(got) + "'";
  return ErrorResponse(415, "unsupported media type: got " + what + ", expected application/json");
}

Response RequestHeaderFieldsTooLarge(std::size_t limit_bytes) {
  return ErrorResponse(
      431, "request header is larger than the limit of " + std::to_string(limit_bytes) + " bytes");
}

Response InternalServerError() { return ErrorResponse(500, "Internal Server Error"); }

Response ServiceUnavailable(std::string_view detail) { return ErrorResponse(503, detail); }

Response ValidationError(const std::vector<FieldError>& errors) {
  json::array detail;
  detail.reserve(errors.size());
  for (const auto& error : errors) {
    detail.push_back(json::object{{"loc", error.loc}, {"msg", error.msg}, {"type", error.type}});
  }
  return Response::Json(json::object{{"detail", std::move(detail)}}, 422);
}

Result<json::value> ParseJsonBody(const Request& request) {
  if (request.body.empty()) {
    return InvalidArgumentError("malformed JSON in request body: the body is empty");
  }
  json::stream_parser parser;
  boost::system::error_code ec;
  std::size_t consumed = parser.write(request.body.data(), request.body.size(), ec);
  if (!ec) parser.finish(ec);
  if (ec) {
    return InvalidArgumentError("malformed JSON in request body at offset " +
                                std::to_string(consumed) + ": " + ec.message());
  }
  return parser.release();
}

bool IsJsonContentType(std::string_view content_type) {
  std::string_view media = content_type.substr(0, content_type.find(';'));
  return EqualsIgnoreCase(Trim(media), "application/json");
}

// ---- URLs ------------------------------------------------------------------------------------

Result<std::string> PercentDecode(std::string_view text, bool plus_as_space) {
  std::string out;
  out.reserve(text.size());
  for (std::size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    if (c == '%') {
      int hi = i + 1 < text.size() ? HexValue(text[i + 1]) : -1;
      int lo = i + 2 < text.size() ? HexValue(text[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return InvalidArgumentError("malformed percent-escape at offset " + std::to_string(i) +
                                    ": '%' must be followed by two hex digits");
      }
      out.push_back(static_cast<char>(hi * 16 + lo));
      i += 2;
    } else if (c == '+' && plus_as_space) {
      out.push_back(' ');
    } else {
      out.push_back(c);
    }
  }
  return out;
}

Result<QueryParams> ParseQuery(std::string_view query) {
  QueryParams params;
  while (!query.empty()) {
    std::size_t amp = query.find('&');
    std::string_view piece = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (piece.empty()) continue;

    std::size_t eq = piece.find('=');
    std::string_view raw_name = piece.substr(0, eq);
    std::string_view raw_value = eq == std::string_view::npos ? "" : piece.substr(eq + 1);
    auto name = PercentDecode(raw_name, true);
    if (!name.ok()) {
      return name.status().WithContext("query parameter name '" + std::string(raw_name) + "'");
    }
    auto value = PercentDecode(raw_value, true);
    if (!value.ok()) return value.status().WithContext("query parameter '" + *name + "'");
    params.Add(std::move(*name), std::move(*value));
  }
  return params;
}

// ---- Metrics ---------------------------------------------------------------------------------

Response MetricsResponse(const metrics::Registry& registry) {
  return Response::Text(registry.Render(), 200, std::string(metrics::kContentType));
}

}  // namespace mann::server
