#include "api_harness.h"

#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>
#include <system_error>

#include <boost/json/parse.hpp>

#include <mann/api/api.h>
#include <mann/config/config.h>
#include <mann/metrics/registry.h>
#include <mann/runtime/runtime.h>
#include <mann/server/router.h>

namespace mann::fuzz {
namespace {

namespace fs = std::filesystem;
namespace json = boost::json;

// The memory bank's limits in the fuzz runtime: small, so that eviction runs often and the
// database stays small over a long run.
constexpr std::int64_t kMemorySize = 64;
constexpr std::int64_t kMaxMemoryCapacity = 128;

// The process-wide service. Allocated once and torn down by an atexit handler, in the reverse
// order of building, so the runtime flushes into a store that is still there and the directory
// goes last.
struct Service {
  fs::path root;
  std::unique_ptr<runtime::Runtime> runtime;
  std::unique_ptr<api::Api> api;
  std::unique_ptr<server::Router> router;
};

Service* g_service = nullptr;
Harness* g_harness = nullptr;

void TearDown() {
  if (g_service == nullptr) return;
  g_service->router.reset();
  g_service->api.reset();
  g_service->runtime.reset();
  std::error_code ignored;
  fs::remove_all(g_service->root, ignored);
  delete g_service;
  g_service = nullptr;
}

[[noreturn]] void InitFailed(std::string_view program, std::string_view what) {
  std::fprintf(stderr, "%.*s: cannot set up the fuzz runtime: %.*s\n",
               static_cast<int>(program.size()), program.data(), static_cast<int>(what.size()),
               what.data());
  std::exit(1);
}

bool IsToken(std::string_view name) {
  static constexpr std::string_view kTokenSymbols = "!#$%&'*+-.^_`|~";
  if (name.empty()) return false;
  for (char c : name) {
    if (!std::isalnum(static_cast<unsigned char>(c)) &&
        kTokenSymbols.find(c) == std::string_view::npos) {
      return false;
    }
  }
  return true;
}

bool IsSafeValue(std::string_view value) {
  return value.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// A 422's detail: a non-empty list of {loc: [...], msg: "...", type: "..."}.
bool IsFieldErrorList(const json::value& detail) {
  const json::array* items = detail.if_array();
  if (items == nullptr || items->empty()) return false;
  for (const json::value& item : *items) {
    const json::object* o = item.if_object();
    if (o == nullptr) return false;
    const json::value* loc = o->if_contains("loc");
    const json::value* msg = o->if_contains("msg");
    const json::value* type = o->if_contains("type");
    if (loc == nullptr || !loc->is_array() || msg == nullptr || !msg->is_string() ||
        type == nullptr || !type->is_string()) {
      return false;
    }
  }
  return true;
}

}  // namespace

void Harness::Init(std::string_view program) {
  if (g_harness != nullptr) return;

  // A fresh data directory, so every run starts from an empty bank.
  std::error_code ec;
  fs::path tmp = fs::temp_directory_path(ec);
  if (ec) InitFailed(program, "no temporary directory: " + ec.message());
  std::string pattern = (tmp / "mann-fuzz-XXXXXX").string();
  if (mkdtemp(pattern.data()) == nullptr) {
    InitFailed(program,
               "mkdtemp " + pattern + " failed: " + std::generic_category().message(errno));
  }

  auto* service = new Service;
  service->root = pattern;
  config::Config c = config::DefaultConfig({{"HOME", service->root.string()}});
  c.storage.data_dir = (service->root / "data").string();
  c.encoder.kind = "hashed";
  // Errors only: a 500's cause is logged at that level, and 4xx answers stay quiet.
  c.log.level = "error";
  c.memory.memory_size = kMemorySize;
  c.memory.max_memory_capacity = kMaxMemoryCapacity;
  auto rt = runtime::Runtime::Open(c);
  if (!rt.ok()) InitFailed(program, rt.status().ToString());
  service->runtime = std::move(*rt);

  service->api = std::make_unique<api::Api>(*service->runtime);
  service->router = std::make_unique<server::Router>();
  if (Status st = service->api->RegisterRoutes(*service->router); !st.ok()) {
    InitFailed(program, st.ToString());
  }
  if (Status st = service->api->RegisterMetrics(metrics::Registry::Default()); !st.ok()) {
    InitFailed(program, st.ToString());
  }

  g_service = service;
  std::atexit(TearDown);
  g_harness = new Harness;
}

Harness& Harness::Get() {
  if (g_harness == nullptr) {
    std::fprintf(stderr, "fuzz harness used before Harness::Init\n");
    std::abort();
  }
  return *g_harness;
}

server::Response Harness::Handle(server::Request& request) {
  server::Response response;
  try {
    response = g_service->router->Handle(request);
  } catch (...) {
    Fail("Router::Handle threw", request, response);
  }
  CheckResponse(request, response);
  return response;
}

void CheckResponse(const server::Request& request, const server::Response& response) {
  const int status = response.status;
  if (status < 200 || status > 599) Fail("status outside 200..599", request, response);
  if (status == 500)
    Fail("500: a handler threw or the core reported an internal error", request, response);

  if (!IsSafeValue(response.content_type)) Fail("CR, LF or NUL in Content-Type", request, response);
  for (const auto& [name, value] : response.headers.fields()) {
    if (!IsToken(name)) Fail("header name is not a token", request, response);
    if (!IsSafeValue(value)) Fail("CR, LF or NUL in a header value", request, response);
  }
  if (status == 204 && !response.body.empty()) Fail("204 with a body", request, response);
  if (status == 405 && !response.headers.Has("Allow")) Fail("405 without Allow", request, response);

  const bool is_json = server::IsJsonContentType(response.content_type);
  json::value body;
  if (is_json && status != 204) {
    boost::system::error_code ec;
    body = json::parse(response.body, ec);
    if (ec) Fail("JSON response body does not parse: " + ec.message(), request, response);
  }

  if (status >= 400) {
    if (!is_json) Fail("error answer is not JSON", request, response);
    const json::object* o = body.if_object();
    const json::value* detail = o != nullptr ? o->if_contains("detail") : nullptr;
    if (detail == nullptr) Fail("error answer without detail", request, response);
    if (status == 422 ? !IsFieldErrorList(*detail) : !detail->is_string()) {
      Fail(status == 422 ? "422 detail is not a list of {loc, msg, type}"
                         : "error detail is not a string",
           request, response);
    }
  }
}

void Fail(std::string_view what, const server::Request& request, const server::Response& response) {
  // Bounded, so a megabyte body does not bury the message.
  auto clip = [](std::string_view text) {
    return std::string(text.substr(0, 2048)) + (text.size() > 2048 ? "..." : "");
  };
  std::fprintf(stderr,
               "\n== fuzz invariant broken: %.*s\n"
               "request:  %s %s (route %s), body %zu bytes: %s\n"
               "response: %d %s: %s\n",
               static_cast<int>(what.size()), what.data(), clip(request.method).c_str(),
               clip(request.target).c_str(), request.route.c_str(), request.body.size(),
               clip(request.body).c_str(), response.status, response.content_type.c_str(),
               clip(response.body).c_str());
  std::fflush(stderr);
  __builtin_trap();
}

std::string PercentEncode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (std::isalnum(u) || c == '-' || c == '.' || c == '_' || c == '~') {
      out += c;
    } else {
      out += '%';
      out += kHex[u >> 4];
      out += kHex[u & 0xF];
    }
  }
  return out;
}

}  // namespace mann::fuzz
