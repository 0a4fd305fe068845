// libFuzzer target: the bytes a client sends on one connection, through the server's parser and
// request conversion, to the real API routes.
//
// The input is parsed by Beast's request_parser with the limits of a default ServerOptions, in
// the steps Connection::ServeOne (src/server/http_server.cc) takes: the header within
// max_header_bytes, a Content-Length checked against max_body_bytes before any body is read,
// then the body (sized or chunked) held to that limit. A complete request becomes a
// server::Request through server::internal::RequestIdOf and ToRequest, the functions the server
// itself calls, and is answered by the router (api_harness.h checks every answer). Pipelined
// requests follow one another while the message allows keep-alive, as on a real connection, up
// to kMaxRequests per input so that one input stays cheap. Where the server would answer without
// routing (400, 413, 431) the refusal it builds is checked the same way.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include <boost/asio/buffer.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include <mann/core/clock.h>
#include <mann/core/id.h>
#include <mann/server/http_message.h>
#include <mann/server/http_server.h>

#include "api_harness.h"
#include "server/wire.h"

namespace {

namespace http = boost::beast::http;
using boost::beast::error_code;
using mann::fuzz::Fail;
using mann::server::Request;
using mann::server::Response;
using Parser = http::request_parser<http::string_body>;

// Requests served from one input at most.
constexpr int kMaxRequests = 16;
// What the server puts in Request::client_address; the fuzzer has no socket.
constexpr std::string_view kClient = "127.0.0.1:40000";

const mann::server::ServerOptions kOptions;

mann::IdGenerator& Ids() {
  static mann::IdGenerator ids(mann::SystemClock::Instance());
  return ids;
}

// Hands the parser what is left of `wire` until `done()` holds, removing what it consumed.
// `ec` is need_more when the input ends first, or the parser's verdict on a bad byte.
template <typename Done>
void Feed(Parser& parser, std::string_view& wire, error_code& ec, Done done) {
  ec = {};
  while (!done()) {
    const std::size_t used = parser.put(boost::asio::buffer(wire.data(), wire.size()), ec);
    wire.remove_prefix(used);
    if (ec) return;
    if (used == 0) {
      ec = http::error::need_more;  // nothing taken and not done: it wants bytes we lack
      return;
    }
  }
}

// An answer made before routing: checked against the same contract as the router's.
void CheckRefusal(const Parser& parser, const Response& refusal) {
  Request request;
  request.method = std::string(parser.get().method_string());
  request.target = std::string(parser.get().target());
  mann::fuzz::CheckResponse(request, refusal);
}

// Reads and answers the request at the front of `wire`; false when the connection would end
// there (the input ran out, the request was refused, or it asked to close).
bool ServeOne(std::string_view& wire) {
  Parser parser;
  parser.header_limit(static_cast<std::uint32_t>(kOptions.max_header_bytes));
  parser.body_limit(boost::none);  // as the server: Content-Length is checked first

  // Header.
  error_code ec;
  Feed(parser, wire, ec, [&] { return parser.is_header_done(); });
  if (ec == http::error::need_more) return false;  // the server would wait, then time out
  if (ec) {
    CheckRefusal(parser, ec == http::error::header_limit
                             ? mann::server::RequestHeaderFieldsTooLarge(kOptions.max_header_bytes)
                             : mann::server::BadRequest("malformed request: " + ec.message()));
    return false;
  }
  auto& message = parser.get();
  const std::string request_id = mann::server::internal::RequestIdOf(message, Ids());

  // Body, refused up front when announced too large.
  if (auto length = parser.content_length(); length && *length > kOptions.max_body_bytes) {
    CheckRefusal(parser, mann::server::PayloadTooLarge(kOptions.max_body_bytes));
    return false;
  }
  if (!parser.is_done()) {
    parser.body_limit(kOptions.max_body_bytes);
    Feed(parser, wire, ec, [&] { return parser.is_done(); });
    if (ec == http::error::need_more) return false;
    if (ec == http::error::body_limit) {
      CheckRefusal(parser, mann::server::PayloadTooLarge(kOptions.max_body_bytes));
      return false;
    }
    if (ec) {
      CheckRefusal(parser, mann::server::BadRequest("malformed request body: " + ec.message()));
      return false;
    }
  }

  // The conversion keeps what the parser read.
  const std::size_t body_size = message.body().size();
  Request request = mann::server::internal::ToRequest(message, std::move(message.body()),
                                                      std::string(kClient), request_id);
  std::size_t fields = 0;
  for (auto it = message.begin(); it != message.end(); ++it) ++fields;
  if (request.method != std::string_view(message.method_string()) ||
      request.target != std::string_view(message.target()) ||
      request.headers.fields().size() != fields || request.body.size() != body_size ||
      !mann::server::internal::IsSaneRequestId(request.request_id)) {
    Fail("ToRequest lost part of the message", request, Response{});
  }

  mann::fuzz::Harness::Get().Handle(request);
  return message.keep_alive();
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int* argc, char*** argv) {
  mann::fuzz::Harness::Init(*argc > 0 ? (*argv)[0] : "http_request_fuzzer");
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::string_view wire(reinterpret_cast<const char*>(data), size);
  for (int i = 0; i < kMaxRequests && !wire.empty(); ++i) {
    if (!ServeOne(wire)) break;
  }
  return 0;
}
