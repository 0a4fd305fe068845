// libFuzzer target: the input as the JSON body of each API route that takes one.
//
// The first byte picks the case: the route and, for a route on one entry, which id its path
// names. The rest is the body, sent with `Content-Type: application/json` through the router
// holding the real routes (api_harness.h). The selectors the seeds use are letters:
//   'M' POST /memories                  'S' POST /search            'Q' POST /query
//   'U' PUT  /memories/{live}           'u' PUT  /memories/{absent} 'x' PUT /memories/{not an id}
//   'F' POST /memories/{live}/forget    'f' POST /memories/{absent}/forget
// and any other byte picks kCases[byte % size]. {live} is an entry of the default namespace that
// the harness writes just before the request (the same content every time, so usually it finds
// the one it wrote before), {absent} a well-formed UUID no generator issues, {not an id} a
// segment that is no UUID and carries escapes.
//
// Beyond the contract every answer keeps (api_harness.h), a 2xx answer is JSON, and what a
// successful write reports holds when read back with GET /memories/{id} in its namespace:
//   POST /memories "created" or "updated"  the entry is there (unless that write evicted it)
//   PUT /memories/{id}                     the entry has the version the PUT reported
//   POST /memories/{id}/forget             the entry is gone (404)
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

#include <boost/json/parse.hpp>

#include <mann/core/entry.h>
#include <mann/server/http_message.h>

#include "api_harness.h"

namespace {

namespace json = boost::json;
using mann::fuzz::Fail;
using mann::fuzz::Harness;
using mann::server::Request;
using mann::server::Response;

enum class Target { kNone, kLive, kAbsent, kMalformed };

struct Case {
  char selector;
  const char* method;
  const char* prefix;  // the path up to the id, or all of it
  const char* suffix;  // the path after the id
  Target target;
};

constexpr Case kCases[] = {
    {'M', "POST", "/memories", "", Target::kNone},
    {'U', "PUT", "/memories/", "", Target::kLive},
    {'u', "PUT", "/memories/", "", Target::kAbsent},
    {'x', "PUT", "/memories/", "", Target::kMalformed},
    {'F', "POST", "/memories/", "/forget", Target::kLive},
    {'f', "POST", "/memories/", "/forget", Target::kAbsent},
    {'S', "POST", "/search", "", Target::kNone},
    {'Q', "POST", "/query", "", Target::kNone},
};

// A version 7 UUID whose time field is 0 (1970): no generator of ours issues it.
constexpr std::string_view kAbsentId = "00000000-0000-7000-8000-000000000000";
constexpr std::string_view kMalformedId = "not%20an%2Fid";

const Case& CaseFor(std::uint8_t selector) {
  for (const Case& c : kCases) {
    if (c.selector == static_cast<char>(selector)) return c;
  }
  return kCases[selector % std::size(kCases)];
}

Request JsonRequest(std::string method, std::string target, std::string body) {
  Request request;
  request.method = std::move(method);
  request.target = std::move(target);
  request.headers.Add("Content-Type", "application/json");
  request.body = std::move(body);
  request.request_id = "fuzz";
  return request;
}

json::value BodyOf(const Request& request, const Response& response) {
  boost::system::error_code ec;
  json::value body = json::parse(response.body, ec);
  if (ec) Fail("answer body does not parse as JSON: " + ec.message(), request, response);
  return body;
}

// The id of the harness's own entry, written (or found again) now.
std::string LiveId() {
  Request add = JsonRequest(
      "POST", "/memories",
      R"({"content":"the fuzz harness keeps this entry to address by id","tags":["fuzz"]})");
  Response response = Harness::Get().Handle(add);
  if (response.status != 200) Fail("the harness's own POST /memories failed", add, response);
  const json::value body = BodyOf(add, response);
  const json::value* id = body.is_object() ? body.as_object().if_contains("memory_id") : nullptr;
  if (id == nullptr || !id->is_string() || id->as_string().empty()) {
    return std::string(kAbsentId);
  }
  return std::string(id->as_string());
}

// The namespace a request's body names, as the handlers read it: `user_id` when it is a string,
// else the default.
std::string NamespaceOf(const Request& request) {
  boost::system::error_code ec;
  json::value body = json::parse(request.body, ec);
  if (!ec && body.is_object()) {
    if (const json::value* ns = body.as_object().if_contains("user_id"); ns && ns->is_string()) {
      return std::string(ns->as_string());
    }
  }
  return std::string(mann::kDefaultNamespace);
}

// GET /memories/{id} in `ns`.
Response ReadBack(std::string_view id, std::string_view ns, Request& get) {
  get.method = "GET";
  get.target =
      "/memories/" + mann::fuzz::PercentEncode(id) + "?user_id=" + mann::fuzz::PercentEncode(ns);
  get.request_id = "fuzz-read-back";
  return Harness::Get().Handle(get);
}

// The read-back checks listed at the top, for a 2xx answer to `request`.
void CheckWriteHolds(const Case& c, const Request& request, const Response& response) {
  const json::value body = BodyOf(request, response);
  const json::object* o = body.if_object();
  const std::string ns = NamespaceOf(request);
  Request get;

  if (c.target == Target::kNone && std::string_view(c.prefix) == "/memories") {
    if (o == nullptr)
      Fail("POST /memories answered something other than an object", request, response);
    const json::value* status = o->if_contains("status");
    const json::value* id = o->if_contains("memory_id");
    if (status == nullptr || id == nullptr || !id->is_string()) {
      Fail("POST /memories answer lacks status or memory_id", request, response);
    }
    if (*status != "created" && *status != "updated") return;
    if (const json::value* evicted = o->if_contains("evicted_ids");
        evicted && evicted->is_array()) {
      for (const json::value& e : evicted->as_array()) {
        if (e == *id) return;
      }
    }
    Response read = ReadBack(id->as_string(), ns, get);
    if (read.status != 200) Fail("an entry POST /memories wrote cannot be read back", get, read);
    return;
  }

  if (c.target == Target::kNone) return;  // search and query write nothing to read back
  const std::string id(request.PathParam("id"));
  Response read = ReadBack(id, ns, get);
  if (std::string_view(c.suffix) == "/forget") {
    if (read.status != 404) Fail("a forgotten entry can still be read", get, read);
    return;
  }
  if (read.status != 200) Fail("an entry PUT updated cannot be read back", get, read);
  const json::value stored = BodyOf(get, read);
  const json::value* reported_version = o != nullptr ? o->if_contains("version") : nullptr;
  const json::value* stored_version =
      stored.is_object() ? stored.as_object().if_contains("version") : nullptr;
  if (reported_version == nullptr || stored_version == nullptr ||
      *reported_version != *stored_version) {
    Fail("GET shows another version than PUT reported", get, read);
  }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  Harness::Init(*argc > 0 ? (*argv)[0] : "json_handlers_fuzzer");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size == 0) return 0;
  const Case& c = CaseFor(data[0]);
  std::string target = c.prefix;
  switch (c.target) {
    case Target::kNone:
      break;
    case Target::kLive:
      target += LiveId();
      break;
    case Target::kAbsent:
      target += kAbsentId;
      break;
    case Target::kMalformed:
      target += kMalformedId;
      break;
  }
  target += c.suffix;

  Request request = JsonRequest(c.method, std::move(target),
                                std::string(reinterpret_cast<const char*>(data) + 1, size - 1));
  const Response response = Harness::Get().Handle(request);
  if (response.status >= 200 && response.status < 300) {
    if (!mann::server::IsJsonContentType(response.content_type)) {
      Fail("a 2xx answer is not JSON", request, response);
    }
    CheckWriteHolds(c, request, response);
  }
  return 0;
}
