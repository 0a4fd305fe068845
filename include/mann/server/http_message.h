// HTTP messages as handlers see them: the parsed Request, the Response a handler returns, and the
// helpers that build the error bodies every endpoint shares.
//
// Nothing here knows the transport: the server (http_server.h) fills a Request from the wire and
// writes the Response back, so the API layer and its tests deal only in these values.
//
// Error bodies follow FastAPI, whose clients we keep working: always JSON, always a `detail`
// field, a string for most errors and a list of field errors for 422:
//
//   {"detail": "Not Found"}
//   {"detail": [{"loc": ["body", "content"], "msg": "field required", "type": "missing"}]}
//
// Thread-safety: values; a Request or Response belongs to one thread at a time.
#pragma once

#include <any>
#include <cstddef>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <boost/json.hpp>

#include <mann/core/status.h>

namespace mann::metrics {
class Registry;
}

namespace mann::server {

// Header fields in arrival order; names compare case-insensitively (RFC 9110 5.1).
class Headers {
 public:
  // The value of the first field named `name`, or std::nullopt.
  std::optional<std::string_view> Get(std::string_view name) const;
  bool Has(std::string_view name) const { return Get(name).has_value(); }
  // Appends a field, keeping any others of that name.
  void Add(std::string name, std::string value);
  // Replaces every field named `name` with one.
  void Set(std::string name, std::string value);
  void Remove(std::string_view name);

  const std::vector<std::pair<std::string, std::string>>& fields() const { return fields_; }
  bool empty() const { return fields_.empty(); }

 private:
  std::vector<std::pair<std::string, std::string>> fields_;
};

// Query parameters, percent-decoded, in the order they appear; a name may repeat (?tag=a&tag=b).
class QueryParams {
 public:
  // The first value of `name`, or std::nullopt.
  std::optional<std::string_view> Get(std::string_view name) const;
  // Every value of `name`, in order.
  std::vector<std::string_view> GetAll(std::string_view name) const;
  void Add(std::string name, std::string value);

  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }
  bool empty() const { return items_.empty(); }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

// One request, complete with its body. The server fills method, target, headers, body and the
// connection's facts; Router::Handle derives path, query, route and path_params from the target;
// middleware may add `attributes` for the handlers behind it.
struct Request {
  std::string method;  // as sent, e.g. "GET" (methods are case-sensitive)
  std::string target;  // the raw request-target, e.g. "/memories/a%20b?user_id=u1"
  std::string path;    // the target's path, still percent-encoded: "/memories/a%20b"
  QueryParams query;   // decoded: {"user_id": "u1"}; '+' reads as a space, as in HTML forms
  Headers headers;
  std::string body;
  std::string request_id;      // the client's X-Request-ID when sane, else a fresh UUIDv7
  std::string client_address;  // "127.0.0.1:50312", "[::1]:50312"
  int version = 11;            // 10 for HTTP/1.0, 11 for HTTP/1.1

  // The template the path matched ("/memories/{id}"), whether or not the method did; empty
  // when no route has this path.
  std::string route;
  // Values of the template's {params}, each percent-decoded on its own, so "%2F" inside an id
  // stays in that id.
  std::map<std::string, std::string, std::less<>> path_params;

  // What middleware learned for later stages (e.g. the authenticated key). Keys are free-form.
  std::map<std::string, std::any, std::less<>> attributes;

  // Shorthands: the header's value, the path parameter (empty if absent), the first query value.
  std::optional<std::string_view> Header(std::string_view name) const { return headers.Get(name); }
  std::string_view PathParam(std::string_view name) const;
  std::optional<std::string_view> Query(std::string_view name) const { return query.Get(name); }
};

// What a handler returns. The server adds Content-Length, Date, Connection and X-Request-ID;
// a HEAD request gets the headers without the body.
// Sends the parts of a body that is produced over time (Response::producer). One producer uses
// it, from its own thread; it is valid only while the producer runs.
class BodyWriter {
 public:
  virtual ~BodyWriter() = default;
  // Queues `data` to be sent as it is, waiting while much is already queued (backpressure from
  // a slow client). False once the client is gone, a write failed or timed out
  // (ServerOptions::write_timeout) or the server is stopping: the producer should stop, as
  // nothing it writes will be sent any more.
  virtual bool Write(std::string_view data) = 0;
  // True when Write would return false.
  virtual bool closed() const = 0;
};

// Produces a body part by part through the writer, returning when the body is complete.
using BodyProducer = std::function<void(BodyWriter& out)>;

struct Response {
  int status = 200;
  std::string content_type = "application/json";  // empty: no Content-Type field
  std::string body;
  Headers headers;  // extra fields: Allow, Retry-After, Access-Control-*, ...
  // When set, the body is not `body` but what the producer writes: the server sends the status
  // and header at once, then each part as it is written (chunked transfer coding; to an
  // HTTP/1.0 client, raw bytes and then the connection closes), and access-logs the exchange
  // when the producer has returned and the last part is sent. It runs on the handler pool, so
  // only a RouteOptions::blocking route may return one (any other gets a logged 500). HEAD
  // requests get the header only, and the producer is not run.
  BodyProducer producer;

  // A JSON body, serialized compactly.
  static Response Json(const boost::json::value& body, int status = 200);
  // A text body with the given media type.
  static Response Text(std::string body, int status = 200,
                       std::string content_type = "text/plain; charset=utf-8");
  // No body and no Content-Type, e.g. 204.
  static Response Empty(int status = 204);
};

// ---- Errors ----------------------------------------------------------------------------------

// `{"detail": detail}` with the given status.
Response ErrorResponse(int status, std::string_view detail);

Response BadRequest(std::string_view detail);              // 400
Response NotFound(std::string_view detail = "Not Found");  // 404
// 405 with `Allow: GET, HEAD` listing `allowed` in the order given.
Response MethodNotAllowed(const std::vector<std::string>& allowed);
Response PayloadTooLarge(std::size_t limit_bytes);    // 413, names the limit
Response UnsupportedMediaType(std::string_view got);  // 415, names what came and what is taken
Response RequestHeaderFieldsTooLarge(std::size_t limit_bytes);  // 431
// 500 with a generic detail: the cause goes to the log, never to the client.
Response InternalServerError();
Response ServiceUnavailable(std::string_view detail = "Service Unavailable");  // 503

// One item of a 422's detail list. `loc` is where the bad value sits, outermost first, with
// strings for object keys and integers for list indexes: ["body", "tags", 2].
struct FieldError {
  boost::json::array loc;
  std::string msg;   // for people: "ensure this value is less than or equal to 3"
  std::string type;  // for programs: "missing", "value_error", "type_error.integer", ...
};

// 422 with one detail item per bad field.
Response ValidationError(const std::vector<FieldError>& errors);

// The body parsed as JSON. InvalidArgument when it is not, with the parser's message and the
// byte offset ("malformed JSON in request body at offset 12: syntax error"); hand that to
// BadRequest(status.message()).
Result<boost::json::value> ParseJsonBody(const Request& request);

// True for `application/json` with or without parameters (`; charset=utf-8`), in any case.
bool IsJsonContentType(std::string_view content_type);

// ---- URLs ------------------------------------------------------------------------------------

// Decodes %XX escapes; with `plus_as_space`, also '+' to ' ' (query strings). InvalidArgument
// naming the offset of a '%' not followed by two hex digits.
Result<std::string> PercentDecode(std::string_view text, bool plus_as_space);

// Splits `a=1&b=x%20y&flag` into decoded pairs; a name without '=' gets an empty value and empty
// pieces are skipped. InvalidArgument for a malformed escape, naming the parameter.
Result<QueryParams> ParseQuery(std::string_view query);

// ---- Metrics ---------------------------------------------------------------------------------

// 200 with `registry.Render()` and Content-Type metrics::kContentType, for `GET /metrics`.
Response MetricsResponse(const metrics::Registry& registry);

}  // namespace mann::server
