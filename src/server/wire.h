// The step between Beast's parser and the router: a parsed request message becomes the
// server::Request that middleware and handlers see.
//
// Internal to the server, not part of the public headers: HttpServer calls these for every
// request it reads, and the fuzz targets (fuzz/) call the very same functions on what their own
// parser produced, so what they exercise is what the server runs.
//
// Thread-safety: free functions over values; IdGenerator is itself thread-safe.
#pragma once

#include <string>
#include <string_view>

#include <boost/beast/http/message.hpp>

#include <mann/core/id.h>
#include <mann/server/http_message.h>

namespace mann::server::internal {

// True for an X-Request-ID worth keeping: printable ASCII of 1 to 128 bytes. Anything else
// could break log lines or be used to flood them.
bool IsSaneRequestId(std::string_view id);

// The id a request is known by in logs and in the X-Request-ID answer: the client's X-Request-ID
// when it is sane, else a fresh UUIDv7 from `ids`. Called once per request, as soon as its header
// is read, so that answers refused before the body is read carry it too.
std::string RequestIdOf(const boost::beast::http::request_header<>& header, IdGenerator& ids);

// The Request for a message whose header has been read: method as sent, the raw target, the
// version (10 or 11), every header field in arrival order, and the given body, client address
// ("127.0.0.1:50312") and request id. Routing fields (path, query, route, path_params) are left
// for Router::Handle.
Request ToRequest(const boost::beast::http::request_header<>& header, std::string body,
                  std::string client_address, std::string request_id);

}  // namespace mann::server::internal
